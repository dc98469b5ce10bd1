"""The metrics the dashboards add, read from real Postgres and scraped over HTTP: active
sessions, sessions closed at least once (a reopened session stays counted), distinct files
touched by source, and the database's size, under their Prometheus names."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from projections.base import Record
from projections.otel.export import start_metrics
from projections.otel.metrics import SessionMetrics
from projections.postgres.session_tables import SessionTables
from schemas.envelope import Envelope
from schemas.events import FileTouched, SessionContext, SessionFileRemoved
from streams.topics import SESSION_EVENTS

pytestmark = pytest.mark.contract

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _record(offset: int, session: str, payload: Any) -> Record:
    envelope = Envelope[Any](
        event_id=f"{session}-{offset:08d}", source="claude-code", type=payload.kind,
        occurred_at=T0 + timedelta(seconds=offset), session_id=session, payload=payload)
    return Record(SESSION_EVENTS.name, 0, offset, envelope)


def _records() -> list[Record]:
    touched = [FileTouched(path=p, tool="Read", access="read", tool_use_id=f"t{i}")
               for i, p in enumerate(["/a", "/b", "/a"])]  # /a twice: one distinct file
    payloads = [("open", SessionContext(cwd="/src")), *[("open", t) for t in touched],
                ("closed", SessionContext(cwd="/src")),
                ("closed", FileTouched(path="/c", tool="Edit", access="write",
                                       tool_use_id="t9")),
                ("closed", SessionFileRemoved(path="/home/u/.claude/projects/x/closed.jsonl")),
                ("reopened", SessionContext(cwd="/src"))]
    return [_record(i, session, p) for i, (session, p) in enumerate(payloads)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _scrape(url: str) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(url)).text
    return {s.name: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.labels.get("sessionstream_source", "claude-code")
            == "claude-code"}


async def test_active_closed_once_files_and_database_size(pg_dsn: str) -> None:
    tables = SessionTables(pg_dsn)
    await tables.start()
    try:
        await tables.apply_batch(_records())
    finally:
        await tables.stop()
    conn = await asyncpg.connect(pg_dsn)
    try:  # "reopened" closed once before and is active again (the lifecycle keeps the date)
        await conn.execute("UPDATE sessions SET first_closed_at = $1, status = 'active' "
                           "WHERE id = 'reopened'", T0)
        statuses = dict(await conn.fetch("SELECT id, status FROM sessions"))
    finally:
        await conn.close()
    assert statuses == {"open": "active", "closed": "closed", "reopened": "active"}

    export = start_metrics(_free_port(), None)
    try:
        snapshot = await SessionMetrics(export.meter_provider).refresh(pg_dsn)
        assert export.url is not None
        scraped = await _scrape(export.url)
    finally:
        export.shutdown()
    assert snapshot.reopened == {"claude-code": 1}
    assert snapshot.files_touched == {"claude-code": 3}  # /a and /b, then /c
    assert snapshot.database_bytes is not None and snapshot.database_bytes > 1_000_000
    assert scraped["sessionstream_sessions_started_total"] == 3
    assert scraped["sessionstream_sessions_closed_total"] == 2
    assert scraped["sessionstream_sessions_active"] == 2
    assert scraped["sessionstream_files_touched_total"] == 3
    assert scraped["sessionstream_postgres_database_size_bytes"] == snapshot.database_bytes
