"""``SessionGraph`` against the real Neo4j 5.26 of the test stack.

One hand-made session (tools, files, two usage reports of one response, a sub-agent) checked
node by node; then what the graph adds to the store contract every projection passes
(test_projection_contract.py: the same batch twice, positions, reset, a rejected batch, a crash
between batches): a fact repeated at another offset counts once, positions per partition under
a partial redelivery, a dead-lettered record only moves the position, a replay in other batches
rebuilds the identical graph, forgetting positions keeps the graph, a closed port is
``ProjectionUnavailable``. Then cross-file lineage (projections.lineage), as the Postgres store
decides it: a chained Claude resume and a declared Codex fork count each response, tool call and
file once, for the session that wrote it, in any arrival order, a Kimi fork leaves the
sub-agent steps its copied log echoes to its origin, and a sub-agent file is linked to its
session by where it lives.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import neo4j
import pytest

from projections.base import Position, Record
from projections.neo4j.session_graph import SessionGraph, session_node_id
from projections.postgres.session_tables import SessionTables
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
from streams.errors import ProjectionUnavailable
from streams.topics import SESSION_EVENTS

pytestmark = pytest.mark.contract

TOPIC = SESSION_EVENTS.name
T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
OPUS, HAIKU = "claude-opus-4-5", "claude-haiku-4-5"
_ids = itertools.count()


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def event(payload: EventPayload, minute: int, session: str = "s1",
          source: str = "claude-code") -> SessionEvent:
    return SessionEvent(event_id=f"event-{next(_ids):08d}", source=source,
                        type=payload.kind, occurred_at=at(minute), session_id=session,
                        payload=payload)


def records(events: list[SessionEvent], start: int = 0, partition: int = 0) -> list[Record]:
    return [Record(TOPIC, partition, start + i, e) for i, e in enumerate(events)]


def usage(key: str, model: str | None, agent_id: str | None = None,
          timestamp: datetime | None = None, **tokens: int) -> UsageReported:
    return UsageReported.model_validate(
        {"message_key": key, "model": model, "agent_id": agent_id, "timestamp": timestamp,
         **tokens})


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
    """A canonical text form of the projection's graph (bookkeeping nodes excluded: the
    offsets and the lineage lock)."""
    nodes = await rows(driver, """
        MATCH (n) WHERE NOT n:ProjectionOffset AND NOT n:LineageLock
        RETURN labels(n) AS l, properties(n) AS p""")
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
         "started_at": at(4), "last_activity_at": at(6), "ended_at": at(6), "status": "closed",
         "closed_reason": "removed", "first_closed_at": at(6)},
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
        MATCH (n) WHERE NOT n:ProjectionOffset AND NOT n:LineageLock
        RETURN labels(n)[0] AS label, count(*) AS n ORDER BY label""")
    assert {r["label"]: r["n"] for r in labels} == {
        "File": 2, "FileAccess": 4, "Model": 2, "Project": 1, "Response": 4, "Session": 2,
        "Tool": 3, "ToolCall": 4,
    }


def _plain_props(props: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in props.items()}


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


async def test_a_closed_port_is_unavailable() -> None:
    projection = SessionGraph("bolt://127.0.0.1:1")
    with pytest.raises(ProjectionUnavailable, match="neo4j unavailable") as caught:
        await projection.start()
    assert caught.value.retry_after > 0
    await projection.stop()
    await projection.stop()


# -- cross-file lineage -------------------------------------------------------------------------


def _line(payload: EventPayload, minute: int, session: str, source: str = "claude-code",
          ) -> SessionEvent:
    """A line written at ``minute`` (its payload timestamp), as read from ``session``'s file."""
    return event(payload.model_copy(update={"timestamp": at(minute)}), minute, session, source)


def _turn(session: str, n: int, minute: int, tool: str) -> list[SessionEvent]:
    """One turn of the conversation: a tool call on a file and the response's usage."""
    return [
        _line(ToolCalled(tool_use_id=f"tu-{n}", name=tool), minute, session),
        _line(FileTouched(path=f"/work/c/f{n}.py", tool=tool, access="read",
                          tool_use_id=f"tu-{n}"), minute, session),
        _line(usage(f"m{n}:r{n}", OPUS, input_tokens=10 * n, output_tokens=n), minute, session),
    ]


def chain() -> dict[str, list[SessionEvent]]:
    """A chained resume A -> B -> C: each file copies the whole chain before it (same keys and
    timestamps), then writes turns of its own."""
    turns = {1: ("A", 1, "Read"), 2: ("A", 2, "Grep"), 3: ("B", 10, "Edit"),
             4: ("B", 11, "Bash"), 5: ("C", 20, "Write")}
    files: dict[str, list[SessionEvent]] = {}
    for session, owned in [("A", [1, 2]), ("B", [1, 2, 3, 4]), ("C", [1, 2, 3, 4, 5])]:
        files[session] = [event(SessionContext(cwd="/work/c", project="-work-c"), 0, session)]
        for n in owned:
            files[session] += _turn(session, n, turns[n][1], turns[n][2])
    return files


async def per_session(driver: neo4j.AsyncDriver) -> dict[str, Any]:
    """What every session counts as its own, and the lineage decided for it."""
    lineage = await rows(driver, """
        MATCH (s:Session) RETURN s.id AS id, s.resumed_from AS resumed_from,
                                 s.forked_from AS forked_from, s.copied_until AS copied_until
        ORDER BY id""")
    return {"sessions": lineage,
            **{kind: await rels(driver, kind) for kind in
               ["USED_MODEL", "USED_TOOL", "TOUCHED", "RESUMED_FROM", "FORKED_FROM", "SPAWNED"]}}


def _opus(tokens: int, responses: int, input_: int, output: int) -> dict[str, int]:
    return {"tokens": tokens, "input": input_, "output": output, "cache_creation": 0,
            "cache_read": 0, "responses": responses}


CHAIN_EXPECTED = {
    "sessions": [
        {"id": "A", "resumed_from": None, "forked_from": None, "copied_until": None},
        {"id": "B", "resumed_from": "A", "forked_from": None, "copied_until": at(2)},
        {"id": "C", "resumed_from": "B", "forked_from": None, "copied_until": at(11)},
    ],
    # responses n: input 10n, output n -> total 11n; each counted for the file that wrote it
    "USED_MODEL": [("A", OPUS, _opus(33, 2, 30, 3)), ("B", OPUS, _opus(77, 2, 70, 7)),
                   ("C", OPUS, _opus(55, 1, 50, 5))],
    "USED_TOOL": [("A", "Grep", {"count": 1}), ("A", "Read", {"count": 1}),
                  ("B", "Bash", {"count": 1}), ("B", "Edit", {"count": 1}),
                  ("C", "Write", {"count": 1})],
    "TOUCHED": [("A", f"/work/c/f{n}.py", {"reads": 1, "writes": 0}) for n in (1, 2)]
    + [("B", f"/work/c/f{n}.py", {"reads": 1, "writes": 0}) for n in (3, 4)]
    + [("C", "/work/c/f5.py", {"reads": 1, "writes": 0})],
    "RESUMED_FROM": [("B", "A", {}), ("C", "B", {})],
    "FORKED_FROM": [],
    "SPAWNED": [],
}


async def test_a_chained_resume_counts_each_response_for_the_file_that_wrote_it(
        graph: SessionGraph, neo4j_driver: neo4j.AsyncDriver) -> None:
    files = chain()
    events = files["A"] + files["B"] + files["C"]
    assert await graph.apply_batch(records(events)) == len(events)

    assert await per_session(neo4j_driver) == CHAIN_EXPECTED
    # Over all sessions, every distinct response once.
    totals = await rows(neo4j_driver, """
        MATCH (:Session)-[u:USED_MODEL]->(:Model)
        RETURN sum(u.tokens) AS tokens, sum(u.responses) AS responses""")
    assert totals == [{"tokens": sum(11 * n for n in range(1, 6)), "responses": 5}]
    # The copies are stored (with their time), only not counted.
    stored = await rows(neo4j_driver, """
        MATCH (s:Session)-[:HAS_RESPONSE]->(r:Response)
        RETURN s.id AS s, count(r) AS n, max(r.at) AS last ORDER BY s""")
    assert stored == [{"s": "A", "n": 2, "last": at(2)}, {"s": "B", "n": 4, "last": at(11)},
                      {"s": "C", "n": 5, "last": at(20)}]


async def test_any_order_of_the_files_gives_the_same_graph(
        graph: SessionGraph, neo4j_driver: neo4j.AsyncDriver) -> None:
    files = chain()
    graphs = set()
    for order in itertools.permutations("ABC"):
        await graph.reset()
        offset = 0
        for session in order:  # one batch per file
            offset += await graph.apply_batch(records(files[session], start=offset))
        assert await per_session(neo4j_driver) == CHAIN_EXPECTED, order
        graphs.add(repr(await dump(neo4j_driver)))
    # interleaved in one batch, newest file first
    await graph.reset()
    await graph.apply_batch(records([e for trio in itertools.zip_longest(
        files["C"], files["B"], files["A"]) for e in trio if e is not None]))
    assert await per_session(neo4j_driver) == CHAIN_EXPECTED
    graphs.add(repr(await dump(neo4j_driver)))
    assert len(graphs) == 1


def codex_fork() -> dict[str, list[SessionEvent]]:
    """Codex thread P and its fork F, which replays P's usage (same cumulative keys, stamped at
    the fork) before its own turn."""
    def tokens(session: str, key: str, minute: int, n: int) -> SessionEvent:
        return _line(usage(key, None, input_tokens=n, output_tokens=1), minute, session, "codex")

    return {
        "P": [_line(SessionContext(cwd="/work/x", model="gpt-5"), 0, "P", "codex"),
              tokens("P", "codex:T1:L1", 1, 100), tokens("P", "codex:T2:L2", 2, 200)],
        "F": [_line(SessionContext(cwd="/work/x", model="gpt-5", forked_from="P"), 30, "F",
                    "codex"),
              tokens("F", "codex:T1:L1", 30, 100), tokens("F", "codex:T2:L2", 30, 200),
              tokens("F", "codex:T3:L3", 31, 300)],
    }


async def test_a_codex_fork_counts_only_its_own_usage(
        graph: SessionGraph, neo4j_driver: neo4j.AsyncDriver) -> None:
    files = codex_fork()
    expected = {
        "sessions": [
            {"id": "F", "resumed_from": None, "forked_from": "P", "copied_until": at(30)},
            {"id": "P", "resumed_from": None, "forked_from": None, "copied_until": None}],
        "USED_MODEL": [("F", "gpt-5", _opus(301, 1, 300, 1)),
                       ("P", "gpt-5", _opus(302, 2, 300, 2))],
        "USED_TOOL": [], "TOUCHED": [], "RESUMED_FROM": [], "FORKED_FROM": [("F", "P", {})],
        "SPAWNED": [],
    }
    for order in ["PF", "FP"]:
        await graph.reset()
        offset = 0
        for session in order:
            offset += await graph.apply_batch(records(files[session], start=offset))
        assert await per_session(neo4j_driver) == expected, order


def kimi_fork() -> dict[str, list[SessionEvent]]:
    """Kimi CLI session K1 ran sub-agent ex1, whose steps K1's wire log echoes; K2 is a
    ``/fork`` of K1: K1's lines copied byte for byte (the echoes too), then a turn of its own."""
    def copied(session: str) -> list[SessionEvent]:
        return [
            _line(SessionContext(cwd="/work/k"), 0, session, "kimi-cli"),
            _line(ToolCalled(tool_use_id="tool_a1", name="Agent"), 1, session, "kimi-cli"),
            _line(ToolCalled(tool_use_id="tool_g1", name="Grep", agent_id="ex1"), 2, session,
                  "kimi-cli"),
            _line(usage("chatcmpl-s1", "kimi-k2", agent_id="ex1", input_tokens=30,
                        output_tokens=3), 2, session, "kimi-cli"),
            _line(usage("chatcmpl-1", "kimi-k2", input_tokens=10, output_tokens=1), 3, session,
                  "kimi-cli"),
        ]

    return {"K1": copied("K1"),
            "K2": [*copied("K2"),
                   _line(ToolCalled(tool_use_id="tool_r9", name="Read"), 20, "K2", "kimi-cli"),
                   _line(usage("chatcmpl-9", "kimi-k2", input_tokens=50, output_tokens=5), 20,
                         "K2", "kimi-cli")]}


async def test_a_kimi_fork_leaves_the_sub_agent_steps_it_copied_to_its_origin(
        graph: SessionGraph, neo4j_driver: neo4j.AsyncDriver) -> None:
    # Kimi echoes a sub-agent's steps into the main file, so a fork copies them: they count
    # for the origin's sub-agent only, not again for the fork's.
    files = kimi_fork()
    expected = {
        "sessions": [
            {"id": "K1", "resumed_from": None, "forked_from": None, "copied_until": None},
            {"id": "K1:ex1", "resumed_from": None, "forked_from": None, "copied_until": None},
            {"id": "K2", "resumed_from": "K1", "forked_from": None, "copied_until": at(3)},
            {"id": "K2:ex1", "resumed_from": None, "forked_from": None, "copied_until": None}],
        "USED_MODEL": [("K1", "kimi-k2", _opus(11, 1, 10, 1)),
                       ("K1:ex1", "kimi-k2", _opus(33, 1, 30, 3)),
                       ("K2", "kimi-k2", _opus(55, 1, 50, 5))],
        "USED_TOOL": [("K1", "Agent", {"count": 1}), ("K1:ex1", "Grep", {"count": 1}),
                      ("K2", "Read", {"count": 1})],
        "TOUCHED": [], "RESUMED_FROM": [("K2", "K1", {})], "FORKED_FROM": [],
        "SPAWNED": [("K1", "K1:ex1", {}), ("K2", "K2:ex1", {})],
    }
    for order in ["K1K2", "K2K1"]:
        await graph.reset()
        offset = 0
        for session in (order[:2], order[2:]):  # one batch per file
            offset += await graph.apply_batch(records(files[session], start=offset))
        assert await per_session(neo4j_driver) == expected, order


async def test_a_sub_agent_file_is_linked_without_a_subagent_linked_event(
        graph: SessionGraph, neo4j_driver: neo4j.AsyncDriver) -> None:
    sub = [event(ToolCalled(tool_use_id="tu9", name="Grep", agent_id="a7"), 1, "s9"),
           event(usage("m9:r9", HAIKU, agent_id="a7", input_tokens=4), 1, "s9")]
    await graph.apply_batch(records(sub))
    assert await rels(neo4j_driver, "SPAWNED") == [("s9", "s9:a7", {})]
    assert await rels(neo4j_driver, "USED_TOOL") == [("s9:a7", "Grep", {"count": 1})]
    # Its main file later, and a Codex-style link from the sub-agent's own file: the same edge.
    later = [event(SessionContext(cwd="/work/s9"), 0, "s9"),
             event(SubagentLinked(child_agent_id="a7", agent_id="a7", tool_use_id="tu8"), 1,
                   "s9")]
    await graph.apply_batch(records(later, start=2))
    assert await rels(neo4j_driver, "SPAWNED") == [("s9", "s9:a7", {"tool_use_id": "tu8"})]
    assert await rels(neo4j_driver, "HAS_SESSION") == [("/work/s9", "s9", {})]


async def test_the_same_lineage_batch_twice_changes_nothing(
        graph: SessionGraph, neo4j_driver: neo4j.AsyncDriver) -> None:
    files = {**chain(), **codex_fork()}
    events = [e for session in "CBFAP" for e in files[session]]
    batch = records(events)
    await graph.apply_batch(batch)
    before = await dump(neo4j_driver)
    assert await graph.apply_batch(batch) == 0
    assert await dump(neo4j_driver) == before
    # Published again at new offsets (re-decided from the same facts): still nothing changes.
    assert await graph.apply_batch(records(events, start=len(events))) == len(events)
    assert await dump(neo4j_driver) == before
    assert (await per_session(neo4j_driver))["RESUMED_FROM"] == CHAIN_EXPECTED["RESUMED_FROM"]


# -- a sub-agent thread replaying its parent's history ------------------------------------------

GPT = "gpt-5"


def codex_subagent() -> dict[str, list[SessionEvent]]:
    """Codex thread P and its sub-agent thread S, filed under P (``agent_id`` S). S replays P's
    history: the same usage keys (and totals) and tool call ids, one line stamped before P's
    original, one after; then it makes a call and a tool call of its own."""
    def line(payload: EventPayload, minute: int, agent: str | None = None) -> SessionEvent:
        return _line(payload.model_copy(update={"agent_id": agent}), minute, "P", "codex")

    def call(tool_use_id: str, name: str, path: str, minute: int,
             agent: str | None = None) -> list[SessionEvent]:
        return [line(ToolCalled(tool_use_id=tool_use_id, name=name), minute, agent),
                line(FileTouched(path=path, tool=name, access="read", tool_use_id=tool_use_id),
                     minute, agent)]

    def tokens(key: str, n: int, minute: int, agent: str | None = None) -> SessionEvent:
        return line(usage(key, None, input_tokens=n, output_tokens=1), minute, agent)

    return {
        "P": [line(SessionContext(cwd="/work/x", model=GPT), 0),
              *call("call_1", "Read", "/work/x/a.py", 1), tokens("codex:T1:L1", 100, 1),
              *call("call_2", "Bash", "/work/x/b.py", 2), tokens("codex:T2:L2", 200, 2)],
        "S": [line(SessionContext(cwd="/work/x", model=GPT), 0, "S"),
              # the replay: call 1 stamped earlier than P's line, call 2 later
              *call("call_1", "Read", "/work/x/a.py", 0, "S"), tokens("codex:T1:L1", 100, 0, "S"),
              *call("call_2", "Bash", "/work/x/b.py", 4, "S"), tokens("codex:T2:L2", 200, 4, "S"),
              # its own work
              *call("call_s", "Grep", "/work/x/c.py", 5, "S"), tokens("codex:T3:L3", 300, 5, "S")],
    }


SUBAGENT_EXPECTED = {
    "sessions": [
        {"id": "P", "resumed_from": None, "forked_from": None, "copied_until": None},
        {"id": "P:S", "resumed_from": None, "forked_from": None, "copied_until": None}],
    # P: its calls 1 and 2 (101 + 201); S: only its own call 3 (301)
    "USED_MODEL": [("P", GPT, _opus(302, 2, 300, 2)), ("P:S", GPT, _opus(301, 1, 300, 1))],
    "USED_TOOL": [("P", "Bash", {"count": 1}), ("P", "Read", {"count": 1}),
                  ("P:S", "Grep", {"count": 1})],
    "TOUCHED": [("P", "/work/x/a.py", {"reads": 1, "writes": 0}),
                ("P", "/work/x/b.py", {"reads": 1, "writes": 0}),
                ("P:S", "/work/x/c.py", {"reads": 1, "writes": 0})],
    "RESUMED_FROM": [], "FORKED_FROM": [], "SPAWNED": [("P", "P:S", {})],
}


async def fact_owners(driver: neo4j.AsyncDriver) -> dict[tuple[str, str], list[str]]:
    """``(label, natural key) -> [ids of the sessions it hangs off]`` of every fact node; each
    checked to be keyed by its root session and to hang off its winning agent's node."""
    found = await rows(driver, """
        MATCH (f) WHERE f:Response OR f:ToolCall OR f:FileAccess
        RETURN labels(f)[0] AS label, f.key AS key, f.session_id AS root,
               properties(f).agent_id AS agent,
               coalesce(f.message_key, f.tool_use_id, f.id) AS fact,
               [(s:Session)-[:HAS_RESPONSE|HAS_TOOL_CALL|HAS_FILE_ACCESS]->(f) | s.id] AS owners
        """)
    for r in found:
        assert r["key"].startswith(f"{r['root']}|"), r
        assert r["owners"] == [session_node_id(r["root"], r["agent"])], r
    return {(r["label"], r["fact"]): sorted(r["owners"]) for r in found}


SUBAGENT_OWNERS = {
    **{(label, fact): ["P"] for label in ("ToolCall", "FileAccess")
       for fact in ("call_1", "call_2")},
    ("ToolCall", "call_s"): ["P:S"], ("FileAccess", "call_s"): ["P:S"],
    ("Response", "codex:T1:L1"): ["P"], ("Response", "codex:T2:L2"): ["P"],
    ("Response", "codex:T3:L3"): ["P:S"],
}


async def test_a_sub_agent_replaying_its_parent_counts_each_fact_once_for_the_parent(
        graph: SessionGraph, neo4j_driver: neo4j.AsyncDriver) -> None:
    files = codex_subagent()
    runs = {
        "main file first": [files["P"], files["S"]],
        "sub-agent file first": [files["S"], files["P"]],
        "one batch, interleaved": [[e for pair in itertools.zip_longest(files["S"], files["P"])
                                    for e in pair if e is not None]],
    }
    graphs = set()
    for name, batches in runs.items():
        await graph.reset()
        offset = 0
        for batch in batches:
            offset += await graph.apply_batch(records(batch, start=offset))
        assert await per_session(neo4j_driver) == SUBAGENT_EXPECTED, name
        assert await fact_owners(neo4j_driver) == SUBAGENT_OWNERS, name
        # The tree counts every distinct usage key once.
        tree = await rows(neo4j_driver, """
            MATCH (:Session {id: 'P'})-[:SPAWNED*0..]->(s:Session)-[u:USED_MODEL]->(:Model)
            RETURN sum(u.tokens) AS tokens, sum(u.responses) AS responses""")
        assert tree == [{"tokens": 101 + 201 + 301, "responses": 3}], name
        graphs.add(repr(await dump(neo4j_driver)))
    assert len(graphs) == 1  # the same graph whatever the arrival order


async def per_owner_in_postgres(dsn: str, batches: list[list[SessionEvent]],
                                ) -> dict[str, tuple[int, int, int]]:
    """What ``SessionTables`` gives each (session, agent), as the graph node id: ``(tokens,
    responses, tool calls)``."""
    tables = SessionTables(dsn)
    await tables.start()
    try:
        await tables.reset()
        offset = 0
        for batch in batches:
            offset += await tables.apply_batch(records(batch, start=offset))
    finally:
        await tables.stop()
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetch("""
            SELECT coalesce(u.session_id, t.session_id) AS session_id,
                   coalesce(u.agent_id, t.agent_id) AS agent_id,
                   coalesce(u.tokens, 0) AS tokens, coalesce(u.responses, 0) AS responses,
                   coalesce(t.calls, 0) AS calls
            FROM (SELECT session_id, agent_id, sum(total_tokens) AS tokens, count(*) AS responses
                  FROM usage_facts GROUP BY 1, 2) u
            FULL JOIN (SELECT session_id, agent_id, count(*) AS calls FROM tool_calls
                       WHERE name IS NOT NULL GROUP BY 1, 2) t
              ON u.session_id = t.session_id
             AND u.agent_id IS NOT DISTINCT FROM t.agent_id""")
    finally:
        await conn.close()
    return {session_node_id(r["session_id"], r["agent_id"]):
            (r["tokens"], r["responses"], r["calls"]) for r in found}


async def per_owner_in_graph(driver: neo4j.AsyncDriver) -> dict[str, tuple[int, int, int]]:
    found = await rows(driver, """
        MATCH (s:Session)
        RETURN s.id AS id, COUNT { (s)-[:HAS_TOOL_CALL]->() } AS calls,
               COLLECT { MATCH (s)-[:HAS_RESPONSE]->(r) RETURN r.total } AS totals""")
    return {r["id"]: (sum(r["totals"]), len(r["totals"]), r["calls"]) for r in found
            if r["totals"] or r["calls"]}


async def test_a_larger_report_of_a_sub_agent_moves_the_fact_to_it_as_in_postgres(
        graph: SessionGraph, neo4j_driver: neo4j.AsyncDriver, pg_dsn: str) -> None:
    files = codex_subagent()
    # S reports P's second call again, later and larger: as in Postgres, the larger wins.
    bigger = [_line(usage("codex:T2:L2", GPT, agent_id="S", input_tokens=200, output_tokens=50),
                    6, "P", "codex")]
    expected = {"P": (101, 1, 2), "P:S": (301 + 250, 2, 1)}
    moved = [("P", GPT, _opus(101, 1, 100, 1)), ("P:S", GPT, _opus(551, 2, 500, 51))]
    assert await per_owner_in_postgres(pg_dsn, [files["P"], files["S"], bigger]) == expected
    for order in itertools.permutations(["P", "S", "bigger"]):
        await graph.reset()
        offset = 0
        for name in order:
            offset += await graph.apply_batch(
                records(bigger if name == "bigger" else files[name], start=offset))
        assert await per_owner_in_graph(neo4j_driver) == expected, order
        assert (await per_session(neo4j_driver))["USED_MODEL"] == moved, order
        assert (await fact_owners(neo4j_driver))[("Response", "codex:T2:L2")] == ["P:S"], order

    # A still larger report from the main file moves it back; the sub-agent's aggregates lose
    # it too.
    back = [_line(usage("codex:T2:L2", GPT, input_tokens=200, output_tokens=80), 7, "P",
                  "codex")]
    await graph.apply_batch(records(back, start=offset))
    expected = {"P": (101 + 280, 2, 2), "P:S": (301, 1, 1)}
    assert await per_owner_in_postgres(pg_dsn, [files["P"], files["S"], bigger, back]) == expected
    assert await per_owner_in_graph(neo4j_driver) == expected
    assert (await per_session(neo4j_driver))["USED_MODEL"] == [
        ("P", GPT, _opus(381, 2, 300, 81)), ("P:S", GPT, _opus(301, 1, 300, 1))]
    assert (await fact_owners(neo4j_driver))[("Response", "codex:T2:L2")] == ["P"]


async def test_two_workers_deciding_at_once_see_each_other(
        stack: dict[str, str], neo4j_driver: neo4j.AsyncDriver) -> None:
    """Two writers (two workers, each with its partitions) apply a file and its resume in
    concurrent transactions, again and again: the resume always ends up linked."""
    files = chain()
    # in another folder, so no shared Project node happens to serialize the two transactions
    files["B"][0] = event(SessionContext(cwd="/work/d", project="-work-d"), 0, "B")
    first, second = SessionGraph(stack["neo4j"]), SessionGraph(stack["neo4j"])
    await first.start()
    await second.start()
    try:
        for attempt in range(6):
            await first.reset()
            one, other = ("A", "B") if attempt % 2 else ("B", "A")
            await asyncio.gather(first.apply_batch(records(files[one], partition=0)),
                                 second.apply_batch(records(files[other], partition=1)))
            lineage = await rows(neo4j_driver, "MATCH (s:Session) RETURN s.id AS id, "
                                               "s.resumed_from AS origin ORDER BY id")
            assert lineage == [{"id": "A", "origin": None}, {"id": "B", "origin": "A"}], attempt
    finally:
        await first.stop()
        await second.stop()
