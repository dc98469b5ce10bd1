"""The session lifecycle in every store that keeps sessions, on the real Postgres and Neo4j.

A session closes once no event came for the inactivity timeout (``close_idle(before)``): its
status is ``closed``, ``ended_at`` its last activity, ``closed_reason`` inactive and
``first_closed_at`` set. A later event reopens it (status active, ``ended_at`` cleared,
``first_closed_at`` kept); a late event from before the close does not. A session whose file
was removed stays closed whatever comes after. Closing twice closes nothing the second time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import neo4j
import pytest

from projections.neo4j.session_graph import SessionGraph
from projections.postgres.session_tables import SessionTables
from schemas.events import AssistantMessage, SessionContext, SessionFileRemoved, UserPrompted
from tests.factories import at, records, session_event

pytestmark = pytest.mark.contract


class Store:
    """One store under test: its projection, and how to read a session's lifecycle back."""

    def __init__(self, projection: SessionTables | SessionGraph,
                 read: Any) -> None:
        self.projection = projection
        self.read = read
        self.offset = 0

    async def apply(self, *events: Any) -> None:
        batch = records(events, first_offset=self.offset)
        self.offset += len(batch)
        assert await self.projection.apply_batch(batch) == len(batch)

    async def close_idle(self, before: datetime) -> list[str]:
        return await self.projection.close_idle(before)

    async def session(self, session_id: str) -> dict[str, Any]:
        return dict(await self.read(session_id))


@pytest.fixture(params=["postgres", "neo4j"])
async def store(request: pytest.FixtureRequest, pg_dsn: str,
                neo4j_driver: neo4j.AsyncDriver, stack: dict[str, str]) -> AsyncIterator[Store]:
    if request.param == "postgres":
        projection: SessionTables | SessionGraph = SessionTables(pg_dsn)

        async def read(session_id: str) -> dict[str, Any]:
            conn = await asyncpg.connect(pg_dsn)
            try:
                row = await conn.fetchrow(
                    "SELECT status, ended_at, closed_reason, first_closed_at, last_activity_at "
                    "FROM sessions WHERE id = $1", session_id)
            finally:
                await conn.close()
            assert row is not None, session_id
            return dict(row)
    else:
        projection = SessionGraph(stack["neo4j"])

        async def read(session_id: str) -> dict[str, Any]:
            found, _, _ = await neo4j_driver.execute_query(
                "MATCH (s:Session {id: $id}) RETURN s.status AS status, s.ended_at AS ended_at, "
                "s.closed_reason AS closed_reason, s.first_closed_at AS first_closed_at, "
                "s.last_activity_at AS last_activity_at", id=session_id)
            assert found, session_id
            return {k: (v.to_native() if hasattr(v, "to_native") else v)
                    for k, v in found[0].data().items()}
    await projection.start()
    try:
        yield Store(projection, read)
    finally:
        await projection.stop()


def prompt(seconds: float, session: str) -> Any:
    return session_event(UserPrompted(text=f"prompt at {seconds}"), seconds, session=session)


def reply(seconds: float, session: str) -> Any:
    return session_event(AssistantMessage(message_key=f"m-{seconds}", text="ok"), seconds,
                         session=session)


async def test_an_idle_session_closes_and_a_busy_one_stays_open(store: Store) -> None:
    await store.apply(session_event(SessionContext(cwd="/w"), 0, session="quiet"),
                      prompt(10, "quiet"), prompt(10, "busy"), reply(700, "busy"))
    closed = await store.close_idle(at(400))  # 300 s quiet before the clock's 700 s
    assert closed == ["quiet"]
    quiet, busy = await store.session("quiet"), await store.session("busy")
    assert quiet["status"] == "closed" and quiet["closed_reason"] == "inactive"
    assert quiet["ended_at"] == at(10) == quiet["first_closed_at"]
    assert busy["status"] == "active" and busy["ended_at"] is None
    assert busy["first_closed_at"] is None
    assert await store.close_idle(at(400)) == []  # already closed: nothing twice


async def test_a_later_event_reopens_and_a_late_older_one_does_not(store: Store) -> None:
    await store.apply(prompt(0, "s"), reply(20, "s"))
    assert await store.close_idle(at(500)) == ["s"]
    await store.apply(reply(15, "s"))  # arrives late, but happened before the close
    assert (await store.session("s"))["status"] == "closed"
    await store.apply(prompt(900, "s"))
    reopened = await store.session("s")
    assert reopened["status"] == "active" and reopened["ended_at"] is None
    assert reopened["closed_reason"] is None
    assert reopened["first_closed_at"] == at(20)  # kept: it did close once
    assert reopened["last_activity_at"] == at(900)
    assert await store.close_idle(at(1300)) == ["s"]
    again = await store.session("s")
    assert again["ended_at"] == at(900) and again["first_closed_at"] == at(20)


async def test_a_removed_session_stays_closed(store: Store) -> None:
    await store.apply(prompt(0, "gone"),
                      session_event(SessionFileRemoved(path="/p/gone.jsonl"), 30,
                                    session="gone"))
    removed = await store.session("gone")
    assert removed["status"] == "closed" and removed["closed_reason"] == "removed"
    assert removed["ended_at"] == at(30) == removed["first_closed_at"]
    assert await store.close_idle(at(10_000)) == []
    await store.apply(prompt(20_000, "gone"))
    assert (await store.session("gone"))["status"] == "closed"
