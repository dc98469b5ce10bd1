"""decide() for Claude Code lines: each rule on hand-written samples, then every real fixture
checked against the independent oracle (tests/oracle.py)."""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.parsers.claude import decide
from schemas.envelope import derive_event_id
from schemas.events import SessionEvent
from schemas.file_changes import FileChanged, FileLine, file_line_event, file_removed_event
from streams.errors import InvalidEvent
from tests.claude_cross_expected import PROJECT_DIR as CROSS_DIR
from tests.claude_cross_expected import SESSION_D, SESSION_E
from tests.fixtures_path import shared_dir
from tests.oracle import claude_session_totals

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "claude"
DEMO = SAMPLES / "projects" / "-home-dev-demo"
CHILD = DEMO / "subagent" / "subagents" / "agent-a7f3c21.jsonl"
# Resolved at import: the test harness strips SESSIONSTREAM_* variables once the stack starts.
CLAUDE_FIXTURES = shared_dir() / "fixtures" / "sessions" / "claude-code"
SOURCE = "claude-code"
MTIME = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
STREAM_KEY = "msg_01StreamDemoAAA:req_011StreamDemoAAA"


# --- driving decide() the way the producer would -------------------------------------------


def line_events(path: Path, agent_id: str | None = None) -> list[FileChanged]:
    """One file-changes event per non-empty line with its byte offset, as a tailer publishes
    them; the session is the file's first ``sessionId`` (agent files carry the parent's)."""
    data = path.read_bytes()
    session = _first_session(data) or path.stem
    kind = "subagent" if path.name.startswith("agent-") else "main"
    if kind == "subagent" and agent_id is None:  # the producer names it after the file
        agent_id = path.stem.removeprefix("agent-")
    events, offset = [], 0
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            line = FileLine(path=str(path), offset=offset, line_no=line_no,
                            line=raw.decode("utf-8", errors="replace"), mtime=MTIME,
                            file_kind=kind, agent_id=agent_id)
            events.append(file_line_event(SOURCE, session, line))
        offset += len(raw) + 1
    return events


def _first_session(data: bytes) -> str | None:
    for raw in data.splitlines():
        try:
            session = json.loads(raw).get("sessionId")
        except (ValueError, AttributeError):
            continue
        if isinstance(session, str):
            return session
    return None


def decide_file(path: Path, agent_id: str | None = None) -> list[SessionEvent]:
    return [out for event in line_events(path, agent_id) for out in decide(event)]


def decide_line(path: Path, line_no: int) -> list[SessionEvent]:
    return decide(next(e for e in line_events(path) if e.payload.line_no == line_no))


def payloads(events: list[SessionEvent], kind: str) -> list:
    return [e.payload for e in events if e.type == kind]


def deduped_totals(events: list[SessionEvent]) -> dict[str, dict]:
    """What the projections will compute: the largest usage per message_key per session (the
    first on ties), plus distinct prompts, tool calls and files; same shape as the oracle."""
    best: dict[str, dict] = defaultdict(dict)
    seen: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for event in events:
        p, session = event.payload, event.session_id
        if p.kind == "usage.reported":
            if p.message_key not in best[session] or p.total > best[session][p.message_key].total:
                best[session][p.message_key] = p
        elif (p.kind == "user.prompted" and not (p.is_meta or p.is_compact_summary)
              and p.agent_id is None):  # a sub-agent's task prompt is no person's prompt
            seen[session]["prompts"].add(p.line_uuid)
        elif p.kind == "tool.called":
            seen[session]["tool_calls"].add(p.tool_use_id)
        elif p.kind == "file.touched":
            seen[session]["files"].add(p.path)
    return {session: {
        "input": sum(u.input_tokens for u in best[session].values()),
        "output": sum(u.output_tokens for u in best[session].values()),
        "cache_creation": sum(u.cache_creation_5m_tokens + u.cache_creation_1h_tokens
                              for u in best[session].values()),
        "cache_read": sum(u.cache_read_tokens for u in best[session].values()),
        **{name: len(seen[session][name]) for name in ("prompts", "tool_calls", "files")},
    } for session in sorted(set(best) | set(seen))}


def tokens(totals: dict) -> int:
    return sum(totals[b] for b in ("input", "output", "cache_creation", "cache_read"))


# --- the rules, on hand-written samples ----------------------------------------------------


def test_streaming_fragments_each_report_usage_under_one_message_key() -> None:
    events = decide_file(DEMO / "streaming.jsonl")
    usage = payloads(events, "usage.reported")
    assert [(u.message_key, u.output_tokens) for u in usage] == [
        (STREAM_KEY, 8), (STREAM_KEY, 31), (STREAM_KEY, 154),
        ("msg_01StreamDemoBBB:req_011StreamDemoBBB", 210),
        ("msg_01StreamDemoCCC:req_011StreamDemoCCC", 40),
    ]
    first = usage[0]
    assert (first.model, first.input_tokens, first.cache_creation_5m_tokens,
            first.cache_creation_1h_tokens, first.cache_read_tokens, first.speed) == (
        "claude-opus-4-6", 3, 2048, 0, 15000, None)
    session = "5f0c9e2a-1b7d-4c3e-9a11-0d2f6b8e4c01"
    assert deduped_totals(events)[session] == {
        "input": 5, "output": 404, "cache_creation": 3248, "cache_read": 50100,
        "prompts": 1, "tool_calls": 2, "files": 1,
    }


def test_assistant_lines_yield_one_message_per_block() -> None:
    messages = payloads(decide_file(DEMO / "streaming.jsonl"), "assistant.message")
    assert [(m.message_key, m.block_type, m.text) for m in messages] == [
        (STREAM_KEY, "thinking", "I should read the file before editing it."),
        (STREAM_KEY, "text", "Let me look at the helper first."),
        (STREAM_KEY, "tool_use", ""),
        ("msg_01StreamDemoBBB:req_011StreamDemoBBB", "tool_use", ""),
        ("msg_01StreamDemoCCC:req_011StreamDemoCCC", "text",
         "The helper was already renamed; nothing to change."),
    ]


def test_tool_calls_results_and_touched_files() -> None:
    events = decide_file(DEMO / "streaming.jsonl")
    assert [(c.tool_use_id, c.name, c.input["file_path"], c.message_key)
            for c in payloads(events, "tool.called")] == [
        ("toolu_01ReadAppPy", "Read", "/home/dev/demo/src/app.py", STREAM_KEY),
        ("toolu_01EditAppPy", "Edit", "/home/dev/demo/src/app.py",
         "msg_01StreamDemoBBB:req_011StreamDemoBBB"),
    ]
    touched = payloads(events, "file.touched")
    assert [(f.path, f.tool, f.access, f.tool_use_id) for f in touched] == [
        ("/home/dev/demo/src/app.py", "Read", "read", "toolu_01ReadAppPy"),
        ("/home/dev/demo/src/app.py", "Edit", "write", "toolu_01EditAppPy"),
    ]
    assert [(r.tool_use_id, r.is_error, r.content) for r in payloads(events, "tool.resulted")] == [
        ("toolu_01ReadAppPy", False, "     1→def retry_later(fn):\n     2→    return fn"),
        ("toolu_01EditAppPy", True, "<tool_use_error>String to replace not found in file."
                                    "</tool_use_error>\nString: def retry_later("),
    ]


def test_envelopes_carry_the_source_event_and_the_line() -> None:
    source = line_events(DEMO / "streaming.jsonl")[2]  # the thinking fragment
    derived = decide(source)
    assert [e.type for e in derived] == ["session.context", "assistant.message", "usage.reported"]
    stamp = datetime(2026, 3, 2, 9, 0, 2, 100000, tzinfo=UTC)
    for event in derived:
        assert (event.source, event.session_id, event.occurred_at) == (
            SOURCE, "5f0c9e2a-1b7d-4c3e-9a11-0d2f6b8e4c01", stamp)
        assert event.event_id == derive_event_id(source.event_id, event.type, 0)
        p = event.payload
        assert (p.line_uuid, p.timestamp, p.agent_id, p.is_sidechain) == (
            "a1000000-0000-4000-8000-000000000002", stamp, None, False)
    assert decide(source) == derived  # deterministic: reprocessing yields the same events


def test_event_ids_are_unique_and_a_line_without_timestamp_keeps_the_file_time() -> None:
    valid = [p for p in sorted(DEMO.rglob("*.jsonl")) if p.stem not in {"malformed", "truncated"}]
    events = [e for path in valid for e in decide_file(path)]
    assert len({e.event_id for e in events}) == len(events)
    titled = payloads(decide_file(DEMO / "titles.jsonl"), "session.titled")
    assert [t.timestamp for t in titled] == [None, None, None]
    assert {e.occurred_at for e in decide_file(DEMO / "titles.jsonl")} == {MTIME}


def test_session_context_once_per_conversation_line() -> None:
    per_line = [decide(e) for e in line_events(DEMO / "streaming.jsonl")]
    assert [sum(e.type == "session.context" for e in out) for out in per_line] == [0] + [1] * 9
    context = payloads(per_line[1], "session.context")[0]
    assert (context.cwd, context.git_branch, context.slug, context.version, context.project) == (
        "/home/dev/demo", "main", "quiet-orange-lantern", "2.1.39", "-home-dev-demo")
    child = payloads(decide_file(CHILD), "session.context")
    assert {(c.project, c.agent_id) for c in child} == {("-home-dev-demo", "a7f3c21")}
    legacy = payloads(decide_file(DEMO / "message-keys.jsonl"), "session.context")
    assert {(c.git_branch, c.version, c.slug) for c in legacy} == {("", "1.0.98", None)}


def test_prompts_flag_meta_and_compact_summaries() -> None:
    prompts = payloads(decide_file(DEMO / "compaction.jsonl"), "user.prompted")
    assert [(p.text[:24], p.is_meta, p.is_compact_summary) for p in prompts] == [
        ("This session is being co", False, True),
        ("<local-command-caveat>Ca", True, False),
        ("now run the tests", False, False),
    ]
    blocks = payloads(decide_file(DEMO / "message-keys.jsonl"), "user.prompted")
    assert [p.text for p in blocks] == ["write a README\nand tidy the notebook"]


def test_compaction_and_other_system_lines() -> None:
    events = decide_file(DEMO / "compaction.jsonl")
    compacted = payloads(events, "session.compacted")
    assert [(c.trigger, c.pre_tokens, c.line_uuid) for c in compacted] == [
        ("auto", 167342, "d4000000-0000-4000-8000-000000000001")]
    assert [(s.subtype, s.content) for s in payloads(events, "system.event")] == [
        ("local_command", "<local-command-stdout>Compacted (ctrl+o to see full summary)"
                          "</local-command-stdout>"),
        ("stop_hook_summary", ""),
    ]
    [usage] = payloads(events, "usage.reported")
    assert (usage.cache_creation_5m_tokens, usage.cache_creation_1h_tokens, usage.speed) == (
        500, 4000, "standard")


def test_progress_lines_emit_nothing_not_even_the_mirrored_usage() -> None:
    parent = DEMO / "subagent.jsonl"
    progress = [e for e in line_events(parent) if json.loads(e.payload.line)["type"] == "progress"]
    assert [json.loads(e.payload.line)["data"]["type"] for e in progress] == [
        "hook_progress", "agent_progress"]
    assert [decide(e) for e in progress] == [[], []]
    keys = {u.message_key for u in payloads(decide_file(parent), "usage.reported")}
    assert keys == {"msg_01ParentTask:req_011ParentTask", "msg_01ParentAnswer:req_011ParentAnswer"}


def test_subagent_files_and_the_task_link() -> None:
    parent = decide_file(DEMO / "subagent.jsonl")
    [task] = [c for c in payloads(parent, "tool.called") if c.name == "Task"]
    assert (task.tool_use_id, task.input["subagent_type"]) == ("toolu_01TaskExplore", "Explore")
    links = payloads(parent, "subagent.linked")
    assert [(link.child_agent_id, link.tool_use_id) for link in links] == [
        ("a7f3c21", "toolu_01TaskExplore")]
    child = decide_file(CHILD)
    assert {(e.payload.agent_id, e.payload.is_sidechain) for e in child} == {("a7f3c21", True)}
    assert {e.payload.agent_id for e in decide_file(CHILD, agent_id="from-producer")} == {
        "from-producer"}
    assert deduped_totals(parent + child)["7c3d1e90-4a2b-4f6e-8d55-2e9b0c1a7f02"] == {
        "input": 8, "output": 290, "cache_creation": 4600, "cache_read": 22300,
        "prompts": 1,  # the task prompt is the sub-agent's, no person typed it
        "tool_calls": 2, "files": 1,
    }


def test_lines_that_are_not_json_objects_raise_invalid_event_naming_path_and_line() -> None:
    with pytest.raises(InvalidEvent, match=r"malformed\.jsonl line 2: not JSON "
                                           r"\(Expecting value at char 0\)$"):
        decide_line(DEMO / "malformed.jsonl", 2)
    with pytest.raises(InvalidEvent, match=r"malformed\.jsonl line 3: not a JSON object"):
        decide_line(DEMO / "malformed.jsonl", 3)
    truncated = DEMO / "truncated.jsonl"
    assert not truncated.read_bytes().endswith(b"\n")
    with pytest.raises(InvalidEvent, match=r"truncated\.jsonl line 3: not JSON \(Unterminated "
                                           r"string starting at char 367\)$"):
        decide_line(truncated, 3)
    assert [e.type for e in decide_line(truncated, 2)] == [
        "session.context", "assistant.message", "usage.reported"]


def test_unknown_and_untyped_lines_are_kept_never_fatal() -> None:
    beacon, untyped = (decide_line(DEMO / "malformed.jsonl", n) for n in (4, 5))
    assert [(e.type, e.payload.line_type) for e in beacon + untyped] == [
        ("line.unknown", "telemetry-beacon"), ("line.unknown", None)]
    assert beacon[0].payload.raw.startswith('{"type":"telemetry-beacon"')
    huge = '{"type":"brand-new","blob":"' + "x" * 5000 + '"}'
    event = file_line_event(SOURCE, "s1", FileLine(path="/p/s1.jsonl", offset=0, line_no=1,
                                                   line=huge, mtime=MTIME))
    [unknown] = decide(event)
    assert (unknown.payload.line_type, unknown.payload.raw) == ("brand-new", huge[:2000])


def test_lone_surrogates_are_replaced_so_events_encode() -> None:
    line = json.dumps({"type": "user", "uuid": "u1", "message": {"content": "cut emoji \ud83d|"}})
    assert "\\ud83d" in line  # JSON allows the escape; UTF-8 cannot encode the character
    event = file_line_event(SOURCE, "s1", FileLine(path="/p/s1.jsonl", offset=0, line_no=1,
                                                   line=line, mtime=MTIME))
    [prompt] = decide(event)
    assert prompt.payload.text == "cut emoji \ufffd|"
    assert "cut emoji" in prompt.model_dump_json()
    whole = json.dumps({"type": "user", "message": {"content": "ok \U0001F600"}})
    assert decide(file_line_event(SOURCE, "s1", FileLine(
        path="/p/s1.jsonl", offset=9, line_no=2, line=whole, mtime=MTIME)))[0].payload.text == (
        "ok \U0001F600")


def test_known_metadata_lines_emit_nothing() -> None:
    events = line_events(DEMO / "metadata.jsonl")
    assert {json.loads(e.payload.line)["type"] for e in events} == {
        "file-history-snapshot", "queue-operation", "attachment", "last-prompt", "agent-name",
        "mode", "permission-mode", "pr-link", "agent-setting"}
    assert [decide(e) for e in events] == [[]] * 9


def test_titles_from_summary_ai_and_custom_lines() -> None:
    titled = payloads(decide_file(DEMO / "titles.jsonl"), "session.titled")
    assert [(t.title, t.title_source) for t in titled] == [
        ("Retry policy lookup in config/retry.toml", "summary"),
        ("Find retry policy configuration", "ai"),
        ("Retries", "custom"),
    ]


def test_synthetic_model_lines_report_no_usage() -> None:
    events = decide_file(DEMO / "synthetic.jsonl")
    assert payloads(events, "usage.reported") == []
    [message] = payloads(events, "assistant.message")
    assert (message.model, message.message_key) == (
        "<synthetic>", "0b7e6f1a-8c2d-4e3f-9a4b-5c6d7e8f9a01")
    assert message.text.startswith("API Error: 529")


def test_message_keys_without_request_id_or_message_id_and_unsplit_cache_writes() -> None:
    events = decide_file(DEMO / "message-keys.jsonl")
    usage = payloads(events, "usage.reported")
    assert [(u.message_key, u.cache_creation_5m_tokens, u.cache_creation_1h_tokens)
            for u in usage] == [
        ("msg_01NoRequestId", 300, 0),
        ("a9000000-0000-4000-8000-000000000003", 0, 0),
        ("msg_01NoRequestId", 300, 0),
    ]
    assert [(f.path, f.tool, f.access) for f in payloads(events, "file.touched")] == [
        ("/home/dev/legacy/README.md", "Write", "write"),
        ("/home/dev/legacy/app.py", "MultiEdit", "write"),
        ("/home/dev/legacy/notebooks/explore.ipynb", "NotebookEdit", "write"),
    ]


def test_file_removed_becomes_session_file_removed() -> None:
    line = FileLine(path="/c/projects/p/s1.jsonl", offset=0, line_no=1, mtime=MTIME)
    removed = file_removed_event(SOURCE, "s1", line)
    [event] = decide(removed)
    assert (event.type, event.payload.path, event.session_id, event.occurred_at) == (
        "session.file_removed", "/c/projects/p/s1.jsonl", "s1", MTIME)
    assert event.event_id == derive_event_id(removed.event_id, "session.file_removed", 0)
    with pytest.raises(InvalidEvent, match="unexpected event type 'file.renamed'"):
        decide(removed.model_copy(update={"type": "file.renamed"}))


# --- the oracle, and decide() against it ---------------------------------------------------


SAMPLE_TOTALS = {  # counted by hand from the sample files
    "5f0c9e2a-1b7d-4c3e-9a11-0d2f6b8e4c01": (5, 404, 3248, 50100, 1, 2, 1),
    "7c3d1e90-4a2b-4f6e-8d55-2e9b0c1a7f02": (8, 290, 4600, 22300, 1, 2, 1),
    "9e8b7a60-5c4d-4e3f-b2a1-3f0e1d2c3b04": (6, 70, 4500, 20000, 1, 1, 0),
    "2d4f6a8c-0e1b-4d3c-a5f7-4b1c2d3e4f05": (2, 12, 0, 5000, 1, 0, 0),
    "3e5a7b9d-1f2c-4e4d-b6a8-5c2d3e4f5a06": (0, 0, 0, 0, 1, 0, 0),
    "5a7c9e1f-3b4e-4a6f-88c0-7e4f5a6b7c08": (0, 0, 0, 0, 1, 0, 0),
    "6b8d0f2a-4c5f-4b7a-89d1-8f5a6b7c8d09": (11, 27, 300, 100, 1, 3, 3),
}
FIELDS = ("input", "output", "cache_creation", "cache_read", "prompts", "tool_calls", "files")


def test_oracle_matches_hand_counts_on_the_samples() -> None:
    totals = claude_session_totals(sorted(SAMPLES.rglob("*.jsonl")))
    assert totals == {
        session: dict(zip(FIELDS, counts, strict=True)) for session, counts in SAMPLE_TOTALS.items()
    }


def test_decide_matches_the_oracle_on_the_samples() -> None:
    paths = sorted(SAMPLES.rglob("*.jsonl"))
    events = []
    for event in (e for path in paths for e in line_events(path)):
        with contextlib.suppress(InvalidEvent):  # dead-lettered; the oracle skips them too
            events.extend(decide(event))
    totals = deduped_totals(events)
    assert {s: t for s, t in totals.items() if s in SAMPLE_TOTALS} == claude_session_totals(paths)


@pytest.fixture(scope="module")
def real_fixtures() -> tuple[list[Path], list[SessionEvent], list[InvalidEvent]]:
    """decide() over every real Claude Code fixture line; anything but InvalidEvent fails."""
    if not CLAUDE_FIXTURES.is_dir():
        pytest.skip(f"no real Claude Code fixtures at {CLAUDE_FIXTURES} "
                    "(set SESSIONSTREAM_SHARED_DIR to the shared folder)")
    paths = sorted(CLAUDE_FIXTURES.rglob("*.jsonl"))
    events: list[SessionEvent] = []
    invalid: list[InvalidEvent] = []
    for event in (e for path in paths for e in line_events(path)):
        try:
            events.extend(decide(event))
        except InvalidEvent as exc:
            invalid.append(exc)
    return paths, events, invalid


def test_real_fixtures_parse_without_dead_letters(real_fixtures) -> None:
    paths, events, invalid = real_fixtures
    assert invalid == []  # every real line is a JSON object: nothing is dead-lettered
    assert len(paths) >= 20
    assert {"user.prompted", "assistant.message", "usage.reported", "tool.called",
            "tool.resulted", "file.touched", "subagent.linked", "session.compacted",
            "session.titled", "system.event"} <= {e.type for e in events}


def test_real_fixture_totals_match_the_oracle(real_fixtures) -> None:
    paths, events, _ = real_fixtures
    expected = claude_session_totals(paths)
    assert len(expected) >= 10
    assert deduped_totals(events) == expected


def test_naive_usage_sum_overcounts_a_spotter_session(real_fixtures) -> None:
    paths, events, _ = real_fixtures
    spotter = {s for s, t in claude_session_totals(
        [p for p in paths if "spotter" in p.parts]).items() if tokens(t)}
    naive: dict[str, int] = defaultdict(int)
    for usage in (e for e in events if e.type == "usage.reported"):
        naive[usage.session_id] += usage.payload.total
    deduped = deduped_totals(events)
    assert spotter
    assert all(naive[s] >= tokens(deduped[s]) for s in deduped)
    assert any(naive[s] > tokens(deduped[s]) for s in spotter)


def test_a_background_hand_off_says_so_on_its_context() -> None:
    handoff = decide_file(CROSS_DIR / f"{SESSION_E}.jsonl")
    kinds = {p.session_kind for p in payloads(handoff, "session.context")}
    assert kinds == {"bg"}
    origin = decide_file(CROSS_DIR / f"{SESSION_D}.jsonl")
    assert {p.session_kind for p in payloads(origin, "session.context")} == {None}
