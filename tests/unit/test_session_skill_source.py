"""The session-skill source: SessionSkillProducer on copies of the hand-written sample projects
(tests/samples/session_skill) and decide() of agents/parse_session_skill on each facet.

Publishing goes to an in-memory collector. The samples hold three projects (``shop`` with the
``agents/`` layout, ``ledger`` with openbuff's ``.agents/``, ``infra`` with ``.harness/``) and a
``node_modules`` folder whose session-looking file must never be walked.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.parsers.session_skill import decide
from schemas.events import (
    ArtifactRevised,
    SessionFileRemoved,
    SessionStateReported,
    SystemEvent,
    UnknownLine,
)
from schemas.file_changes import FileChanged, FileLine, file_line_event, file_snapshot_event
from streams.errors import InvalidEvent
from streams.producers.session_skill import SessionSkillProducer
from tests.factories import Collector

pytestmark = pytest.mark.unit

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "session_skill"
SHOP = SAMPLES / "shop" / "agents" / "sessions" / "checkout-flow"
LEDGER = SAMPLES / "ledger" / ".agents" / "sessions" / "audit-2026-07"
INFRA = SAMPLES / "infra" / ".harness" / "sessions" / "changes--ci--proposal"
VENDORED = SAMPLES / "shop" / "node_modules" / "left-pad" / "agents" / "sessions" / "vendored"
MTIME = datetime(2026, 7, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def projects(tmp_path: Path) -> Path:
    """A writable copy of the sample projects (a directory of projects)."""
    return Path(shutil.copytree(SAMPLES, tmp_path / "projects"))


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture
def producer(projects: Path, tmp_path: Path, collector: Collector) -> SessionSkillProducer:
    return SessionSkillProducer([projects], tmp_path / "state" / "checkpoint.json", collector)


def sample_files(root: Path) -> set[Path]:
    """The files the source must read, listed by hand (not by the code under test)."""
    return {root / "shop/agents/sessions/checkout-flow" / name
            for name in ("state.json", "spec.md", "plan.json")} | {
        root / "ledger/.agents/sessions/audit-2026-07" / name
        for name in ("STATE.json", "SPEC.md", "PLAN.md", "STATUS.md", "EVENTS.jsonl")} | {
        root / "infra/.harness/sessions/changes--ci--proposal" / name
        for name in ("state.json", "autopilot-state.json", "handoff.json")}


# --- producer -------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "expected"), [
    ("/p/agents/sessions/s/state.json", True),
    ("/p/agents/sessions/s/spec.md", True),
    ("/p/agents/sessions/s/plan.json", True),
    ("/p/.agents/sessions/s/STATE.json", True),
    ("/p/.agents/sessions/s/PLAN.md", True),
    ("/p/.agents/sessions/s/STATUS.md", True),
    ("/p/.agents/sessions/s/EVENTS.jsonl", True),
    ("/p/.harness/sessions/s/autopilot-state.json", True),
    ("/p/.harness/sessions/s/handoff.json", True),
    ("/p/.agents/sessions/s/LESSONS.md", False),
    ("/p/.agents/sessions/s/findings/x.md", False),
    ("/p/.agents/sessions/STATE.json", False),
    ("/p/agents/state.json", False),
    ("/p/other/sessions/s/state.json", False),
    ("/p/.harness/sessions/s/spec.md", False),
    ("/p/agents/tasks/s/state.json", False),
])
def test_matches_only_known_files_directly_in_a_slug_folder(
    producer: SessionSkillProducer, path: str, expected: bool
) -> None:
    assert producer.matches(Path(path)) is expected


def test_every_file_but_the_event_log_is_a_snapshot(producer: SessionSkillProducer) -> None:
    assert producer.snapshot(Path("/p/.agents/sessions/s/STATE.json"))
    assert producer.snapshot(Path("/p/.agents/sessions/s/PLAN.md"))
    assert producer.snapshot(Path("/p/agents/sessions/s/plan.json"))
    assert not producer.snapshot(Path("/p/.agents/sessions/s/EVENTS.jsonl"))


def test_prune_skips_dependency_vcs_and_build_trees(
    producer: SessionSkillProducer, tmp_path: Path
) -> None:
    names = ["src", "node_modules", ".git", ".venv", "__pycache__", "agents", ".agents",
             ".harness", "dist", "target", "docs"]
    producer.prune(tmp_path, names)
    assert names == ["src", "agents", ".agents", ".harness", "docs"]


def test_prune_keeps_a_build_named_project_that_holds_sessions(
    producer: SessionSkillProducer, tmp_path: Path
) -> None:
    (tmp_path / "build" / ".agents" / "sessions").mkdir(parents=True)
    (tmp_path / "dist").mkdir()
    names = ["build", "dist"]
    producer.prune(tmp_path, names)
    assert names == ["build"]


def test_prune_walks_only_sessions_below_hidden_layouts_and_nothing_below_a_slug(
    producer: SessionSkillProducer,
) -> None:
    hidden = ["sessions", "cache", "skills"]
    producer.prune(Path("/p/.agents"), hidden)
    assert hidden == ["sessions"]
    below_slug = ["findings", "notes"]
    producer.prune(Path("/p/.agents/sessions/s"), below_slug)
    assert below_slug == []


def test_discovery_never_enters_node_modules(projects: Path, tmp_path: Path) -> None:
    visited: list[Path] = []

    class Recording(SessionSkillProducer):
        def prune(self, dirpath: Path, dirnames: list[str]) -> None:
            visited.append(dirpath)
            super().prune(dirpath, dirnames)

    producer = Recording([projects], tmp_path / "cp.json", Collector())
    vendored = projects / VENDORED.relative_to(SAMPLES) / "state.json"
    assert producer.matches(vendored)  # only the pruning keeps it out

    assert set(producer._discover()) == sample_files(projects)
    assert projects / "shop" / "src" in visited
    assert not [p for p in visited if "node_modules" in p.parts or "findings" in p.parts]


def test_claims_a_project_or_a_directory_of_projects(tmp_path: Path) -> None:
    assert SessionSkillProducer.claims(SAMPLES)
    assert SessionSkillProducer.claims(SAMPLES / "ledger")
    assert SessionSkillProducer.claims(SAMPLES / "infra")
    (tmp_path / "empty" / "agents" / "sessions").mkdir(parents=True)  # no slug folder
    (tmp_path / "deep" / "a" / "b" / ".agents" / "sessions" / "s").mkdir(parents=True)
    assert not SessionSkillProducer.claims(tmp_path / "empty")
    assert not SessionSkillProducer.claims(tmp_path / "deep")  # two levels down: not ours
    assert not SessionSkillProducer.claims(tmp_path / "missing")


def test_describe_names_the_session_by_project_and_slug(producer: SessionSkillProducer) -> None:
    assert producer.describe(LEDGER / "PLAN.md", None) == (
        "ledger/audit-2026-07", "artifact", None)
    assert producer.describe(SHOP / "state.json", "{") == (
        "shop/checkout-flow", "artifact", None)
    assert producer.describe(INFRA / "handoff.json", None) == (
        "infra/changes--ci--proposal", "artifact", None)


def test_default_roots_come_only_from_the_skill_roots_variable() -> None:
    assert SessionSkillProducer.default_roots({}) == []
    assert SessionSkillProducer.default_roots({"SESSIONSTREAM_SKILL_ROOTS": ""}) == []
    env = {"SESSIONSTREAM_SKILL_ROOTS": os.pathsep.join(["/code/a", " ", "/code/b "]),
           "HOME": "/home/dev"}
    assert SessionSkillProducer.default_roots(env) == [Path("/code/a"), Path("/code/b")]


async def test_scan_publishes_snapshots_and_event_lines_once(
    projects: Path, producer: SessionSkillProducer, collector: Collector
) -> None:
    log = projects / LEDGER.relative_to(SAMPLES) / "EVENTS.jsonl"
    lines = log.read_text().splitlines()

    assert await producer.scan_once() == 10 + len(lines)
    snapshots = [e for e in collector.events if e.type == "file.snapshot"]
    appended = [e for e in collector.events if e.type == "file.line_appended"]
    assert {Path(e.payload.path) for e in snapshots} == sample_files(projects) - {log}
    for event in snapshots:
        assert event.payload.line == Path(event.payload.path).read_text()
    assert [e.payload.line for e in appended] == lines
    assert {(e.source, e.payload.file_kind) for e in collector.events} == {
        ("session-skill", "artifact")}
    assert {e.session_id for e in collector.events} == {
        "shop/checkout-flow", "ledger/audit-2026-07", "infra/changes--ci--proposal"}
    assert await producer.scan_once() == 0


async def test_only_changed_files_are_republished(
    projects: Path, producer: SessionSkillProducer, collector: Collector
) -> None:
    folder = projects / LEDGER.relative_to(SAMPLES)
    await producer.scan_once()
    collector.events.clear()

    state = folder / "STATE.json"
    state.write_text(state.read_text().replace('"reviewing"', '"completed"'))
    os.utime(state, (1_900_000_000, 1_900_000_000))  # a rewrite within the mtime granularity
    line = '{"ts": "2026-07-03T08:00:00Z", "kind": "session_status", "payload": {"status": "x"}}'
    with (folder / "EVENTS.jsonl").open("a") as f:
        f.write(line + "\n")

    assert await producer.scan_once() == 2
    assert [(e.type, Path(e.payload.path).name) for e in collector.events] == [
        ("file.line_appended", "EVENTS.jsonl"), ("file.snapshot", "STATE.json")]
    assert '"completed"' in collector.events[1].payload.line
    assert collector.events[0].payload.line == line


async def test_removing_a_file_is_published_as_an_artifact_removal(
    projects: Path, producer: SessionSkillProducer, collector: Collector
) -> None:
    await producer.scan_once()
    plan = projects / LEDGER.relative_to(SAMPLES) / "PLAN.md"
    plan.unlink()
    collector.events.clear()

    assert await producer.scan_once() == 0
    [removed] = collector.events
    assert (removed.type, removed.payload.path, removed.session_id, removed.payload.file_kind) == (
        "file.removed", str(plan), "ledger/audit-2026-07", "artifact")
    [payload] = [e.payload for e in decide(removed)]
    assert isinstance(payload, SessionFileRemoved)
    assert not payload.ends_session


async def test_every_published_sample_event_parses(
    producer: SessionSkillProducer, collector: Collector
) -> None:
    await producer.scan_once()
    parsed = [e for event in collector.events for e in decide(event)]
    assert {e.session_id for e in parsed} == {
        "shop/checkout-flow", "ledger/audit-2026-07", "infra/changes--ci--proposal"}
    assert sorted(e.payload.name for e in parsed if isinstance(e.payload, ArtifactRevised)) == [
        "PLAN.md", "SPEC.md", "STATUS.md", "handoff.json", "plan.json", "spec.md"]


# --- parser ---------------------------------------------------------------------------------


def snapshot(path: Path, text: str | None = None) -> FileChanged:
    line = FileLine(path=str(path), offset=0, line_no=1, mtime=MTIME, file_kind="artifact",
                    line=path.read_text() if text is None else text)
    return file_snapshot_event("session-skill", "test/session", line)


def log_line(text: str, offset: int = 0) -> FileChanged:
    line = FileLine(path=str(LEDGER / "EVENTS.jsonl"), offset=offset, line_no=1, line=text,
                    mtime=MTIME, file_kind="artifact")
    return file_line_event("session-skill", "ledger/audit-2026-07", line)


def payloads(event: FileChanged) -> list:
    return [e.payload for e in decide(event)]


def state_of(event: FileChanged, facet: str) -> SessionStateReported:
    [state] = [p for p in payloads(event)
               if isinstance(p, SessionStateReported) and p.facet == facet]
    return state


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_state_json_reports_the_session_row_fields() -> None:
    state = state_of(snapshot(SHOP / "state.json"), "state.json")
    assert state.model_dump(exclude={"kind", "line_uuid", "timestamp", "agent_id",
                                     "is_sidechain"}) == {
        "facet": "state.json", "updated_at": at("2026-03-10T09:30:00+00:00"),
        "slug": "checkout-flow", "title": "Checkout flow rewrite", "status": "executing",
        "session_type": "feature", "project": "shop", "working_dir": str(SAMPLES / "shop"),
        "session_dir": str(SHOP), "current_task": "T2",
        "checkpoint": {"taskId": "T1", "phase": "verify", "passed": True,
                       "summary": "cart totals covered"},
        "progress_done": 1, "progress_total": 3}


def test_openbuff_state_reads_camel_case_and_a_task_object() -> None:
    state = state_of(snapshot(LEDGER / "STATE.json"), "STATE.json")
    assert (state.status, state.current_task, state.updated_at, state.session_type) == (
        "reviewing", "Check rounding rules", at("2026-07-02T10:05:00+00:00"), "skill")
    assert state.checkpoint is not None and state.checkpoint["receiptIds"] == ["r-1"]
    assert (state.progress_done, state.progress_total, state.title) == (None, None, None)


@pytest.mark.parametrize(("doc", "expected"), [
    ({"Current-Task": "T9", "UpdatedAt": "2026-01-02T03:04:05Z", "session_type": "fix"},
     ("T9", at("2026-01-02T03:04:05+00:00"), "fix", None, None)),
    ({"currentTask": 4, "progressDone": 2, "progress_total": 5, "kind": "audit"},
     ("4", MTIME, "audit", 2, 5)),
    ({"progress": "3/7"}, (None, MTIME, "skill", 3, 7)),
    ({"progress": {"completed": 1, "total": 2}}, (None, MTIME, "skill", 1, 2)),
    ({"progress": {"done": -1, "total": 2}}, (None, MTIME, "skill", None, None)),
    ({"tasks": [{"status": "Done"}, {"status": "todo"}, {"checked": True}]},
     (None, MTIME, "skill", 2, 3)),
])
def test_state_keys_are_read_leniently(tmp_path: Path, doc: dict, expected: tuple) -> None:
    path = tmp_path / "p" / "agents" / "sessions" / "s" / "state.json"
    state = state_of(snapshot(path, json.dumps(doc)), "state.json")
    assert (state.current_task, state.updated_at, state.session_type, state.progress_done,
            state.progress_total) == expected


def test_every_snapshot_reports_the_skill_type_below_every_file() -> None:
    layout = state_of(snapshot(LEDGER / "SPEC.md"), "layout")
    assert (layout.session_type, layout.updated_at) == ("skill", datetime(1970, 1, 1, tzinfo=UTC))
    assert state_of(snapshot(LEDGER / "SPEC.md"), "SPEC.md").session_type is None


def test_spec_gives_the_first_heading_outside_code_as_title_and_an_artifact() -> None:
    text = (SHOP / "spec.md").read_text()
    state, artifact, _layout = payloads(snapshot(SHOP / "spec.md"))
    assert (state.facet, state.title, state.updated_at, state.slug) == (
        "spec.md", "Checkout flow rewrite", MTIME, "checkout-flow")
    assert isinstance(artifact, ArtifactRevised)
    assert (artifact.path, artifact.name, artifact.artifact_type, artifact.content,
            artifact.size, artifact.updated_at, artifact.truncated) == (
        str(SHOP / "spec.md"), "spec.md", "spec", text, len(text.encode()), MTIME, False)
    assert artifact.content_sha256 == hashlib.sha256(text.encode()).hexdigest()


def test_plan_json_counts_done_tasks_and_names_the_one_in_progress() -> None:
    state, artifact, _layout = payloads(snapshot(SHOP / "plan.json"))
    assert (state.progress_done, state.progress_total, state.current_task) == (
        2, 4, "Payment form")
    assert (artifact.name, artifact.artifact_type) == ("plan.json", "plan")


def test_plan_json_of_phases_counts_their_tasks(tmp_path: Path) -> None:
    plan = {"currentTask": "deploy", "phases": [
        {"name": "one", "steps": [{"status": "completed"}, {"status": "complete"}]},
        {"name": "two", "steps": [{"status": "blocked"}]}]}
    path = tmp_path / "p" / "agents" / "sessions" / "s" / "plan.json"
    state = state_of(snapshot(path, json.dumps(plan)), "plan.json")
    assert (state.progress_done, state.progress_total, state.current_task) == (2, 3, "deploy")


def test_plan_md_counts_checkboxes_and_reads_the_current_task_marker() -> None:
    state, artifact, _layout = payloads(snapshot(LEDGER / "PLAN.md"))
    assert (state.facet, state.progress_done, state.progress_total, state.current_task) == (
        "PLAN.md", 2, 6, "A3 Check rounding rules")
    assert artifact.content == (LEDGER / "PLAN.md").read_text()


def test_plan_md_without_marker_takes_the_first_item_in_progress() -> None:
    text = "- [x] one\n- [ ] two\n- [/] three\n- [~] four\n"
    state = state_of(snapshot(LEDGER / "PLAN.md", text), "PLAN.md")
    assert (state.progress_done, state.progress_total, state.current_task) == (1, 4, "three")
    empty = state_of(snapshot(LEDGER / "PLAN.md", "# Plan\n\nnothing yet\n"), "PLAN.md")
    assert (empty.progress_done, empty.progress_total, empty.current_task) == (None, None, None)


def test_status_md_is_an_artifact_with_the_common_fields() -> None:
    state, artifact, _layout = payloads(snapshot(LEDGER / "STATUS.md"))
    assert (state.facet, state.slug, state.project, state.working_dir, state.session_dir) == (
        "STATUS.md", "audit-2026-07", "ledger", str(SAMPLES / "ledger"), str(LEDGER))
    assert (state.status, state.title, state.current_task) == (None, None, None)
    assert (artifact.name, artifact.artifact_type) == ("STATUS.md", "status")


def test_harness_files() -> None:
    state = state_of(snapshot(INFRA / "state.json"), "state.json")
    assert (state.current_task, state.progress_done, state.progress_total, state.updated_at) == (
        "add cache step", 2, 4, MTIME)
    auto = state_of(snapshot(INFRA / "autopilot-state.json"), "autopilot-state.json")
    assert (auto.status, auto.current_task, auto.progress_done, auto.progress_total) == (
        "execute", "speed up", 1, 2)
    handoff = [p for p in payloads(snapshot(INFRA / "handoff.json"))
               if isinstance(p, ArtifactRevised)]
    assert [(a.name, a.artifact_type) for a in handoff] == [("handoff.json", "handoff")]


def test_event_lines_become_system_events_and_status_or_task_state() -> None:
    lines = (LEDGER / "EVENTS.jsonl").read_text().splitlines()
    first, update, task, status = (payloads(log_line(text)) for text in lines)
    assert [type(p) for p in first] == [SystemEvent, SessionStateReported]
    assert (first[0].subtype, first[0].content, first[0].timestamp) == (
        "session_status", "session created", at("2026-07-01T08:00:00+00:00"))
    assert (first[1].facet, first[1].status, first[1].updated_at, first[1].slug) == (
        "EVENTS.jsonl#session_status", "draft", at("2026-07-01T08:00:00+00:00"),
        "audit-2026-07")
    assert [(type(p), p.subtype) for p in update] == [(SystemEvent, "task_update")]
    assert (task[1].facet, task[1].current_task, task[1].status) == (
        "EVENTS.jsonl#current_task", "A3", None)
    assert status[1].status == "reviewing"


def test_an_event_line_without_kind_is_kept_as_unknown() -> None:
    [unknown] = payloads(log_line('{"ts": "2026-07-01T08:00:00Z", "note": "free text"}'))
    assert isinstance(unknown, UnknownLine)
    assert "free text" in unknown.raw


@pytest.mark.parametrize(("name", "text", "reason"), [
    ("STATE.json", '{"status": "active",', "not JSON"),
    ("STATE.json", '["active"]', "not a JSON object"),
    ("plan.json", "{tasks: []}", "not JSON"),
])
def test_unreadable_state_or_plan_is_an_invalid_event_naming_the_file(
    tmp_path: Path, name: str, text: str, reason: str
) -> None:
    path = tmp_path / "p" / ".agents" / "sessions" / "s" / name
    with pytest.raises(InvalidEvent, match=reason) as raised:
        decide(snapshot(path, text))
    assert str(path) in str(raised.value)


def test_a_path_outside_the_layouts_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidEvent, match="sessions/<slug>"):
        decide(snapshot(tmp_path / "notes" / "state.json", "{}"))


def test_decide_is_deterministic() -> None:
    event = snapshot(LEDGER / "STATE.json")
    first, again = decide(event), decide(event)
    assert [e.event_id for e in first] == [e.event_id for e in again]
    assert len({e.event_id for e in first}) == len(first)
