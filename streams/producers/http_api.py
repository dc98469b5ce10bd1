"""The worker's publish API: ``POST /api/v1/events`` and ``GET /api/v1/health`` (aiohttp).

``GET /api/v1/health`` answers what the ``health`` probe given to :func:`create_api` reports
(the worker's checks the broker, the stores and the lag: 200 healthy, 503 not), plus the
publishable ``topics``.

``POST /api/v1/events?topic=T`` takes one event object, an array of events, or
``{"topic": T, "events": [...]}`` (JSON lines too), validates the whole batch against T's
schema (:mod:`streams.producers.publish_validation`) and publishes it once per ``Idempotency-Key``
header (default: the content's digest; :mod:`streams.producers.publish_delivery`). Answers: 201
published, 200 already published by an earlier request with the same key, 400 not JSON, nested
too deeply, no topic or a bad idempotency key, 401 missing or wrong bearer token, 403 sent by
a web page (an ``Origin`` header) while no token is configured, 404 unknown
topic, 408 body slower than :data:`BODY_TIMEOUT_S`, 409 key reused for other content, 413 too
large (decompressed, with ``Content-Encoding``), 415 a ``Content-Type`` that is not JSON (see
:data:`JSON_CONTENT_TYPES`) or an unsupported ``Content-Encoding``, 422 invalid events (every
problem listed), 503 the broker did not acknowledge (retry with the same key) or too many open
connections. Errors are ``{"error": "...", "problems": [...]}``. No body makes it answer 500:
every failure input can cause is a 4xx naming it. What is checked of a request before its
events (token, origin, type, encoding, body size and time) is
:mod:`~streams.producers.api_requests`.

The server owns its connections' limits (:class:`ApiLimits`): headers must arrive within
:data:`HEADER_TIMEOUT_S`, the body within :data:`BODY_TIMEOUT_S`, and at most
:data:`MAX_CONNECTIONS` are open at once, so half-sent requests cannot pile up.

With a token configured every ``POST`` needs ``Authorization: Bearer <token>``; without one the
settings only allow a loopback address (see :class:`~streams.settings.Settings`).

Other layers serve more routes on the same server through an :data:`Extension` given to
:func:`create_api` (the worker's read API): this module knows nothing of what they read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer

from streams.errors import ConfigError
from streams.kafka_backoff import RETRY_BACKOFF_MS
from streams.producers.api_requests import JSON_CONTENT_TYPES, error_response, read_body, refusal
from streams.producers.connection_gate import ConnectionGate
from streams.producers.idempotency import KafkaKeys, Receipt
from streams.producers.publish_delivery import Publisher, PublishFailed
from streams.producers.publish_validation import (
    MAX_BODY_BYTES,
    PublishRejected,
    check_idempotency_key,
    publishable_topics,
    validate_body,
)

__all__ = [
    "BODY_TIMEOUT_S", "EVENTS_PATH", "HEADER_TIMEOUT_S", "JSON_CONTENT_TYPES", "MAX_CONNECTIONS",
    "ApiLimits", "Extension", "Health", "bind_api", "create_api", "running_api", "serve_api",
]

logger = logging.getLogger(__name__)

EVENTS_PATH = "/api/v1/events"
HEALTH_PATH = "/api/v1/health"

MAX_CONNECTIONS = 100
"""Connections open at once, counted from acceptance to close. One more is answered ``503``
(``Retry-After: 1``) and closed as soon as it is accepted, never queued: a flood of idle or
half-sent connections cannot use up the worker's file descriptors."""

HEADER_TIMEOUT_S = 10.0
"""Seconds a connection has to deliver its request line and headers, counted from its opening
(or from the previous answer on a kept-alive connection, which makes it the idle timeout too).
A slower connection is closed without an answer: there is no request to answer yet."""

BODY_TIMEOUT_S = 30.0
"""Seconds a request has to deliver its whole body once its headers are in (5 MiB at 175 kB/s).
A slower body is answered ``408`` and its connection closed; nothing is published."""


@dataclass(frozen=True)
class ApiLimits:
    """The limits one API server enforces; the defaults are this module's constants."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS


_LIMITS = web.AppKey("limits", ApiLimits)


Health = Callable[[], Awaitable[tuple[int, dict[str, Any]]]]
"""A deep health probe: ``(HTTP status, JSON body)``; the worker passes one that checks the
broker, the stores and the lag (200 healthy, 503 not)."""

Extension = Callable[[web.Application], None]
"""Called once with the new application, before it is served: adds routes (and startup or
cleanup hooks) of other layers. It must not replace the publish and health routes."""


def create_api(publisher: Publisher, token: str | None = None,
               limits: ApiLimits | None = None, health: Health | None = None,
               extend: Extension | None = None) -> web.Application:
    """The aiohttp application; ``token`` set means every POST must carry it. ``limits`` (the
    module's defaults when None) are kept in the app for :func:`running_api`. ``health``
    answers ``GET /api/v1/health`` (its body gains ``topics``, the publishable topics);
    without one the answer is 200 whenever the API itself is up. ``extend`` adds other
    layers' routes (see :data:`Extension`)."""
    limits = limits or ApiLimits()

    async def post_events(request: web.Request) -> web.Response:
        refused = refusal(request, token)
        if refused is not None:
            return refused
        try:
            key = check_idempotency_key(request.headers.get("Idempotency-Key"))
            raw = await read_body(request, limits.body_timeout_s)
            batch = validate_body(request.query.get("topic"), raw)
            receipt = await publisher.publish(batch, key)
        except PublishRejected as exc:
            return error_response(exc.status, exc.message, exc.problems,
                                  close=not request.content.is_eof())
        except PublishFailed as exc:
            return error_response(503, str(exc), headers={"Retry-After": "1"})
        return _receipt(receipt)

    async def get_health(request: web.Request) -> web.Response:
        if health is None:
            return web.json_response({"status": "ok", "topics": publishable_topics()})
        status, body = await health()
        return web.json_response({**body, "topics": publishable_topics()}, status=status)

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[_LIMITS] = limits
    app.router.add_post(EVENTS_PATH, post_events)
    app.router.add_get(HEALTH_PATH, get_health)
    if extend is not None:
        extend(app)
    return app


def _receipt(receipt: Receipt) -> web.Response:
    return web.json_response({
        "topic": receipt.topic, "events": receipt.count,
        "published": 0 if receipt.replayed else receipt.count,
        "already_published": receipt.replayed, "idempotency_key": receipt.idempotency_key,
        "published_at": receipt.published_at, "event_ids": receipt.event_ids,
    }, status=200 if receipt.replayed else 201)


def bind_api(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so a taken port fails the worker at start."""
    try:
        return socket.create_server((host, port))
    except OSError as exc:
        raise ConfigError(
            f"SESSIONSTREAM_API_PORT={port}: cannot serve the publish API on {host}:{port} "
            f"({exc.strerror or exc}); free the port or choose another (0 turns it off)"
        ) from exc


@contextlib.asynccontextmanager
async def running_api(app: web.Application, sock: socket.socket) -> AsyncIterator[None]:
    """Serve ``app`` (from :func:`create_api`) on the listening ``sock`` until the block exits,
    enforcing its :class:`ApiLimits`: the header timeout is aiohttp's keep-alive timeout (its
    timer starts when a connection opens and closes it while no complete request has come in),
    and connections over the limit are answered 503 and closed
    (:class:`~streams.producers.connection_gate.ConnectionGate`)."""
    limits = app[_LIMITS]
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=limits.header_timeout_s)
    await runner.setup()
    listener: asyncio.Server | None = None
    try:
        assert runner.server is not None  # set by setup()
        listener = await asyncio.get_running_loop().create_server(
            ConnectionGate(runner.server, limits.max_connections), sock=sock)
        yield
    finally:
        if listener is not None:
            listener.close()
        await runner.cleanup()


async def serve_api(sock: socket.socket, bootstrap: str, token: str | None,
                    report: Callable[[str], None] = print,
                    limits: ApiLimits | None = None, health: Health | None = None,
                    extend: Extension | None = None) -> None:
    """Serve the API on ``sock``, publishing to ``bootstrap``, until cancelled; ``health``
    and ``extend`` as for :func:`create_api`."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                retry_backoff_ms=RETRY_BACKOFF_MS)
    keys = KafkaKeys(bootstrap)
    try:
        await producer.start()
        await keys.start()
        app = create_api(Publisher(producer, keys), token, limits, health, extend)
        async with running_api(app, sock):
            host, port = sock.getsockname()[:2]
            report(f"publish:  http://{host}:{port}{EVENTS_PATH}"
                   + (" (bearer token required)" if token else ""))
            await asyncio.Event().wait()
    finally:
        await keys.stop()
        await producer.stop()
