"""``FrontendTables`` against the real Postgres of the stack.

- The tables a frontend reads have exactly its columns and types, in their own schema.
- Each row equals what the session tables derive for the same session (``public.sessions``),
  on the sample folders read by the real producer and parser, before and after the idle close.
- The assumed frontend query (``docs/frontend-tables.md``: ``search_path`` set to the schema,
  sessions joined to projects, filtered by status, newest first) reads them.
- A replay gives the same rows and the same uuids; a project no session names any more goes.

The store contract every projection passes (idempotence, positions, reset, rejection, crash) is
in ``test_projection_contract.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from agents.parsers.session_skill import decide
from projections.base import Record
from projections.postgres.frontend_ids import project_uuid, session_uuid
from projections.postgres.frontend_tables import FrontendTables
from projections.postgres.session_tables import SessionTables
from schemas.events import SessionEvent
from streams.producers.session_skill import SessionSkillProducer
from streams.topics import SESSION_EVENTS
from tests.contract.frontend_samples import frontend_batches
from tests.factories import Collector

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "samples" / "session_skill"  # shop, ledger, infra: one folder each
FRONTEND_COLUMNS = [("id", "uuid"), ("session_slug", "text"), ("title", "text"),
                    ("project_id", "uuid"), ("status", "text"), ("session_type", "text"),
                    ("working_dir", "text"), ("session_dir", "text")]
# The query a frontend of this shape is assumed to run (docs/frontend-tables.md).
FRONTEND_QUERY = """
SELECT s.id, s.session_slug, s.title, s.project_id, s.status, s.session_type,
       s.working_dir, s.session_dir
FROM sessions s
JOIN projects p ON p.project_id = s.project_id
WHERE s.status = ANY($1)
ORDER BY (SELECT a.last_activity_at FROM session_activity a WHERE a.id = s.id) DESC, s.id
"""
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


def records(values: list[Any], partition: int = 0, first: int = 0) -> list[Record]:
    return [Record(SESSION_EVENTS.name, partition, first + i, v) for i, v in enumerate(values)]


async def sample_events(tmp_path: Path) -> list[SessionEvent]:
    """The sample folders, read by the producer and parsed as the worker parses them."""
    collector = Collector()
    copy = Path(shutil.copytree(SAMPLES, tmp_path / "projects"))
    producer = SessionSkillProducer([copy], tmp_path / "checkpoint.json", collector)
    assert await producer.scan_once() > 0
    return [event for change in collector.events for event in decide(change)]


@pytest.fixture
async def frontend(pg_dsn: str) -> AsyncIterator[FrontendTables]:
    projection = FrontendTables(pg_dsn)
    await projection.start()
    yield projection
    await projection.stop()


async def fetch(dsn: str, query: str, *args: Any, schema: str | None = None
                ) -> list[asyncpg.Record]:
    settings = {"search_path": schema} if schema else None
    conn = await asyncpg.connect(dsn, server_settings=settings)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def test_the_frontend_tables_have_exactly_its_columns(
        frontend: FrontendTables, pg_dsn: str) -> None:
    columns = await fetch(pg_dsn, "SELECT table_name, column_name, data_type "
                          "FROM information_schema.columns WHERE table_schema = 'frontend' "
                          "ORDER BY table_name, ordinal_position")
    by_table: dict[str, list[tuple[str, str]]] = {}
    for c in columns:
        by_table.setdefault(c["table_name"], []).append((c["column_name"], c["data_type"]))
    assert by_table["sessions"] == FRONTEND_COLUMNS
    assert by_table["projects"][0] == ("project_id", "uuid")
    # our own, wider sessions table stays where it was
    public = await fetch(pg_dsn, "SELECT count(*) AS n FROM information_schema.tables "
                         "WHERE table_schema = 'public' AND table_name = 'sessions'")
    assert public[0]["n"] == 0  # not created by the frontend tables


async def test_rows_equal_what_the_session_tables_derive(
        frontend: FrontendTables, pg_dsn: str, tmp_path: Path) -> None:
    events = await sample_events(tmp_path)
    tables = SessionTables(pg_dsn)
    await tables.start()
    try:
        for projection in (tables, frontend):
            assert await projection.apply_batch(records(events)) == len(events)
        ours = await _compare(pg_dsn, expect_sessions=3)
        assert {r["status"] for r in ours} >= {"executing", "reviewing"}
        # quiet for the inactivity timeout: both close, an agent-kept status stays
        closed = await frontend.close_idle(FAR_FUTURE)
        assert sorted(closed) == sorted(await tables.close_idle(FAR_FUTURE))
        await _compare(pg_dsn, expect_sessions=3)
    finally:
        await tables.stop()


async def _compare(dsn: str, expect_sessions: int) -> list[asyncpg.Record]:
    """The frontend row of every public session equals its columns; returns the public rows."""
    ours = await fetch(dsn, "SELECT * FROM public.sessions ORDER BY id")
    theirs = {r["id"]: r for r in await fetch(dsn, "SELECT * FROM sessions", schema="frontend")}
    assert len(ours) == len(theirs) == expect_sessions
    for row in ours:
        front = theirs[session_uuid(row["source"], row["id"])]
        assert dict(front) == {
            "id": session_uuid("session-skill", row["id"]), "session_slug": row["slug"],
            "title": row["title"], "project_id": project_uuid(row["working_dir"]),
            "status": row["status"], "session_type": row["session_type"],
            "working_dir": row["working_dir"], "session_dir": row["session_dir"]}, row["id"]
    projects = await fetch(dsn, "SELECT * FROM projects", schema="frontend")
    assert {(p["project_id"], p["name"]) for p in projects} == {
        (project_uuid(r["working_dir"]), Path(r["working_dir"]).name) for r in ours}
    return ours


async def test_the_assumed_frontend_query_reads_them(frontend: FrontendTables,
                                                     pg_dsn: str) -> None:
    first, second = frontend_batches()
    await frontend.apply_batch(records(first[0]) + records(first[1], partition=1))
    rows = await fetch(pg_dsn, FRONTEND_QUERY, ["executing", "planning"], schema="frontend")
    shop, ledger = (session_uuid("session-skill", s) for s in ("shop/checkout-flow",
                                                               "ledger/audit"))
    assert [(r["id"], r["status"]) for r in rows] == [(ledger, "planning"), (shop, "executing")]
    assert list(rows[0].keys()) == [c for c, _ in FRONTEND_COLUMNS]
    assert rows[0]["project_id"] == project_uuid("/code/ledger")

    await frontend.apply_batch(records(second[0], first=len(first[0]))
                               + records(second[1], partition=1, first=len(first[1])))
    rows = await fetch(pg_dsn, FRONTEND_QUERY, ["executing", "completed"], schema="frontend")
    # per field, the newest facet wins: state.json (minute 5) over spec.md's title (minute 4)
    # and over its own older report that arrived late (minute 3, "reviewing")
    assert [(r["id"], r["status"], r["title"]) for r in rows] == [
        (ledger, "executing", "Audit"), (shop, "completed", "Checkout flow")]
    assert rows[0]["project_id"] == project_uuid("/srv/ledger")
    # the ledger moved: its former project names no session and is gone
    projects = await fetch(pg_dsn, "SELECT path FROM projects ORDER BY path", schema="frontend")
    assert [p["path"] for p in projects] == ["/code/shop", "/srv/ledger"]


async def test_a_replay_gives_the_same_rows_and_ids(frontend: FrontendTables, pg_dsn: str,
                                                    tmp_path: Path) -> None:
    events = await sample_events(tmp_path)
    await frontend.apply_batch(records(events))
    before = await fetch(pg_dsn, "SELECT * FROM sessions ORDER BY id", schema="frontend")
    assert {r["id"] for r in before} == {session_uuid("session-skill", e.session_id)
                                         for e in events}
    await frontend.reset()
    assert await fetch(pg_dsn, "SELECT * FROM sessions", schema="frontend") == []
    mid = len(events) // 2  # the replay comes in other batches
    await frontend.apply_batch(records(events[:mid]))
    await frontend.apply_batch(records(events[mid:], first=mid))
    after = await fetch(pg_dsn, "SELECT * FROM sessions ORDER BY id", schema="frontend")
    assert [dict(r) for r in after] == [dict(r) for r in before]
