"""The Cursor source: ``CursorProducer`` (roots per OS and override, names, the chat store read
as records) and ``agents.parsers.cursor.decide`` (store blobs and transcript lines, and the trap
of one chat written both ways), on the hand-written samples in tests/samples/cursor.

The chat store is built from its committed ``store.db.sql`` into ``tmp_path``. The projection's
rules are replayed in miniature (prompts per line_uuid, tool calls per tool_use_id, files per
path, sub-agents per id), so what is checked is what the tables will hold.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agents.parsers.cursor import decide
from app.demo_commands import build_databases
from schemas.events import SessionEvent
from schemas.file_changes import FileChanged, FileLine, file_line_event
from streams.errors import InvalidEvent
from streams.producers.cursor import CursorProducer, cursor_home, tree_children
from streams.producers.file_events import record_event
from tests.factories import Collector

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "cursor"
HOME = SAMPLES / ".cursor"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text())
CHAT_ID = "6a1f2e3d-4c5b-4a69-8778-96a5b4c3d201"
FLAT_ID = "7b2a3f4e-5d6c-4b7a-9889-a7b6c5d4e302"
SUB_ID = "8c3b4a5f-6e7d-4c8b-9a90-b8c7d6e5f403"
STORE_SQL = HOME / "chats" / "11e9fe063b91149eb10c6daf331adfaa" / CHAT_ID / "store.db.sql"
TRANSCRIPTS = HOME / "projects" / "home-dev-shop" / "agent-transcripts" / CHAT_ID
NESTED = TRANSCRIPTS / f"{CHAT_ID}.jsonl"
SUB = TRANSCRIPTS / "subagents" / f"{SUB_ID}.jsonl"
FLAT = HOME / "projects" / "home-dev-tools" / "agent-transcripts" / f"{FLAT_ID}.jsonl"
MTIME = datetime(2026, 3, 19, 10, 0, tzinfo=UTC)


async def _unused_publish(events: list[FileChanged]) -> None:
    raise AssertionError("not published")


PRODUCER = CursorProducer([HOME], Path("unused-checkpoint.json"), _unused_publish)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The sample tree with every ``X.sql`` run into the SQLite database ``X``."""
    target = tmp_path / ".cursor"
    shutil.copytree(HOME, target)
    build_databases(target)
    return target


def store_of(home: Path) -> Path:
    return home / STORE_SQL.relative_to(HOME).with_suffix("")


def store_events(store: Path) -> list[FileChanged]:
    read = PRODUCER.records(store, None)
    assert read is not None
    return [record_event("cursor", str(store), 0.0, r, n) for n, r in enumerate(read[0], 1)]


def line_events(path: Path) -> list[FileChanged]:
    text = path.read_text()
    session_id, kind, agent_id = PRODUCER.describe(path, text.partition("\n")[0])
    events, offset = [], 0
    for line_no, raw in enumerate(text.split("\n"), start=1):
        if raw.strip():
            line = FileLine(path=str(path), offset=offset, line_no=line_no, line=raw,
                            mtime=MTIME, file_kind=kind, agent_id=agent_id)
            events.append(file_line_event("cursor", session_id, line))
        offset += len(raw.encode()) + 1
    return events


def decide_all(events: list[FileChanged]) -> list[SessionEvent]:
    return [out for event in events for out in decide(event)]


def payloads(events: list[SessionEvent], kind: str) -> list[Any]:
    return [e.payload for e in events if e.type == kind]


def projected(events: list[SessionEvent]) -> dict[str, dict[str, Any]]:
    calls: dict[str, dict[str, bool]] = defaultdict(dict)
    prompts, files, subagents = defaultdict(set), defaultdict(set), defaultdict(set)
    for event in events:
        p, s = event.payload, event.session_id
        if p.kind == "tool.called":
            calls[s].setdefault(p.tool_use_id, False)
        elif p.kind == "tool.resulted":
            calls[s][p.tool_use_id] = p.is_error
        elif p.kind == "user.prompted" and not p.is_meta and p.agent_id is None:
            prompts[s].add(p.line_uuid or event.event_id)
        elif p.kind == "file.touched":
            files[s].add(p.path)
        elif p.kind == "subagent.linked":
            subagents[s].add(p.child_agent_id)
    tokens = {e.session_id for e in events if e.type == "usage.reported"}
    assert tokens == set()  # Cursor writes no usage to disk
    return {s: {"tool_calls": len(calls[s]), "tool_errors": sum(calls[s].values()),
                "prompts": len(prompts[s]), "files_touched": len(files[s]),
                "subagents": len(subagents[s]), "input_tokens": 0, "output_tokens": 0,
                "cache_read_tokens": 0, "cache_creation_tokens": 0, "total_tokens": 0}
            for s in {e.session_id for e in events}}


# --- producer -------------------------------------------------------------------------------


def test_default_roots_per_os_and_the_overrides():
    assert CursorProducer.default_roots({"HOME": "/home/me"}) == [
        Path("/home/me/.cursor/chats"), Path("/home/me/.cursor/projects")]
    assert CursorProducer.default_roots({"HOME": "/h", "CURSOR_CONFIG_DIR": "/opt/cur"}) == [
        Path("/opt/cur/chats"), Path("/opt/cur/projects")]
    assert CursorProducer.default_roots({"HOME": "/h", "XDG_CONFIG_HOME": "/h/.config"})[2:] == [
        Path("/h/.config/cursor/chats"), Path("/h/.config/cursor/projects")]
    assert cursor_home({"USERPROFILE": "C:/Users/me"}, "win32") == Path("C:/Users/me/.cursor")
    assert cursor_home({"HOME": "/Users/me"}, "darwin") == Path("/Users/me/.cursor")


def test_matches_stores_and_jsonl_transcripts_only():
    chats, projects = Path("/h/.cursor/chats/abc"), Path("/h/.cursor/projects/p")
    assert PRODUCER.matches(chats / CHAT_ID / "store.db")
    assert PRODUCER.matches(projects / "agent-transcripts" / f"{FLAT_ID}.jsonl")
    assert PRODUCER.matches(projects / "agent-transcripts" / CHAT_ID / f"{CHAT_ID}.jsonl")
    assert PRODUCER.matches(projects / "agent-transcripts" / CHAT_ID / "subagents" / "s.jsonl")
    for skipped in (chats / CHAT_ID / "store.db-wal", chats / "store.db",
                    projects / "agent-transcripts" / f"{FLAT_ID}.txt",
                    projects / "agent-transcripts" / CHAT_ID / "other.jsonl",
                    projects / "terminals" / "1.txt", Path("/h/.cursor/prompt_history.json")):
        assert not PRODUCER.matches(skipped), skipped


def test_claims_prune_and_describe(tmp_path):
    assert CursorProducer.claims(HOME) and CursorProducer.claims(HOME / "projects")
    assert not CursorProducer.claims(tmp_path)
    dirs = ["chats", "projects", "extensions", "ai-tracking"]
    PRODUCER.prune(HOME, dirs)
    assert dirs == ["chats", "projects"]
    inside = ["agent-transcripts", "terminals", "mcps"]
    PRODUCER.prune(HOME / "projects" / "home-dev-shop", inside)
    assert inside == ["agent-transcripts"]
    assert PRODUCER.describe(NESTED, None) == (CHAT_ID, "main", None)
    assert PRODUCER.describe(FLAT, None) == (FLAT_ID, "main", None)
    assert PRODUCER.describe(SUB, None) == (CHAT_ID, "subagent", SUB_ID)
    assert PRODUCER.describe(STORE_SQL.with_suffix(""), None) == (CHAT_ID, "main", None)


def test_records_follow_the_latest_root_and_resume_from_the_cursor(home):
    store = store_of(home)
    read = PRODUCER.records(store, None)
    assert read is not None
    records, cursor = read
    assert [r.key for r in records][0] == "meta"
    messages = [json.loads(r.text)["message"] for r in records[1:]]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant",
                                             "tool", "assistant", "tool", "assistant", "user",
                                             "assistant"]
    assert not any("Bag" in r.text for r in records)  # the rewound branch is not reachable
    assert {r.session_id for r in records} == {CHAT_ID}
    assert all(r.version == r.key for r in records[1:])  # content addressed
    assert PRODUCER.records(store, cursor) == ([], cursor)
    assert PRODUCER.records(NESTED, None) is None


def test_tree_children_reads_field_one_and_stops_at_garbage():
    a, b = bytes(range(32)), bytes(range(1, 33))
    blob = b"\x0a\x20" + a + b"\x10\x05" + b"\x4a\x03abc" + b"\x0a\x20" + b
    assert tree_children(blob) == [a.hex(), b.hex()]
    assert tree_children(b"\x0a\x20" + a + b"\x0f\xff") == [a.hex()]
    assert tree_children(b"") == []


async def test_scan_publishes_records_and_lines(home, tmp_path):
    collector = Collector()
    producer = CursorProducer([home / "chats", home / "projects"], tmp_path / "cp.json",
                              collector)
    await producer.scan_once()
    by_session = {e.session_id for e in collector.events}
    assert by_session == {CHAT_ID, FLAT_ID}
    assert not any(e.payload.path.endswith(".txt") for e in collector.events)
    collector.events.clear()
    assert await producer.scan_once() == 0


# --- parser ---------------------------------------------------------------------------------


def test_the_store_and_the_transcript_of_one_chat_meet_on_the_same_keys(home):
    store = decide_all(store_events(store_of(home)))
    transcript = decide_all(line_events(NESTED))
    key = lambda events, kind, attr: {getattr(p, attr) for p in payloads(events, kind)}  # noqa: E731
    assert key(transcript, "user.prompted", "line_uuid") == key(store, "user.prompted",
                                                                  "line_uuid")
    assert key(transcript, "tool.called", "tool_use_id") == key(store, "tool.called",
                                                                  "tool_use_id")
    assert key(transcript, "assistant.message", "message_key") == key(
        store, "assistant.message", "message_key")
    both = projected(store + transcript)[CHAT_ID]
    assert both["prompts"] == projected(store)[CHAT_ID]["prompts"] == 2


def test_prompts_drop_the_injected_context():
    events = decide_all(line_events(NESTED))
    assert [p.text for p in payloads(events, "user.prompted")] == [
        "Rename the Cart class to Basket", "Thanks"]
    first = payloads(events, "user.prompted")[0]
    assert first.timestamp == datetime(2026, 3, 19, 9, 0, 5, tzinfo=UTC)


def test_store_meta_model_title_reasoning_and_errors(home):
    events = decide_all(store_events(store_of(home)))
    (title,) = payloads(events, "session.titled")
    assert title.title == "Rename Cart to Basket"
    models = {c.model for c in payloads(events, "session.context") if c.model}
    assert models == {"claude-4.5-sonnet-thinking"}
    assert payloads(events, "session.context")[0].project == "11e9fe063b91149eb10c6daf331adfaa"
    thinking = [m for m in payloads(events, "assistant.message") if m.block_type == "thinking"]
    assert [t.text for t in thinking] == ["Read cart.ts before renaming."]
    errors = {r.tool_use_id: r.content for r in payloads(events, "tool.resulted") if r.is_error}
    assert errors == {"toolu_02GhIjKl": "Error: old_string not found"}
    assert {f.access for f in payloads(events, "file.touched")} == {"read", "write"}
    assert payloads(events, "usage.reported") == []


def test_a_subagent_transcript_is_linked_and_its_calls_are_its_own():
    events = decide_all(line_events(SUB))
    (link,) = payloads(events, "subagent.linked")
    assert link.child_agent_id == SUB_ID
    assert {e.session_id for e in events} == {CHAT_ID}
    (result,) = payloads(events, "tool.resulted")
    assert (result.tool_use_id, result.agent_id) == ("toolu_s1XyZ", SUB_ID)
    assert all(p.agent_id == SUB_ID for p in payloads(events, "user.prompted"))


def test_a_call_without_id_is_keyed_by_its_content_and_unknown_lines_are_kept():
    events = decide_all(line_events(FLAT))
    (call,) = payloads(events, "tool.called")
    assert call.tool_use_id.startswith("tool:") and call.input == {
        "path": "/home/dev/tools/utils.py"}
    assert decide_all(line_events(FLAT))[0].payload == events[0].payload  # deterministic
    (unknown,) = payloads(events, "line.unknown")
    assert unknown.line_type == "session_marker"


def test_bad_input_is_an_invalid_event():
    line = FileLine(path="/c/projects/p/agent-transcripts/x.jsonl", offset=0, line_no=3,
                    line="[1, 2]", mtime=MTIME)
    with pytest.raises(InvalidEvent, match="x.jsonl line 3"):
        decide(file_line_event("cursor", "x", line))


def test_per_session_totals_equal_the_hand_computed_ones(home):
    events = decide_all(store_events(store_of(home)) + line_events(NESTED) + line_events(SUB)
                        + line_events(FLAT))
    rows = projected(events)
    for session, want in EXPECTED["sessions"].items():
        assert rows[session] == want, session
