"""CodexProducer against temporary ``$CODEX_HOME`` trees and the real localpush rollouts.

Publishing goes to an in-memory collector; offsets and line numbers are recomputed
independently from the bytes written. The tailing machinery itself is covered by
test_file_producer.py; this checks what the Codex source adds: roots, names and sessions,
including resumed-thread segments, both sub-agent shapes and user forks
(tests/samples/codex_cross).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.file_changes import FileChanged
from streams.producers.codex import CodexProducer
from tests.codex_cross_expected import FILES
from tests.factories import Collector
from tests.fixtures_path import shared_dir

pytestmark = pytest.mark.unit

LIVE = "019cd6f9-7a80-7a11-8c11-0000000000a1"
ARCHIVED = "019c0000-1111-7222-8333-444455556666"
CHILD = "019cd6fe-0e60-7b22-8c22-0000000000b2"
# Resolved at import: the test harness strips SESSIONSTREAM_* variables once the stack starts.
LOCALPUSH = shared_dir() / "fixtures" / "sessions" / "codex" / "localpush"


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


# --- forks, sub-agents and resumed threads (session-formats.md 3.1) --------------------------

ROOT = "019ce146-3280-7a3c-9d51-6b2f0e4c8a01"
SUB = "019ce146-55b2-7c14-8e7a-3f90d2b6c512"
NESTED = "019ce146-80a0-7e11-9a22-0000000000d4"
SEGMENT = "019ceb77-7341-7e90-8a4b-d3f6c1e2a956"
CROSS = Path(__file__).resolve().parents[1] / "samples" / "codex_cross"


def named(thread: str, segment: str | None = None) -> Path:
    tail = f"{thread}_{segment}" if segment else thread
    return Path(f"/codex/sessions/2026/03/12/rollout-2026-03-12T09-00-00-{tail}.jsonl")


def meta_line(thread: str, **fields: object) -> str:
    return json.dumps({"timestamp": "2026-03-12T09:00:00.100Z", "type": "session_meta",
                       "payload": {"id": thread, "cwd": "/home/dev/demo", **fields}})


def test_a_resumed_thread_segment_is_a_main_file_of_the_thread(producer):
    first = meta_line(LIVE, forked_from_id=None, history_base={"thread_id": LIVE})
    assert producer.describe(named(LIVE, SEGMENT), first) == (LIVE, "main", None)
    assert producer.describe(named(LIVE, SEGMENT), None) == (LIVE, "main", None)
    assert producer.matches(named(LIVE, SEGMENT))


def test_a_0_144_subagent_is_filed_under_its_session_id_or_parent(producer):
    new_shape = meta_line(SUB, session_id=ROOT, parent_thread_id=ROOT, thread_source="subagent",
                          agent_nickname="Mochi", source={"subagent": {"other": "reviewer"}})
    assert producer.describe(named(SUB), new_shape) == (ROOT, "subagent", SUB)
    no_session = meta_line(SUB, parent_thread_id=ROOT, thread_source="subagent")
    assert producer.describe(named(SUB), no_session) == (ROOT, "subagent", SUB)
    only_session = meta_line(SUB, session_id=ROOT, thread_source="subagent")
    assert producer.describe(named(SUB), only_session) == (ROOT, "subagent", SUB)
    # A session_id naming the thread itself is no root: the parent is used.
    own = meta_line(SUB, session_id=SUB, parent_thread_id=ROOT, thread_source="subagent")
    assert producer.describe(named(SUB), own) == (ROOT, "subagent", SUB)
    # Both spellings of the old shape, and a top-level parent without thread_source ignored.
    for key in ("subagent", "sub_agent"):
        old = meta_line(SUB, source={key: {"thread_spawn": {"parent_thread_id": ROOT}}})
        assert producer.describe(named(SUB), old) == (ROOT, "subagent", SUB)
    user = meta_line(SUB, parent_thread_id=ROOT, thread_source="user")
    assert producer.describe(named(SUB), user) == (SUB, "main", None)


def test_a_nested_subagent_stays_under_the_root_session(producer):
    new_shape = meta_line(NESTED, session_id=ROOT, parent_thread_id=SUB,
                          thread_source="subagent", forked_from_id=SUB)
    assert producer.describe(named(NESTED), new_shape) == (ROOT, "subagent", NESTED)
    both = meta_line(NESTED, session_id=ROOT, thread_source="subagent", source={
        "subagent": {"thread_spawn": {"parent_thread_id": SUB, "depth": 2}}})
    assert producer.describe(named(NESTED), both) == (ROOT, "subagent", NESTED)
    # Without a root named on the line, the parent is all there is.
    old = meta_line(NESTED, source={"subagent": {"thread_spawn": {"parent_thread_id": SUB,
                                                                  "depth": 2}}})
    assert producer.describe(named(NESTED), old) == (SUB, "subagent", NESTED)


def test_a_user_fork_stays_its_own_session(producer):
    fork = meta_line(CHILD, forked_from_id=LIVE, source="cli")
    assert producer.describe(named(CHILD), fork) == (CHILD, "main", None)
    # A replayed parent meta is not the file's own: a spawn on it does not move the file.
    spawned = meta_line(LIVE, source={"subagent": {"thread_spawn": {"parent_thread_id": ROOT}}})
    assert producer.describe(named(CHILD), spawned) == (CHILD, "main", None)


async def test_cross_samples_are_filed_as_expected(collector, tmp_path):
    producer = CodexProducer([CROSS], tmp_path / "cp.json", collector)
    assert await producer.scan_once() == sum(
        len(expected_lines(f)) for f in CROSS.rglob("rollout-*.jsonl"))
    filed = {(Path(e.payload.path).relative_to(CROSS).as_posix(), e.session_id,
              e.payload.file_kind, e.payload.agent_id) for e in collector.events}
    assert filed == {(path, *where) for path, where in FILES.items()}
