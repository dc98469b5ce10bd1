"""The Kimi CLI source: ``KimiCliProducer`` (roots per OS and override, names, sub-agent files)
and ``agents.parsers.kimi_cli.decide`` (wire records, token mapping, traps) on
tests/samples/kimi-cli.

Events are built as the producer builds them and the projection's rules replayed in miniature
(largest usage per ``(session, message_key)``, one tool call per id, one message fragment per
``line_uuid``); the per-session oracles are the README's hand-computed totals.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.parsers.kimi_cli import decide, time_of
from schemas.events import SessionEvent, UsageReported
from schemas.file_changes import FileChanged, FileLine, file_line_event, file_removed_event
from streams.errors import InvalidEvent
from streams.producers.kimi_cli import KimiCliProducer

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "kimi-cli"
WORKDIR = SAMPLES / "sessions" / "3f2a9c4e8b1d7a6c5e0f1b2a3c4d5e6f"
MAIN_ID = "a7c3e9f1-2b4d-4e6a-8c0b-0000c1d2e3f4"
FORK_ID = "e1b5d7a3-6c8e-4f0a-9b2d-0000d2e3f4a5"
SUB_ID = "explore00e5f6a7"
MAIN = WORKDIR / MAIN_ID / "wire.jsonl"
SUB = WORKDIR / MAIN_ID / "subagents" / SUB_ID / "wire.jsonl"
FORK = WORKDIR / FORK_ID / "wire.jsonl"
MTIME = datetime(2026, 4, 2, 12, 0, tzinfo=UTC)


async def _unused(events: list[FileChanged]) -> None:
    raise AssertionError("describe() only")


PRODUCER = KimiCliProducer([SAMPLES / "sessions"], Path("unused.json"), _unused)


def line_events(path: Path) -> list[FileChanged]:
    data = path.read_bytes()
    session_id, kind, agent_id = PRODUCER.describe(path, None)
    events, offset = [], 0
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            line = FileLine(path=str(path), offset=offset, line_no=line_no, line=raw.decode(),
                            mtime=MTIME, file_kind=kind, agent_id=agent_id)
            events.append(file_line_event("kimi-cli", session_id, line))
        offset += len(raw) + 1
    return events


def decide_all(*paths: Path) -> list[SessionEvent]:
    return [out for path in paths for event in line_events(path) for out in decide(event)]


def payloads(events: list[SessionEvent], kind: str) -> list:
    return [e.payload for e in events if e.type == kind]


def kept_usage(events: list[SessionEvent]) -> dict[tuple[str, str], UsageReported]:
    best: dict[tuple[str, str], UsageReported] = {}
    for event in events:
        p = event.payload
        if p.kind == "usage.reported":
            key = (event.session_id, p.message_key)
            if key not in best or p.total > best[key].total:
                best[key] = p
    return best


# --- producer -------------------------------------------------------------------------------


def test_default_roots_per_os_and_override():
    assert KimiCliProducer.default_roots({"HOME": "/home/me"}) == [Path("/home/me/.kimi/sessions")]
    assert KimiCliProducer.default_roots({"HOME": "/Users/me"}) == [
        Path("/Users/me/.kimi/sessions")]
    windows = {"USERPROFILE": "C:\\Users\\me", "LOCALAPPDATA": "C:\\Users\\me\\AppData\\Local"}
    assert KimiCliProducer.default_roots(windows) == [Path("C:\\Users\\me") / ".kimi" / "sessions"]
    assert KimiCliProducer.default_roots({"HOME": "/h", "KIMI_SHARE_DIR": "/srv/kimi"}) == [
        Path("/srv/kimi/sessions")]


def test_matches_claims_and_describe():
    assert PRODUCER.matches(MAIN) and PRODUCER.matches(SUB)
    for skipped in (WORKDIR / MAIN_ID / "context.jsonl", WORKDIR / MAIN_ID / "context_1.jsonl",
                    WORKDIR / MAIN_ID / "state.json", SUB.parent / "meta.json"):
        assert not PRODUCER.matches(skipped), skipped
    assert KimiCliProducer.claims(SAMPLES) and KimiCliProducer.claims(WORKDIR / MAIN_ID)
    assert not KimiCliProducer.claims(SAMPLES.parent / "gemini")
    assert PRODUCER.describe(MAIN, None) == (MAIN_ID, "main", None)
    assert PRODUCER.describe(SUB, None) == (MAIN_ID, "subagent", SUB_ID)


# --- parser ---------------------------------------------------------------------------------


def test_token_usage_is_already_disjoint_and_keyed_by_message_id():
    by_key = {k: u for (_, k), u in kept_usage(decide_all(MAIN)).items()}
    last = by_key["chatcmpl-04000000f6a7"]
    assert (last.input_tokens, last.cache_read_tokens, last.cache_creation_5m_tokens,
            last.output_tokens, last.model) == (500, 2000, 100, 40, None)
    assert last.timestamp == datetime.fromtimestamp(1775124022.1, UTC)


def test_session_totals_equal_the_hand_computed_ones():
    kept = kept_usage(decide_all(MAIN, SUB))
    totals = [sum(getattr(u, f) for u in kept.values()) for f in (
        "input_tokens", "cache_read_tokens", "output_tokens", "cache_creation_5m_tokens")]
    assert totals == [3900, 29900, 580, 100]
    assert sum(u.total for u in kept.values()) == 34480
    assert {e.session_id for e in decide_all(MAIN, SUB)} == {MAIN_ID}


def test_the_subagent_echo_and_its_own_log_land_on_the_same_keys():
    echo, own = decide_all(MAIN), decide_all(SUB)

    def keys(events: list[SessionEvent], kind: str, field: str) -> set:
        return {getattr(p, field) for p in payloads(events, kind) if p.agent_id == SUB_ID}

    for kind, field in (("usage.reported", "message_key"), ("tool.called", "tool_use_id"),
                        ("assistant.message", "line_uuid"), ("user.prompted", "line_uuid")):
        assert keys(echo, kind, field) == keys(own, kind, field) != set(), kind
    both = kept_usage(echo + own)
    assert len(both) == len(kept_usage(echo)) == 6  # 4 main steps + 2 sub-agent steps
    links = {(p.child_agent_id, p.tool_use_id) for p in payloads(echo + own, "subagent.linked")}
    assert links == {(SUB_ID, "tool_a1"), (SUB_ID, None)}


def test_prompts_replies_tools_files_and_compaction():
    events = decide_all(MAIN, SUB)
    main_prompts = [p.text for p in payloads(events, "user.prompted") if p.agent_id is None]
    assert main_prompts == ["Add a --verbose flag to cli.py"]
    calls = {p.tool_use_id: p.name for p in payloads(events, "tool.called")}
    assert calls == {"tool_r1": "ReadFile", "tool_e1": "StrReplaceFile", "tool_a1": "Agent",
                     "tool_g1": "Glob"}
    errors = {p.tool_use_id: p.content for p in payloads(events, "tool.resulted") if p.is_error}
    assert errors == {"tool_e1": "No replacements were made: old string not found."}
    assert {(p.path, p.access) for p in payloads(events, "file.touched")} == {
        ("src/cli.py", "read"), ("src/cli.py", "write")}
    thinking = [p.text for p in payloads(events, "assistant.message") if p.block_type == "thinking"]
    assert thinking == ["Check the argparse setup first."]
    assert len(payloads(events, "session.compacted")) == 1
    (context,) = [p for p in payloads(events, "session.context") if p.project]
    assert context.project == WORKDIR.name


def test_a_fork_copies_lines_byte_for_byte_onto_the_same_keys():
    origin, fork = decide_all(MAIN), decide_all(FORK)
    origin_keys = {k for _, k in kept_usage(origin)}
    fork_keys = {k for _, k in kept_usage(fork)}
    assert fork_keys - origin_keys == {"chatcmpl-05000000a7b8"}
    copied = {p.line_uuid for p in payloads(fork, "assistant.message")} & {
        p.line_uuid for p in payloads(origin, "assistant.message")}
    assert len(copied) == 4  # think, two texts of the main agent, one of the sub-agent
    assert {e.session_id for e in fork} == {FORK_ID}


def test_unknown_silent_and_malformed_records():
    events = decide_all(MAIN)
    assert [p.line_type for p in payloads(events, "line.unknown")] == ["FutureEvent"]
    line = FileLine(path=str(MAIN), offset=0, line_no=1, line="[1, 2", mtime=MTIME)
    with pytest.raises(InvalidEvent):
        decide(file_line_event("kimi-cli", MAIN_ID, line))
    removed = decide(file_removed_event("kimi-cli", MAIN_ID, FileLine(
        path=str(MAIN), offset=0, line_no=1, mtime=MTIME)))
    assert [e.type for e in removed] == ["session.file_removed"]
    assert time_of({"timestamp": True}) is None and time_of({"timestamp": "x"}) is None


def test_decide_is_deterministic():
    assert [e.event_id for e in decide_all(MAIN)] == [e.event_id for e in decide_all(MAIN)]
    record = json.loads(MAIN.read_text().splitlines()[6])
    assert record["message"]["type"] == "StatusUpdate"
