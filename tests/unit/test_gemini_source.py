"""The Gemini CLI source: ``GeminiProducer`` (roots, names, sessions, whole-file snapshots of
legacy chats) and ``parse_gemini_lines.decide`` (every record kind and trap), on the
hand-written samples in tests/samples/gemini.

Events are built the way the producer builds them (sessions from ``GeminiProducer.describe``),
and the projection's rules are replayed here in miniature (largest usage per
``(session, message_key)``; assistant fragments merged per ``message_key``, later ones
overwriting the same ``line_uuid``), so what is checked is what the tables will hold. Token
oracles are the raw ``tokens`` of the last write per message id, read from the samples here.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.parsers.gemini import decide, derive_snapshot
from schemas.events import SessionEvent, UsageReported
from schemas.file_changes import (
    FileChanged,
    FileLine,
    file_line_event,
    file_removed_event,
    file_snapshot_event,
)
from streams.errors import InvalidEvent
from streams.producers.gemini import GeminiProducer
from tests.factories import Collector

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "gemini"
TMP = SAMPLES / "tmp"
PROJECT = TMP / "5a1e0c3b7d2f4e6a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a"
LEGACY_PROJECT = TMP / "0c9b8a7f6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a2918070f6e5d4c3"
MAIN_ID = "7f3c2a10-5b6d-4e8f-9a01-23456789abcd"
SUB_ID = "c41d9e22-8a7b-4c6d-9e0f-112233445566"
LEGACY_ID = "2b9e4d71-0c3a-4f5e-8d6b-7a8c9e0f1a2b"
MAIN = PROJECT / "chats" / "session-2026-03-10T09-00-7f3c2a10.jsonl"
SUB = PROJECT / "chats" / MAIN_ID / f"{SUB_ID}.jsonl"
LEGACY = LEGACY_PROJECT / "chats" / "session-2025-11-20T14-30-2b9e4d71.json"
RESUMED = LEGACY_PROJECT / "chats" / "session-2025-11-20T14-30-2b9e4d71.jsonl"
MTIME = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


async def _unused_publish(events: list[FileChanged]) -> None:
    raise AssertionError("describe() only")


PRODUCER = GeminiProducer([TMP], Path("unused-checkpoint.json"), _unused_publish)


# --- driving decide() the way the producer would -------------------------------------------


def line_events(path: Path) -> list[FileChanged]:
    """One file-changes event per non-empty line with its byte offset, session from describe."""
    data = path.read_bytes()
    session_id, kind, agent_id = PRODUCER.describe(path, data.split(b"\n", 1)[0].decode())
    events, offset = [], 0
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            line = FileLine(path=str(path), offset=offset, line_no=line_no, line=raw.decode(),
                            mtime=MTIME, file_kind=kind, agent_id=agent_id)
            events.append(file_line_event("gemini-cli", session_id, line))
        offset += len(raw) + 1
    return events


def snapshot_event(path: Path, text: str | None = None, truncated: bool = False) -> FileChanged:
    text = path.read_text() if text is None else text
    session_id, kind, agent_id = PRODUCER.describe(path, text.partition("\n")[0])
    line = FileLine(path=str(path), offset=0, line_no=1, line=text, mtime=MTIME, file_kind=kind,
                    agent_id=agent_id, truncated=truncated)
    return file_snapshot_event("gemini-cli", session_id, line)


def inline_event(*records: dict | str, path: str = "/g/tmp/h/chats/session-x.jsonl",
                 agent_id: str | None = None) -> list[FileChanged]:
    events, offset = [], 0
    for line_no, record in enumerate(records, start=1):
        text = record if isinstance(record, str) else json.dumps(record)
        line = FileLine(path=path, offset=offset, line_no=line_no, line=text, mtime=MTIME,
                        file_kind="subagent" if agent_id else "main", agent_id=agent_id)
        events.append(file_line_event("gemini-cli", "s-inline", line))
        offset += len(text) + 1
    return events


def decide_all(events: list[FileChanged]) -> list[SessionEvent]:
    return [out for event in events for out in decide(event)]


def payloads(events: list[SessionEvent], kind: str) -> list:
    return [e.payload for e in events if e.type == kind]


def kept_usage(events: list[SessionEvent]) -> dict[tuple[str, str], UsageReported]:
    """The projection's rule: the largest report per (session, message_key)."""
    best: dict[tuple[str, str], UsageReported] = {}
    for event in events:
        p = event.payload
        if p.kind == "usage.reported":
            key = (event.session_id, p.message_key)
            if key not in best or p.total > best[key].total:
                best[key] = p
    return best


def last_tokens(*paths: Path) -> dict[str, dict]:
    """The raw ``tokens`` of the last write of each gemini message id, read independently of
    the parser from jsonl lines (legacy .json files: their ``messages[]``)."""
    last: dict[str, dict] = {}
    for path in paths:
        if path.suffix == ".json":
            records = json.loads(path.read_text())["messages"]
        else:
            records = [json.loads(line) for line in path.read_text().splitlines() if line]
        for record in records:
            if record.get("type") == "gemini" and record.get("tokens"):
                last[record["id"]] = record["tokens"]
    return last


def merged_fragments(events: list[SessionEvent]) -> dict[str, dict[str, tuple[str, str]]]:
    """Assistant fragments per message_key, later writes of a line_uuid overwriting earlier
    ones (the projection's ``content || EXCLUDED.content``)."""
    merged: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
    for p in payloads(events, "assistant.message"):
        merged[p.message_key][p.line_uuid] = (p.block_type, p.text)
    return merged


# --- producer -------------------------------------------------------------------------------


def test_default_roots_follow_gemini_cli_home():
    assert GeminiProducer.default_roots({"GEMINI_CLI_HOME": "/opt/g"}) == [
        Path("/opt/g/.gemini/tmp")]
    assert GeminiProducer.default_roots({"HOME": "/home/me"}) == [Path("/home/me/.gemini/tmp")]


def test_matches_chats_and_subagent_recordings_only():
    chats = Path("/h/.gemini/tmp/abc/chats")
    assert PRODUCER.matches(chats / "session-2026-03-10T09-00-7f3c2a10.jsonl")
    assert PRODUCER.matches(chats / "session-2025-11-20T14-30-2b9e4d71.json")
    assert PRODUCER.matches(chats / MAIN_ID / f"{SUB_ID}.jsonl")
    for skipped in (chats / "checkpoint-before-fix.json", chats.parent / "logs.json",
                    chats / "session-x.jsonl.tmp-4242", chats / "session-x.jsonl.unreadable-1",
                    chats.parent / "session-x.jsonl", chats / "notes.jsonl",
                    chats.parent / "tool-outputs" / "session-x" / "out.jsonl"):
        assert not PRODUCER.matches(skipped), skipped
    assert PRODUCER.snapshot(chats / "session-2025-11-20T14-30-2b9e4d71.json")
    assert not PRODUCER.snapshot(chats / "session-2026-03-10T09-00-7f3c2a10.jsonl")


def test_claims_a_tree_holding_chat_sessions(tmp_path):
    assert GeminiProducer.claims(TMP)
    assert GeminiProducer.claims(SAMPLES)
    assert GeminiProducer.claims(PROJECT / "chats")
    only_checkpoint = tmp_path / "tmp" / "h" / "chats"
    only_checkpoint.mkdir(parents=True)
    (only_checkpoint / "checkpoint-a.json").write_text("{}")
    assert not GeminiProducer.claims(tmp_path)


def test_describe_takes_the_full_session_id_from_the_content():
    assert PRODUCER.describe(MAIN, MAIN.read_text().partition("\n")[0]) == (MAIN_ID, "main", None)
    # A pretty-printed legacy chat's first line is "{": the id is read from its head.
    assert PRODUCER.describe(LEGACY, "{") == (LEGACY_ID, "main", None)
    one_line = json.dumps({"sessionId": "one-line-id", "messages": []})
    assert PRODUCER.describe(LEGACY, one_line) == ("one-line-id", "main", None)
    gone = Path("/nowhere/chats/session-2025-11-20T14-30-2b9e4d71.json")
    assert PRODUCER.describe(gone, "{") == ("2b9e4d71", "main", None)
    assert PRODUCER.describe(gone, None) == ("2b9e4d71", "main", None)
    assert PRODUCER.describe(Path("/x/chats/session-odd.jsonl"), "junk") == (
        "odd", "main", None)
    assert PRODUCER.describe(SUB, SUB.read_text().partition("\n")[0]) == (
        MAIN_ID, "subagent", SUB_ID)
    assert PRODUCER.describe(SUB, None) == (MAIN_ID, "subagent", SUB_ID)


async def test_scan_publishes_lines_and_legacy_chats_whole(tmp_path):
    root = tmp_path / "tmp"
    shutil.copytree(TMP, root)
    collector = Collector()
    producer = GeminiProducer([root], tmp_path / "state" / "gemini.json", collector)
    legacy = root / LEGACY.relative_to(TMP)

    await producer.scan_once()
    by_path: dict[str, list[FileChanged]] = defaultdict(list)
    for event in collector.events:
        by_path[event.payload.path].append(event)
    expected = {str(root / p.relative_to(TMP)) for p in (MAIN, SUB, LEGACY, RESUMED)}
    assert set(by_path) == expected  # no checkpoint-*.json, no logs.json
    (snap,) = by_path[str(legacy)]
    assert (snap.type, snap.session_id, snap.payload.line) == (
        "file.snapshot", LEGACY_ID, legacy.read_text())
    resumed = by_path[str(root / RESUMED.relative_to(TMP))]
    assert {e.session_id for e in resumed} == {LEGACY_ID}
    assert len(resumed) == len(RESUMED.read_text().splitlines())
    sub = by_path[str(root / SUB.relative_to(TMP))]
    assert {(e.session_id, e.payload.file_kind, e.payload.agent_id) for e in sub} == {
        (MAIN_ID, "subagent", SUB_ID)}

    collector.events.clear()
    assert await producer.scan_once() == 0  # unchanged: nothing again, not even the snapshot
    assert collector.events == []

    chat = json.loads(legacy.read_text())
    chat["messages"].append({"id": "l-u3", "timestamp": "2025-11-20T14:32:00.000Z",
                             "type": "user", "content": "And a license"})
    legacy.write_text(json.dumps(chat, indent=2))
    os.utime(legacy, (1_900_000_000, 1_900_000_000))
    assert await producer.scan_once() == 1
    (again,) = collector.events
    assert (again.type, again.session_id, again.payload.line) == (
        "file.snapshot", LEGACY_ID, legacy.read_text())
    assert again.event_id != snap.event_id


# --- parser: the jsonl traps ----------------------------------------------------------------


def test_metadata_and_set_give_context_and_title():
    events = decide_all(line_events(MAIN))
    (context,) = payloads(events, "session.context")
    assert (context.project, context.cwd, context.agent_id) == (PROJECT.name, None, None)
    (title,) = payloads(events, "session.titled")
    assert (title.title, title.title_source) == ("Fix the divide-by-zero test in calc.py",
                                                 "summary")
    assert payloads(events, "session.state") == []  # kind "main" is the default
    assert {e.session_id for e in events} == {MAIN_ID}


def test_a_rewritten_message_lands_on_the_same_keys_and_the_last_write_wins():
    events = decide_all(line_events(MAIN))
    g1 = [p for p in payloads(events, "assistant.message") if p.message_key == "g1-0001"]
    assert len(g1) == 6  # three writes, each a text and a thinking fragment
    assert {p.line_uuid for p in g1} == {"g1-0001", "g1-0001:thoughts"}
    calls = [p for p in payloads(events, "tool.called") if p.message_key == "g1-0001"]
    assert {p.tool_use_id for p in calls} == {"read_file-1773133209000-a1"} and len(calls) == 3
    merged = merged_fragments(events)["g1-0001"]
    assert merged["g1-0001"] == ("text", "The divide function does not guard against zero.")
    assert merged["g1-0001:thoughts"] == (
        "thinking", "Locating the test: Read calc.py before changing anything.")

    usage = [p for p in payloads(events, "usage.reported") if p.message_key == "g1-0001"]
    assert [u.total for u in usage] == [12130, 12240]  # tokens only grow: largest == last
    kept = kept_usage(events)
    tokens = last_tokens(MAIN)
    assert {key: u.total for (_, key), u in kept.items()} == {
        key: t["total"] for key, t in tokens.items()}
    assert sum(u.total for u in kept.values()) == 43810
    assert sum(u.total for u in payloads(events, "usage.reported")) == 43810 + 12130


def test_usage_buckets_are_disjoint_and_sum_to_tokens_total():
    events = decide_all(line_events(MAIN))
    by_key = {u.message_key: u for u in kept_usage(events).values()}
    g2 = by_key["g2-0001"]  # input 15000 incl. 12000 cached, tool 300, output 200
    assert (g2.input_tokens, g2.cache_read_tokens, g2.output_tokens) == (3300, 12000, 200)
    g1 = by_key["g1-0001"]  # thoughts 90 are billed as output
    assert (g1.input_tokens, g1.cache_read_tokens, g1.output_tokens) == (4000, 8000, 240)
    assert (g1.model, by_key["g3-0001"].model) == ("gemini-2.5-pro", "gemini-2.5-flash")
    for line in MAIN.read_text().splitlines():
        record = json.loads(line)
        if record.get("tokens"):
            (event,) = [e for e in line_events(MAIN) if e.payload.line == line]
            (usage,) = payloads(decide(event), "usage.reported")
            assert usage.total == record["tokens"]["total"]
            assert usage.cache_creation_5m_tokens == usage.cache_creation_1h_tokens == 0


def test_cached_above_input_is_clamped_and_a_missing_model_is_unpriced():
    record = {"id": "m", "type": "gemini", "content": "x",
              "tokens": {"input": 100, "cached": 500, "output": 7, "total": 107}}
    (usage,) = payloads(decide_all(inline_event(record)), "usage.reported")
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (0, 100, 7)
    assert usage.model is None  # consumers bill it via SessionModels, never at $0
    empty = {"id": "n", "type": "gemini", "content": "", "tokens": None}
    assert payloads(decide_all(inline_event(empty)), "usage.reported") == []


def test_tool_calls_results_and_files():
    events = decide_all(line_events(MAIN))
    results = {p.tool_use_id: p for p in payloads(events, "tool.resulted")}
    assert set(results) == {"read_file-1773133209000-a1", "replace-1773133220000-b2",
                            "read_many_files-1773133221000-c3", "write_file-1773133222000-d4"}
    read = results["read_file-1773133209000-a1"]  # empty resultDisplay: the function output
    assert (read.is_error, read.content) == (False, "def divide(a, b):\n    return a / b\n")
    failed = results["replace-1773133220000-b2"]
    assert failed.is_error
    assert failed.content == "Error: Failed to edit, could not find the string to replace."
    assert results["write_file-1773133222000-d4"].is_error  # cancelled
    assert not results["read_many_files-1773133221000-c3"].is_error
    executing = [p for p in payloads(events, "tool.resulted")
                 if p.tool_use_id == "read_file-1773133209000-a1"]
    assert len(executing) == 1  # the two "executing" writes report no result

    (replace,) = [p for p in payloads(events, "tool.called") if p.name == "replace"]
    assert (replace.message_key, replace.input["file_path"]) == ("g2-0001",
                                                                 "/home/dev/calc/calc.py")
    touched = {(p.path, p.tool, p.access) for p in payloads(events, "file.touched")}
    assert touched == {("/home/dev/calc/calc.py", "read_file", "read"),
                       ("/home/dev/calc/calc.py", "replace", "write"),
                       ("tests/test_calc.py", "read_many_files", "read"),  # the glob is skipped
                       ("/home/dev/calc/NOTES.md", "write_file", "write")}


def test_prompts_prefer_what_the_user_typed():
    events = decide_all(line_events(MAIN))
    prompts = {p.line_uuid: p for p in payloads(events, "user.prompted")}
    assert prompts["u1-0001"].text == "Fix the failing test in calc.py"
    assert prompts["u2-0001"].text == "Explain @calc.py"  # not the expanded file content
    assert not any(p.is_meta for p in prompts.values())
    (slash,) = payloads(decide_all(inline_event(
        {"id": "c", "type": "user", "content": "/stats"})), "user.prompted")
    assert slash.is_meta


def test_rewind_targets_the_message_and_notices_are_system_events():
    events = decide_all(line_events(MAIN))
    (rewind,) = payloads(events, "session.rewound")
    assert rewind.to_message_key == "u2-0001"
    # The projection deletes from the target on: the prompt is keyed user:<line_uuid>.
    assert "u2-0001" in {p.line_uuid for p in payloads(events, "user.prompted")}
    notices = [(p.subtype, p.content) for p in payloads(events, "system.event")]
    assert notices == [("info", "Model switched to gemini-2.5-flash"),
                       ("warning", "Loop detected; stopping this turn.")]
    assert payloads(events, "line.unknown") == []


def test_unknown_records_are_kept():
    events = decide_all(inline_event({"id": "x", "type": "compression", "content": ""},
                                     {"something": "else"}))
    assert [p.line_type for p in payloads(events, "line.unknown")] == [
        "message/compression", None]
    assert all(p.raw for p in payloads(events, "line.unknown"))


def test_a_subagent_recording_is_a_child_of_its_parent():
    events = decide_all(line_events(SUB))
    assert {e.session_id for e in events} == {MAIN_ID}
    assert {e.payload.agent_id for e in events} == {SUB_ID}
    (link,) = payloads(events, "subagent.linked")
    assert link.child_agent_id == SUB_ID
    assert payloads(events, "session.state") == []  # the parent session is not a sub-agent
    (usage,) = payloads(events, "usage.reported")
    assert usage.total == last_tokens(SUB)["sg1-0001"]["total"] == 4040
    rewind = decide_all(inline_event({"$rewindTo": "su1-0001"}, agent_id=SUB_ID))
    assert [(e.type, e.payload.to_message_key, e.payload.agent_id) for e in rewind] == [
        ("session.rewound", "su1-0001", SUB_ID)]


def test_a_subagent_recording_read_on_its_own_reports_its_type():
    meta = SUB.read_text().partition("\n")[0]
    (state,) = payloads(decide_all(inline_event(meta)), "session.state")
    assert (state.facet, state.session_type) == ("metadata", "subagent")
    (context,) = payloads(decide_all(inline_event(meta)), "session.context")
    assert context.cwd == "/home/dev/calc"


# --- parser: legacy single-JSON chats ----------------------------------------------------------


def test_a_legacy_chat_is_derived_whole():
    events = decide(snapshot_event(LEGACY))
    assert {e.session_id for e in events} == {LEGACY_ID}
    assert [p.title for p in payloads(events, "session.titled")] == [
        "Add a README for the notes app"]
    assert [p.text for p in payloads(events, "user.prompted")] == ["Write a short README"]
    assert merged_fragments(events)["l-g1"] == {
        "l-g1": ("text", "Wrote README.md."),
        "l-g1:thoughts": ("thinking", "Scope: Keep it to install and usage.")}
    (result,) = payloads(events, "tool.resulted")
    assert result.content.startswith("--- README.md\n+++ README.md")
    assert [(p.path, p.access) for p in payloads(events, "file.touched")] == [
        ("/home/dev/notes/README.md", "write")]
    (usage,) = payloads(events, "usage.reported")
    assert usage.total == last_tokens(LEGACY)["l-g1"]["total"]
    assert [(p.subtype, p.content) for p in payloads(events, "system.event")] == [
        ("error", "Quota exceeded; try again later.")]
    assert decide(snapshot_event(LEGACY)) == events  # deterministic ids


def test_a_resumed_legacy_chat_and_its_jsonl_count_once():
    events = decide(snapshot_event(LEGACY)) + decide_all(line_events(RESUMED))
    assert {e.session_id for e in events} == {LEGACY_ID}
    kept = kept_usage(events)
    assert {key: u.total for (_, key), u in kept.items()} == {
        key: t["total"] for key, t in last_tokens(LEGACY, RESUMED).items()}
    assert sum(u.total for u in kept.values()) == 20260
    prompts = {p.line_uuid for p in payloads(events, "user.prompted")}
    assert prompts == {"l-u1", "l-u2"}


def test_bad_input_is_an_invalid_event_naming_the_file_and_line():
    good, bad = inline_event({"id": "a", "type": "user", "content": "hi"}, '{"id": "b", "ty')
    assert decide(good)
    with pytest.raises(InvalidEvent, match=r"session-x\.jsonl line 2: not JSON"):
        decide(bad)
    with pytest.raises(InvalidEvent, match=r"line 1: not a JSON object"):
        decide(inline_event("[1, 2]")[0])
    with pytest.raises(InvalidEvent, match=rf"{LEGACY.name} line 1: not JSON"):
        decide(snapshot_event(LEGACY, text=LEGACY.read_text()[:200]))
    with pytest.raises(InvalidEvent, match=rf"{LEGACY.name} line 1: legacy chat cut"):
        derive_snapshot(snapshot_event(LEGACY, truncated=True))


def test_a_removed_file_is_reported():
    line = FileLine(path=str(MAIN), offset=0, line_no=1, mtime=MTIME)
    (event,) = decide(file_removed_event("gemini-cli", MAIN_ID, line))
    assert (event.type, event.payload.path, event.session_id) == (
        "session.file_removed", str(MAIN), MAIN_ID)
