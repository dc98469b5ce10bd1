"""The filter agent's decide(): each content mode per kind, the defaults, and policy parsing."""

from __future__ import annotations

import functools

import pytest

from agents.filter_events import ContentMode, FilterPolicy, decide
from schemas.events import (
    AssistantMessage,
    EventPayload,
    SystemEvent,
    ToolCalled,
    ToolResulted,
    UnknownLine,
    UsageReported,
    UserPrompted,
)
from streams.errors import ConfigError
from tests.factories import T0, session_event

pytestmark = pytest.mark.unit

POLICY = FilterPolicy(summary_chars=10)


def filtered(payload: EventPayload, policy: FilterPolicy = POLICY) -> EventPayload:
    [out] = decide(policy, session_event(payload))
    return out.payload


def test_the_defaults() -> None:
    policy = FilterPolicy()
    assert policy.summary_chars == 280
    assert {kind: policy.mode_for(kind).value for kind in (
        "tool.resulted", "tool.called", "user.prompted", "assistant.message", "system.event",
        "line.unknown", "usage.reported", "session.titled")} == {
        "tool.resulted": "summary", "tool.called": "summary", "user.prompted": "full",
        "assistant.message": "full", "system.event": "summary", "line.unknown": "omit",
        "usage.reported": "full", "session.titled": "full"}


def test_summary_truncates_a_tool_result_with_a_marker_and_sets_truncated() -> None:
    result = filtered(ToolResulted(tool_use_id="t1", content="0123456789" * 5, is_error=True))
    assert result == ToolResulted(tool_use_id="t1", is_error=True, truncated=True,
                                  content="0123456789… [truncated 40 chars]")


def test_summary_leaves_content_that_the_marker_would_not_shorten() -> None:
    for text in ("short", "0123456789", "0123456789" * 3):  # 30 chars: 10 + marker is longer
        source = session_event(ToolResulted(tool_use_id="t1", content=text))
        assert decide(POLICY, source) == [source]
        assert decide(POLICY, source)[0] is source


def test_summary_truncates_every_long_string_of_a_tool_input() -> None:
    called = ToolCalled(tool_use_id="t1", name="MultiEdit", message_key="m1", input={
        "file_path": "/a.py", "limit": 2000,
        "edits": [{"old_string": "x" * 100, "new_string": "short"}],
    })
    assert filtered(called).input == {
        "file_path": "/a.py", "limit": 2000,
        "edits": [{"old_string": "xxxxxxxxxx… [truncated 90 chars]", "new_string": "short"}],
    }
    assert filtered(called).name == "MultiEdit"


def test_omit_keeps_the_event_and_replaces_its_content_with_a_marker() -> None:
    policy = FilterPolicy.from_mapping({"user.prompted": "omit", "tool.called": "OMIT",
                                        "tool.resulted": "omit", "system.event": "omit"})
    assert filtered(UserPrompted(text="secret plan", line_uuid="u1"), policy) == UserPrompted(
        text="[omitted 11 chars]", truncated=True, line_uuid="u1")
    assert filtered(ToolCalled(tool_use_id="t1", name="Bash", input={"command": "ls"}),
                    policy) == ToolCalled(tool_use_id="t1", name="Bash", input={})
    assert filtered(ToolResulted(tool_use_id="t1", content=""), policy) == ToolResulted(
        tool_use_id="t1", content="")  # nothing to omit: untouched, not flagged
    assert filtered(SystemEvent(subtype="x", content="abc"), policy) == SystemEvent(
        subtype="x", content="[omitted 3 chars]")


def test_unknown_lines_are_omitted_by_default() -> None:
    assert filtered(UnknownLine(line_type="new", raw='{"type":"new"}'),
                    FilterPolicy()) == UnknownLine(line_type="new", raw="[omitted 14 chars]")


def test_full_and_kinds_without_content_pass_unchanged() -> None:
    usage = session_event(UsageReported(message_key="m1", model="claude-opus-4-6", output_tokens=5))
    assert decide(POLICY, usage)[0] is usage
    message = session_event(AssistantMessage(message_key="m1", text="a long assistant answer"))
    assert decide(POLICY, message)[0] is message


def test_the_event_keeps_its_identity_and_envelope() -> None:
    source = session_event(ToolResulted(tool_use_id="t1", content="y" * 500), event_id="f" * 32)
    [out] = decide(POLICY, source)
    assert (out.event_id, out.type, out.session_id, out.occurred_at, out.source) == (
        "f" * 32, "tool.resulted", "s1", T0, "claude-code")
    assert out.payload.content == "yyyyyyyyyy… [truncated 490 chars]"
    assert source.payload.content == "y" * 500  # the input event is not mutated


def test_a_partial_works_as_a_flow_decide() -> None:
    flow_decide = functools.partial(decide, FilterPolicy(summary_chars=3))
    [out] = flow_decide(session_event(ToolResulted(
        tool_use_id="t1", content="abcdefghijklmnopqrstuvwxyz0123456789")))
    assert out.payload.content == "abc… [truncated 33 chars]"


def test_from_mapping_overrides_only_what_it_names() -> None:
    policy = FilterPolicy.from_mapping({"tool.resulted": " Full "}, summary_chars=50)
    assert policy.mode_for("tool.resulted") is ContentMode.FULL
    assert policy.mode_for("tool.called") is ContentMode.SUMMARY
    assert policy.summary_chars == 50


@pytest.mark.parametrize(("mapping", "message"), [
    ({"tool.result": "omit"}, "unknown event kind 'tool.result'"),
    ({"tool.resulted": "hide"}, "kind 'tool.resulted' has mode 'hide'; expected full, summary "
                                "or omit"),
    ({"usage.reported": "omit"}, "kind 'usage.reported' carries no content to omit"),
])
def test_from_mapping_names_the_bad_kind_or_mode(mapping: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        FilterPolicy.from_mapping(mapping)


def test_a_negative_summary_length_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="summary_chars must be >= 0, got -1"):
        FilterPolicy(summary_chars=-1)
