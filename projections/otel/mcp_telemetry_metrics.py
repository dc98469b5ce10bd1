"""``TelemetryMetrics``: the polled MCP telemetry as OTel instruments, derived from Postgres.

Like :mod:`projections.otel.metrics`, totals and current values are re-read from the tables
:class:`~projections.postgres.mcp_telemetry_tables.TelemetryTables` keeps exactly-once, so a restart
exports the same numbers: ``sessionstream.telemetry.polls`` (counter, by server, tool and
outcome ok|error, from ``telemetry_polls``) and ``sessionstream.telemetry.value`` (gauge, the
newest value of each flattened metric, from ``telemetry_latest``). Nothing is reported until
the first refresh succeeded.

The histograms ``sessionstream.telemetry.tool.duration`` and ``sessionstream.telemetry.result.size``
cannot be rebuilt from stored totals; they are recorded as polls are committed, through
``TelemetryTables.observers`` (:meth:`TelemetryMetrics.attach`). They are process-local, like
every latency: a restart starts them empty, a poll is recorded once per process that applies
it, and a ``replay`` in another process records into that process's provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from projections.base import Projection
from projections.postgres.mcp_telemetry_tables import TelemetryTables
from schemas.telemetry import ToolPolled

__all__ = ["TelemetryMetrics", "TelemetrySnapshot"]

logger = logging.getLogger(__name__)

SERVER = "sessionstream.mcp.server"
TOOL = "gen_ai.tool.name"
METRIC = "sessionstream.telemetry.metric"
OUTCOME = "sessionstream.telemetry.outcome"

POLLS_SQL = """
SELECT server, tool, CASE WHEN ok THEN 'ok' ELSE 'error' END AS outcome, count(*) AS n
FROM telemetry_polls GROUP BY 1, 2, 3"""
LATEST_SQL = "SELECT server, tool, metric, value FROM telemetry_latest"

_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZE_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass(frozen=True)
class TelemetrySnapshot:
    polls: dict[tuple[str, str, str], int]  # (server, tool, outcome) -> polls
    latest: dict[tuple[str, str, str], float]  # (server, tool, metric) -> value


class TelemetryMetrics:
    """The instruments, created once on ``meter_provider``; values come from :meth:`refresh`."""

    def __init__(self, meter_provider: MeterProvider) -> None:
        self.snapshot: TelemetrySnapshot | None = None
        meter = meter_provider.get_meter("sessionstream.telemetry")
        meter.create_observable_counter(
            "sessionstream.telemetry.polls", [self._polls], "{poll}",
            "MCP tool calls stored, by server, tool and outcome (ok|error).")
        meter.create_observable_gauge(
            "sessionstream.telemetry.value", [self._values], "{value}",
            "Newest value of each numeric leaf of a polled tool's result, by metric path.")
        self._duration = meter.create_histogram(
            "sessionstream.telemetry.tool.duration", "s",
            "Duration of MCP tool calls, retries included, by server, tool and outcome.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS)
        self._size = meter.create_histogram(
            "sessionstream.telemetry.result.size", "By",
            "Size of successful MCP tool call responses, by server and tool.",
            explicit_bucket_boundaries_advisory=_SIZE_BUCKETS)

    def attach(self, projections: Iterable[Projection]) -> None:
        """Record the histograms from every ``TelemetryTables`` among ``projections``."""
        for projection in projections:
            if isinstance(projection, TelemetryTables):
                projection.observers.append(self.record_polls)

    def record_polls(self, polls: list[ToolPolled]) -> None:
        """Record committed polls into the histograms (a ``TelemetryTables`` observer)."""
        for p in polls:
            self._duration.record(p.duration_ms / 1000, {
                SERVER: p.server, TOOL: p.tool, OUTCOME: "ok" if p.ok else "error"})
            if p.ok:
                self._size.record(p.size_bytes, {SERVER: p.server, TOOL: p.tool})

    async def refresh(self, conn: asyncpg.Connection) -> TelemetrySnapshot:
        """Read the totals and latest values; on error (raised) the last snapshot stays."""
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            polls = await conn.fetch(POLLS_SQL)
            latest = await conn.fetch(LATEST_SQL)
        self.snapshot = TelemetrySnapshot(
            polls={(r["server"], r["tool"], r["outcome"]): int(r["n"]) for r in polls},
            latest={(r["server"], r["tool"], r["metric"]): float(r["value"]) for r in latest})
        return self.snapshot

    async def run(self, stop: asyncio.Event, dsn: str, interval: float = 5.0) -> None:
        """Refresh every ``interval`` s until ``stop``; store errors are logged, never raised."""
        conn: asyncpg.Connection | None = None
        try:
            while not stop.is_set():
                try:
                    if conn is None or conn.is_closed():
                        conn = await asyncpg.connect(dsn)
                    await self.refresh(conn)
                except asyncpg.UndefinedTableError:
                    logger.debug("telemetry tables not created yet")
                except _DB_ERRORS as exc:
                    logger.warning("telemetry metrics refresh failed, keeping the last: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
        finally:
            if conn is not None:
                await conn.close()

    # -- callbacks: read the snapshot, no I/O ---------------------------------------------------

    def _polls(self, options: CallbackOptions) -> Iterable[Observation]:
        snapshot = self.snapshot
        if snapshot is None:
            return []
        streams = sorted({(s, t) for s, t, _ in snapshot.polls})
        return [Observation(snapshot.polls.get((s, t, o), 0), {SERVER: s, TOOL: t, OUTCOME: o})
                for s, t in streams for o in ("ok", "error")]

    def _values(self, options: CallbackOptions) -> Iterable[Observation]:
        snapshot = self.snapshot
        if snapshot is None:
            return []
        return [Observation(v, {SERVER: s, TOOL: t, METRIC: m})
                for (s, t, m), v in sorted(snapshot.latest.items())]
