"""``TelemetryTables``: the polled MCP telemetry in Postgres, fed by ``telemetry.polled.v1``.

``telemetry_polls`` keeps one row per poll (keyed by ``event_id``: a re-published or replayed
poll changes nothing). ``telemetry_latest`` keeps, per (server, tool, metric), the value of the
newest poll that reported it; "newest" is the total order (polled_at, event_id), never arrival
order, so replays and out-of-order partitions converge to the same rows. Failed polls are rows
of ``telemetry_polls`` (``ok`` false, with the error) and leave ``telemetry_latest`` alone.

``observers`` are called with the polls of each batch once its transaction has committed (the
duration and size histograms of :mod:`projections.otel.mcp_telemetry_metrics` hang there):
exactly once per poll and process, never for a poll the store had already applied.
Registered as ``telemetry``; built only when the MCP poller is on (``SESSIONSTREAM_MCP_URL``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar

import asyncpg

from projections.base import Record
from projections.postgres.base import PostgresProjection
from projections.registry import BuildContext, registered
from schemas.telemetry import ToolPolled
from streams.topics import TELEMETRY_POLLED

__all__ = ["PollObserver", "TelemetryTables"]

PollObserver = Callable[[list[ToolPolled]], None]

DDL = [
    """CREATE TABLE IF NOT EXISTS telemetry_polls (
        event_id text PRIMARY KEY, server text NOT NULL, tool text NOT NULL,
        polled_at timestamptz NOT NULL, ok boolean NOT NULL,
        duration_ms double precision NOT NULL, size_bytes bigint NOT NULL, result jsonb,
        error text, metrics jsonb NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX IF NOT EXISTS telemetry_polls_by_tool ON telemetry_polls "
    "(server, tool, polled_at)",
    """CREATE TABLE IF NOT EXISTS telemetry_latest (
        server text NOT NULL, tool text NOT NULL, metric text NOT NULL,
        value double precision NOT NULL, polled_at timestamptz NOT NULL,
        event_id text NOT NULL, PRIMARY KEY (server, tool, metric)
    )""",
]

INSERT_POLL = """
INSERT INTO telemetry_polls (event_id, server, tool, polled_at, ok, duration_ms, size_bytes,
                             result, error, metrics)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10::jsonb)
ON CONFLICT (event_id) DO NOTHING"""

UPSERT_LATEST = """
INSERT INTO telemetry_latest (server, tool, metric, value, polled_at, event_id)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (server, tool, metric) DO UPDATE
SET value = EXCLUDED.value, polled_at = EXCLUDED.polled_at, event_id = EXCLUDED.event_id
WHERE (EXCLUDED.polled_at, EXCLUDED.event_id)
      > (telemetry_latest.polled_at, telemetry_latest.event_id)"""


@registered("telemetry")
class TelemetryTables(PostgresProjection):
    """telemetry_polls (one row per poll) and telemetry_latest (newest value per metric)."""

    name: ClassVar[str] = "postgres.telemetry_tables"
    source = TELEMETRY_POLLED
    ddl = DDL
    tables = ["telemetry_polls", "telemetry_latest"]
    disabled_hint: ClassVar[str] = "the MCP poller is off: set SESSIONSTREAM_MCP_URL"

    @classmethod
    def enabled(cls, context: BuildContext) -> bool:
        """Only when the MCP poller is on: then it projects what the poller publishes."""
        return bool(context.settings.mcp_url)

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self.observers: list[PollObserver] = []
        self._applied: list[ToolPolled] = []

    async def apply(self, conn: asyncpg.Connection, records: list[Record]) -> None:
        polls: list[tuple[Any, ...]] = []
        latest: list[tuple[Any, ...]] = []
        for record in records:
            env = record.value
            p: ToolPolled = env.payload
            polls.append((env.event_id, p.server, p.tool, env.occurred_at, p.ok, p.duration_ms,
                          p.size_bytes, json.dumps(p.result), p.error, json.dumps(p.values)))
            latest += [(p.server, p.tool, metric, value, env.occurred_at, env.event_id)
                       for metric, value in p.values.items()]
        await conn.executemany(INSERT_POLL, polls)
        await conn.executemany(UPSERT_LATEST, latest)
        self._applied = [r.value.payload for r in records]

    async def apply_batch(self, records: list[Record]) -> int:
        """The base's contract; then the observers see the polls that were committed."""
        self._applied = []
        try:
            applied = await super().apply_batch(records)
            polls = self._applied
        finally:
            self._applied = []
        for observe in self.observers:
            observe(polls)
        return applied
