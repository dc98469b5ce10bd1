"""``SessionTables`` and responses that several session files hold, against the real Postgres.

A resume copies its origin's chain (same message keys, timestamps and prompts) and goes on; a
resume of the resume copies it again. Every response and prompt counts once, for the session
that first wrote it, in ``sessions``, in the ``usage`` view and in what the metrics read,
whatever order the files arrive in and however the records are cut into batches. A Codex fork
that declares its parent drops the replayed prefix; a Kimi fork leaves the sub-agent steps its
copied log echoes to its origin; a sub-agent file is linked by where it is.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from projections.base import Record
from projections.otel.metrics import USAGE_SQL
from projections.postgres.session_tables import SessionTables
from schemas.events import (
    EventPayload,
    SessionContext,
    SessionEvent,
    ToolCalled,
    UsageReported,
    UserPrompted,
)
from streams.topics import SESSION_EVENTS

pytestmark = pytest.mark.contract

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
MODEL = "claude-sonnet-4-5-20250929"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(session: str, payload: EventPayload, n: int, source: str = "claude-code") -> SessionEvent:
    return SessionEvent(event_id=f"lineage-{session}-{n:04d}", source=source, type=payload.kind,
                        occurred_at=payload.timestamp or T0, session_id=session,
                        payload=payload)


def turn(session: str, n: int, minute: float, output: int, *, bg: bool = False) -> list:
    """A prompt, a response with a tool call, and its usage (input 10, output ``output``)."""
    when = at(minute)
    context = SessionContext(cwd="/home/dev/cross", project="-home-dev-cross",
                             session_kind="bg" if bg else None, line_uuid=f"c{n}",
                             timestamp=when)
    return [
        ev(session, context, 10 * n),
        ev(session, UserPrompted(text=f"prompt {n}", line_uuid=f"u{n}", timestamp=when),
           10 * n + 1),
        ev(session, ToolCalled(tool_use_id=f"toolu_{n}", name="Read", message_key=f"msg_{n}:r",
                               line_uuid=f"a{n}", timestamp=when), 10 * n + 2),
        ev(session, UsageReported(message_key=f"msg_{n}:r", model=MODEL, input_tokens=10,
                                  output_tokens=output, line_uuid=f"a{n}", timestamp=when),
           10 * n + 3),
    ]


def session(sid: str, turns: list[tuple[int, float, int]], bg: bool = False) -> list:
    return [e for n, minute, output in turns for e in turn(sid, n, minute, output, bg=bg)]


A_TURNS = [(1, 1, 100), (2, 2, 200)]
B_TURNS = [*A_TURNS, (3, 10, 300)]  # resumed A
C_TURNS = [*B_TURNS, (4, 20, 400)]  # resumed B
FILES = {"A": session("A", A_TURNS), "B": session("B", B_TURNS), "C": session("C", C_TURNS)}
EXPECTED = {  # (prompts, tool_calls, output_tokens, total_tokens, resumed_from)
    "A": (2, 2, 300, 320, None), "B": (1, 1, 300, 310, "A"), "C": (1, 1, 400, 410, "B"),
}


async def project(dsn: str, batches: list[list[SessionEvent]]) -> None:
    tables = SessionTables(dsn)
    await tables.start()
    try:
        await tables.reset()
        offset = 0
        for batch in batches:
            await tables.apply_batch([Record(SESSION_EVENTS.name, 0, offset + i, e)
                                      for i, e in enumerate(batch)])
            offset += len(batch)
    finally:
        await tables.stop()


async def fetch(dsn: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def per_session(dsn: str) -> dict[str, tuple]:
    rows = await fetch(dsn, "SELECT id, prompts, tool_calls, output_tokens, total_tokens,"
                            " resumed_from FROM sessions ORDER BY id")
    return {r["id"]: (r["prompts"], r["tool_calls"], r["output_tokens"], r["total_tokens"],
                      r["resumed_from"]) for r in rows}


async def test_a_chained_resume_counts_each_response_once_for_its_writer(pg_dsn: str) -> None:
    await project(pg_dsn, [FILES["A"], FILES["B"], FILES["C"]])
    assert await per_session(pg_dsn) == EXPECTED
    usage = await fetch(pg_dsn, "SELECT session_id, sum(output_tokens) AS o, sum(responses) AS n"
                                " FROM usage GROUP BY session_id ORDER BY 1")
    assert [(r["session_id"], r["o"], r["n"]) for r in usage] == [
        ("A", 300, 2), ("B", 300, 1), ("C", 400, 1)]
    metrics = await fetch(pg_dsn, USAGE_SQL)
    assert sum(r["output"] for r in metrics) == 1000  # four responses, once each


@pytest.mark.parametrize("order", list(itertools.permutations("ABC")))
async def test_any_file_order_gives_the_same_rows(pg_dsn: str, order: tuple[str, ...]) -> None:
    await project(pg_dsn, [FILES[name] for name in order])
    assert await per_session(pg_dsn) == EXPECTED


async def test_interleaved_batches_give_the_same_rows(pg_dsn: str) -> None:
    # a live tail: every file's records cut into small batches, the files interleaved
    lines = [e for group in itertools.zip_longest(*(FILES[n] for n in "CAB")) for e in group
             if e is not None]
    await project(pg_dsn, [lines[i:i + 3] for i in range(0, len(lines), 3)])
    assert await per_session(pg_dsn) == EXPECTED


async def test_a_background_hand_off_links_to_its_origin(pg_dsn: str) -> None:
    origin = session("D", [(1, 1, 100)])
    handoff = session("E", [(1, 1, 100), (2, 5, 50)], bg=True)
    await project(pg_dsn, [handoff, origin])
    rows = await per_session(pg_dsn)
    assert rows["D"] == (1, 1, 100, 110, None)
    assert rows["E"] == (1, 1, 50, 60, "D")


async def test_rereading_a_file_with_lines_gone_lowers_nothing(pg_dsn: str) -> None:
    rewritten = [e for e in FILES["A"] if e.payload.line_uuid not in {"u1", "a1", "c1"}]
    await project(pg_dsn, [FILES["A"], rewritten])
    assert (await per_session(pg_dsn))["A"] == EXPECTED["A"]


async def test_a_codex_fork_drops_the_history_it_replays(pg_dsn: str) -> None:
    def usage(sid: str, key: str, minute: float, output: int, n: int) -> SessionEvent:
        return ev(sid, UsageReported(message_key=key, model="gpt-5", input_tokens=10,
                                     output_tokens=output, timestamp=at(minute)), n, "codex")

    parent = [usage("P", "codex:T1:L1", 1, 100, 1), usage("P", "codex:T2:L2", 2, 200, 2)]
    fork = [ev("F", SessionContext(forked_from="P", timestamp=at(9)), 0, "codex"),
            usage("F", "codex:T1:L1", 9, 100, 1), usage("F", "codex:T2:L2", 9, 200, 2),
            usage("F", "codex:T3:L3", 12, 50, 3)]
    stranger = [usage("S", "codex:T1:L1", 0, 100, 1)]  # equal counters, no declared parent
    await project(pg_dsn, [fork, stranger, parent])
    rows = {r["id"]: r for r in await fetch(
        pg_dsn, "SELECT id, output_tokens, forked_from, resumed_from FROM sessions")}
    assert rows["F"]["output_tokens"] == 50 and rows["F"]["forked_from"] == "P"
    assert rows["F"]["resumed_from"] is None
    assert rows["P"]["output_tokens"] == 300 and rows["S"]["output_tokens"] == 100


async def test_a_kimi_fork_leaves_the_sub_agent_steps_it_copied_to_its_origin(
        pg_dsn: str) -> None:
    # Kimi CLI echoes a sub-agent's steps into the main wire log, so a /fork copies them with
    # the rest: they count for the origin (where the sub-agent ran), not again for the fork.
    def kimi(sid: str, payload: EventPayload, n: int) -> SessionEvent:
        return ev(sid, payload, n, "kimi-cli")

    def copied(sid: str) -> list[SessionEvent]:
        return [
            kimi(sid, UserPrompted(text="go", line_uuid="u1", timestamp=at(1)), 1),
            kimi(sid, UsageReported(message_key="chatcmpl-1", model=MODEL, input_tokens=10,
                                    output_tokens=100, line_uuid="s1", timestamp=at(1)), 2),
            kimi(sid, UserPrompted(text="look", agent_id="ex1", line_uuid="x0",
                                   timestamp=at(2)), 3),
            kimi(sid, ToolCalled(tool_use_id="tool_g1", name="Grep", agent_id="ex1",
                                 message_key="chatcmpl-s1", line_uuid="x1", timestamp=at(2)), 4),
            kimi(sid, UsageReported(message_key="chatcmpl-s1", model=MODEL, input_tokens=10,
                                    output_tokens=20, agent_id="ex1", line_uuid="x2",
                                    timestamp=at(2)), 5),
            kimi(sid, UsageReported(message_key="chatcmpl-2", model=MODEL, input_tokens=10,
                                    output_tokens=30, line_uuid="s2", timestamp=at(3)), 6),
        ]

    fork = [*copied("K2"),
            kimi("K2", UserPrompted(text="more", line_uuid="u9", timestamp=at(10)), 9),
            kimi("K2", UsageReported(message_key="chatcmpl-9", model=MODEL, input_tokens=1,
                                     output_tokens=7, line_uuid="s9", timestamp=at(10)), 10)]
    for files in ([copied("K1"), fork], [fork, copied("K1")]):
        await project(pg_dsn, files)
        rows = await per_session(pg_dsn)
        assert rows == {"K1": (1, 1, 150, 180, None), "K2": (1, 0, 7, 8, "K1")}
        metrics = await fetch(pg_dsn, USAGE_SQL)
        assert sum(r["output"] for r in metrics) == 157  # four responses, once each
        prompts = await fetch(pg_dsn, "SELECT id, subagent_prompts FROM sessions ORDER BY id")
        assert [tuple(r) for r in prompts] == [("K1", 1), ("K2", 0)]


async def test_a_sub_agent_file_is_linked_by_where_it_lives(pg_dsn: str) -> None:
    child = ev("K", UsageReported(message_key="msg_k:r", model=MODEL, output_tokens=7,
                                  agent_id="a1", timestamp=at(3)), 1)
    task = ev("K", UserPrompted(text="the task", agent_id="a1", line_uuid="t1",
                                timestamp=at(3)), 2)
    await project(pg_dsn, [[*session("K", [(9, 1, 10)]), child, task]])
    row = (await fetch(pg_dsn, "SELECT subagents, prompts, subagent_prompts, output_tokens"
                               " FROM sessions WHERE id = 'K'"))[0]
    assert tuple(row) == (1, 1, 1, 17)


async def test_two_workers_deciding_at_once_see_each_other(pg_dsn: str) -> None:
    # Two writers (two workers, each with its partitions) apply the origin and its resume in
    # concurrent transactions, again and again: the resume must always end up linked.
    first, second = SessionTables(pg_dsn), SessionTables(pg_dsn)
    await first.start()
    await second.start()
    try:
        for attempt in range(8):
            await first.reset()
            origin, resume = (FILES["A"], FILES["B"]) if attempt % 2 else (FILES["B"], FILES["A"])
            await asyncio.gather(
                first.apply_batch([Record(SESSION_EVENTS.name, 0, i, e)
                                   for i, e in enumerate(origin)]),
                second.apply_batch([Record(SESSION_EVENTS.name, 1, i, e)
                                    for i, e in enumerate(resume)]))
            rows = await per_session(pg_dsn)
            assert rows["B"] == EXPECTED["B"] and rows["A"] == EXPECTED["A"], attempt
    finally:
        await first.stop()
        await second.stop()
