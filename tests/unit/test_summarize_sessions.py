"""The summarizer's pure half: what a summary holds, and when one is emitted."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest

from agents.summarize_sessions import SessionState, Summarizer
from projections.pricing import ModelPrice, PricingTable
from schemas.envelope import derive_event_id
from schemas.events import (
    AssistantMessage,
    EventPayload,
    FileTouched,
    SessionContext,
    SessionEvent,
    SessionFileRemoved,
    SessionTitled,
    ToolCalled,
    ToolResulted,
    UsageReported,
    UserPrompted,
)
from schemas.summaries import SessionSummary, SessionSummaryEvent, TokenCounts
from tests.factories import T0, at, session_event

pytestmark = pytest.mark.unit

PRICING = PricingTable({"model-a": ModelPrice(input=Decimal(3), output=Decimal(15)),
                        "model-b": ModelPrice(input=Decimal(1), output=Decimal(5))})


def session_events() -> list[SessionEvent]:
    """One session with every rule in it (times in seconds after T0)."""
    timeline: list[tuple[EventPayload, float]] = [
        (SessionContext(cwd="/home/dev/demo", project="-home-dev-demo"), 0),
        (SessionContext(cwd="/elsewhere", project="other", agent_id="a1"), 0),
        (UserPrompted(text="<command-name>/clear</command-name>", is_meta=True, line_uuid="u0"),
         0),
        (UserPrompted(text="Fix the retry helper", line_uuid="u1"), 1),
        (UserPrompted(text="sub-agent task", line_uuid="u2", agent_id="a1"), 2),
        (SessionTitled(title="AI title", title_source="ai"), 3),
        (SessionTitled(title="Summary title", title_source="summary"), 4),
        (AssistantMessage(message_key="m1", model="model-a", text="thinking"), 5),
        (AssistantMessage(message_key="m1", model="model-a", block_type="tool_use"), 5),
        (ToolCalled(tool_use_id="t1", name="Read", input={"file_path": "/a.py"}), 5),
        (FileTouched(path="/a.py", tool="Read", access="read", tool_use_id="t1"), 5),
        (UsageReported(message_key="m1", model="model-a", input_tokens=10, output_tokens=5), 5),
        (UsageReported(message_key="m1", model="model-a", input_tokens=10,
                       output_tokens=100), 6),  # the largest report of m1 wins...
        (UsageReported(message_key="m1", model="model-a", input_tokens=10,
                       output_tokens=50), 7),  # ...whatever comes after
        (ToolResulted(tool_use_id="t1", content="ok"), 8),
        (AssistantMessage(message_key="m2", model="model-b", block_type="tool_use"), 9),
        (ToolCalled(tool_use_id="t2", name="Edit", input={"file_path": "/a.py"}), 9),
        (ToolCalled(tool_use_id="t3", name="Read", input={"file_path": "/b.py"}), 9),
        (FileTouched(path="/a.py", tool="Edit", access="write", tool_use_id="t2"), 9),
        (FileTouched(path="/b.py", tool="Read", access="read", tool_use_id="t3"), 9),
        (UsageReported(message_key="m2", model="model-b", input_tokens=1000, output_tokens=200,
                       cache_creation_5m_tokens=4000, cache_creation_1h_tokens=2000,
                       cache_read_tokens=10000, agent_id="a1"), 9),
        (UsageReported(message_key="m3", model="model-x", output_tokens=7), 9),
        (ToolResulted(tool_use_id="t2", content="not found", is_error=True), 10),
        (ToolResulted(tool_use_id="t3", content="...", is_error=False), 10),
        (UserPrompted(text="Summary of the conversation", is_compact_summary=True,
                      line_uuid="u3"), 11),
    ]
    return [session_event(payload, seconds) for payload, seconds in timeline]


EXPECTED = SessionSummary(
    session_id="s1", source="claude-code", status="active", title="AI title",
    first_prompt="Fix the retry helper", project="-home-dev-demo", working_dir="/home/dev/demo",
    started_at=T0, last_activity_at=at(11), ended_at=None, duration_s=11.0,
    prompts=1, assistant_messages=2, tool_calls=3, tool_errors=1,  # not the task prompt
    tools={"Edit": 1, "Read": 2}, files=["/a.py", "/b.py"],
    tokens=TokenCounts(input=1010, output=307, cache_creation_5m=4000, cache_creation_1h=2000,
                       cache_read=10000),
    tokens_by_model={
        "model-a": TokenCounts(input=10, output=100),
        "model-b": TokenCounts(input=1000, output=200, cache_creation_5m=4000,
                               cache_creation_1h=2000, cache_read=10000),
        "model-x": TokenCounts(output=7),
    },
    # model-a: 10*3 + 100*15 = 1530; model-b: 1000*1 + 200*5 + 4000*1.25 + 2000*2 + 10000*0.1
    # = 12000; per million
    cost_usd=Decimal("0.01353"), unpriced_models=["model-x"],
)


def folded(events: list[SessionEvent]) -> SessionState:
    state = SessionState("claude-code", "s1", PRICING)
    for event in events:
        state.apply(event)
    return state


def summarizer(**knobs: float) -> Summarizer:
    return Summarizer(PRICING, **knobs)


# --- what a summary holds ------------------------------------------------------------------


def test_a_summary_folds_every_rule() -> None:
    assert folded(session_events()).summary() == EXPECTED


def test_applying_events_again_changes_nothing() -> None:
    events = session_events()
    assert folded(events + events).summary() == EXPECTED


def test_title_precedence_custom_over_ai_over_summary() -> None:
    events = [session_event(SessionTitled(title="custom", title_source="custom"), 0),
              session_event(SessionTitled(title="ai", title_source="ai"), 1),
              session_event(SessionTitled(title="summary", title_source="summary"), 2)]
    assert folded(events).summary().title == "custom"
    later = [session_event(SessionTitled(title="ai 1", title_source="ai"), 0),
             session_event(SessionTitled(title="ai 2", title_source="ai"), 1)]
    assert folded(later).summary().title == "ai 2"  # the same rank: the latest wins


def test_the_first_prompt_is_the_earliest_by_its_timestamp_and_is_clipped() -> None:
    events = [session_event(UserPrompted(text="second", line_uuid="u2", timestamp=at(20)), 30),
              session_event(UserPrompted(text="first " + "x" * 2000, line_uuid="u1",
                                         timestamp=at(10)), 31)]
    assert folded(events).summary().first_prompt == "first " + "x" * 994 + "…"


def test_ties_in_usage_keep_the_first_report() -> None:
    events = [session_event(UsageReported(message_key="m1", model="model-a", input_tokens=10), 0),
              session_event(UsageReported(message_key="m1", model="model-b", output_tokens=10), 1)]
    assert folded(events).summary().tokens_by_model == {"model-a": TokenCounts(input=10)}


def test_a_tool_result_that_succeeds_on_retry_is_no_longer_an_error() -> None:
    events = [session_event(ToolCalled(tool_use_id="t1", name="Bash"), 0),
              session_event(ToolResulted(tool_use_id="t1", is_error=True), 1),
              session_event(ToolResulted(tool_use_id="t1", is_error=False), 2)]
    assert folded(events).summary().tool_errors == 0


# --- when summaries are emitted ------------------------------------------------------------


def test_open_then_rate_limited_updates() -> None:
    z = summarizer(update_interval=10, inactivity_timeout=300)
    [opened] = z.apply(session_event(UserPrompted(text="hi", line_uuid="u1"), 0), now=at(100))
    assert (opened.type, opened.payload.status, opened.payload.prompts) == (
        "session.summary", "active", 1)
    assert z.apply(session_event(AssistantMessage(message_key="m1"), 1), now=at(101)) == []
    assert z.apply(session_event(AssistantMessage(message_key="m2"), 2), now=at(105)) == []
    assert z.tick(now=at(109)) == []  # the interval has not passed
    [update] = z.tick(now=at(110))
    assert (update.payload.status, update.payload.assistant_messages) == ("active", 2)
    assert z.tick(now=at(125)) == []  # nothing pending
    [leading] = z.apply(session_event(AssistantMessage(message_key="m3"), 3), now=at(125))
    assert leading.payload.assistant_messages == 3  # the interval had passed: emitted at once


def test_close_by_inactivity_in_event_time() -> None:
    z = summarizer(update_interval=10, inactivity_timeout=300)
    z.apply(session_event(UserPrompted(text="hi", line_uuid="u1"), 0), now=at(0))
    z.apply(session_event(AssistantMessage(message_key="m1"), 50), now=at(1))  # pending
    [update] = z.tick(now=at(349))  # the pending update, not yet the close
    assert (update.payload.status, update.payload.assistant_messages) == ("active", 1)
    [closed] = z.tick(now=at(350))
    assert closed.payload.model_dump(include={"status", "ended_at", "duration_s",
                                              "assistant_messages"}) == {
        "status": "closed", "ended_at": at(50), "duration_s": 50.0, "assistant_messages": 1}
    assert closed.occurred_at == at(50)
    assert z.tick(now=at(1000)) == []  # closed once


def test_removal_of_the_main_file_closes_at_once_and_a_later_event_reopens() -> None:
    z = summarizer(update_interval=10)
    z.apply(session_event(UserPrompted(text="hi", line_uuid="u1"), 0), now=at(0))
    assert z.apply(session_event(SessionFileRemoved(path="/p/agent-a1.jsonl", agent_id="a1"), 5),
                   now=at(1)) == []  # a sub-agent file: no close, and rate-limited
    [closed] = z.apply(session_event(SessionFileRemoved(path="/p/s1.jsonl"), 6), now=at(2))
    assert (closed.payload.status, closed.payload.ended_at) == ("closed", at(6))
    [reopened] = z.apply(session_event(UserPrompted(text="again", line_uuid="u2"), 7), now=at(3))
    assert reopened.payload.model_dump(include={"status", "ended_at", "prompts"}) == {
        "status": "active", "ended_at": None, "prompts": 2}


def test_summary_ids_are_deterministic_from_content_and_status() -> None:
    def run() -> list[SessionSummaryEvent]:
        z = summarizer(update_interval=0)
        out = [o for e in session_events() for o in z.apply(e, now=at(1000))]
        return out + z.tick(now=at(10_000))

    first, second = run(), run()
    assert first == second
    closed = first[-1]
    digest = hashlib.sha256(closed.payload.model_dump_json().encode()).hexdigest()
    assert closed.event_id == derive_event_id("claude-code", "s1", "closed", digest)
    # The 5 events that change nothing (a sub-agent's context and a meta prompt at the same
    # time as the first event, a second fragment of m1, /a.py touched again, a successful
    # result at the same time) emit nothing: 25 events + the close give 21 distinct summaries.
    assert len({e.event_id for e in first}) == len(first) == 21
    assert first[-2].payload == EXPECTED


def test_fold_rebuilds_without_emitting_and_an_event_after_it_updates_at_once() -> None:
    z = summarizer(update_interval=10)
    events = session_events()
    for event in events[:-1]:
        z.fold(event)
    [update] = z.apply(events[-1], now=at(12))
    assert update.payload == EXPECTED


def test_flush_emits_pending_updates_regardless_of_the_interval() -> None:
    z = summarizer(update_interval=10)
    z.apply(session_event(UserPrompted(text="hi", line_uuid="u1"), 0), now=at(0))
    z.apply(session_event(UserPrompted(text="more", line_uuid="u2"), 1), now=at(1))
    [flushed] = z.flush(now=at(2))
    assert flushed.payload.prompts == 2
    assert z.flush(now=at(3)) == []


def test_sessions_are_kept_apart() -> None:
    z = summarizer()
    a = z.apply(session_event(UserPrompted(text="a", line_uuid="u1"), 0, session="A"), now=at(0))
    b = z.apply(session_event(UserPrompted(text="b", line_uuid="u1"), 0, session="B"), now=at(0))
    assert [(o.session_id, o.payload.first_prompt) for o in a + b] == [("A", "a"), ("B", "b")]
    assert len(z) == 2
