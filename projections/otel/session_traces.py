"""One OTel trace per ended session, built from the session tables and pushed over OTLP/HTTP.

The trace is derived from Postgres, where the dedup rules already hold (``usage_facts`` has one
row per API response; rows a session copied from its origin are left out with
:func:`~projections.postgres.session_schema.owned`); its spans and their ids are
:mod:`projections.otel.session_spans`'.

:class:`SessionTraces` exports a session once it has ended (``sessions.ended_at`` set) and
records in its own table ``trace_exports`` (created on first use) how far:
``exported_through``, the session's ``last_activity_at`` (or a later row time) when it was
exported. A session that reopens and ends again exports only the rows timed after that, into
the same trace (the root, and a turn that gained rows, are sent again with the same id and a
later end). A crash between export and record re-sends the same spans; deleting the rows of
``trace_exports`` (a replay) re-exports every ended session with the same ids. Rows that
arrive later with times at or before ``exported_through`` are not exported until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urlsplit

import asyncpg
import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from projections.otel.session_spans import (
    Prompt,
    Response,
    SessionInfo,
    ToolCall,
    build_spans,
    trace_id_hex,
)
from projections.postgres.session_schema import owned

__all__ = ["SessionTraces", "span_exporter", "traces_url"]

logger = logging.getLogger(__name__)

SPANS_PER_REQUEST = 512
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)

DDL = """CREATE TABLE IF NOT EXISTS trace_exports (
    session_id text PRIMARY KEY, trace_id text NOT NULL,
    exported_through timestamptz NOT NULL, exported_at timestamptz NOT NULL)"""
ENDED_SQL = """
SELECT s.id, s.source, s.title, s.project, s.working_dir, s.started_at, s.last_activity_at,
       s.ended_at, e.exported_through
FROM sessions s LEFT JOIN trace_exports e ON e.session_id = s.id
WHERE s.ended_at IS NOT NULL
  AND (e.exported_through IS NULL OR s.last_activity_at > e.exported_through)
ORDER BY s.ended_at, s.id LIMIT $1"""
PROMPTS_SQL = f"""
SELECT m.message_key AS key, m.at FROM messages m JOIN sessions s ON s.id = m.session_id
WHERE m.session_id = $1 AND m.role = 'user' AND NOT m.is_meta AND m.agent_id IS NULL
  AND m.at IS NOT NULL AND {owned("m")}"""
RESPONSES_SQL = f"""
SELECT f.message_key AS key, f.model, f.agent_id, f.at, f.input_tokens, f.output_tokens,
       f.cache_creation_5m_tokens + f.cache_creation_1h_tokens AS cache_creation_tokens,
       f.cache_read_tokens, f.cost_usd::float8 AS cost_usd, f.priced
FROM usage_facts f JOIN sessions s ON s.id = f.session_id
WHERE f.session_id = $1 AND f.at IS NOT NULL AND {owned("f")}"""
TOOLS_SQL = f"""
SELECT t.tool_use_id, t.name, t.agent_id, t.called_at, t.resulted_at, t.is_error
FROM tool_calls t JOIN sessions s ON s.id = t.session_id
WHERE t.session_id = $1 AND t.name IS NOT NULL AND t.called_at IS NOT NULL
  AND {owned("t").replace("t.at", "t.called_at")}"""
RECORD_SQL = """
INSERT INTO trace_exports (session_id, trace_id, exported_through, exported_at)
VALUES ($1, $2, $3, now())
ON CONFLICT (session_id) DO UPDATE SET trace_id = EXCLUDED.trace_id, exported_at = now(),
    exported_through = greatest(trace_exports.exported_through, EXCLUDED.exported_through)"""


def traces_url(base: str) -> str:
    """The OTLP/HTTP traces URL of ``base`` (``/v1/traces`` appended unless already there)."""
    base = base.rstrip("/")
    return base if urlsplit(base).path.endswith("/v1/traces") else f"{base}/v1/traces"


def span_exporter(endpoint: str, headers: Mapping[str, str] | None = None, *,
                  timeout_s: float = 10.0,
                  session: requests.Session | None = None) -> OTLPSpanExporter:
    """An OTLP/HTTP (protobuf) span exporter to ``traces_url(endpoint)`` sending ``headers``
    (``SESSIONSTREAM_OTLP_HEADERS``: API keys and project names of hosted backends) with every
    request."""
    return OTLPSpanExporter(endpoint=traces_url(endpoint), headers=dict(headers or {}),
                            timeout=timeout_s, session=session)


class SessionTraces:
    """Exports the traces of ended sessions to ``exporter``, a batch of sessions at a time."""

    def __init__(self, exporter: SpanExporter, *, sessions_per_round: int = 100) -> None:
        self.exporter = exporter
        self.sessions_per_round = sessions_per_round

    async def export_ended(self, conn: asyncpg.Connection) -> int:
        """Export every ended session not exported through its last activity; returns the
        number of spans sent.

        Creates ``trace_exports`` if needed. A session is recorded only after its spans were
        accepted; an export the backend refuses (or cannot be reached for) stops the round with
        :class:`ConnectionError`, leaving that session and the rest for the next call. Database
        errors are raised as the driver's.
        """
        await conn.execute(DDL)
        sent = 0
        while True:
            ended = await conn.fetch(ENDED_SQL, self.sessions_per_round)
            for row in ended:
                sent += await self._export_one(conn, row)
            if len(ended) < self.sessions_per_round:
                return sent

    async def run(self, stop: asyncio.Event, dsn: str, interval: float = 30.0) -> None:
        """Export every ``interval`` seconds until ``stop`` is set, then shut the exporter down.

        Never raises for a store or a backend: failures are logged and retried next round.
        """
        pool: asyncpg.Pool | None = None
        try:
            while not stop.is_set():
                try:
                    if pool is None:
                        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
                    async with pool.acquire() as conn:
                        await self.export_ended(conn)
                except asyncpg.UndefinedTableError:
                    logger.debug("traces: session tables not created yet")
                except (*_DB_ERRORS, ConnectionError) as exc:
                    logger.warning("trace export failed, retrying in %.0f s: %s", interval, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
        finally:
            if pool is not None:
                await pool.close()
            self.exporter.shutdown()

    async def _export_one(self, conn: asyncpg.Connection, row: asyncpg.Record) -> int:
        session = SessionInfo(
            id=row["id"], source=row["source"], started_at=row["started_at"],
            last_activity_at=row["last_activity_at"], ended_at=row["ended_at"],
            title=row["title"], project=row["project"], working_dir=row["working_dir"])
        since: datetime | None = row["exported_through"]
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            prompts = [Prompt(**dict(r)) for r in await conn.fetch(PROMPTS_SQL, session.id)]
            responses = [Response(**dict(r)) for r in await conn.fetch(RESPONSES_SQL, session.id)]
            tools = [ToolCall(**dict(r)) for r in await conn.fetch(TOOLS_SQL, session.id)]
        spans = build_spans(session, prompts, responses, tools, since=since)
        for start in range(0, len(spans), SPANS_PER_REQUEST):
            await self._send(spans[start:start + SPANS_PER_REQUEST], session.id)
        times = [session.last_activity_at, since, *(p.at for p in prompts),
                 *(r.at for r in responses), *(t.end for t in tools)]
        through = max(t for t in times if t is not None)
        await conn.execute(RECORD_SQL, session.id, trace_id_hex(session.id), through)
        logger.info("trace exported session=%s trace=%s spans=%d", session.id,
                    trace_id_hex(session.id), len(spans))
        return len(spans)

    async def _send(self, spans: list[ReadableSpan], session_id: str) -> None:
        result = await asyncio.to_thread(self.exporter.export, spans)
        if result is not SpanExportResult.SUCCESS:
            raise ConnectionError(f"the OTLP backend did not accept the trace of {session_id}")

