"""The Qwen Code source: ``QwenCodeProducer`` (roots per OS and overrides, names, sessions) and
``agents.parsers.qwen_code.decide`` (records, token mapping, traps) on tests/samples/qwen-code.

Events are built as the producer builds them and the projection's rules replayed in miniature
(largest usage per ``(session, message_key)``); the per-session oracles are the README's
hand-computed totals, and the token oracle per record is read from the samples here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.parsers.qwen_code import decide
from schemas.events import SessionEvent, UsageReported
from schemas.file_changes import FileChanged, FileLine, file_line_event
from streams.errors import InvalidEvent
from streams.producers.gemini import GeminiProducer
from streams.producers.qwen_code import QwenCodeProducer

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "qwen-code"
CHATS = SAMPLES / "projects" / "-home-dev-calc" / "chats"
MAIN_ID = "5b7e2c10-4d3a-4f6b-9c8d-00000a1b2c3d"
FORK_ID = "9d4f6a21-7c3e-4b1a-8e2f-00000b2c3d4e"
MAIN, FORK = CHATS / f"{MAIN_ID}.jsonl", CHATS / f"{FORK_ID}.jsonl"
MTIME = datetime(2026, 4, 2, 12, 0, tzinfo=UTC)


async def _unused(events: list[FileChanged]) -> None:
    raise AssertionError("describe() only")


PRODUCER = QwenCodeProducer([SAMPLES / "projects"], Path("unused.json"), _unused)


def line_events(path: Path) -> list[FileChanged]:
    data = path.read_bytes()
    session_id, kind, agent_id = PRODUCER.describe(path, data.split(b"\n", 1)[0].decode())
    events, offset = [], 0
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            line = FileLine(path=str(path), offset=offset, line_no=line_no, line=raw.decode(),
                            mtime=MTIME, file_kind=kind, agent_id=agent_id)
            events.append(file_line_event("qwen-code", session_id, line))
        offset += len(raw) + 1
    return events


def inline(*records: dict | str) -> list[SessionEvent]:
    out = []
    for n, record in enumerate(records, start=1):
        text = record if isinstance(record, str) else json.dumps(record)
        line = FileLine(path="/q/projects/p/chats/s.jsonl", offset=n * 1000, line_no=n,
                        line=text, mtime=MTIME)
        out.extend(decide(file_line_event("qwen-code", "s", line)))
    return out


def decide_all(path: Path) -> list[SessionEvent]:
    return [out for event in line_events(path) for out in decide(event)]


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


def test_default_roots_per_os_and_overrides():
    assert QwenCodeProducer.default_roots({"HOME": "/home/me"}) == [
        Path("/home/me/.qwen/projects")]
    assert QwenCodeProducer.default_roots({"HOME": "/Users/me"}) == [
        Path("/Users/me/.qwen/projects")]  # macOS: the same dot folder
    windows = {"USERPROFILE": "C:\\Users\\me", "APPDATA": "C:\\Users\\me\\AppData\\Roaming"}
    assert QwenCodeProducer.default_roots(windows) == [Path("C:\\Users\\me") / ".qwen" / "projects"]
    assert QwenCodeProducer.default_roots({"HOME": "/h", "QWEN_HOME": "/opt/qh"}) == [
        Path("/opt/qh/projects")]
    assert QwenCodeProducer.default_roots({"HOME": "/h", "QWEN_HOME": "~/alt"}) == [
        Path("/h/alt/projects")]
    both = {"HOME": "/h", "QWEN_HOME": "/opt/qh", "QWEN_RUNTIME_DIR": "/var/qr"}
    assert QwenCodeProducer.default_roots(both) == [Path("/var/qr/projects")]


def test_matches_chats_only_and_never_gemini_names():
    chats = Path("/h/.qwen/projects/-home-dev-calc/chats")
    assert PRODUCER.matches(chats / f"{MAIN_ID}.jsonl")
    assert PRODUCER.matches(chats / MAIN_ID / "explore-1.jsonl")
    for skipped in (chats / "session-2026-03-10T09-00-7f3c2a10.jsonl", chats / "x.json",
                    chats.parent / "notes.jsonl", chats / f"{MAIN_ID}.jsonl.tmp"):
        assert not PRODUCER.matches(skipped), skipped


def test_claims_are_disjoint_from_gemini(tmp_path):
    assert QwenCodeProducer.claims(SAMPLES)
    assert QwenCodeProducer.claims(CHATS)
    assert not GeminiProducer.claims(SAMPLES)
    gemini = tmp_path / "gemini" / "tmp" / "abc" / "chats"
    gemini.mkdir(parents=True)
    (gemini / "session-2026-03-10T09-00-7f3c2a10.jsonl").write_text("{}\n")
    assert GeminiProducer.claims(tmp_path / "gemini")
    assert not QwenCodeProducer.claims(tmp_path / "gemini")


def test_describe_names_the_session_and_nested_subagents():
    assert PRODUCER.describe(MAIN, None) == (MAIN_ID, "main", None)
    assert PRODUCER.describe(CHATS / MAIN_ID / "explore-1.jsonl", None) == (
        MAIN_ID, "subagent", "explore-1")


# --- parser ---------------------------------------------------------------------------------


def test_usage_maps_each_api_family_to_disjoint_buckets():
    by_key = {u.message_key: u for u in kept_usage(decide_all(MAIN)).values()}
    openai_style = by_key["q-a1-0000000003"]  # thoughts 120 already inside candidates 300
    assert (openai_style.input_tokens, openai_style.cache_read_tokens,
            openai_style.output_tokens) == (3000, 6000, 300)
    gemini_style = by_key["q-a3-0000000007"]  # total shows thoughts and toolUse on top
    assert (gemini_style.input_tokens, gemini_style.cache_read_tokens,
            gemini_style.output_tokens, gemini_style.model) == (2050, 8000, 300, "gemini-2.5-pro")
    for record in map(json.loads, MAIN.read_text().splitlines()):
        usage = record.get("usageMetadata")
        if usage:
            assert by_key[record["uuid"]].total == usage["totalTokenCount"]


def test_session_totals_equal_the_hand_computed_ones():
    kept = kept_usage(decide_all(MAIN))
    totals = [sum(getattr(u, f) for u in kept.values()) for f in (
        "input_tokens", "cache_read_tokens", "output_tokens", "cache_creation_5m_tokens")]
    assert totals == [8850, 43500, 950, 0]
    assert sum(u.total for u in kept.values()) == 53300


def test_ui_telemetry_repeats_tokens_and_is_not_counted():
    events = decide_all(MAIN)
    assert "q-s1-0000000002" not in {p.line_uuid for e in events for p in [e.payload]}
    assert len(payloads(events, "usage.reported")) == 6


def test_tool_calls_results_and_files():
    events = decide_all(MAIN)
    calls = {p.tool_use_id: p for p in payloads(events, "tool.called")}
    assert set(calls) == {"call_r1", "call_e1", "call_w1", "call_t1", "call_g1"}
    errors = {p.tool_use_id for p in payloads(events, "tool.resulted") if p.is_error}
    assert errors == {"call_e1"}
    touched = {(p.path, p.access) for p in payloads(events, "file.touched")}
    assert touched == {("/home/dev/calc/calc.py", "read"), ("/home/dev/calc/calc.py", "write"),
                       ("/home/dev/calc/test_calc.py", "write")}


def test_prompts_meta_title_compaction_and_thinking():
    events = decide_all(MAIN)
    prompts = [(p.text, p.is_meta, p.agent_id) for p in payloads(events, "user.prompted")]
    assert prompts == [("Fix the failing test in calc.py", False, None),
                       ("/compress", True, None), ("Find every test file", False, None),
                       ("List the test files", False, "explore-00c4d5e6")]
    (title,) = payloads(events, "session.titled")
    assert (title.title, title.title_source) == ("Fix calc divide-by-zero test", "ai")
    (compaction,) = payloads(events, "session.compacted")
    assert compaction.pre_tokens == 10540
    texts = {p.text for p in payloads(events, "assistant.message")}
    assert "Got it. Thanks for the additional context!" not in texts  # compressed history
    thinking = [p for p in payloads(events, "assistant.message") if p.block_type == "thinking"]
    assert [p.line_uuid for p in thinking] == ["q-a1-0000000003:thinking",
                                               "q-a3-0000000007:thinking"]
    (context, *_) = payloads(events, "session.context")
    assert (context.cwd, context.git_branch, context.project) == (
        "/home/dev/calc", "main", "-home-dev-calc")


def test_a_sidechain_subagent_is_linked_and_keeps_its_agent_id():
    events = decide_all(MAIN)
    links = {(p.child_agent_id, p.tool_use_id) for p in payloads(events, "subagent.linked")}
    assert links == {("explore-00c4d5e6", None), ("explore-00c4d5e6", "call_t1")}
    (glob,) = [p for p in payloads(events, "tool.called") if p.tool_use_id == "call_g1"]
    assert (glob.agent_id, glob.is_sidechain) == ("explore-00c4d5e6", True)
    models = {p.model for p in payloads(events, "session.context") if p.model}
    assert models == {"qwen3-coder-plus", "gemini-2.5-pro"}  # never the sub-agent's model


def test_a_branch_copy_declares_its_parent_and_keeps_the_keys():
    fork = decide_all(FORK)
    assert {e.session_id for e in fork} == {FORK_ID}
    assert {p.forked_from for p in payloads(fork, "session.context") if p.forked_from} == {
        MAIN_ID}
    parent_keys = {k for _, k in kept_usage(decide_all(MAIN))}
    fork_keys = {k for _, k in kept_usage(fork)}
    assert fork_keys & parent_keys == {"q-a1-0000000003"}  # the copied response
    own = [u for (_, k), u in kept_usage(fork).items() if k not in parent_keys]
    assert sum(u.total for u in own) == 9580


def test_rewind_unknown_and_malformed_lines():
    events = decide_all(MAIN)
    assert ("rewind" in {p.subtype for p in payloads(events, "system.event")})
    assert [p.line_type for p in payloads(events, "line.unknown")] == ["future_kind"]
    assert [p.line_type for p in payloads(inline({"no": "uuid"}), "line.unknown")] == [None]
    with pytest.raises(InvalidEvent):
        inline("{not json")


def test_decide_is_deterministic():
    first, second = decide_all(MAIN), decide_all(MAIN)
    assert [e.event_id for e in first] == [e.event_id for e in second]
