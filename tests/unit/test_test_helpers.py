"""The shared test helpers do what the tests rely on: ``tests.factories`` and ``tests.waiting``."""

from __future__ import annotations

import pytest

from schemas.events import ToolCalled, UserPrompted
from schemas.file_changes import FileLine, file_line_event
from tests.factories import T0, Collector, at, records, session_event
from tests.waiting import eventually

pytestmark = pytest.mark.unit

PROMPT = UserPrompted(text="hi", line_uuid="u1")


def test_session_event_fills_the_envelope_and_derives_a_stable_id() -> None:
    event = session_event(PROMPT, 90, session="s2", source="codex")
    assert (event.type, event.occurred_at, event.session_id, event.source, event.payload) == (
        "user.prompted", at(90), "s2", "codex", PROMPT)
    assert at(90) == T0.replace(minute=1, second=30)
    assert session_event(PROMPT, 90, session="s2", source="codex") == event
    variants = [session_event(PROMPT), session_event(PROMPT, 1), session_event(PROMPT, session="x"),
                session_event(PROMPT, source="codex"),
                session_event(UserPrompted(text="hi", line_uuid="u2"))]
    assert len({e.event_id for e in variants}) == len(variants)
    assert session_event(PROMPT, event_id="f" * 32).event_id == "f" * 32


def test_records_are_one_partition_at_consecutive_offsets() -> None:
    batch = records(["a", "b", "c"], topic="t.v1", partition=2, first_offset=7)
    assert [(r.topic, r.partition, r.offset, r.value) for r in batch] == [
        ("t.v1", 2, 7, "a"), ("t.v1", 2, 8, "b"), ("t.v1", 2, 9, "c")]
    [only] = records([session_event(PROMPT)])
    assert (only.topic, only.partition, only.offset) == ("sessions.events.v1", 0, 0)


async def test_collector_keeps_every_published_event_in_order() -> None:
    collector = Collector()
    first, second = (file_line_event("claude-code", "s1", FileLine(
        path="/p/s1.jsonl", offset=n * 10, line_no=n + 1, line="{}", mtime=T0)) for n in (0, 1))
    await collector([first])
    await collector([second, first])
    assert collector.events == [first, second, first]


async def test_eventually_returns_the_first_truthy_value_of_a_plain_or_async_check() -> None:
    seen = iter([0, None, "", 3, 4])
    assert await eventually(lambda: next(seen), "a count", interval=0) == 3
    assert next(seen) == 4  # polled no further than needed

    calls: list[int] = []

    async def tool_called() -> ToolCalled | None:
        calls.append(1)
        return ToolCalled(tool_use_id="t1", name="Read") if len(calls) == 2 else None

    assert (await eventually(tool_called, "a tool call", interval=0)).name == "Read"
    assert len(calls) == 2


async def test_eventually_fails_naming_what_it_waited_for_and_the_last_value() -> None:
    values = iter([None, 0])
    with pytest.raises(AssertionError) as failure:
        await eventually(lambda: next(values, ""), "rows in Postgres", timeout=0.05,
                         interval=0.01, detail=lambda: "the end of the log")
    assert str(failure.value) == ("timed out after 0.05 s waiting for rows in Postgres; "
                                  "last seen: ''\nthe end of the log")


async def test_eventually_cuts_a_long_last_value() -> None:
    class Rows:
        def __bool__(self) -> bool:
            return False

        def __repr__(self) -> str:
            return "r" * 10_000

    with pytest.raises(AssertionError) as failure:
        await eventually(Rows, "rows", timeout=0, interval=0)
    assert str(failure.value).endswith("r" * 3000 + "... (10000 chars)")


async def test_eventually_retries_ignored_errors_and_lets_others_through() -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("not listening yet")
        return "up"

    assert await eventually(flaky, "the server", interval=0, ignoring=(ConnectionError,)) == "up"

    def refused() -> str:
        raise ConnectionError("refused")

    with pytest.raises(AssertionError, match="last seen: ConnectionError\\('refused'\\)"):
        await eventually(refused, "the server", timeout=0.02, interval=0.01,
                         ignoring=(ConnectionError,))

    def died() -> bool:
        attempts.append(1)
        raise AssertionError("the worker died")

    attempts.clear()
    with pytest.raises(AssertionError, match="the worker died"):
        await eventually(died, "the worker", timeout=5, interval=0.01)
    assert len(attempts) == 1  # failed at once, not after the timeout
