"""What a reader asks of the session tables: sessions (listed, counted, one in full), a session's
messages, tool calls and files, and usage totals; the SQL beside the schema it reads.

Every function takes an asyncpg connection or pool (anything with ``fetch``, ``fetchrow`` and
``fetchval``) and returns plain dicts of JSON-friendly values: text, numbers (``cost_usd`` as
a float), booleans, lists and ``datetime`` objects, which the callers serialize. A database
the projection never wrote to reads as empty (no sessions, ``None`` for one session). Rows a
session copied from its origin (:func:`~projections.postgres.session_schema.owned`) are left
out of every count and total, and flagged ``copied`` where they are listed. Driver failures
are translated here, once: a store that cannot be reached raises
:class:`~streams.errors.ProjectionUnavailable`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from projections.postgres.session_schema import owned
from projections.postgres.usage import GROUPINGS
from streams.errors import ProjectionUnavailable

__all__ = [
    "SESSION_STATUSES", "USAGE_GROUPINGS", "count_sessions", "get_session", "list_sessions",
    "session_files", "session_messages", "session_tools", "translated_errors", "usage",
]

SESSION_STATUSES = ("active", "closed")
"""The statuses the projection itself sets; agent-kept state may report others."""

USAGE_GROUPINGS = GROUPINGS
"""``usage(by=...)``: what each grouping selects as ``key`` and groups by."""

_SESSION_COLUMNS = """s.id, s.source, s.title, s.project, s.working_dir, s.status,
    s.started_at, s.last_activity_at, s.ended_at, s.prompts, s.tool_calls, s.files_touched,
    s.total_tokens, s.cost_usd"""

_TRANSIENT = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
              asyncpg.TooManyConnectionsError, asyncpg.AdminShutdownError,
              asyncpg.InterfaceError)


@contextlib.contextmanager
def translated_errors() -> Iterator[None]:
    """Reads inside it raise :class:`ProjectionUnavailable` when Postgres cannot be reached;
    other driver errors are bugs of the query and keep their type."""
    try:
        yield
    except _TRANSIENT as exc:
        raise ProjectionUnavailable(f"postgres cannot be read: {exc}") from exc


_JSONB = frozenset({"state", "checkpoint", "summary"})
"""Columns read whole whose jsonb asyncpg hands over as text: decoded here."""


def _plain(record: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A row as a dict: numerics as floats, jsonb as what it holds, everything else as asyncpg
    decoded it."""
    return {k: float(v) if isinstance(v, Decimal)
            else json.loads(v) if k in _JSONB and isinstance(v, str) else v
            for k, v in dict(record).items()}


def _filters(source: str | None, project: str | None, status: str | None,
             since: datetime | None) -> tuple[str, list[Any]]:
    """The WHERE clause of the session filters and its arguments ($1...)."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (("s.source", source), ("s.project", project), ("s.status", status)):
        if value is not None:
            args.append(value)
            clauses.append(f"{column} = ${len(args)}")
    if since is not None:
        args.append(since)
        clauses.append(f"coalesce(s.last_activity_at, s.started_at) >= ${len(args)}")
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args


async def list_sessions(db: Any, *, source: str | None = None, project: str | None = None,
                        status: str | None = None, since: datetime | None = None,
                        limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    """Sessions matching every given filter (``since``: active at or after it), newest
    activity first, ``limit`` of them from ``offset``; empty before anything was projected."""
    where, args = _filters(source, project, status, since)
    args += [limit, offset]
    sql = f"""SELECT {_SESSION_COLUMNS} FROM sessions s {where}
              ORDER BY coalesce(s.last_activity_at, s.started_at) DESC NULLS LAST, s.id
              LIMIT ${len(args) - 1} OFFSET ${len(args)}"""
    with translated_errors():
        try:
            rows = await db.fetch(sql, *args)
        except asyncpg.UndefinedTableError:
            return []
    return [_plain(r) for r in rows]


async def count_sessions(db: Any, *, source: str | None = None, project: str | None = None,
                         status: str | None = None, since: datetime | None = None) -> int:
    """How many sessions :func:`list_sessions` with the same filters pages through."""
    where, args = _filters(source, project, status, since)
    with translated_errors():
        try:
            return int(await db.fetchval(f"SELECT count(*) FROM sessions s {where}", *args))
        except asyncpg.UndefinedTableError:
            return 0


async def get_session(db: Any, session_id: str) -> dict[str, Any] | None:
    """The session's whole ``sessions`` row, with ``summary`` (the deterministic summary) and
    ``llm_summary``, ``llm_model``, ``llm_summarized_at`` from ``session_summaries`` (all
    ``None`` while that table does not exist or holds no row for it); ``None`` when unknown."""
    with translated_errors():
        try:
            row = await db.fetchrow("SELECT * FROM sessions WHERE id = $1", session_id)
        except asyncpg.UndefinedTableError:
            return None
        if row is None:
            return None
        found = {**_plain(row), "summary": None, "llm_summary": None, "llm_model": None,
                 "llm_summarized_at": None}
        try:
            summary = await db.fetchrow(
                "SELECT summary, llm_summary, llm_model, llm_summarized_at"
                " FROM session_summaries WHERE session_id = $1", session_id)
        except asyncpg.UndefinedTableError:
            return found
    if summary is not None:
        found.update(_plain(summary))
    return found


async def session_messages(db: Any, session_id: str, *, limit: int = 200,
                           offset: int = 0) -> list[dict[str, Any]]:
    """The session's prompts and replies in time order (``role``, ``message_key``,
    ``agent_id``, ``model``, ``at``, ``text``, ``is_meta``, ``copied``: part of the prefix the
    session copied from its origin, which counts for the origin)."""
    sql = f"""SELECT m.role, m.message_key, m.agent_id, m.model, m.at,
                     session_message_text(m.role, m.content) AS text, m.is_meta,
                     NOT {owned("m")} AS copied
              FROM messages m JOIN sessions s ON s.id = m.session_id
              WHERE m.session_id = $1
              ORDER BY m.at NULLS LAST, m.role DESC, m.message_key LIMIT $2 OFFSET $3"""
    with translated_errors():
        try:
            rows = await db.fetch(sql, session_id, limit, offset)
        except asyncpg.UndefinedTableError:
            return []
    return [_plain(r) for r in rows]


async def session_tools(db: Any, session_id: str) -> list[dict[str, Any]]:
    """The session's tool calls in call order: ``tool_use_id``, ``name``, ``agent_id``,
    ``outcome`` (``ok``, ``error``, or ``pending`` before a result), ``called_at``,
    ``resulted_at``, ``input`` (the arguments' text, at most 500 characters),
    ``result_excerpt``, ``copied`` (as for messages)."""
    mine = owned("t").replace("t.at", "t.called_at")
    sql = f"""SELECT t.tool_use_id, t.name, t.agent_id,
                     CASE WHEN t.is_error IS NULL THEN 'pending'
                          WHEN t.is_error THEN 'error' ELSE 'ok' END AS outcome,
                     t.called_at, t.resulted_at, left(t.input::text, 500) AS input,
                     t.result_excerpt, NOT {mine} AS copied
              FROM tool_calls t JOIN sessions s ON s.id = t.session_id
              WHERE t.session_id = $1
              ORDER BY t.called_at NULLS LAST, t.tool_use_id"""
    with translated_errors():
        try:
            rows = await db.fetch(sql, session_id)
        except asyncpg.UndefinedTableError:
            return []
    return [_plain(r) for r in rows]


async def session_files(db: Any, session_id: str) -> list[dict[str, Any]]:
    """The files the session touched, one per path in first-touch order: ``path``, ``reads``,
    ``writes``, ``first_at``, ``last_at``, ``tools`` (the distinct tools that touched it)."""
    sql = """SELECT f.path, count(*) FILTER (WHERE f.access = 'read') AS reads,
                    count(*) FILTER (WHERE f.access = 'write') AS writes,
                    min(f.at) AS first_at, max(f.at) AS last_at,
                    array_agg(DISTINCT f.tool) AS tools
             FROM files_touched f JOIN sessions s ON s.id = f.session_id
             WHERE f.session_id = $1 AND (s.copied_until IS NULL OR f.at > s.copied_until)
             GROUP BY f.path ORDER BY min(f.at) NULLS LAST, f.path"""
    with translated_errors():
        try:
            rows = await db.fetch(sql, session_id)
        except asyncpg.UndefinedTableError:
            return []
    return [_plain(r) for r in rows]


async def usage(db: Any, *, by: str, since: datetime | None = None) -> list[dict[str, Any]]:
    """Token and cost totals of the ``usage`` view grouped ``by`` one of
    :data:`USAGE_GROUPINGS` (``key``, the token columns, ``total_tokens``, ``responses``,
    ``cost_usd``, ``unpriced_models``), ordered by key; ``since`` keeps the days (UTC) from
    its date on. Raises ``ValueError`` for another ``by``."""
    if by not in USAGE_GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(USAGE_GROUPINGS)}, not {by!r}")
    key, group = USAGE_GROUPINGS[by]
    where = "WHERE u.day >= ($1::timestamptz AT TIME ZONE 'UTC')::date" if since is not None else ""
    sql = f"""SELECT {key} AS key, sum(u.input_tokens)::bigint AS input_tokens,
                     sum(u.output_tokens)::bigint AS output_tokens,
                     sum(u.cache_creation_tokens)::bigint AS cache_creation_tokens,
                     sum(u.cache_read_tokens)::bigint AS cache_read_tokens,
                     sum(u.total_tokens)::bigint AS total_tokens,
                     sum(u.responses)::bigint AS responses,
                     coalesce(sum(u.cost_usd), 0) AS cost_usd,
                     coalesce(array_agg(DISTINCT u.model) FILTER (WHERE NOT u.priced), '{{}}')
                         AS unpriced_models
              FROM usage u JOIN sessions s ON s.id = u.session_id {where}
              GROUP BY {group} ORDER BY 1"""
    with translated_errors():
        try:
            rows = await db.fetch(sql, *([since] if since is not None else []))
        except asyncpg.UndefinedTableError:
            return []
    return [_plain(r) for r in rows]
