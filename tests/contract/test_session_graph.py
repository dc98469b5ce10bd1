"""``SessionGraph`` against the real Neo4j 5.26 of the test stack.

One hand-made session (tools, files, two usage reports of one response, a sub-agent) checked
node by node; then the store contract: a batch applied twice changes nothing, a fact repeated
at another offset counts once, positions advance (also for dead-lettered records), a replay
rebuilds the identical graph, a rejected batch leaves nothing behind, a closed port is
``ProjectionUnavailable``.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import neo4j
import pytest

from projections.base import Position, Record
from projections.neo4j.session_graph import SessionGraph, session_node_id
from schemas.events import (
    EventPayload,
    FileTouched,
    SessionContext,
    SessionEvent,
    SessionFileRemoved,
    SessionTitled,
    SubagentLinked,
    ToolCalled,
    UsageReported,
    UserPrompted,
)
from streams.errors import ProjectionRejected, ProjectionUnavailable
from streams.topics import SESSION_EVENTS

pytestmark = pytest.mark.contract

TOPIC = SESSION_EVENTS.name
T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
OPUS, HAIKU = "claude-opus-4-5", "claude-haiku-4-5"
_ids = itertools.count()


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def event(payload: EventPayload, minute: int, session: str = "s1") -> SessionEvent:
    return SessionEvent(event_id=f"event-{next(_ids):08d}", source="claude-code",
                        type=payload.kind, occurred_at=at(minute), session_id=session,
                        payload=payload)


def records(events: list[SessionEvent], start: int = 0, partition: int = 0) -> list[Record]:
    return [Record(TOPIC, partition, start + i, e) for i, e in enumerate(events)]


def usage(key: str, model: str, agent_id: str | None = None, **tokens: int) -> UsageReported:
    return UsageReported.model_validate(
        {"message_key": key, "model": model, "agent_id": agent_id, **tokens})


def session_events() -> list[SessionEvent]:
    """Session s1 in project -work-a, with sub-agent a1."""
    return [
        event(SessionContext(cwd="/work/a", slug="brave-fox", project="-work-a"), 0),
        event(SessionTitled(title="Fix the bug", title_source="ai"), 1),
        event(UserPrompted(text="fix it"), 1),
        event(ToolCalled(tool_use_id="tu1", name="Read"), 2),
        event(FileTouched(path="/work/a/x.py", tool="Read", access="read", tool_use_id="tu1"), 2),
        event(ToolCalled(tool_use_id="tu2", name="Edit"), 3),
        event(FileTouched(path="/work/a/x.py", tool="Edit", access="write", tool_use_id="tu2"), 3),
        event(ToolCalled(tool_use_id="tu3", name="Read"), 3),
        event(FileTouched(path="/work/a/x.py", tool="Read", access="read", tool_use_id="tu3"), 3),
        event(FileTouched(path="/work/a/y.py", tool="Read", access="read", tool_use_id="tu3"), 3),
        # Two reports of one response: the larger (total 160) wins, the smaller (15) is dropped.
        event(usage("m1:r1", OPUS, input_tokens=10, output_tokens=5), 3),
        event(usage("m1:r1", OPUS, input_tokens=10, output_tokens=50, cache_read_tokens=100), 3),
        event(usage("m2:r2", OPUS, input_tokens=1, output_tokens=2, cache_creation_5m_tokens=3,
                    cache_creation_1h_tokens=4, cache_read_tokens=5), 4),
        event(usage("m3:r3", HAIKU, input_tokens=7, output_tokens=3), 4),
        event(usage("m3:r3", HAIKU, input_tokens=1, output_tokens=1), 4),  # smaller, later
        event(SessionTitled(title="an older summary", title_source="summary"), 4),
        event(SubagentLinked(child_agent_id="a1", tool_use_id="tu4"), 5),
        # Lines of the sub-agent's own file.
        event(SessionContext(cwd="/work/a/sub", project="-work-a", agent_id="a1"), 4),
        event(ToolCalled(tool_use_id="tu5", name="Grep", agent_id="a1"), 4),
        event(usage("m4:r4", HAIKU, agent_id="a1", input_tokens=20, output_tokens=2), 4),
        event(SessionFileRemoved(path="/p/s1/subagents/agent-a1.jsonl", agent_id="a1"), 6),
    ]


def _plain(value: Any) -> Any:
    return value.to_native() if hasattr(value, "to_native") else value


async def rows(driver: neo4j.AsyncDriver, query: str) -> list[dict[str, Any]]:
    found, _, _ = await driver.execute_query(query)
    return [{k: _plain(v) for k, v in r.data().items()} for r in found]


async def rels(driver: neo4j.AsyncDriver, rel_type: str) -> list[tuple[Any, ...]]:
    """``(start, end, properties)`` of every ``rel_type`` relationship, sorted."""
    found = await rows(driver, f"""
        MATCH (a)-[r:{rel_type}]->(b)
        RETURN coalesce(a.id, a.name) AS a, coalesce(b.id, b.name, b.path) AS b,
               properties(r) AS p""")
    return sorted((r["a"], r["b"], r["p"]) for r in found)


async def dump(driver: neo4j.AsyncDriver) -> tuple[list[str], list[str]]:
    """A canonical text form of the projection's graph (offset nodes excluded)."""
    nodes = await rows(driver, """
        MATCH (n) WHERE NOT n:ProjectionOffset RETURN labels(n) AS l, properties(n) AS p""")
    edges = await rows(driver, """
        MATCH (a)-[r]->(b) RETURN labels(a) AS la, properties(a) AS pa, type(r) AS t,
                                  properties(r) AS pr, labels(b) AS lb, properties(b) AS pb""")

    def canon(labels: list[str], props: dict[str, Any]) -> str:
        return f"{sorted(labels)}{sorted((k, str(v)) for k, v in props.items())}"

    return (sorted(canon(n["l"], n["p"]) for n in nodes),
            sorted(f"{canon(e['la'], e['pa'])}-{e['t']}{canon([], e['pr'])}->"
                   f"{canon(e['lb'], e['pb'])}" for e in edges))


@pytest.fixture
async def graph(stack: dict[str, str], neo4j_driver: neo4j.AsyncDriver,
                ) -> AsyncIterator[SessionGraph]:
    projection = SessionGraph(stack["neo4j"])
    await projection.start()
    yield projection
    await projection.stop()


async def test_builds_the_session_graph(graph: SessionGraph,
                                        neo4j_driver: neo4j.AsyncDriver) -> None:
    assert await graph.apply_batch(records(session_events())) == 21

    sessions = await rows(neo4j_driver, "MATCH (s:Session) RETURN properties(s) AS p ORDER BY s.id")
    assert [_plain_props(s["p"]) for s in sessions] == [
        {"id": "s1", "source": "claude-code", "title": "Fix the bug", "title_rank": 2,
         "slug": "brave-fox", "working_dir": "/work/a", "project": "-work-a",
         "started_at": at(0), "last_activity_at": at(5), "status": "active"},
        {"id": "s1:a1", "source": "claude-code", "agent_id": "a1", "working_dir": "/work/a/sub",
         "started_at": at(4), "last_activity_at": at(6), "ended_at": at(6), "status": "closed"},
    ]
    assert session_node_id("s1", "a1") == "s1:a1"
    assert await rels(neo4j_driver, "HAS_SESSION") == [("-work-a", "s1", {})]
    assert await rels(neo4j_driver, "SPAWNED") == [("s1", "s1:a1", {"tool_use_id": "tu4"})]
    assert await rels(neo4j_driver, "USED_TOOL") == [
        ("s1", "Edit", {"count": 1}), ("s1", "Read", {"count": 2}),
        ("s1:a1", "Grep", {"count": 1}),
    ]
    assert await rels(neo4j_driver, "TOUCHED") == [
        ("s1", "/work/a/x.py", {"reads": 2, "writes": 1}),
        ("s1", "/work/a/y.py", {"reads": 1, "writes": 0}),
    ]
    assert await rels(neo4j_driver, "USED_MODEL") == [
        ("s1", HAIKU, {"tokens": 10, "input": 7, "output": 3, "cache_creation": 0,
                       "cache_read": 0, "responses": 1}),
        ("s1", OPUS, {"tokens": 175, "input": 11, "output": 52, "cache_creation": 7,
                      "cache_read": 105, "responses": 2}),
        ("s1:a1", HAIKU, {"tokens": 22, "input": 20, "output": 2, "cache_creation": 0,
                          "cache_read": 0, "responses": 1}),
    ]
    labels = await rows(neo4j_driver, """
        MATCH (n) WHERE NOT n:ProjectionOffset
        RETURN labels(n)[0] AS label, count(*) AS n ORDER BY label""")
    assert {r["label"]: r["n"] for r in labels} == {
        "File": 2, "FileAccess": 4, "Model": 2, "Project": 1, "Response": 4, "Session": 2,
        "Tool": 3, "ToolCall": 4,
    }


def _plain_props(props: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in props.items()}


async def test_the_same_batch_twice_is_a_no_op(graph: SessionGraph,
                                               neo4j_driver: neo4j.AsyncDriver) -> None:
    batch = records(session_events())
    assert await graph.apply_batch(batch) == 21
    before = await dump(neo4j_driver)
    assert await graph.apply_batch(batch) == 0
    assert await dump(neo4j_driver) == before
    assert await graph.positions() == [Position(TOPIC, 0, 21)]


async def test_a_fact_repeated_at_another_offset_counts_once(
        graph: SessionGraph, neo4j_driver: neo4j.AsyncDriver) -> None:
    await graph.apply_batch(records(session_events()))
    before = await dump(neo4j_driver)
    repeats = [
        event(ToolCalled(tool_use_id="tu1", name="Read"), 2),
        event(FileTouched(path="/work/a/x.py", tool="Read", access="read", tool_use_id="tu1"), 2),
        event(usage("m1:r1", OPUS, input_tokens=10, output_tokens=5), 3),  # smaller: ignored
        event(SubagentLinked(child_agent_id="a1", tool_use_id="tu4"), 5),
        event(ToolCalled(tool_use_id="tu5", name="Grep", agent_id="a1"), 4),
    ]
    assert await graph.apply_batch(records(repeats, start=21)) == 5
    assert await dump(neo4j_driver) == before

    # A larger later report of m2:r2 replaces the stored one; it is not added to it.
    bigger = event(usage("m2:r2", OPUS, input_tokens=1, output_tokens=1000), 4)
    assert await graph.apply_batch(records([bigger], start=26)) == 1
    assert [r for r in await rels(neo4j_driver, "USED_MODEL") if r[1] == OPUS] == [
        ("s1", OPUS, {"tokens": 1161, "input": 11, "output": 1050, "cache_creation": 0,
                      "cache_read": 100, "responses": 2}),
    ]
    assert await graph.positions() == [Position(TOPIC, 0, 27)]


async def test_positions_per_partition_and_partial_overlap(
        graph: SessionGraph, neo4j_driver: neo4j.AsyncDriver) -> None:
    assert await graph.positions() == []
    main = records(session_events())
    other = records([event(ToolCalled(tool_use_id="tx", name="Bash"), 0, session="s2"),
                     event(SessionContext(cwd="/work/b"), 1, session="s2")],
                    start=40, partition=3)
    assert await graph.apply_batch(main[:8] + other) == 10
    assert sorted(await graph.positions(), key=lambda p: p.partition) == [
        Position(TOPIC, 0, 8), Position(TOPIC, 3, 42)]
    # A redelivery overlapping what was applied: only offsets >= 8 apply.
    assert await graph.apply_batch(main[4:]) == 13
    assert sorted(await graph.positions(), key=lambda p: p.partition) == [
        Position(TOPIC, 0, 21), Position(TOPIC, 3, 42)]
    assert await rels(neo4j_driver, "HAS_SESSION") == [
        ("-work-a", "s1", {}), ("/work/b", "s2", {})]
    assert await rels(neo4j_driver, "USED_TOOL") == [
        ("s1", "Edit", {"count": 1}), ("s1", "Read", {"count": 2}),
        ("s1:a1", "Grep", {"count": 1}), ("s2", "Bash", {"count": 1}),
    ]


async def test_reset_then_replay_rebuilds_the_identical_graph(
        graph: SessionGraph, neo4j_driver: neo4j.AsyncDriver) -> None:
    batch = records(session_events())
    await graph.apply_batch(batch)
    before = await dump(neo4j_driver)
    assert (len(before[0]), len(before[1])) == (22, 22)

    await graph.reset()
    assert await graph.positions() == []
    assert await dump(neo4j_driver) == ([], [])

    # Replayed in smaller batches: same graph.
    for i in range(0, len(batch), 3):
        await graph.apply_batch(batch[i:i + 3])
    assert await dump(neo4j_driver) == before
    assert await graph.positions() == [Position(TOPIC, 0, 21)]


async def test_forget_positions_keeps_the_graph_and_republishing_converges(
        graph: SessionGraph, neo4j_driver: neo4j.AsyncDriver) -> None:
    events = session_events()
    await graph.apply_batch(records(events))
    before = await dump(neo4j_driver)

    await graph.forget_positions()
    assert await graph.positions() == []
    assert await dump(neo4j_driver) == before
    # The recreated topic carries the same events again, from offset 0 of a new log.
    assert await graph.apply_batch(records(events)) == 21
    assert await dump(neo4j_driver) == before
    assert await graph.positions() == [Position(TOPIC, 0, 21)]


async def test_a_dead_lettered_record_only_moves_the_position(
        graph: SessionGraph, neo4j_driver: neo4j.AsyncDriver) -> None:
    assert await graph.apply_batch([Record(TOPIC, 0, 0, None), Record(TOPIC, 0, 1, None)]) == 2
    assert await graph.positions() == [Position(TOPIC, 0, 2)]
    assert await dump(neo4j_driver) == ([], [])

    tool = event(ToolCalled(tool_use_id="tu1", name="Read"), 0)
    assert await graph.apply_batch([Record(TOPIC, 0, 2, tool), Record(TOPIC, 0, 3, None)]) == 2
    assert await graph.positions() == [Position(TOPIC, 0, 4)]
    assert await rels(neo4j_driver, "USED_TOOL") == [("s1", "Read", {"count": 1})]


class _BrokenGraph(SessionGraph):
    async def apply(self, tx: neo4j.AsyncManagedTransaction, records: list[Record]) -> None:
        await super().apply(tx, records)
        # An error only the server can see: a string divided by a number.
        await (await tx.run("MATCH (s:Session) RETURN s.id / 0")).consume()


async def test_a_rejected_batch_leaves_nothing_behind(
        stack: dict[str, str], neo4j_driver: neo4j.AsyncDriver) -> None:
    broken = _BrokenGraph(stack["neo4j"])
    await broken.start()
    try:
        with pytest.raises(ProjectionRejected, match="neo4j rejected the batch"):
            await broken.apply_batch(records(session_events()))
        assert await broken.positions() == []
        assert await dump(neo4j_driver) == ([], [])
    finally:
        await broken.stop()


async def test_a_closed_port_is_unavailable() -> None:
    projection = SessionGraph("bolt://127.0.0.1:1")
    with pytest.raises(ProjectionUnavailable, match="neo4j unavailable") as caught:
        await projection.start()
    assert caught.value.retry_after > 0
    await projection.stop()
    await projection.stop()
