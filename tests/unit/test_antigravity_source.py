"""The Antigravity source: AntigravityProducer on a copy of the hand-written samples
(tests/samples/antigravity, laid out as ``~/.gemini``), then decide() on what it published.

Publishing goes to an in-memory collector; mtimes of the copy are pinned so snapshot times are
known. Expected values are read off the sample files themselves (bytes, hashes, checklists).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.parsers.antigravity import decide
from agents.parsers.lines import MAX_TEXT_CHARS
from agents.parsers.markdown_checklist import read_checklist
from schemas.events import SessionEvent
from schemas.file_changes import FileChanged, FileLine, file_line_event, file_snapshot_event
from streams.errors import InvalidEvent
from streams.producers.antigravity import HISTORY_SESSION, AntigravityProducer
from tests.factories import Collector

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "antigravity"
CONV = "3f2a9c1e-5b7d-4e8f-9a01-23456789abcd"
OTHER = "7c1d0e2f-aaaa-4bbb-8ccc-0123456789ef"
IDE = "0b9e8d7c-6a5f-4e3d-9c2b-1a0f9e8d7c6b"
MTIME = datetime(2026, 3, 12, 15, 0, tzinfo=UTC)
ARTIFACTS = ["task.md", "task.md.resolved", "task.md.resolved.1", "task.md.metadata.json",
             "implementation_plan.md", "implementation_plan.md.metadata.json", "walkthrough.md"]


@pytest.fixture
def gemini(tmp_path: Path) -> Path:
    """A copy of the samples as ``$HOME/.gemini``, every file's mtime pinned to MTIME."""
    target = tmp_path / "home" / ".gemini"
    shutil.copytree(SAMPLES, target)
    for path in target.rglob("*"):
        os.utime(path, (MTIME.timestamp(), MTIME.timestamp()))
    return target


@pytest.fixture
def cli(gemini: Path) -> Path:
    return gemini / "antigravity-cli"


@pytest.fixture
def brain(cli: Path) -> Path:
    return cli / "brain" / CONV


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture
def producer(gemini: Path, tmp_path: Path, collector: Collector) -> AntigravityProducer:
    roots = AntigravityProducer.default_roots({"HOME": str(gemini.parent)})
    return AntigravityProducer(roots, tmp_path / "state" / "checkpoint.json", collector)


async def published(producer: AntigravityProducer, collector: Collector) -> list[FileChanged]:
    await producer.scan_once()
    return collector.events


def decided(events: list[FileChanged]) -> list[SessionEvent]:
    return [out for event in events for out in decide(event)]


def payloads(events: list[SessionEvent], kind: str) -> list:
    return [e.payload for e in events if e.type == kind]


# --- the producer -----------------------------------------------------------------------------


def test_default_roots_are_the_ide_and_cli_homes():
    assert AntigravityProducer.default_roots({"HOME": "/home/me"}) == [
        Path("/home/me/.gemini/antigravity"), Path("/home/me/.gemini/antigravity-cli")]


def test_matches_artifacts_transcript_and_history_but_not_pb_db_or_the_full_transcript(
    producer, gemini, cli, brain
):
    logs = brain / ".system_generated" / "logs"
    for name in ARTIFACTS:
        assert producer.matches(brain / name) and producer.snapshot(brain / name), name
    for path in (logs / "transcript.jsonl", cli / "history.jsonl"):
        assert producer.matches(path) and not producer.snapshot(path)
    ignored = [
        logs / "transcript_full.jsonl", cli / "conversations" / f"{CONV}.pb",
        cli / "conversations" / f"{CONV}.db", gemini / "antigravity" / "implicit" / f"{IDE}.pb",
        gemini / "antigravity" / "user_settings.pb", brain / "screenshot.png",
        brain / "notes" / "task.md",  # artifacts live directly in the conversation folder
        brain / "task.md.resolved.x", cli / "brain" / "not-a-uuid" / "task.md",
        cli / "knowledge" / "ki" / "artifacts" / "overview.md",
        brain / "history.jsonl", Path("/elsewhere/history.jsonl"),
    ]
    assert [p for p in ignored if producer.matches(p)] == []


def test_prune_walks_only_where_a_match_can_be(producer, gemini, brain):
    dirs = [".system_generated", "browser", "scratch"]
    producer.prune(brain, dirs)
    assert dirs == [".system_generated"]
    dirs = ["logs", "steps"]
    producer.prune(brain / ".system_generated", dirs)
    assert dirs == ["logs"]
    dirs = ["brain", "browser_recordings", "conversations"]
    producer.prune(gemini / "antigravity", dirs)
    assert dirs == ["brain", "conversations"]


def test_claims_a_cli_home_an_ide_home_or_a_brain_folder(gemini, cli, tmp_path):
    assert AntigravityProducer.claims(cli)
    assert AntigravityProducer.claims(gemini / "antigravity")
    assert AntigravityProducer.claims(gemini / "antigravity" / "brain")
    (tmp_path / "other" / "brain" / "not-a-uuid").mkdir(parents=True)
    assert not AntigravityProducer.claims(tmp_path / "other")
    history_only = tmp_path / "agy-backup"
    history_only.mkdir()
    shutil.copy(cli / "history.jsonl", history_only)
    assert AntigravityProducer.claims(history_only)
    claude = tmp_path / ".claude"  # Claude Code keeps a history.jsonl of its own
    claude.mkdir()
    (claude / "history.jsonl").write_text('{"display": "hi", "project": "/x"}\n')
    assert not AntigravityProducer.claims(claude)
    assert not AntigravityProducer.claims(tmp_path / "missing")


def test_describe_files_everything_under_its_conversation(producer, cli, brain):
    transcript = brain / ".system_generated" / "logs" / "transcript.jsonl"
    assert producer.describe(transcript, None) == (CONV, "main", None)
    assert producer.describe(brain / "task.md.resolved.1", "# x") == (CONV, "artifact", None)
    assert producer.describe(cli / "history.jsonl", None) == (HISTORY_SESSION, "artifact", None)


async def test_scan_publishes_snapshots_lines_and_ignores_the_rest(
    producer, collector, gemini, cli, brain
):
    events = await published(producer, collector)
    by_path = {}
    for event in events:
        by_path.setdefault(event.payload.path, []).append(event)
    ide_walkthrough = gemini / "antigravity" / "brain" / IDE / "walkthrough.md"
    transcript = brain / ".system_generated" / "logs" / "transcript.jsonl"
    snapshots = {str(brain / name) for name in ARTIFACTS} | {str(ide_walkthrough)}
    assert set(by_path) == snapshots | {str(transcript), str(cli / "history.jsonl")}
    for path in snapshots:
        (event,) = by_path[path]
        assert event.type == "file.snapshot" and event.payload.file_kind == "artifact"
        assert event.payload.line == Path(path).read_text()
        assert event.occurred_at == MTIME
    assert {e.session_id for p in snapshots for e in by_path[p]} == {CONV, IDE}
    lines = by_path[str(transcript)]
    assert len(lines) == len(transcript.read_text().splitlines())
    assert {(e.type, e.session_id, e.payload.file_kind) for e in lines} == {
        ("file.line_appended", CONV, "main")}
    assert {(e.session_id, e.payload.file_kind) for e in by_path[str(cli / "history.jsonl")]} == {
        (HISTORY_SESSION, "artifact")}
    assert await producer.scan_once() == 0


async def test_a_changed_artifact_is_republished_and_a_removed_one_does_not_end_the_session(
    producer, collector, brain
):
    await producer.scan_once()
    before = len(collector.events)
    task = brain / "task.md"
    task.write_text(task.read_text().replace("- [ ] Verify", "- [x] Verify"))
    assert await producer.scan_once() == 1
    (again,) = collector.events[before:]
    assert (again.type, again.payload.path, again.payload.line) == (
        "file.snapshot", str(task), task.read_text())
    assert await producer.scan_once() == 0  # unchanged: nothing

    (brain / "walkthrough.md").unlink()
    await producer.scan_once()
    (removed,) = collector.events[before + 1:]
    assert (removed.type, removed.session_id, removed.payload.file_kind) == (
        "file.removed", CONV, "artifact")
    (out,) = decide(removed)
    assert out.type == "session.file_removed" and not out.payload.ends_session


# --- the parser: artifacts --------------------------------------------------------------------


async def test_artifact_revisions_are_labelled_and_hashed(producer, collector, brain):
    events = decided(await published(producer, collector))
    revised = {(p.path, p.name, p.revision): p for p in payloads(events, "artifact.revised")}
    task = str(brain / "task.md")
    assert {key for key in revised if key[0] == task} == {
        (task, "task.md", "current"), (task, "task.md", "resolved"),
        (task, "task.md", "resolved.1")}
    for (_, _, revision), p in revised.items():
        source = Path(p.path + ("" if revision == "current" else f".{revision}"))
        data = source.read_bytes()
        assert (p.content, p.size, p.truncated) == (data.decode(), len(data), False)
        assert p.content_sha256 == hashlib.sha256(data).hexdigest()
        assert p.updated_at == MTIME
    assert len(revised) == 6  # three task.md, the plan, two walkthroughs (CLI + IDE)


async def test_task_md_reports_progress_current_task_and_title(producer, collector):
    events = decided(await published(producer, collector))
    (state,) = payloads(events, "session.state")  # the resolved snapshots report nothing
    assert (state.facet, state.progress_done, state.progress_total) == ("task.md", 3, 7)
    assert state.current_task == "Add the `export_csv` endpoint"
    assert (state.title, state.updated_at) == ("Add CSV export to the report page", MTIME)
    titles = payloads(events, "session.titled")
    assert [(t.title, t.title_source) for t in titles] == [("CSV export for reports", "summary")]


def test_read_checklist_marks_and_fences():
    text = "intro\n# T\n- [x] a\n* [X] b\n1. [ ] c\n- [/] d <!-- id: 9 -->\n- [~] e\n"
    assert tuple(read_checklist(text)) == ("T", 2, 5, "d")
    assert tuple(read_checklist("```\n# not a title\n- [x] no\n```\nplain")) == (None, 0, 0, None)
    # a current-task comment names the current item over the first in-progress mark
    named = "- [x] a\n- [~] b\n- [ ] c\n<!-- current-task: c -->\n"
    assert tuple(read_checklist(named)) == (None, 1, 3, "c")


async def test_metadata_describes_its_artifact(producer, collector, brain):
    events = decided(await published(producer, collector))
    described = {p.path: p for p in payloads(events, "artifact.described")}
    assert set(described) == {str(brain / "task.md"), str(brain / "implementation_plan.md")}
    task = described[str(brain / "task.md")]
    assert (task.artifact_type, task.version) == ("ARTIFACT_TYPE_TASK", "3")
    assert task.summary == "Checklist for adding CSV export to the report page."
    # seven fractional digits (Windows ticks) parse, cut to microseconds
    assert task.updated_at == datetime(2026, 3, 12, 14, 5, 31, 482190, tzinfo=UTC)
    plan = described[str(brain / "implementation_plan.md")]
    assert (plan.artifact_type, plan.version) == ("ARTIFACT_TYPE_IMPLEMENTATION_PLAN", "1")


def snapshot_event(path: str, text: str) -> FileChanged:
    line = FileLine(path=path, offset=0, line_no=1, line=text, mtime=MTIME,
                    file_kind="artifact")
    return file_snapshot_event("antigravity", CONV, line)


def test_a_long_artifact_is_clipped_but_hashed_whole():
    text = "# Big\n" + "x" * MAX_TEXT_CHARS
    (revised,) = payloads(decide(snapshot_event(f"/b/{CONV}/walkthrough.md", text)),
                          "artifact.revised")
    assert revised.truncated and len(revised.content) == MAX_TEXT_CHARS
    assert revised.content_sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert revised.size == len(text)


def test_metadata_that_is_not_json_is_invalid():
    with pytest.raises(InvalidEvent, match=r"task\.md\.metadata\.json line 1: not JSON"):
        decide(snapshot_event(f"/b/{CONV}/task.md.metadata.json", '{"artifactType": '))


# --- the parser: transcript steps ---------------------------------------------------------------


async def transcript_events(producer, collector) -> list[SessionEvent]:
    events = await published(producer, collector)
    return decided([e for e in events if e.payload.path.endswith("transcript.jsonl")])


async def test_transcript_prompt_reply_and_system_steps(producer, collector):
    events = await transcript_events(producer, collector)
    assert {e.session_id for e in events} == {CONV}
    (prompt,) = payloads(events, "user.prompted")
    assert (prompt.text, prompt.line_uuid, prompt.is_meta) == (
        "Add a CSV export to the report page", "step:0", False)
    assert prompt.timestamp == datetime(2026, 3, 12, 14, 0, tzinfo=UTC)
    replies = [(p.message_key, p.line_uuid, p.block_type) for p in
               payloads(events, "assistant.message")]
    assert replies == [("step:2", "step:2", "text"), ("step:2", "step:2:thinking", "thinking"),
                       ("step:2", "step:2:tool_calls", "tool_use"),
                       ("step:7", "step:7", "text")]
    system = [(p.subtype, p.content) for p in payloads(events, "system.event")]
    assert system == [("CONVERSATION_HISTORY", ""), ("CHECKPOINT", '{"summary": "plan written"}')]
    (unknown,) = payloads(events, "line.unknown")
    assert "a step without a type" in unknown.raw and unknown.line_uuid.startswith("line:")
    assert payloads(events, "usage.reported") == []  # Antigravity writes no token counts


async def test_transcript_tool_steps_are_calls_with_results(producer, collector):
    events = await transcript_events(producer, collector)
    calls = {p.tool_use_id: p for p in payloads(events, "tool.called")}
    assert {key: c.name for key, c in calls.items()} == {
        "step:3": "view_file", "step:4": "run_command", "step:5": "code_action"}
    assert calls["step:3"].input == {"AbsolutePath": "/home/dev/shop/reports/views.py"}
    assert calls["step:4"].input == {"CommandLine": "pytest -q reports"}
    results = {p.tool_use_id: p for p in payloads(events, "tool.resulted")}
    assert {key: r.is_error for key, r in results.items()} == {"step:3": False, "step:4": True}
    assert results["step:4"].content == "pytest: 1 failed"  # step 5 is still running


async def test_transcript_ids_are_deterministic(producer, collector):
    first = await transcript_events(producer, collector)
    again = decided([e for e in collector.events if e.payload.path.endswith("transcript.jsonl")])
    assert [e.event_id for e in first] == [e.event_id for e in again]
    assert len({e.event_id for e in first}) == len(first)


def test_a_transcript_line_that_is_not_json_is_invalid():
    line = FileLine(path=f"/b/{CONV}/.system_generated/logs/transcript.jsonl", offset=0,
                    line_no=4, line='{"step_index": 3, "type"', mtime=MTIME)
    with pytest.raises(InvalidEvent, match="transcript.jsonl line 4: not JSON"):
        decide(file_line_event("antigravity", CONV, line))


# --- the parser: CLI prompt history -----------------------------------------------------------


async def test_history_lines_are_refiled_under_their_conversation(producer, collector):
    events = await published(producer, collector)
    out = decided([e for e in events if e.payload.path.endswith("history.jsonl")])
    prompts = [(e.session_id, e.payload.text, e.payload.is_meta, e.occurred_at)
               for e in out if e.type == "user.prompted"]
    assert prompts == [
        (CONV, "Add a CSV export to the report page", True,
         datetime(2026, 3, 12, 14, 0, tzinfo=UTC)),
        (HISTORY_SESSION, "/help", False, datetime(2026, 3, 12, 14, 8, 20, 123000, tzinfo=UTC)),
        (OTHER, "Why is the nightly job slow?", True, datetime(2026, 3, 12, 15, 40, tzinfo=UTC)),
    ]
    contexts = [(e.session_id, e.payload.cwd) for e in out if e.type == "session.context"]
    assert contexts == [(CONV, "/home/dev/shop"), (HISTORY_SESSION, "/home/dev/shop"),
                        (OTHER, "/home/dev/ops")]
    line_uuids = [e.payload.line_uuid for e in out if e.type == "user.prompted"]
    assert len(set(line_uuids)) == 3 and all(u.startswith("history:") for u in line_uuids)
    assert Counter(e.type for e in out) == {"user.prompted": 3, "session.context": 3}
