"""TelemetryTables against real Postgres: idempotent under replays, newest value by poll time
(never by arrival order), observers see each committed poll once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from projections.base import Record
from projections.postgres.mcp_telemetry_tables import TelemetryTables
from schemas.telemetry import ToolPolled, flatten_numbers, tool_polled_event
from streams.topics import TELEMETRY_POLLED

pytestmark = pytest.mark.contract

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SERVER = "http://mcp.test/mcp"


def _records(order: list[int], first_offset: int = 0) -> list[Record]:
    polls = []
    for i in range(3):
        result = {"sessions": {"total": 10 + i}, "cpu": 0.5}
        polls.append(tool_polled_event(ToolPolled(
            server=SERVER, tool="get_activity_summary", ok=True, duration_ms=5.0 + i,
            size_bytes=100, result=result, values=flatten_numbers(result)),
            T0 + timedelta(seconds=i)))
    polls.append(tool_polled_event(ToolPolled(
        server=SERVER, tool="get_broken_metrics", ok=False, duration_ms=1.0,
        error="boom"), T0))
    return [Record(TELEMETRY_POLLED.name, 0, first_offset + n, polls[i])
            for n, i in enumerate(order)]


async def _state(dsn: str) -> tuple[list[Any], list[Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        polls = await conn.fetch("SELECT event_id, tool, ok, metrics FROM telemetry_polls "
                                 "ORDER BY event_id")
        latest = await conn.fetch("SELECT server, tool, metric, value, polled_at "
                                  "FROM telemetry_latest ORDER BY metric")
    finally:
        await conn.close()
    return [tuple(r) for r in polls], [tuple(r) for r in latest]


async def test_replays_and_reordering_converge_to_the_same_rows(pg_dsn: str) -> None:
    tables = TelemetryTables(pg_dsn)
    seen: list[str] = []
    tables.observers.append(lambda polls: seen.extend(p.tool for p in polls))
    await tables.start()
    try:
        assert await tables.apply_batch(_records([0, 1, 2, 3])) == 4
        first = await _state(pg_dsn)
        assert await tables.apply_batch(_records([0, 1, 2, 3])) == 0  # same offsets: skipped
        assert len(seen) == 4
        # Re-published in another order at new offsets: same rows, newest by poll time.
        assert await tables.apply_batch(_records([2, 3, 1, 0], first_offset=4)) == 4
        assert await _state(pg_dsn) == first
    finally:
        await tables.stop()
    polls, latest = first
    assert len(polls) == 4 and sum(1 for p in polls if not p[2]) == 1
    assert {(r[2], r[3]) for r in latest} == {("sessions.total", 12.0), ("cpu", 0.5)}
    assert all(r[4] == T0 + timedelta(seconds=2) for r in latest)
