"""What the publish API checks of a request before it validates events, and its error answer.

A ``POST`` is refused on its headers alone (:func:`refusal`): 401 without the configured bearer
token, 403 from a web page (an ``Origin`` header) while no token is configured, 415 a
``Content-Type`` that is not JSON (:data:`JSON_CONTENT_TYPES`) or a ``Content-Encoding`` other
than :data:`ACCEPTED_ENCODINGS`. Its body is then read (:func:`read_body`) decompressed, within
its time limit and never more than :data:`~streams.producers.publish_body.MAX_BODY_BYTES` + 1
bytes of it, whatever the client sends. Every refusal is a JSON :func:`error_response`.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from streams.producers.publish_body import MAX_BODY_BYTES, PublishRejected

__all__ = ["ACCEPTED_ENCODINGS", "JSON_CONTENT_TYPES", "error_response", "read_body", "refusal"]

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


def refusal(request: web.Request, token: str | None) -> web.Response | None:
    """The answer to a request refused on its headers alone (401, 403, 415), or None."""
    if token is not None and not _authorized(request, token):
        return error_response(
            401, "missing or wrong bearer token: send 'Authorization: Bearer "
                 "<SESSIONSTREAM_API_TOKEN>'",
            headers={"WWW-Authenticate": 'Bearer realm="sessionstream"'})
    if token is None and "Origin" in request.headers:
        # Browsers send Origin with every cross-site POST (and may send a body with no type
        # without asking first): a tokenless loopback API must not publish for a web page.
        return error_response(
            403, "requests from a web page (an Origin header) need a token: set "
                 "SESSIONSTREAM_API_TOKEN and send 'Authorization: Bearer <token>'")
    problem = _content_problem(request)
    if problem is not None:
        return error_response(415, problem,
                              headers={"Accept-Post": "application/json, application/x-ndjson"})
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


async def read_body(request: web.Request, timeout_s: float) -> bytes:
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


def error_response(status: int, message: str, problems: list[str] | None = None,
                   headers: dict[str, str] | None = None, close: bool = False) -> web.Response:
    """The JSON error answer; ``close`` ends the connection after it (the body was not read
    to its end: what follows on the connection is not the next request)."""
    body: dict[str, Any] = {"error": message, "problems": problems or []}
    response = web.json_response(body, status=status, headers=headers)
    if close:
        response.force_close()
    return response
