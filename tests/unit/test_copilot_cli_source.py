"""The GitHub Copilot CLI source: ``CopilotCliProducer`` (roots per OS and override, names,
sessions, legacy snapshots) and ``agents.parsers.copilot_cli.decide`` (every event kind and
trap), on the hand-written samples in tests/samples/copilot-cli.

Events are built the way the producer builds them, and the projection's rules are replayed in
miniature (largest usage per ``(session, message_key)``, tool calls per ``tool_use_id``,
prompts per ``line_uuid``), so what is checked is what the tables will hold. The token oracle is
computed here from the raw ``session.shutdown`` lines, independently of the parser.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agents.parsers.copilot_cli import decide
from schemas.events import SessionEvent, UsageReported
from schemas.file_changes import FileChanged, FileLine, file_line_event, file_snapshot_event
from streams.errors import InvalidEvent
from streams.producers.copilot_cli import CopilotCliProducer, copilot_home
from tests.factories import Collector

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "copilot-cli"
HOME = SAMPLES / ".copilot"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text())
MAIN_ID = "5e7c1a20-3b4d-4e6f-8a90-1c2d3e4f5a01"
FLAT_ID = "9d8c7b6a-5f4e-4d3c-9b2a-0f1e2d3c4b02"
LEGACY_ID = "3c4d5e6f-7a8b-4c9d-8e0f-a1b2c3d4e503"
MAIN = HOME / "session-state" / MAIN_ID / "events.jsonl"
FLAT = HOME / "history-session-state" / f"{FLAT_ID}.jsonl"
LEGACY = HOME / "history-session-state" / f"{LEGACY_ID}.json"
MTIME = datetime(2026, 3, 14, 16, 0, tzinfo=UTC)


async def _unused_publish(events: list[FileChanged]) -> None:
    raise AssertionError("describe() only")


PRODUCER = CopilotCliProducer([HOME], Path("unused-checkpoint.json"), _unused_publish)


def file_events(path: Path) -> list[FileChanged]:
    """What the producer publishes for ``path``: one event per line, or one snapshot."""
    text = path.read_text()
    session_id, kind, agent_id = PRODUCER.describe(path, text.partition("\n")[0])
    if PRODUCER.snapshot(path):
        line = FileLine(path=str(path), offset=0, line_no=1, line=text, mtime=MTIME,
                        file_kind=kind, agent_id=agent_id)
        return [file_snapshot_event("copilot-cli", session_id, line)]
    events, offset = [], 0
    for line_no, raw in enumerate(text.split("\n"), start=1):
        if raw.strip():
            line = FileLine(path=str(path), offset=offset, line_no=line_no, line=raw,
                            mtime=MTIME, file_kind=kind, agent_id=agent_id)
            events.append(file_line_event("copilot-cli", session_id, line))
        offset += len(raw.encode()) + 1
    return events


def decide_all(*paths: Path) -> list[SessionEvent]:
    return [out for path in paths for event in file_events(path) for out in decide(event)]


def inline(*records: dict | str) -> list[SessionEvent]:
    out = []
    for n, record in enumerate(records, start=1):
        text = record if isinstance(record, str) else json.dumps(record)
        line = FileLine(path="/c/session-state/s/events.jsonl", offset=n * 1000, line_no=n,
                        line=text, mtime=MTIME)
        out.extend(decide(file_line_event("copilot-cli", "s-inline", line)))
    return out


def payloads(events: list[SessionEvent], kind: str) -> list[Any]:
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


def projected(events: list[SessionEvent]) -> dict[str, dict[str, Any]]:
    """The sessions row columns of expected.json, by the projection's rules."""
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for (session, _), u in kept_usage(events).items():
        row = rows[session]
        row["input_tokens"] += u.input_tokens
        row["output_tokens"] += u.output_tokens
        row["cache_read_tokens"] += u.cache_read_tokens
        row["cache_creation_tokens"] += u.cache_creation_5m_tokens + u.cache_creation_1h_tokens
        row["total_tokens"] += u.total
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
    for s in {e.session_id for e in events}:
        rows[s].update(tool_calls=len(calls[s]), tool_errors=sum(calls[s].values()),
                       prompts=len(prompts[s]), files_touched=len(files[s]),
                       subagents=len(subagents[s]))
    return rows


def shutdown_oracle(path: Path) -> dict[str, int]:
    """Disjoint totals straight from the raw shutdown lines (input includes both caches)."""
    total: dict[str, int] = defaultdict(int)
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["type"] != "session.shutdown":
            continue
        for metric in record["data"]["modelMetrics"].values():
            u = metric["usage"]
            total["input_tokens"] += u["inputTokens"] - u["cacheReadTokens"] - u["cacheWriteTokens"]
            total["cache_read_tokens"] += u["cacheReadTokens"]
            total["cache_creation_tokens"] += u["cacheWriteTokens"]
            total["output_tokens"] += u["outputTokens"]
    total["total_tokens"] = sum(total.values())
    return dict(total)


# --- producer -------------------------------------------------------------------------------


def test_default_roots_per_os_and_the_overrides():
    linux = CopilotCliProducer.default_roots({"HOME": "/home/me"})
    assert linux == [Path("/home/me/.copilot/session-state"),
                     Path("/home/me/.copilot/history-session-state")]
    assert CopilotCliProducer.default_roots({"HOME": "/h", "COPILOT_HOME": "/opt/cp"}) == [
        Path("/opt/cp/session-state"), Path("/opt/cp/history-session-state")]
    with_xdg = CopilotCliProducer.default_roots({"HOME": "/h", "XDG_CONFIG_HOME": "/h/.cfg"})
    assert with_xdg[2:] == [Path("/h/.cfg/.copilot/session-state"),
                            Path("/h/.cfg/.copilot/history-session-state")]
    assert copilot_home({"USERPROFILE": "C:/Users/me", "HOME": "/msys/me"}, "win32") == Path(
        "C:/Users/me/.copilot")
    assert copilot_home({"HOME": "/Users/me"}, "darwin") == Path("/Users/me/.copilot")
    assert copilot_home({"COPILOT_HOME": " "}, "linux") != Path(" ")


def test_matches_session_logs_and_legacy_sessions_only():
    state = Path("/h/.copilot/session-state")
    history = Path("/h/.copilot/history-session-state")
    assert PRODUCER.matches(state / MAIN_ID / "events.jsonl")
    assert PRODUCER.matches(state / f"{MAIN_ID}.jsonl")
    assert PRODUCER.matches(history / f"{FLAT_ID}.jsonl")
    assert PRODUCER.matches(history / f"{LEGACY_ID}.json")
    for skipped in (state / MAIN_ID / "workspace.yaml", state / MAIN_ID / "plan.md",
                    state / MAIN_ID / "checkpoints" / "index.md", state / "x.json",
                    Path("/h/.copilot/logs/session-1.log"), Path("/h/.copilot/otel/a.jsonl"),
                    Path("/h/.copilot/events.jsonl")):
        assert not PRODUCER.matches(skipped), skipped
    assert PRODUCER.snapshot(history / f"{LEGACY_ID}.json")
    assert not PRODUCER.snapshot(state / MAIN_ID / "events.jsonl")


def test_claims_and_prune(tmp_path):
    assert CopilotCliProducer.claims(HOME)
    assert CopilotCliProducer.claims(HOME / "session-state")
    assert not CopilotCliProducer.claims(tmp_path)
    dirs = ["session-state", "history-session-state", "pkg", "logs"]
    PRODUCER.prune(HOME, dirs)
    assert dirs == ["session-state", "history-session-state"]
    inside = ["checkpoints", "files"]
    PRODUCER.prune(HOME / "session-state" / MAIN_ID, inside)
    assert inside == []


def test_describe_names_the_session():
    first = MAIN.read_text().partition("\n")[0]
    assert PRODUCER.describe(MAIN, first) == (MAIN_ID, "main", None)
    assert PRODUCER.describe(FLAT, FLAT.read_text().partition("\n")[0]) == (
        FLAT_ID, "main", None)
    assert PRODUCER.describe(LEGACY, "{") == (LEGACY_ID, "main", None)
    assert PRODUCER.describe(Path("/x/history-session-state/session_abc_1759957816398.json"),
                             None) == ("abc", "main", None)


async def test_scan_publishes_the_sample_tree(tmp_path):
    home = tmp_path / ".copilot"
    shutil.copytree(HOME, home)
    collector = Collector()
    producer = CopilotCliProducer([home / "session-state", home / "history-session-state"],
                                  tmp_path / "state.json", collector)
    await producer.scan_once()
    sessions = {e.session_id for e in collector.events}
    assert sessions == {MAIN_ID, FLAT_ID, LEGACY_ID}
    assert [e.type for e in collector.events if e.session_id == LEGACY_ID] == ["file.snapshot"]
    collector.events.clear()
    assert await producer.scan_once() == 0


# --- parser ---------------------------------------------------------------------------------


def test_usage_comes_only_from_shutdowns_mapped_disjoint():
    events = decide_all(MAIN)
    usage = payloads(events, "usage.reported")
    assert [(u.message_key.split(":")[-1], u.input_tokens, u.cache_read_tokens,
             u.cache_creation_5m_tokens, u.output_tokens) for u in usage] == [
        ("claude-haiku-4.5", 3000, 5000, 0, 400),
        ("claude-sonnet-4.5", 6000, 40000, 6000, 2100),
        ("claude-sonnet-4.5", 4000, 24000, 2000, 900)]
    assert all(u.model == u.message_key.split(":")[-1] and u.agent_id is None for u in usage)


def test_each_lifetime_of_a_resumed_session_adds_and_agent_metrics_do_not():
    kept = kept_usage(decide_all(MAIN))
    assert len(kept) == 3  # two shutdowns: 2 + 1 models; agentMetrics repeat them, not added
    oracle = shutdown_oracle(MAIN)
    assert sum(u.total for u in kept.values()) == oracle["total_tokens"] == 93400


def test_a_reread_line_lands_on_the_same_keys():
    events = file_events(MAIN)
    twice = [out for e in events + events for out in decide(e)]
    assert projected(twice)[MAIN_ID] == projected([o for e in events for o in decide(e)])[
        MAIN_ID]


def test_reply_output_tokens_and_a_lifetime_without_shutdown_report_nothing():
    events = decide_all(FLAT)
    (usage,) = payloads(events, "usage.reported")
    assert (usage.model, usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (
        "gpt-4.1", 4000, 8000, 700)
    assert payloads(events, "session.context")[1].model == "gpt-4.1"


def test_tool_calls_results_files_and_the_subagent():
    events = decide_all(MAIN)
    calls = payloads(events, "tool.called")
    assert {c.tool_use_id for c in calls} == {
        "call-v1", "call-e1", "call-e2", "call-t1", "call-s1", "call-c1"}
    errors = {r.tool_use_id for r in payloads(events, "tool.resulted") if r.is_error}
    assert errors == {"call-e1"}
    failed = next(r for r in payloads(events, "tool.resulted") if r.tool_use_id == "call-e1")
    assert failed.content == "old_str was not found in the file"
    touched = {(f.path.rsplit("/", 1)[-1], f.access) for f in payloads(events, "file.touched")}
    assert touched == {("signup.ts", "read"), ("signup.ts", "write"), ("README.md", "read"),
                       ("signup.test.ts", "write")}
    (link,) = payloads(events, "subagent.linked")
    assert (link.child_agent_id, link.tool_use_id) == ("explore-4a5b6c7d", "call-t1")
    sub = [c for c in calls if c.tool_use_id == "call-s1"]
    assert {c.agent_id for c in sub} == {"explore-4a5b6c7d"}


def test_prompts_injected_text_is_meta_and_context_is_reported():
    events = decide_all(MAIN)
    prompts = payloads(events, "user.prompted")
    real = [p.text for p in prompts if not p.is_meta and p.agent_id is None]
    assert real == ["Add input validation to the signup form", "Thanks, that's all for now",
                    "Also add a unit test for it"]
    assert any(p.is_meta and p.text.startswith("<skill-context") for p in prompts)
    start = payloads(events, "session.context")[0]
    assert (start.cwd, start.git_branch, start.version, start.model) == (
        "/home/dev/shop", "main", "0.0.412", "claude-sonnet-4.5")
    thinking = [m for m in payloads(events, "assistant.message") if m.block_type == "thinking"]
    assert thinking and thinking[0].text.startswith("The form lives")


def test_unknown_events_are_kept_and_bookkeeping_is_silent():
    events = decide_all(MAIN)
    (unknown,) = payloads(events, "line.unknown")
    assert unknown.line_type == "session.future_thing"
    assert inline({"type": "assistant.turn_end", "id": "t", "data": {}}) == []
    weird = inline({"type": "tool.execution_complete", "id": "w", "data": {"success": False}})
    assert weird == []


def test_the_legacy_whole_json_session():
    events = decide_all(LEGACY)
    assert {e.session_id for e in events} == {LEGACY_ID}
    (call,) = payloads(events, "tool.called")
    assert (call.tool_use_id, call.input["path"]) == ("call_legacy_01", "/home/dev/notes/todo.md")
    (touched,) = payloads(events, "file.touched")
    assert touched.access == "read"
    assert payloads(events, "usage.reported") == []
    assert len(payloads(events, "user.prompted")) == 1


def test_bad_input_is_an_invalid_event():
    with pytest.raises(InvalidEvent, match="events.jsonl line 1"):
        inline("{not json")
    (snapshot,) = file_events(LEGACY)
    cut = snapshot.model_copy(update={"payload": snapshot.payload.model_copy(
        update={"truncated": True})})
    with pytest.raises(InvalidEvent, match="cut"):
        decide(cut)


def test_per_session_totals_equal_the_hand_computed_ones():
    rows = projected(decide_all(MAIN, FLAT, LEGACY))
    for session, want in EXPECTED["sessions"].items():
        got = {column: rows[session][column] for column in want if column != "unpriced_models"}
        assert got == {k: v for k, v in want.items() if k != "unpriced_models"}, session
    assert shutdown_oracle(FLAT)["total_tokens"] == EXPECTED["sessions"][FLAT_ID][
        "total_tokens"]
