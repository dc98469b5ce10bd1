"""The worker's publish API: ``POST /api/v1/events`` and ``GET /api/v1/health`` (aiohttp).

``POST /api/v1/events?topic=T`` takes one event object, an array of events, or
``{"topic": T, "events": [...]}`` (JSON lines too), validates the whole batch against T's
schema (:mod:`streams.producers.publishing`) and publishes it once per ``Idempotency-Key``
header (default: the content's digest; :mod:`streams.producers.publisher`). Answers: 201
published, 200 already published by an earlier request with the same key, 400 not JSON or no
topic, 401 missing or wrong bearer token, 404 unknown topic, 409 key reused for other content,
413 too large, 422 invalid events (every problem listed), 503 the broker did not acknowledge
(retry with the same key). Errors are ``{"error": "...", "problems": [...]}``.

With a token configured every ``POST`` needs ``Authorization: Bearer <token>``; without one the
settings only allow a loopback address (see :class:`~streams.settings.Settings`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer

from streams.errors import ConfigError
from streams.producers.idempotency import KafkaKeys
from streams.producers.publisher import Publisher, PublishFailed
from streams.producers.publishing import (
    MAX_BODY_BYTES,
    PublishRejected,
    publishable_topics,
    validate_body,
)

__all__ = ["EVENTS_PATH", "bind_api", "create_api", "serve_api"]

logger = logging.getLogger(__name__)

EVENTS_PATH = "/api/v1/events"
HEALTH_PATH = "/api/v1/health"


def create_api(publisher: Publisher, token: str | None = None) -> web.Application:
    """The aiohttp application; ``token`` set means every POST must carry it."""

    async def post_events(request: web.Request) -> web.Response:
        if token is not None and not _authorized(request, token):
            return _error(401, "missing or wrong bearer token: send 'Authorization: Bearer "
                               "<SESSIONSTREAM_API_TOKEN>'",
                          headers={"WWW-Authenticate": 'Bearer realm="sessionstream"'})
        try:
            batch = validate_body(request.query.get("topic"), await _body(request))
            receipt = await publisher.publish(batch, request.headers.get("Idempotency-Key"))
        except PublishRejected as exc:
            return _error(exc.status, exc.message, exc.problems)
        except PublishFailed as exc:
            return _error(503, str(exc), headers={"Retry-After": "1"})
        return web.json_response({
            "topic": receipt.topic, "events": receipt.count,
            "published": 0 if receipt.replayed else receipt.count,
            "already_published": receipt.replayed, "idempotency_key": receipt.idempotency_key,
            "published_at": receipt.published_at, "event_ids": receipt.event_ids,
        }, status=200 if receipt.replayed else 201)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "topics": publishable_topics()})

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post(EVENTS_PATH, post_events)
    app.router.add_get(HEALTH_PATH, health)
    return app


def _authorized(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


async def _body(request: web.Request) -> bytes:
    size = f" of {request.content_length} bytes" if request.content_length else ""
    too_large = PublishRejected(413, f"body{size} is over the limit of {MAX_BODY_BYTES} bytes; "
                                     "split it into smaller batches")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise too_large
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise too_large from exc


def _error(status: int, message: str, problems: list[str] | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message, "problems": problems or []}
    return web.json_response(body, status=status, headers=headers)


def bind_api(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so a taken port fails the worker at start."""
    try:
        return socket.create_server((host, port))
    except OSError as exc:
        raise ConfigError(
            f"SESSIONSTREAM_API_PORT={port}: cannot serve the publish API on {host}:{port} "
            f"({exc.strerror or exc}); free the port or choose another (0 turns it off)"
        ) from exc


async def serve_api(sock: socket.socket, bootstrap: str, token: str | None,
                    report: Callable[[str], None] = print) -> None:
    """Serve the API on ``sock``, publishing to ``bootstrap``, until cancelled."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    keys = KafkaKeys(bootstrap)
    runner = web.AppRunner(create_api(Publisher(producer, keys), token), access_log=None)
    try:
        await producer.start()
        await keys.start()
        await runner.setup()
        await web.SockSite(runner, sock).start()
        host, port = sock.getsockname()[:2]
        report(f"publish:  http://{host}:{port}{EVENTS_PATH}"
               + (" (bearer token required)" if token else ""))
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await keys.stop()
        await producer.stop()
