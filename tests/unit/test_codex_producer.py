"""CodexProducer against temporary ``$CODEX_HOME`` trees and the real localpush rollouts.

Publishing goes to an in-memory collector; offsets and line numbers are recomputed
independently from the bytes written. The tailing machinery itself is covered by
test_file_producer.py; this checks what the Codex source adds: roots, names and sessions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.file_changes import FileChanged
from streams.producers.codex import CodexProducer
from tests.fixtures_path import shared_dir

pytestmark = pytest.mark.unit

LIVE = "019cd6f9-7a80-7a11-8c11-0000000000a1"
ARCHIVED = "019c0000-1111-7222-8333-444455556666"
CHILD = "019cd6fe-0e60-7b22-8c22-0000000000b2"
# Resolved at import: the test harness strips SESSIONSTREAM_* variables once the stack starts.
LOCALPUSH = shared_dir() / "fixtures" / "sessions" / "codex" / "localpush"


class Collector:
    """An in-memory ``publish``."""

    def __init__(self) -> None:
        self.events: list[FileChanged] = []

    async def __call__(self, events: list[FileChanged]) -> None:
        self.events.extend(events)


def expected_lines(path: Path) -> list[tuple[int, int, str]]:
    """(offset, line_no, text) of each complete non-empty line, computed from the bytes."""
    result, offset = [], 0
    for line_no, raw in enumerate(path.read_bytes().split(b"\n")[:-1], 1):
        if raw.strip():
            result.append((offset, line_no, raw.decode()))
        offset += len(raw) + 1
    return result


def rollout(folder: Path, thread: str, *lines: dict, stamp: str = "2026-03-10T09-00-00") -> Path:
    path = folder / f"rollout-{stamp}-{thread}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def meta(thread: str, source: object = "cli") -> dict:
    return {"timestamp": "2026-03-10T09:00:00.100Z", "type": "session_meta",
            "payload": {"id": thread, "cwd": "/home/dev/demo", "source": source}}


PROMPT = {"timestamp": "2026-03-10T09:00:01Z", "type": "event_msg",
          "payload": {"type": "user_message", "message": "hi"}}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "codex-home"


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture
def producer(home: Path, tmp_path: Path, collector: Collector) -> CodexProducer:
    roots = CodexProducer.default_roots({"CODEX_HOME": str(home)})
    return CodexProducer(roots, tmp_path / "state" / "checkpoint.json", collector)


async def test_dated_and_archived_rollouts_publish_under_their_thread(
    home, producer, collector
):
    live = rollout(home / "sessions" / "2026" / "03" / "10", LIVE, meta(LIVE), PROMPT)
    archived = rollout(home / "archived_sessions", ARCHIVED, meta(ARCHIVED), PROMPT, PROMPT,
                       stamp="2026-01-02T08-30-00")
    (home / "sessions" / "2026" / "03" / "10" / "notes.jsonl").write_text("{}\n")
    (home / "sessions" / "rollout-2025-05-07T17-24-21-legacy.json").write_text("{}\n")
    (home / "session_index.jsonl").write_text('{"id": "x"}\n')  # beside the roots, not in them

    assert await producer.scan_once() == 5
    by_path: dict[str, list[FileChanged]] = {}
    for event in collector.events:
        assert (event.source, event.type) == ("codex", "file.line_appended")
        by_path.setdefault(event.payload.path, []).append(event)
    assert set(by_path) == {str(live), str(archived)}
    for path, thread in ((live, LIVE), (archived, ARCHIVED)):
        events = by_path[str(path)]
        got = [(e.payload.offset, e.payload.line_no, e.payload.line) for e in events]
        assert got == expected_lines(path)
        assert {(e.session_id, e.payload.file_kind, e.payload.agent_id) for e in events} == {
            (thread, "main", None)}
    assert await producer.scan_once() == 0


async def test_archiving_a_thread_removes_the_live_file_and_republishes_it_under_the_same_session(
    home, producer, collector
):
    live = rollout(home / "sessions" / "2026" / "03" / "10", LIVE, meta(LIVE), PROMPT)
    assert await producer.scan_once() == 2
    target = home / "archived_sessions" / live.name
    target.parent.mkdir(parents=True)
    live.rename(target)

    assert await producer.scan_once() == 2
    removed = [e for e in collector.events if e.type == "file.removed"]
    assert [(e.payload.path, e.session_id) for e in removed] == [(str(live), LIVE)]
    again = [e for e in collector.events if e.payload.path == str(target)]
    assert [(e.session_id, e.payload.line) for e in again] == [
        (LIVE, line) for _, _, line in expected_lines(target)]


async def test_a_spawned_subagent_thread_is_published_under_its_parent(home, producer, collector):
    spawn = {"subagent": {"thread_spawn": {"parent_thread_id": LIVE, "depth": 1}}}
    day = home / "sessions" / "2026" / "03" / "10"
    child = rollout(day, CHILD, meta(CHILD, spawn), meta(LIVE), PROMPT)
    review = rollout(day, ARCHIVED, meta(ARCHIVED, {"subagent": "review"}))

    assert await producer.scan_once() == 4
    sessions = {(e.payload.path, e.session_id, e.payload.file_kind, e.payload.agent_id)
                for e in collector.events}
    assert sessions == {(str(child), LIVE, "subagent", CHILD),
                        (str(review), ARCHIVED, "main", None)}


def test_describe_falls_back_to_the_first_line_then_the_stem(producer):
    odd = Path("/codex/sessions/rollout-odd.jsonl")
    assert producer.describe(odd, json.dumps(meta(LIVE))) == (LIVE, "main", None)
    assert producer.describe(odd, "not json") == ("rollout-odd", "main", None)
    assert producer.describe(odd, None) == ("rollout-odd", "main", None)
    named = Path(f"/codex/sessions/rollout-2026-03-10T09-00-00-{LIVE}.jsonl")
    assert producer.describe(named, json.dumps(PROMPT)) == (LIVE, "main", None)


def test_default_roots_follow_codex_home():
    assert CodexProducer.default_roots({"CODEX_HOME": "/opt/codex"}) == [
        Path("/opt/codex/sessions"), Path("/opt/codex/archived_sessions")]
    assert CodexProducer.default_roots({"HOME": "/home/me"}) == [
        Path("/home/me/.codex/sessions"), Path("/home/me/.codex/archived_sessions")]


async def test_real_rollouts_publish_every_line_under_the_thread_of_their_name(
    collector, tmp_path
):
    if not LOCALPUSH.is_dir():
        pytest.skip(f"shared fixtures not found at {LOCALPUSH} (set SESSIONSTREAM_SHARED_DIR)")
    files = sorted(LOCALPUSH.rglob("rollout-*.jsonl"))
    producer = CodexProducer([LOCALPUSH], tmp_path / "cp.json", collector)

    assert await producer.scan_once() == sum(len(expected_lines(f)) for f in files) == 4760
    sessions = {e.payload.path: e.session_id for e in collector.events}
    assert len(sessions) == len(files) == 6
    for f in files:
        thread = json.loads(f.read_text().split("\n", 1)[0])["payload"]["id"]
        assert sessions[str(f)] == thread and f.stem.endswith(thread)
