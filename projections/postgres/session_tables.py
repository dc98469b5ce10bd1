"""``SessionTables``: the tables a UI lists sessions from, fed by ``sessions.events.v1``.

One transaction per batch: take the lineage lock, fold the events into rows
(:mod:`~projections.postgres.session_batch`, whose row types and upserts are in
:mod:`~projections.postgres.session_rows` and :mod:`~projections.postgres.session_state_rows`)
and write them, a ``session.rewound`` after the rows before it and before the rows after it;
then re-decide the lineage of the sessions that share responses with the batch's
(:mod:`~projections.postgres.session_lineage`) and derive every per-session counter, token and
cost total from the child tables (``RECOMPUTE`` in :mod:`~projections.postgres.session_schema`,
which owns the tables, the ``usage`` view and :func:`owned`). Every write is keyed by a natural
key and every total derived, so a crash, a re-publish or a replay yields the same rows.

A session is ``active`` until it closes: its file removed (``closed_reason`` removed) or no
event for the inactivity timeout (:meth:`SessionTables.close_idle`, called by the worker's
lifecycle loop: ``closed_reason`` inactive, ``ended_at`` its last activity). An inactive one
reopens on a later event; ``first_closed_at`` keeps when it first closed.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import asyncpg

from projections.base import Record
from projections.postgres.base import PostgresProjection
from projections.postgres.session_batch import SessionBatch
from projections.postgres.session_lineage import LINEAGE_LOCK, relink
from projections.postgres.session_rows import CLOSE_IDLE, LOAD_MODELS
from projections.postgres.session_schema import DDL, RECOMPUTE, TABLES, owned
from projections.pricing import PricingTable
from projections.registry import BuildContext, registered
from projections.session_models import SessionModels
from streams.topics import SESSION_EVENTS

__all__ = ["SessionTables", "owned"]


@registered("postgres")
class SessionTables(PostgresProjection):
    """sessions, messages, tool_calls, files_touched, usage_facts (+ the ``usage`` view)."""

    name: ClassVar[str] = "postgres.session_tables"
    source = SESSION_EVENTS
    ddl = DDL
    tables = TABLES

    def __init__(self, dsn: str, pricing: PricingTable | None = None) -> None:
        super().__init__(dsn)
        self.pricing = pricing or PricingTable.load()

    @classmethod
    def build(cls, context: BuildContext) -> SessionTables:
        """On the configured Postgres, pricing with the shared table."""
        return cls(context.postgres_dsn, context.pricing)

    async def apply(self, conn: asyncpg.Connection, records: list[Record]) -> None:
        # Two workers deciding lineage at once would each miss the other's uncommitted facts:
        # batches are serialized by a transaction-scoped advisory lock taken before any write
        # (taken later, it could deadlock with the row locks of the upserts), so the second
        # sees the first one's facts committed.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LINEAGE_LOCK)
        ids = sorted({record.value.session_id for record in records})
        models = SessionModels(tuple(r) for r in await conn.fetch(LOAD_MODELS, ids))
        batch = SessionBatch(self.pricing, models)
        for record in records:
            batch.fold(record.value)
            if batch.rewound:  # a rewind applies to what came before it, not after
                await batch.write(conn)
        await batch.write(conn)
        await batch.write_links(conn)
        # lineage reads main-file usage facts and the files' hints only: nothing else moves it
        changed = (await relink(conn, sorted(batch.sessions), sorted(batch.shared_keys))
                   if batch.facts_changed or batch.lineage_hints else set())
        await conn.execute(RECOMPUTE, sorted(set(batch.sessions) | changed))

    async def close_idle(self, before: datetime) -> list[str]:
        """Close every open session whose last event is older than ``before`` (see
        :data:`~projections.postgres.session_rows.CLOSE_IDLE`); returns their ids. A later
        event reopens one. Takes the batches' lock, so it never interleaves with a batch.
        Returns ``[]`` when not started; store errors are translated as a batch's are."""
        if self.pool is None:
            return []
        async with self._translated(), self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LINEAGE_LOCK)
            return [r["id"] for r in await conn.fetch(CLOSE_IDLE, before)]
