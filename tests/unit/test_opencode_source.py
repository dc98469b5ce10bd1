"""The OpenCode source: ``OpenCodeProducer`` (roots, names, database and legacy records) and the
``opencode`` parser (every record kind and trap), on the hand-written samples in
tests/samples/opencode.

Events are published by the producer itself (a scan into a list), and the projection's rules
are replayed in miniature (largest usage per ``(session, message_key)``), so what is checked is
what the tables will hold. The token oracle is read from the sample database independently of
the parser: the raw ``tokens`` of each assistant message.
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

from agents.parsers.opencode import decide
from app.demo_commands import build_databases
from schemas.events import SessionEvent, UsageReported
from schemas.file_changes import FileChanged, FileLine, file_line_event
from streams.errors import InvalidEvent
from streams.producers.opencode import OpenCodeProducer

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "opencode"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text())
MAIN, SUB, NOTES = "ses_checkout_c0ffee01", "ses_subtask_c0ffee02", "ses_notes_c0ffee03"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The sample data directory with ``opencode.db`` built from its script."""
    target = tmp_path / "opencode"
    shutil.copytree(SAMPLES / "opencode", target)
    build_databases(target)
    return target


class Collector:
    def __init__(self) -> None:
        self.events: list[FileChanged] = []

    async def __call__(self, events: list[FileChanged]) -> None:
        self.events.extend(events)


async def scanned(root: Path, tmp_path: Path) -> tuple[OpenCodeProducer, Collector]:
    sink = Collector()
    producer = OpenCodeProducer([root], tmp_path / "checkpoint.json", sink)
    await producer.scan_once()
    return producer, sink


def decided(events: list[FileChanged]) -> list[Any]:
    """The events ``decide`` gives for ``events``, in order (typed loosely: tests read the
    fields of whichever payload kind they filtered on)."""
    return [out for event in events for out in decide(event)]


def kept_usage(events: list[SessionEvent] | list[Any]) -> dict[tuple[str, str], UsageReported]:
    """The projection's rule: the largest report per (session, message_key)."""
    best: dict[tuple[str, str], UsageReported] = {}
    for event in events:
        p = event.payload
        if isinstance(p, UsageReported):
            key = (event.session_id, p.message_key)
            if key not in best or p.total > best[key].total:
                best[key] = p
    return best


def record(obj: dict, agent_id: str | None = None) -> FileChanged:
    line = FileLine(path="/d/opencode/opencode.db", offset=0, line_no=1, line=json.dumps(obj),
                    mtime=datetime(2026, 11, 18, tzinfo=UTC),
                    file_kind="subagent" if agent_id else "main", agent_id=agent_id)
    return file_line_event("opencode", "ses_x", line)


# --- producer -------------------------------------------------------------------------------


def test_default_root_is_the_xdg_data_dir_on_every_os(tmp_path: Path) -> None:
    assert OpenCodeProducer.default_roots({"HOME": str(tmp_path)}) == [
        tmp_path / ".local" / "share" / "opencode"]
    assert OpenCodeProducer.default_roots(
        {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "xdg")}) == [
        tmp_path / "xdg" / "opencode"]
    windows = {"USERPROFILE": str(tmp_path / "Users" / "ann"), "APPDATA": "C:/x"}
    assert OpenCodeProducer.default_roots(windows) == [
        tmp_path / "Users" / "ann" / ".local" / "share" / "opencode"]


def test_an_absolute_opencode_db_adds_its_folder(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "OPENCODE_DB": str(tmp_path / "elsewhere" / "mine.db")}
    assert OpenCodeProducer.default_roots(env)[1] == tmp_path / "elsewhere"
    relative = {"HOME": str(tmp_path), "OPENCODE_DB": "other.db"}
    assert len(OpenCodeProducer.default_roots(relative)) == 1  # inside the data dir


def test_claims_matches_prune_and_describe(root: Path, tmp_path: Path) -> None:
    assert OpenCodeProducer.claims(root)
    assert not OpenCodeProducer.claims(tmp_path / "nothing")
    producer = OpenCodeProducer([root], tmp_path / "c.json", Collector())
    assert producer.matches(root / "opencode.db")
    assert producer.matches(root / "opencode-dev.db")
    assert producer.matches(root / "storage" / "part" / "msg_1" / "prt_1.json")
    assert not producer.matches(root / "storage" / "project" / "prj_1.json")
    assert not producer.matches(root / "opencode.db-wal")
    dirs = ["storage", "snapshot", "log", "bin"]
    producer.prune(root, dirs)
    assert dirs == ["storage"]
    dirs = ["session", "message", "part", "project", "session_diff", "todo"]
    producer.prune(root / "storage", dirs)
    assert dirs == ["session", "message", "part"]
    message = root / "storage" / "message" / NOTES / "msg_nu_c0ffee31.json"
    assert producer.describe(message, None) == (NOTES, "main", None)


def test_database_records_rebuild_the_legacy_objects_and_file_sub_agents(root: Path) -> None:
    producer = OpenCodeProducer([root], root / "c.json", Collector())
    records, cursor = producer.records(root / "opencode.db", None)
    assert len(records) == 3 + 8 + 21
    by_key = {r.key: r for r in records}
    part = json.loads(by_key["part:prt_a1read_c0ffee45"].text)
    assert part["messageID"] == "msg_a1_c0ffee12" and part["sessionID"] == MAIN
    assert (part["_role"], part["_model"]) == ("assistant", "claude-sonnet-4-5")
    child = by_key["message:msg_ca_c0ffee22"]
    assert (child.session_id, child.file_kind, child.agent_id) == (MAIN, "subagent", SUB)
    assert by_key["session:" + NOTES].session_id == NOTES
    part_times = [r.at.timestamp() * 1000 for r in records
                  if r.key.startswith("part:") and r.at is not None]
    assert json.loads(cursor or "{}")["part"] == max(part_times)


def test_the_cursor_reads_only_rows_updated_since_and_a_rewrite_is_a_new_version(
        root: Path) -> None:
    producer = OpenCodeProducer([root], root / "c.json", Collector())
    first, cursor = producer.records(root / "opencode.db", None)
    again, same = producer.records(root / "opencode.db", cursor)
    assert again and len(again) < 5  # only the rows at the highest times (>=), same versions
    assert {(r.key, r.version) for r in again} <= {(r.key, r.version) for r in first}
    conn = sqlite3.connect(root / "opencode.db")  # a streaming text part grows
    conn.execute("UPDATE part SET data = json_set(data, '$.text', 'Fixed, with a test.'), "
                 "time_updated = time_updated + 100000000 WHERE id = 'prt_a1text_c0ffee47'")
    conn.commit()
    conn.close()
    grown, _ = producer.records(root / "opencode.db", same)
    new = [r for r in grown if (r.key, r.version) not in {(a.key, a.version) for a in again}]
    assert [r.key for r in new] == ["part:prt_a1text_c0ffee47"]
    old = next(r for r in first if r.key == "part:prt_a1text_c0ffee47")
    assert new[0].version != old.version
    assert json.loads(new[0].text)["text"] == "Fixed, with a test."


def test_a_legacy_part_carries_its_messages_role_and_model(root: Path) -> None:
    producer = OpenCodeProducer([root], root / "c.json", Collector())
    path = root / "storage" / "part" / "msg_na_c0ffee32" / "prt_nawrite_c0ffee63.json"
    records, cursor = producer.records(path, None)
    assert cursor is None and len(records) == 1
    obj = json.loads(records[0].text)
    assert (obj["_role"], obj["_model"]) == ("assistant", "qwen3-coder-480b")
    assert records[0].session_id == NOTES


def test_a_half_written_legacy_file_is_retried_not_published(root: Path) -> None:
    producer = OpenCodeProducer([root], root / "c.json", Collector())
    path = root / "storage" / "part" / "msg_x" / "prt_x.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"id": "prt_x", "messageID": ')
    with pytest.raises(ValueError):
        producer.records(path, None)


# --- parser ---------------------------------------------------------------------------------


def test_message_tokens_and_step_finish_are_one_step() -> None:
    tokens = {"input": 10, "output": 5, "reasoning": 2, "cache": {"read": 100, "write": 7}}
    message = {"id": "msg_1", "sessionID": "ses_x", "role": "assistant", "modelID": "gpt-5",
               "tokens": tokens, "time": {"created": 1795000000000}}
    step = {"id": "prt_9", "messageID": "msg_1", "type": "step-finish", "tokens": tokens,
            "_role": "assistant", "_model": "gpt-5"}
    usage = kept_usage(decided([record(message), record(step)]))
    assert list(usage) == [("ses_x", "msg_1")]
    kept = usage[("ses_x", "msg_1")]
    assert (kept.input_tokens, kept.output_tokens, kept.cache_read_tokens,
            kept.cache_creation_5m_tokens, kept.model) == (10, 7, 100, 7, "gpt-5")


def test_a_total_that_holds_reasoning_inside_output_is_not_added_twice() -> None:
    inside = {"total": 115, "input": 10, "output": 5, "reasoning": 3,
              "cache": {"read": 100, "write": 0}}
    message = {"id": "msg_2", "role": "assistant", "tokens": inside}
    [usage] = [e.payload for e in decided([record(message)]) if e.type == "usage.reported"]
    assert usage.output_tokens == 5 and usage.total == 115


def test_prompts_meta_text_tool_errors_and_sub_agent_links() -> None:
    typed = {"id": "p1", "messageID": "m1", "type": "text", "text": "hi", "_role": "user"}
    injected = {**typed, "id": "p2", "synthetic": True}
    failed = {"id": "p3", "messageID": "m2", "type": "tool", "callID": "c1", "tool": "bash",
              "_role": "assistant", "state": {"status": "error", "input": {"command": "x"},
                                              "error": "exit 1"}}
    running = {**failed, "id": "p4", "callID": "c2", "tool": "task",
               "state": {"status": "running", "input": {}, "metadata": {"sessionId": "ses_c"}}}
    out = decided([record(typed), record(injected), record(failed), record(running)])
    prompts = [e.payload for e in out if e.type == "user.prompted"]
    assert [(p.text, p.is_meta) for p in prompts] == [("hi", False), ("hi", True)]
    results = [e.payload for e in out if e.type == "tool.resulted"]
    assert [(r.tool_use_id, r.is_error, r.content) for r in results] == [("c1", True, "exit 1")]
    links = [e.payload for e in out if e.type == "subagent.linked"]
    assert [(link.child_agent_id, link.tool_use_id) for link in links] == [("ses_c", "c2")]


def test_sessions_default_titles_and_sub_agent_sessions() -> None:
    fresh = {"id": "ses_x", "projectID": "p", "directory": "/w",
             "title": "New session - 2026-11-18T10:00:00.000Z"}
    assert [e.type for e in decide(record(fresh))] == ["session.context"]
    named = [e.payload for e in decided([record({**fresh, "title": "Fix it"})])]
    assert named[1].title == "Fix it"
    child = [e.payload for e in decided([record({**fresh, "parentID": "ses_p"}, "ses_c")])]
    assert [(p.kind, p.child_agent_id) for p in child] == [("subagent.linked", "ses_c")]


def test_unknown_records_and_parts_are_kept_and_bad_json_is_invalid() -> None:
    unknown = decided([record({"id": "p", "messageID": "m", "type": "hologram"})])
    assert [e.payload.line_type for e in unknown] == ["part/hologram"]
    assert [e.type for e in decide(record({"what": 1}))] == ["line.unknown"]
    assert decide(record({"id": "p", "messageID": "m", "type": "step-start"})) == []
    bad = record({}).model_copy(update={"payload": FileLine(
        path="/d/x.db", offset=0, line_no=1, line="{not json", mtime=datetime.now(UTC))})
    with pytest.raises(InvalidEvent):
        decide(bad)


def test_decide_is_deterministic(root: Path) -> None:
    producer = OpenCodeProducer([root], root / "c.json", Collector())
    records, _ = producer.records(root / "opencode.db", None)
    event = record(json.loads(records[10].text))
    assert decide(event) == decide(event)


# --- the samples, end to end ----------------------------------------------------------------


def raw_tokens(root: Path) -> dict[str, dict[str, int]]:
    """Per root session, the raw assistant ``tokens`` summed, read straight from the db."""
    conn = sqlite3.connect(root / "opencode.db")
    parents = dict(conn.execute("SELECT id, parent_id FROM session"))
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for session, data in conn.execute("SELECT session_id, data FROM message"):
        message = json.loads(data)
        tokens = message.get("tokens") or {}
        owner = parents.get(session) or session
        sums[owner]["input_tokens"] += tokens.get("input", 0)
        sums[owner]["output_tokens"] += tokens.get("output", 0) + tokens.get("reasoning", 0)
        sums[owner]["cache_read_tokens"] += tokens.get("cache", {}).get("read", 0)
        sums[owner]["cache_creation_tokens"] += tokens.get("cache", {}).get("write", 0)
    conn.close()
    return sums


async def test_the_samples_give_the_hand_computed_totals(root: Path, tmp_path: Path) -> None:
    producer, sink = await scanned(root, tmp_path)
    out = decided(sink.events)
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (session, _), u in kept_usage(out).items():
        for column, value in (("input_tokens", u.input_tokens), ("output_tokens", u.output_tokens),
                              ("cache_read_tokens", u.cache_read_tokens),
                              ("cache_creation_tokens", u.cache_creation_5m_tokens),
                              ("total_tokens", u.total)):
            totals[session][column] += value
    oracle = raw_tokens(root)
    for session, want in EXPECTED["sessions"].items():
        tokens = {k: v for k, v in want.items() if k.endswith("_tokens")}
        assert dict(totals[session]) == tokens, session
        assert {k: oracle[session][k] for k in tokens if k != "total_tokens"} == {
            k: v for k, v in tokens.items() if k != "total_tokens"}
    assert set(totals) == set(EXPECTED["sessions"])  # the sub-agent is filed under its root
    before = {e.event_id for e in sink.events}
    await producer.scan_once()  # nothing changed: a re-read publishes no new event
    assert {e.event_id for e in sink.events} == before


async def test_the_samples_give_the_hand_computed_counts(root: Path, tmp_path: Path) -> None:
    _, sink = await scanned(root, tmp_path)
    out = decided(sink.events)
    for session, want in EXPECTED["sessions"].items():
        mine = [e for e in out if e.session_id == session]
        calls = {e.payload.tool_use_id for e in mine if e.type == "tool.called"}
        errors = {e.payload.tool_use_id for e in mine
                  if e.type == "tool.resulted" and e.payload.is_error}
        prompts = {e.payload.line_uuid for e in mine if e.type == "user.prompted"
                   and not e.payload.is_meta and e.payload.agent_id is None}
        files = {e.payload.path for e in mine if e.type == "file.touched"}
        agents = {e.payload.agent_id for e in mine if e.payload.agent_id}
        assert (len(calls), len(errors), len(prompts), len(files), len(agents)) == (
            want["tool_calls"], want["tool_errors"], want["prompts"], want["files_touched"],
            want["subagents"]), session
