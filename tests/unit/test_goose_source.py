"""The goose source: ``GooseProducer`` (roots per OS and ``GOOSE_PATH_ROOT``, names, database
records with their cursor, legacy files tailed) and the ``goose`` parser (session usage, content
keys, tool calls and results), on the hand-written samples in tests/samples/goose.

Events are published by the producer itself (a scan into a list) and the projection's rules are
replayed in miniature (largest usage per ``(session, message_key)``). The token oracle is read
from the sample database independently of the parser: the ``accumulated_*`` columns.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agents.parsers.goose import decide
from app.demo_commands import build_databases
from schemas.events import UsageReported
from schemas.file_changes import FileChanged, FileLine, file_line_event
from streams.errors import InvalidEvent
from streams.producers import goose as goose_module
from streams.producers.goose import GooseProducer

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "goose"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text())
MAIN, LEGACY, SUB = "20261118_10000001", "readme-20261117", "20261118_10000002"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The sample session folder with ``sessions.db`` built from its script."""
    target = tmp_path / "sessions"
    shutil.copytree(SAMPLES / "sessions", target)
    build_databases(target)
    return target


class Collector:
    def __init__(self) -> None:
        self.events: list[FileChanged] = []

    async def __call__(self, events: list[FileChanged]) -> None:
        self.events.extend(events)


def decided(events: list[FileChanged]) -> list[Any]:
    """The events ``decide`` gives, typed loosely (tests read the kind they filtered on)."""
    return [out for event in events for out in decide(event)]


def kept_usage(events: list[Any]) -> dict[tuple[str, str], UsageReported]:
    """The projection's rule: the largest report per (session, message_key)."""
    best: dict[tuple[str, str], UsageReported] = {}
    for event in events:
        p = event.payload
        if isinstance(p, UsageReported):
            key = (event.session_id, p.message_key)
            if key not in best or p.total > best[key].total:
                best[key] = p
    return best


def record(obj: dict, session: str = "s1") -> FileChanged:
    line = FileLine(path="/g/sessions/sessions.db", offset=0, line_no=1, line=json.dumps(obj),
                    mtime=datetime(2026, 11, 18, tzinfo=UTC))
    return file_line_event("goose", session, line)


# --- producer -------------------------------------------------------------------------------


def test_default_roots_per_os_and_overrides(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(goose_module.sys, "platform", "linux")
    assert GooseProducer.default_roots({"HOME": str(tmp_path)}) == [
        tmp_path / ".local" / "share" / "goose" / "sessions"]
    assert GooseProducer.default_roots({"HOME": "/h", "XDG_DATA_HOME": str(tmp_path)}) == [
        tmp_path / "goose" / "sessions"]
    windows = {"APPDATA": str(tmp_path / "Roaming"), "USERPROFILE": str(tmp_path)}
    assert GooseProducer.default_roots(windows) == [
        tmp_path / "Roaming" / "Block" / "goose" / "data" / "sessions"]
    override = {"HOME": "/h", "GOOSE_PATH_ROOT": str(tmp_path / "g")}
    assert GooseProducer.default_roots(override) == [tmp_path / "g" / "data" / "sessions"]
    relative = {"HOME": str(tmp_path), "GOOSE_PATH_ROOT": "relative/root"}  # goose ignores it
    assert GooseProducer.default_roots(relative) == GooseProducer.default_roots(
        {"HOME": str(tmp_path)})


def test_macos_uses_the_xdg_layout_like_linux(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(goose_module.sys, "platform", "darwin")
    assert GooseProducer.default_roots({"HOME": str(tmp_path)}) == [
        tmp_path / ".local" / "share" / "goose" / "sessions"]


def test_claims_matches_prune_and_describe(root: Path, tmp_path: Path) -> None:
    assert GooseProducer.claims(root)
    only_legacy = tmp_path / "old"
    only_legacy.mkdir()
    shutil.copy(root / f"{LEGACY}.jsonl", only_legacy)
    assert GooseProducer.claims(only_legacy)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.jsonl").write_text('{"type": "user"}\n')
    assert not GooseProducer.claims(tmp_path / "other")
    producer = GooseProducer([root], tmp_path / "c.json", Collector())
    assert producer.matches(root / "sessions.db")
    assert producer.matches(root / f"{LEGACY}.jsonl")
    assert not producer.matches(root / "backups" / "sessions.db")
    assert not producer.matches(root / "sessions.db-wal")
    dirs = ["backups"]
    producer.prune(root, dirs)
    assert dirs == []
    assert producer.describe(root / f"{LEGACY}.jsonl", None) == (LEGACY, "main", None)
    assert producer.records(root / f"{LEGACY}.jsonl", None) is None  # tailed, not records


def test_database_records_and_the_cursor(root: Path) -> None:
    producer = GooseProducer([root], root / "c.json", Collector())
    first = producer.records(root / "sessions.db", None)
    assert first is not None
    records, cursor = first
    assert len(records) == 3 + 14
    session = json.loads(next(r for r in records if r.key == f"session:{MAIN}").text)
    assert session["model_config"]["model_name"] == "claude-sonnet-4-5"
    assert "extension_data" not in session
    again = producer.records(root / "sessions.db", cursor)
    assert again is not None and again[0] == []  # nothing changed, nothing read again
    conn = sqlite3.connect(root / "sessions.db")
    conn.execute("UPDATE sessions SET accumulated_input_tokens = 25000, "
                 "updated_at = '2026-11-18 09:30:00' WHERE id = ?", (MAIN,))
    conn.execute("INSERT INTO messages (session_id, role, content_json, created_timestamp) "
                 "VALUES (?, 'user', '[{\"type\":\"text\",\"text\":\"thanks\"}]', 1795061000)",
                 (MAIN,))
    conn.commit()
    conn.close()
    later = producer.records(root / "sessions.db", again[1])
    assert later is not None
    assert sorted(r.key for r in later[0]) == ["message:15", f"session:{MAIN}"]


def test_a_replaced_conversation_lands_on_the_same_keys(root: Path) -> None:
    producer = GooseProducer([root], root / "c.json", Collector())
    first = producer.records(root / "sessions.db", None)
    assert first is not None
    conn = sqlite3.connect(root / "sessions.db")  # goose's replace_conversation
    rows = conn.execute("SELECT session_id, role, content_json, created_timestamp, "
                        "metadata_json FROM messages WHERE session_id = ?", (MAIN,)).fetchall()
    conn.execute("DELETE FROM messages WHERE session_id = ?", (MAIN,))
    conn.executemany("INSERT INTO messages (session_id, role, content_json, created_timestamp, "
                     "metadata_json) VALUES (?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    second = producer.records(root / "sessions.db", first[1])
    assert second is not None and len(second[0]) == len(rows)

    def keys(records: list) -> set[tuple[str, str]]:
        events = decided([record(json.loads(r.text), r.session_id) for r in records])
        return {(e.type, e.payload.line_uuid) for e in events}

    old = [r for r in first[0] if r.session_id == MAIN and r.key.startswith("message:")]
    assert keys(second[0]) == keys(old)


# --- parser ---------------------------------------------------------------------------------


def test_session_usage_is_the_accumulated_counters_not_the_last_call() -> None:
    row = {"_table": "sessions", "id": "s1", "working_dir": "/w", "name": "n",
           "input_tokens": 900, "output_tokens": 90, "total_tokens": 990,
           "accumulated_input_tokens": 5000, "accumulated_output_tokens": 600,
           "accumulated_total_tokens": 5600, "model_config": {"model_name": "gpt-5"}}
    [usage] = [e.payload for e in decided([record(row)]) if e.type == "usage.reported"]
    assert (usage.message_key, usage.input_tokens, usage.output_tokens, usage.model) == (
        "session:s1", 5000, 600, "gpt-5")
    assert usage.cache_read_tokens == 0 and usage.total == 5600
    old = {k: v for k, v in row.items() if not k.startswith("accumulated")}
    [last] = [e.payload for e in decided([record(old)]) if e.type == "usage.reported"]
    assert (last.input_tokens, last.output_tokens) == (900, 90)  # all an old session has


def test_tool_results_errors_files_and_meta_text() -> None:
    request = {"type": "toolRequest", "id": "t1", "toolCall": {"status": "success", "value": {
        "name": "developer__text_editor", "arguments": {"command": "write", "path": "/w/a.py"}}}}
    failed = {"type": "toolResponse", "id": "t1",
              "toolResult": {"status": "error", "error": "denied"}}
    hidden = {"role": "user", "created": 5, "content": [{"type": "text", "text": "summary"}],
              "metadata": {"userVisible": False, "agentVisible": True}}
    out = decided([record({"role": "assistant", "created": 3, "content": [request]}),
                   record({"role": "user", "created": 4, "content": [failed]}),
                   record(hidden)])
    touched = [e.payload for e in out if e.type == "file.touched"]
    assert [(t.path, t.access) for t in touched] == [("/w/a.py", "write")]
    [result] = [e.payload for e in out if e.type == "tool.resulted"]
    assert (result.is_error, result.content) == (True, "denied")
    [prompt] = [e.payload for e in out if e.type == "user.prompted"]
    assert prompt.is_meta


def test_unknown_records_and_bad_json() -> None:
    assert [e.type for e in decide(record({"_table": "threads", "id": "x"}))] == ["line.unknown"]
    bad = record({}).model_copy(update={"payload": FileLine(
        path="/g/sessions/a.jsonl", offset=0, line_no=2, line="{not json",
        mtime=datetime.now(UTC))})
    with pytest.raises(InvalidEvent):
        decide(bad)


# --- the samples, end to end ----------------------------------------------------------------


async def scan(root: Path, tmp_path: Path) -> tuple[GooseProducer, list[Any]]:
    sink = Collector()
    producer = GooseProducer([root], tmp_path / "checkpoint.json", sink)
    await producer.scan_once()
    return producer, decided(sink.events)


async def test_the_samples_give_the_hand_computed_totals(root: Path, tmp_path: Path) -> None:
    producer, out = await scan(root, tmp_path)
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (session, _), u in kept_usage(out).items():
        totals[session]["input_tokens"] += u.input_tokens
        totals[session]["output_tokens"] += u.output_tokens
        totals[session]["cache_read_tokens"] += u.cache_read_tokens
        totals[session]["cache_creation_tokens"] += u.cache_creation_5m_tokens
        totals[session]["total_tokens"] += u.total
    conn = sqlite3.connect(root / "sessions.db")
    oracle = {sid: (i, o) for sid, i, o in conn.execute(
        "SELECT id, accumulated_input_tokens, accumulated_output_tokens FROM sessions")}
    conn.close()
    for session, want in EXPECTED["sessions"].items():
        assert dict(totals[session]) == {k: v for k, v in want.items() if k.endswith("_tokens")}
        assert oracle[session] == (want["input_tokens"], want["output_tokens"])
    assert await producer.scan_once() == 0


async def test_the_samples_give_the_hand_computed_counts(root: Path, tmp_path: Path) -> None:
    _, out = await scan(root, tmp_path)
    for session, want in EXPECTED["sessions"].items():
        mine = [e for e in out if e.session_id == session]
        calls = {e.payload.tool_use_id for e in mine if e.type == "tool.called"}
        errors = {e.payload.tool_use_id for e in mine
                  if e.type == "tool.resulted" and e.payload.is_error}
        prompts = {e.payload.line_uuid for e in mine
                   if e.type == "user.prompted" and not e.payload.is_meta}
        files = {e.payload.path for e in mine if e.type == "file.touched"}
        assert (len(calls), len(errors), len(prompts), len(files)) == (
            want["tool_calls"], want["tool_errors"], want["prompts"], want["files_touched"])


async def test_a_rewritten_legacy_file_lands_on_the_same_keys(root: Path,
                                                              tmp_path: Path) -> None:
    """goose rewrites the legacy file whole (metadata first): every offset moves."""
    sink = Collector()
    producer = GooseProducer([root], tmp_path / "checkpoint.json", sink)
    await producer.scan_once()
    legacy = root / f"{LEGACY}.jsonl"
    before = {(e.type, e.payload.line_uuid) for e in decided(
        [ev for ev in sink.events if ev.payload.path == str(legacy)]) if e.payload.line_uuid}
    lines = legacy.read_text().splitlines()
    meta = json.loads(lines[0])
    meta["accumulated_input_tokens"] += 100000  # a longer first line
    legacy.write_text("\n".join([json.dumps(meta), *lines[1:]]) + "\n")
    sink.events.clear()
    await producer.scan_once()
    after = decided(sink.events)
    assert {(e.type, e.payload.line_uuid) for e in after if e.payload.line_uuid} == before
    assert kept_usage(after)[(LEGACY, f"session:{LEGACY}")].input_tokens == 105200
