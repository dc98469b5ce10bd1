"""``FrontendTables``: session-skill folders as the ``sessions`` and ``projects`` a frontend reads.

Optional: registered as ``frontend``, built only when ``SESSIONSTREAM_FRONTEND_TABLES=true``,
into the Postgres schema ``SESSIONSTREAM_FRONTEND_SCHEMA`` (default ``frontend``; the tables and
their exact columns are in :mod:`~projections.postgres.frontend_schema`, the ids in
:mod:`~projections.postgres.frontend_ids`). It reads ``sessions.events.v1`` and keeps the events
of the ``session-skill`` source (one session per folder); the others only move its position.

Each column is derived as the session tables derive theirs (``RECOMPUTE`` in
:mod:`~projections.postgres.session_schema`): the agent-kept state, merged per field from its
facets, newest first, gives ``session_slug`` (the state's slug), ``title``, ``working_dir``,
``session_dir``, ``status`` (else ``active`` while open and ``closed`` once ended) and
``session_type`` (else ``main``); ``project_id`` is the uuid of the normalized ``working_dir``.
A session closes as in the session tables: its main file removed, or quiet for the inactivity
timeout (:meth:`FrontendTables.close_idle`, called by the worker's lifecycle loop), and an
agent-kept status still wins. Effect and position commit in one transaction (the store base);
every write is keyed by a natural key or the newest-first order of the facets, so a batch
applied twice, a crash or a replay yields the same rows and the same uuids.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar, NamedTuple
from uuid import UUID

import asyncpg

from projections.base import Record
from projections.postgres.base import PostgresProjection
from projections.postgres.frontend_ids import normalize_path, project_uuid, session_uuid
from projections.postgres.frontend_schema import FrontendSchema
from projections.postgres.session_state_rows import STATE_FIELDS
from projections.registry import BuildContext, registered
from schemas.events import SessionFileRemoved, SessionStateReported
from streams.producers.session_skill import SessionSkillProducer
from streams.topics import SESSION_EVENTS

__all__ = ["FrontendRow", "FrontendTables"]

SOURCE = SessionSkillProducer.source
DEFAULT_SCHEMA = "frontend"
# pg_advisory_xact_lock key: batches and close_idle of every worker, one at a time (projects
# are shared by sessions of different partitions; the orphan check must see them all).
FRONTEND_LOCK = 0x5E55_F0E7


@registered("frontend")
class FrontendTables(PostgresProjection):
    """<schema>.sessions and <schema>.projects, shaped for a frontend, from session folders."""

    name: ClassVar[str] = "postgres.frontend_tables"
    source = SESSION_EVENTS
    ddl: ClassVar[list[str]] = []  # per schema: see start()
    tables: ClassVar[list[str]] = []  # per schema: see reset()
    disabled_hint: ClassVar[str] = "off: set SESSIONSTREAM_FRONTEND_TABLES=true"

    def __init__(self, dsn: str, schema: str = DEFAULT_SCHEMA) -> None:
        super().__init__(dsn)
        self.schema = FrontendSchema(schema)

    @classmethod
    def build(cls, context: BuildContext) -> FrontendTables:
        """On the configured Postgres, in the configured schema."""
        return cls(context.postgres_dsn, context.settings.frontend_schema)

    @classmethod
    def enabled(cls, context: BuildContext) -> bool:
        """Only when ``SESSIONSTREAM_FRONTEND_TABLES`` turns it on."""
        return context.settings.frontend_tables

    async def start(self) -> None:
        """Connect, create the offsets table (the base) and this schema and its tables."""
        await super().start()
        assert self.pool is not None
        try:
            async with self._translated(), self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sessionstream-ddl'))")
                for statement in self.schema.ddl:
                    await conn.execute(statement)
        except BaseException:
            await self.stop()
            raise

    async def reset(self) -> None:
        """Forget every row of this schema's tables and this projection's positions."""
        assert self.pool is not None, "start() first"
        async with self._translated(), self.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"TRUNCATE {', '.join(self.schema.tables)}")
            await conn.execute("DELETE FROM projection_offsets WHERE projection = $1", self.name)

    async def apply(self, conn: asyncpg.Connection, records: list[Record]) -> None:
        """Inside the batch's transaction: fold the session-skill events into the activity and
        the facets, then re-derive the rows of the sessions they touched (the other sources'
        events write nothing; the base still moves the position past them)."""
        events = [r.value for r in records if r.value.source == SOURCE]
        if not events:
            return
        await conn.execute("SELECT pg_advisory_xact_lock($1)", FRONTEND_LOCK)
        await conn.executemany(self.schema.upsert_activity, _activity(events))
        await conn.executemany(self.schema.upsert_facet, _facets(events))
        await self._refresh(conn, {session_uuid(SOURCE, e.session_id) for e in events})

    async def close_idle(self, before: datetime) -> list[str]:
        """Close every open session whose last event is older than ``before`` and refresh its
        row (an agent-kept status stays); returns their session ids. A later event reopens
        one. Returns ``[]`` when not started; store errors are translated as a batch's are."""
        if self.pool is None:
            return []
        async with self._translated(), self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", FRONTEND_LOCK)
            closed = await conn.fetch(self.schema.close_idle, before)
            await self._refresh(conn, {r["id"] for r in closed})
        return sorted(r["session_id"] for r in closed)

    async def _refresh(self, conn: asyncpg.Connection, ids: Iterable[UUID]) -> None:
        """Re-derive the ``sessions`` rows of ``ids`` and the projects they name."""
        merged = await conn.fetch(self.schema.merged, sorted(ids))
        rows = [FrontendRow.of(r["id"], json.loads(r["state"]), r["ended_at"]) for r in merged]
        await conn.executemany(self.schema.upsert_project, sorted({
            (row.project_id, posixpath.basename(path), path) for row in rows
            if row.project_id is not None and (path := normalize_path(row.working_dir or ""))}))
        await conn.executemany(self.schema.upsert_session, rows)
        left = {r["old_project"] for r in merged} - {row.project_id for row in rows} - {None}
        if left:  # a session that moved: its former project may name no session now
            await conn.execute(self.schema.delete_orphan_projects, sorted(left))


def _activity(events: list[Any]) -> list[tuple[object, ...]]:
    """Per session: id, source, session id, first and last event, and when its main file was
    removed (the last such removal), as :data:`upsert_activity` takes them."""
    spans: dict[str, list[Any]] = {}
    for e in events:
        ended = (e.occurred_at if isinstance(e.payload, SessionFileRemoved)
                 and e.payload.ends_session else None)
        span = spans.setdefault(e.session_id, [e.occurred_at, e.occurred_at, ended])
        span[0], span[1] = min(span[0], e.occurred_at), max(span[1], e.occurred_at)
        span[2] = ended or span[2]
    return [(session_uuid(SOURCE, sid), SOURCE, sid, *span) for sid, span in sorted(spans.items())]


def _facets(events: list[Any]) -> list[tuple[object, ...]]:
    """The state reports, as :data:`upsert_facet` takes them (the fields the session tables
    store, dated as they date them)."""
    return [(session_uuid(SOURCE, e.session_id), e.payload.facet,
             e.payload.updated_at or e.payload.timestamp or e.occurred_at, e.event_id,
             json.dumps(e.payload.model_dump(mode="json", include=STATE_FIELDS,
                                             exclude_none=True)))
            for e in events if isinstance(e.payload, SessionStateReported)]


class FrontendRow(NamedTuple):
    """One ``sessions`` row of the frontend, its columns in order."""

    id: UUID
    session_slug: str | None
    title: str | None
    project_id: UUID | None
    status: str
    session_type: str
    working_dir: str | None
    session_dir: str | None

    @classmethod
    def of(cls, sid: UUID, state: dict[str, Any], ended_at: datetime | None) -> FrontendRow:
        """The row of session ``sid`` from its merged state, as ``RECOMPUTE`` derives the
        session tables' columns: the state wins; status else active/closed, type else main."""
        working_dir, status, kind = (state.get(k) for k in ("working_dir", "status",
                                                             "session_type"))
        if status is None:
            status = "active" if ended_at is None else "closed"
        return cls(sid, state.get("slug"), state.get("title"),
                   project_uuid(working_dir) if working_dir else None, status,
                   "main" if kind is None else kind, working_dir, state.get("session_dir"))
