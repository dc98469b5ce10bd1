"""The worker's read API: sessions, their messages, tool calls and files, and usage totals, as
JSON for UIs, served beside the publish API (:mod:`streams.producers.http_api`) on its port.

``GET /api/v1/sessions`` (filters ``source``, ``project``, ``status``, ``since``; paging
``limit`` and ``offset``, answered with ``total`` and a ``next`` link),
``/api/v1/sessions/{id}``, ``/api/v1/sessions/{id}/messages`` (paged), ``.../tools``,
``.../files``, ``GET /api/v1/usage?by=day|model|project|source|session[&since=]``,
``GET /api/v1/search?q=...[&source=&project=&since=&limit=]``
(:mod:`projections.postgres.session_search`) and
``GET /api/v1/openapi.json`` (:mod:`app.api_document`, every route of the server). A session id
may hold ``/`` (session-skill ids are ``<project>/<slug>``), as is or encoded as ``%2F``.

The publish API's rules apply to every read: with a token configured a request needs
``Authorization: Bearer <token>`` (401), without one a request with an ``Origin`` header (a web
page) is refused (403). Errors are the publish API's JSON (``{"error", "problems"}``): 400 a
bad or unknown query parameter (named), 404 an unknown session, 503 Postgres cannot be
reached (``Retry-After``). The rows are :mod:`projections.postgres.session_reads`'.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

import asyncpg
from aiohttp import web

from app.api_document import API_DOCUMENT, OPENAPI_PATH
from projections.postgres import session_reads as reads
from projections.postgres.session_search import search
from streams.errors import ProjectionUnavailable
from streams.producers.api_requests import error_response, refusal
from streams.producers.http_api import Extension

__all__ = ["MAX_PAGE", "BadParameter", "ReadApi", "UnknownSession", "read_api"]

MAX_PAGE = 500
"""The most rows one page holds (``limit``)."""

_SESSION = "/api/v1/sessions/{id:.+}"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadParameter(ValueError):
    """A query parameter that cannot be read; answered 400 with the message."""


class UnknownSession(LookupError):
    """The path names no session; answered 404."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=partial(json.dumps, default=_jsonable))


def _only(request: web.Request, *allowed: str) -> None:
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise BadParameter(f"unknown query parameter {', '.join(unknown)}: this route takes "
                           f"{', '.join(allowed) or 'none'}")


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise BadParameter(f"{name} must be an integer from {low} to {high}, not {raw!r}")
    return value


def _since(request: web.Request) -> datetime | None:
    """``since``: an ISO 8601 date or date-time; no time zone means UTC."""
    raw = request.query.get("since")
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw.replace(" ", "+"))  # an unencoded + reads as a space
    except ValueError as exc:
        raise BadParameter(f"since must be an ISO 8601 date or date-time "
                           f"(2026-03-01 or 2026-03-01T09:00:00Z), not {raw!r}") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _next(request: web.Request, limit: int, offset: int, more: bool) -> str | None:
    return str(request.rel_url.update_query(limit=limit, offset=offset + limit)) if more else None


class ReadApi:
    """The read routes of one server, on one lazily opened connection pool to ``dsn``.

    Called with the application (an :data:`~streams.producers.http_api.Extension`) it adds its
    routes and closes its pool when the application is cleaned up."""

    def __init__(self, dsn: str, token: str | None) -> None:
        self.dsn, self.token = dsn, token
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    def __call__(self, app: web.Application) -> None:
        get = app.router.add_get
        get("/api/v1/sessions", self._guarded(self.sessions))
        for tail, handler in (("/messages", self.messages), ("/tools", self.tools),
                              ("/files", self.files), ("", self.session)):
            get(_SESSION + tail, self._guarded(handler))
        get("/api/v1/usage", self._guarded(self.usage))
        get("/api/v1/search", self._guarded(self.search))
        get(OPENAPI_PATH, self.document)
        app.on_cleanup.append(self._close)

    async def _db(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                with reads.translated_errors():
                    self._pool = await asyncpg.create_pool(self.dsn, min_size=0, max_size=4)
        return self._pool

    async def _close(self, _app: web.Application) -> None:
        if self._pool is not None:
            await self._pool.close()

    def _guarded(self, handler: Handler) -> Handler:
        """``handler`` behind the publish API's refusals, its errors answered as JSON."""
        async def guarded(request: web.Request) -> web.StreamResponse:
            refused = refusal(request, self.token)
            if refused is not None:
                return refused
            try:
                return await handler(request)
            except BadParameter as exc:
                return error_response(400, str(exc))
            except UnknownSession as exc:
                return error_response(404, f"no session {exc.args[0]!r}")
            except ProjectionUnavailable as exc:
                return error_response(503, str(exc), headers={"Retry-After": "1"})
        return guarded

    async def sessions(self, request: web.Request) -> web.Response:
        _only(request, "source", "project", "status", "since", "limit", "offset")
        filters: dict[str, Any] = {name: request.query.get(name)
                                   for name in ("source", "project", "status")}
        filters["since"] = _since(request)
        limit = _int(request, "limit", 50, 1, MAX_PAGE)
        offset = _int(request, "offset", 0, 0, 2**31 - 1)
        db = await self._db()
        rows = await reads.list_sessions(db, **filters, limit=limit, offset=offset)
        total = await reads.count_sessions(db, **filters)
        return _json({"sessions": rows, "total": total, "limit": limit, "offset": offset,
                      "next": _next(request, limit, offset, offset + len(rows) < total)})

    async def _known(self, request: web.Request) -> tuple[asyncpg.Pool, str]:
        """The pool and the session id of the path; 404 (raised) when no such session."""
        session_id, db = request.match_info["id"], await self._db()
        if await reads.get_session(db, session_id) is None:
            raise UnknownSession(session_id)
        return db, session_id

    async def session(self, request: web.Request) -> web.Response:
        _only(request)
        found = await reads.get_session(await self._db(), request.match_info["id"])
        if found is None:
            raise UnknownSession(request.match_info["id"])
        return _json(found)

    async def messages(self, request: web.Request) -> web.Response:
        _only(request, "limit", "offset")
        limit = _int(request, "limit", 200, 1, MAX_PAGE)
        offset = _int(request, "offset", 0, 0, 2**31 - 1)
        db, session_id = await self._known(request)
        rows = await reads.session_messages(db, session_id, limit=limit, offset=offset)
        return _json({"session_id": session_id, "messages": rows, "limit": limit,
                      "offset": offset, "next": _next(request, limit, offset,
                                                      len(rows) == limit)})

    async def tools(self, request: web.Request) -> web.Response:
        _only(request)
        db, session_id = await self._known(request)
        return _json({"session_id": session_id,
                      "tool_calls": await reads.session_tools(db, session_id)})

    async def files(self, request: web.Request) -> web.Response:
        _only(request)
        db, session_id = await self._known(request)
        return _json({"session_id": session_id,
                      "files": await reads.session_files(db, session_id)})

    async def usage(self, request: web.Request) -> web.Response:
        _only(request, "by", "since")
        by = request.query.get("by", "session")
        if by not in reads.USAGE_GROUPINGS:
            raise BadParameter(f"by must be one of {', '.join(reads.USAGE_GROUPINGS)}, "
                               f"not {by!r}")
        since = _since(request)
        rows = await reads.usage(await self._db(), by=by, since=since)
        return _json({"by": by, "since": since, "rows": rows})

    async def search(self, request: web.Request) -> web.Response:
        _only(request, "q", "source", "project", "since", "limit")
        query = request.query.get("q", "").strip()
        if not query:
            raise BadParameter("q is required: the words to search for")
        hits = await search(await self._db(), query, source=request.query.get("source"),
                            project=request.query.get("project"), since=_since(request),
                            limit=_int(request, "limit", 20, 1, MAX_PAGE))
        return _json({"query": query, "hits": hits})

    async def document(self, _request: web.Request) -> web.Response:
        """The OpenAPI document: public, as the health route is (it holds no data)."""
        return _json(API_DOCUMENT)


def read_api(dsn: str, token: str | None) -> Extension:
    """The extension that serves the read API from the Postgres at ``dsn``, with the publish
    API's ``token`` (None: loopback only, no web pages)."""
    return ReadApi(dsn, token)
