"""The Cline family: ``ClineProducer``, ``RooCodeProducer``, ``KiloCodeProducer`` (editor roots
per OS, names, records of rewritten task documents) and the one parser they share, on the
hand-written samples in tests/samples/cline, roo-code and kilo-code.

Events are built the way the base builds them from records, and the projection's rule is
replayed in miniature (the largest usage per ``(session, message_key)``), so the totals checked
against each sample's hand-computed ``expected.json`` are what the tables will hold.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agents.parsers.cline_family import decide
from agents.parsers.registry import registered
from schemas.events import SessionEvent, UsageReported
from schemas.file_changes import FileChanged, FileLine, file_line_event
from streams.errors import InvalidEvent
from streams.producers.cline_family import (
    ClineFamilyProducer,
    ClineProducer,
    KiloCodeProducer,
    RooCodeProducer,
    editor_user_dirs,
    task_records,
)
from streams.producers.records import Record, changed
from tests.factories import Collector

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
PRODUCERS: dict[str, type[ClineFamilyProducer]] = {
    "cline": ClineProducer, "roo-code": RooCodeProducer, "kilo-code": KiloCodeProducer}
MTIME = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def sample(source: str) -> tuple[dict[str, Any], Path]:
    expected = json.loads((SAMPLES / source / "expected.json").read_text())
    return expected, SAMPLES / source / expected["root"]


async def _unused(events: list[FileChanged]) -> None:
    raise AssertionError("not published")


def producer(source: str) -> ClineFamilyProducer:
    return PRODUCERS[source]([sample(source)[1]], Path("unused.json"), _unused)


def events_of(source: str, path: Path, records: list[Record]) -> list[FileChanged]:
    return [file_line_event(source, r.session_id, FileLine(
        path=str(path), offset=0, line_no=n, line=r.text, mtime=MTIME))
        for n, r in enumerate(records, 1)]


def decided(source: str) -> list[SessionEvent]:
    """Every event of the sample, its files read in the base's (sorted) order."""
    prod, out = producer(source), []
    for path in sorted(sample(source)[1].rglob("*.json")):
        if prod.matches(path):
            records, _ = prod.records(path, None)
            out += [e for ev in events_of(source, path, records) for e in decide(ev)]
    return out


def kept_usage(events: list[SessionEvent]) -> dict[tuple[str, str], UsageReported]:
    best: dict[tuple[str, str], UsageReported] = {}
    for event in events:
        p = event.payload
        if isinstance(p, UsageReported):
            key = (event.session_id, p.message_key)
            if key not in best or p.total > best[key].total:
                best[key] = p
    return best


def totals(events: list[SessionEvent], columns: list[str]) -> dict[str, Any]:
    usage = kept_usage(events).values()
    payloads = [e.payload for e in events]
    models = [p.model for p in payloads if p.kind == "session.context" and p.model]
    every = {
        "input_tokens": sum(u.input_tokens for u in usage),
        "output_tokens": sum(u.output_tokens for u in usage),
        "cache_read_tokens": sum(u.cache_read_tokens for u in usage),
        "cache_creation_tokens": sum(u.cache_creation_5m_tokens for u in usage),
        "total_tokens": sum(u.total for u in usage),
        "tool_calls": len({p.tool_use_id for p in payloads if p.kind == "tool.called"}),
        "tool_errors": len({p.tool_use_id for p in payloads
                            if p.kind == "tool.resulted" and p.is_error}),
        "prompts": len({p.line_uuid for p in payloads
                        if p.kind == "user.prompted" and not p.is_meta}),
        "files_touched": len({p.path for p in payloads if p.kind == "file.touched"}),
        "subagents": 0,
        # the samples' usage names no model, or the session's: its latest context model
        "unpriced_models": [m for m in models[-1:] if m.startswith("x-ai/")],
    }
    return {column: every[column] for column in columns}


# --- producers ------------------------------------------------------------------------------


def test_editor_user_dirs_per_os():
    linux = editor_user_dirs({"HOME": "/home/me"}, "linux")
    assert Path("/home/me/.config/Code/User") in linux
    assert Path("/home/me/.config/Cursor/User") in linux
    assert Path("/home/me/.vscode-server/data/User") in linux
    xdg = editor_user_dirs({"HOME": "/home/me", "XDG_CONFIG_HOME": "/cfg"}, "linux")
    assert xdg[0] == Path("/cfg/Code/User")
    mac = editor_user_dirs({"HOME": "/Users/me"}, "darwin")
    assert mac[0] == Path("/Users/me/Library/Application Support/Code/User")
    windows = editor_user_dirs({"USERPROFILE": "C:/Users/me",
                                "APPDATA": "C:/Users/me/AppData/Roaming"}, "linux")
    assert windows[0] == Path("C:/Users/me/AppData/Roaming/Code/User")
    assert Path("C:/Users/me/AppData/Roaming/VSCodium/User") in windows
    portable = editor_user_dirs({"HOME": "/h", "VSCODE_PORTABLE": "/p"}, "linux")
    assert portable[0] == Path("/p/user-data/User")


def test_default_roots_name_each_extension_and_the_cline_cli():
    env = {"HOME": "/home/me"}
    cline = ClineProducer.default_roots(env)
    assert Path("/home/me/.config/Code/User/globalStorage/saoudrizwan.claude-dev/tasks") in cline
    assert cline[-1] == Path("/home/me/.cline/data/tasks")
    assert ClineProducer.default_roots({**env, "CLINE_DIR": "/c"})[-1] == Path("/c/data/tasks")
    roo = RooCodeProducer.default_roots(env)
    assert Path("/home/me/.config/Code/User/globalStorage/rooveterinaryinc.roo-cline/tasks") in roo
    kilo = KiloCodeProducer.default_roots(env)
    assert all("kilocode.kilo-code" in str(p) for p in kilo)


def test_each_source_claims_only_its_own_extension(tmp_path):
    for source, cls in PRODUCERS.items():
        claimed = {other for other in PRODUCERS if cls.claims(sample(other)[1])}
        assert claimed == {source}, source
    cli = tmp_path / ".cline" / "data" / "tasks" / "1700000000000"
    cli.mkdir(parents=True)
    (cli / "ui_messages.json").write_text("[]")
    assert ClineProducer.claims(tmp_path / ".cline")
    assert not RooCodeProducer.claims(tmp_path / ".cline")


def test_matches_the_three_task_documents_only():
    prod = producer("cline")
    task = Path("/x/saoudrizwan.claude-dev/tasks/1700000000000")
    for name in ("ui_messages.json", "api_conversation_history.json", "task_metadata.json"):
        assert prod.matches(task / name)
    for other in (task / "context_history.json", task / "settings.json",
                  task / "history_item.json", task.parent.parent / "settings" / "x.json",
                  task.parent / "ui_messages.json"):
        assert not prod.matches(other), other
    assert prod.describe(task / "ui_messages.json", None) == ("1700000000000", "main", None)


def test_prune_keeps_tasks_and_nothing_below_a_task():
    prod = producer("cline")
    names = ["settings", "tasks", "cache"]
    prod.prune(Path("/x/saoudrizwan.claude-dev"), names)
    assert names == ["tasks"]
    below = ["checkpoints"]
    prod.prune(Path("/x/saoudrizwan.claude-dev/tasks/1700000000000"), below)
    assert below == []


def test_ui_records_are_keyed_by_ts_and_a_cursor_keeps_what_was_read():
    rows = [{"ts": 5, "type": "say", "say": "task", "text": "a"},
            {"ts": 5, "type": "say", "say": "text", "text": "b"},
            {"ts": 7, "type": "say", "say": "api_req_started", "text": "{}"}]
    records = task_records("ui_messages.json", "t1", rows)
    assert [r.key for r in records] == ["ui:5", "ui:5#2", "ui:7"]
    _, cursor = changed(records, None)
    rows[2]["text"] = json.dumps({"tokensIn": 3, "tokensOut": 4})  # the row streamed on
    fresh, _ = changed(task_records("ui_messages.json", "t1", rows), cursor)
    assert [r.key for r in fresh] == ["ui:7"]
    with pytest.raises(ValueError):
        task_records("ui_messages.json", "t1", {"not": "a list"})


async def test_scan_publishes_every_record_once(tmp_path):
    expected, root = sample("cline")
    copy = tmp_path / "tasks"
    shutil.copytree(root, copy)
    collector = Collector()
    prod = ClineProducer([copy], tmp_path / "state" / "cline.json", collector)
    published = await prod.scan_once()
    assert published == 8 + 1 + 14 and len(collector.events) == published
    assert {e.session_id for e in collector.events} == set(expected["sessions"])
    assert await prod.scan_once() == 0


# --- parser ---------------------------------------------------------------------------------


def test_one_parser_for_the_three_sources():
    parsers = registered()
    assert parsers["cline"] is parsers["roo-code"] is parsers["kilo-code"] is decide


@pytest.mark.parametrize("source", list(PRODUCERS))
def test_session_totals_equal_the_hand_computed_ones(source):
    expected, _ = sample(source)
    events = decided(source)
    [(session, want)] = expected["sessions"].items()
    assert {e.session_id for e in events} == {session}
    assert totals(events, list(want)) == want


def test_usage_comes_from_ui_rows_only_with_the_traps_handled():
    events = decided("cline")
    kept = kept_usage(events)
    assert sorted(key.rsplit(":", 1)[1] for _, key in kept) == [
        "1762355684200", "1762355685000", "1762355686100", "1762355687000"]
    cancelled = kept[("1762355683581", "1762355683581:1762355687000")]
    assert (cancelled.total, cancelled.model) == (4643, "claude-sonnet-4-5-20250929")
    models = [e.payload.model for e in events if e.type == "session.context" and e.payload.model]
    assert models and set(models) == {"claude-sonnet-4-5-20250929"}
    cwd = [e.payload.cwd for e in events if e.type == "session.context" and e.payload.cwd]
    assert cwd == ["/home/dev/cli-tool"]


def test_api_protocol_rows_hold_the_total_input():
    usage = sorted(kept_usage(decided("roo-code")).items())
    assert [(u.input_tokens, u.cache_creation_5m_tokens, u.cache_read_tokens)
            for _, u in usage] == [(12, 5000, 0), (1200, 0, 4800), (20, 0, 5000)]


def test_tool_calls_from_xml_and_native_blocks_with_results():
    payloads = [e.payload for e in decided("cline")]
    calls = {p.tool_use_id: p.name for p in payloads if p.kind == "tool.called"}
    assert sorted(calls.values()) == ["attempt_completion", "read_file", "replace_in_file",
                                      "write_to_file"]
    xml = next(p for p in payloads if p.kind == "tool.called" and p.name == "read_file")
    assert xml.input == {"path": "src/app.py"}
    errors = [p.tool_use_id for p in payloads if p.kind == "tool.resulted" and p.is_error]
    assert errors == ["toolu_cl_5e1f0a02"]
    prompts = [p.text for p in payloads if p.kind == "user.prompted"]
    assert prompts == ["Add a --verbose flag to app.py", "Also document it in the README."]


def test_unknown_and_malformed_records():
    path = Path("/x/tasks/t/ui_messages.json")
    odd = Record(session_id="t", key="k", version="v",
                 text=json.dumps({"kind": "ui", "index": 0, "value": {"no": "ts"}}))
    assert [e.type for e in decide(events_of("cline", path, [odd])[0])] == ["line.unknown"]
    bad = Record(session_id="t", key="k", version="v", text="[1, 2")
    with pytest.raises(InvalidEvent):
        decide(events_of("cline", path, [bad])[0])
