"""The worker's publish API: ``POST /api/v1/events`` and ``GET /api/v1/health`` (aiohttp).

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
every failure input can cause is a 4xx naming it.

The server owns its connections' limits (:class:`ApiLimits`): headers must arrive within
:data:`HEADER_TIMEOUT_S`, the body within :data:`BODY_TIMEOUT_S`, and at most
:data:`MAX_CONNECTIONS` are open at once, so half-sent requests cannot pile up.

With a token configured every ``POST`` needs ``Authorization: Bearer <token>``; without one the
settings only allow a loopback address (see :class:`~streams.settings.Settings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiokafka import AIOKafkaProducer

from streams.errors import ConfigError
from streams.kafka_backoff import RETRY_BACKOFF_MS
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
    "ApiLimits", "bind_api", "create_api", "running_api", "serve_api",
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

JSON_CONTENT_TYPES = frozenset({
    "application/json", "application/x-ndjson", "application/jsonl",
    "application/x-jsonlines", "application/octet-stream",
})
"""``Content-Type`` values read as JSON (or JSON lines), as is any ``application/*+json``, a
missing header and ``application/octet-stream`` (what HTTP libraries send for bytes of no
declared type). A ``charset`` other than UTF-8 is refused. Every other type is 415, notably
``application/x-www-form-urlencoded`` (curl's default for ``--data-binary``), ``text/plain``
and ``multipart/form-data``: the types a web page may send cross-site without asking, so
refusing them keeps browsers from publishing to a loopback API on a visitor's behalf."""

ACCEPTED_ENCODINGS = frozenset({"gzip", "deflate"})
"""``Content-Encoding`` values decompressed; the size limit applies to the decompressed body."""

_UTF8 = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


@dataclass(frozen=True)
class ApiLimits:
    """The limits one API server enforces; the defaults are this module's constants."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS


_LIMITS = web.AppKey("limits", ApiLimits)


def create_api(publisher: Publisher, token: str | None = None,
               limits: ApiLimits | None = None) -> web.Application:
    """The aiohttp application; ``token`` set means every POST must carry it. ``limits`` (the
    module's defaults when None) are kept in the app for :func:`running_api`."""
    limits = limits or ApiLimits()

    async def post_events(request: web.Request) -> web.Response:
        refusal = _refusal(request, token)
        if refusal is not None:
            return refusal
        try:
            key = check_idempotency_key(request.headers.get("Idempotency-Key"))
            raw = await _read_body(request, limits.body_timeout_s)
            batch = validate_body(request.query.get("topic"), raw)
            receipt = await publisher.publish(batch, key)
        except PublishRejected as exc:
            return _error(exc.status, exc.message, exc.problems,
                          close=not request.content.is_eof())
        except PublishFailed as exc:
            return _error(503, str(exc), headers={"Retry-After": "1"})
        return _receipt(receipt)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "topics": publishable_topics()})

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[_LIMITS] = limits
    app.router.add_post(EVENTS_PATH, post_events)
    app.router.add_get(HEALTH_PATH, health)
    return app


def _receipt(receipt: Receipt) -> web.Response:
    return web.json_response({
        "topic": receipt.topic, "events": receipt.count,
        "published": 0 if receipt.replayed else receipt.count,
        "already_published": receipt.replayed, "idempotency_key": receipt.idempotency_key,
        "published_at": receipt.published_at, "event_ids": receipt.event_ids,
    }, status=200 if receipt.replayed else 201)


def _refusal(request: web.Request, token: str | None) -> web.Response | None:
    """The answer to a request refused on its headers alone (401, 403, 415), or None."""
    if token is not None and not _authorized(request, token):
        return _error(401, "missing or wrong bearer token: send 'Authorization: Bearer "
                           "<SESSIONSTREAM_API_TOKEN>'",
                      headers={"WWW-Authenticate": 'Bearer realm="sessionstream"'})
    if token is None and "Origin" in request.headers:
        # Browsers send Origin with every cross-site POST (and may send a body with no type
        # without asking first): a tokenless loopback API must not publish for a web page.
        return _error(403, "requests from a web page (an Origin header) need a token: set "
                           "SESSIONSTREAM_API_TOKEN and send 'Authorization: Bearer <token>'")
    problem = _content_problem(request)
    if problem is not None:
        return _error(415, problem, headers={"Accept-Post": "application/json, "
                                                            "application/x-ndjson"})
    return None


def _authorized(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # a header that is not UTF-8 arrives with surrogates: compare those bytes, never fail
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "surrogateescape"), token.encode())


def _content_problem(request: web.Request) -> str | None:
    """Why the body's declared type or encoding cannot be read (415), or None."""
    encoding = _content_encoding(request)
    if encoding is not None and encoding not in ACCEPTED_ENCODINGS:
        return (f"Content-Encoding {encoding} is not supported: send the body uncompressed, "
                f"or with Content-Encoding {' or '.join(sorted(ACCEPTED_ENCODINGS))}")
    if "Content-Type" not in request.headers:
        return None
    mime, charset = request.content_type, (request.charset or "utf-8").lower()
    json_like = mime in JSON_CONTENT_TYPES or (mime.startswith("application/")
                                               and mime.endswith("+json"))
    if json_like and charset in _UTF8:
        return None
    if json_like:
        return f"charset {charset} is not supported: send UTF-8 (charset=utf-8)"
    return (f"Content-Type {mime} is not accepted: send the JSON body with the header "
            "'Content-Type: application/json' (JSON lines: application/x-ndjson); curl "
            "--data-binary sends application/x-www-form-urlencoded unless given "
            "-H 'Content-Type: application/json'")


def _content_encoding(request: web.Request) -> str | None:
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    return None if encoding in ("", "identity") else encoding


async def _read_body(request: web.Request, timeout_s: float) -> bytes:
    """The body, decompressed; never more than ``MAX_BODY_BYTES + 1`` bytes of it are read.

    Raises :class:`PublishRejected`: 413 over the limit (the decompressed size when the body
    is compressed), 408 not complete within ``timeout_s``, 400 unreadable (corrupt
    compression, a broken chunked encoding, the client went away)."""
    encoding = _content_encoding(request)
    sent = request.content_length
    if sent is not None and sent > MAX_BODY_BYTES:
        what = "compressed body" if encoding else "body"
        raise PublishRejected(413, f"{what} of {sent} bytes is over the limit of "
                                   f"{MAX_BODY_BYTES} bytes; split it into smaller batches")
    try:
        async with asyncio.timeout(timeout_s):
            raw = await _read_at_most(request, MAX_BODY_BYTES + 1)
    except TimeoutError as exc:
        raise PublishRejected(408, f"the body did not arrive within {timeout_s:g} s; send it "
                                   "faster or in smaller batches") from exc
    except (web.RequestPayloadError, HttpProcessingError, ConnectionError) as exc:
        reason = (f"decompressed: it is not valid {encoding} data" if encoding else
                  f"read to its end ({type(exc).__name__})")
        raise PublishRejected(400, f"body cannot be {reason}") from exc
    if len(raw) > MAX_BODY_BYTES:
        what = "decompressed body" if encoding else "body"
        sent_as = f" (Content-Encoding: {encoding})" if encoding else ""
        raise PublishRejected(413, f"{what} is over the limit of {MAX_BODY_BYTES} bytes"
                                   f"{sent_as}; split it into smaller batches")
    return raw


async def _read_at_most(request: web.Request, limit: int) -> bytes:
    """Up to ``limit`` bytes of the (decompressed) body. aiohttp inflates in small chunks, as
    they are read, so a compression bomb is inflated about ``limit`` bytes far, no further."""
    body = bytearray()
    while len(body) < limit:
        chunk = await request.content.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


def _error(status: int, message: str, problems: list[str] | None = None,
           headers: dict[str, str] | None = None, close: bool = False) -> web.Response:
    """The JSON error answer; ``close`` ends the connection after it (the body was not read
    to its end: what follows on the connection is not the next request)."""
    body: dict[str, Any] = {"error": message, "problems": problems or []}
    response = web.json_response(body, status=status, headers=headers)
    if close:
        response.force_close()
    return response


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
                    limits: ApiLimits | None = None) -> None:
    """Serve the API on ``sock``, publishing to ``bootstrap``, until cancelled."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                retry_backoff_ms=RETRY_BACKOFF_MS)
    keys = KafkaKeys(bootstrap)
    try:
        await producer.start()
        await keys.start()
        async with running_api(create_api(Publisher(producer, keys), token, limits), sock):
            host, port = sock.getsockname()[:2]
            report(f"publish:  http://{host}:{port}{EVENTS_PATH}"
                   + (" (bearer token required)" if token else ""))
            await asyncio.Event().wait()
    finally:
        await keys.stop()
        await producer.stop()
