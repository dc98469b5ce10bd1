"""FileProducer and ClaudeCodeProducer against temporary session trees and the real fixtures.

Publishing goes to an in-memory collector that can be told to fail like a broker outage.
Offsets and line numbers are recomputed independently from the bytes written.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas.file_changes import FileChanged
from streams.producers import tailing
from streams.producers.base import BATCH_SIZE
from streams.producers.claude import ClaudeCodeProducer
from tests.waiting import eventually

pytestmark = pytest.mark.unit

SESSION = "11111111-2222-3333-4444-555555555555"
OTHER = "99999999-8888-7777-6666-555555555555"


class Collector:
    """An in-memory ``publish``: records every attempt; raises while ``failing`` is set."""

    def __init__(self) -> None:
        self.published: list[list[FileChanged]] = []
        self.attempted: list[list[FileChanged]] = []
        self.failing: Callable[[int], bool] = lambda call: False

    async def __call__(self, events: list[FileChanged]) -> None:
        self.attempted.append(list(events))
        if self.failing(len(self.attempted)):
            raise ConnectionError("broker unavailable")
        self.published.append(list(events))

    @property
    def events(self) -> list[FileChanged]:
        return [event for batch in self.published for event in batch]


def expected_lines(path: Path) -> list[tuple[int, int, str]]:
    """(offset, line_no, text) of each complete non-empty line, computed from the bytes."""
    result, offset = [], 0
    data = path.read_bytes()
    for line_no, raw in enumerate(data.split(b"\n")[:-1], 1):
        if raw.strip():
            result.append((offset, line_no, raw.decode()))
        offset += len(raw) + 1
    return result


def write(path: Path, *lines: str, end: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + end)


def line(**fields: object) -> str:
    return json.dumps({"sessionId": SESSION, "type": "user", **fields}, ensure_ascii=False)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "projects"


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture
def make(root: Path, tmp_path: Path, collector: Collector) -> Callable[..., ClaudeCodeProducer]:
    def factory(rescan_interval: float = 5.0) -> ClaudeCodeProducer:
        checkpoint = tmp_path / "state" / "checkpoint.json"
        return ClaudeCodeProducer([root], checkpoint, collector, rescan_interval)

    return factory


async def test_three_eras_published_once_with_offsets_and_sessions(root, make, collector):
    proj = root / "-home-me-repo"
    main = proj / f"{SESSION}.jsonl"
    write(main, line(text="héllo"), "", line(text="✓ done"), "   ", line(n=3))
    sub = proj / SESSION / "subagents" / "agent-aac57f5.jsonl"
    write(sub, line(agentId="aac57f5"), line(n=2))
    nested = proj / SESSION / "subagents" / "workflows" / "run1" / "agent-w1.jsonl"
    write(nested, line(agentId="w1"))
    write(nested.parent / "journal.jsonl", '{"run": "log"}')
    write(proj / SESSION / "subagents" / "agent-aac57f5.meta.json", "{}")
    sibling = proj / "agent-s20.jsonl"
    write(sibling, json.dumps({"sessionId": OTHER, "type": "user"}), '{"type": "assistant"}')
    orphan = proj / "agent-nosid.jsonl"
    write(orphan, "not json", '{"type": "assistant"}')
    expected = {
        main: (SESSION, "main", None),
        sub: (SESSION, "subagent", "aac57f5"),
        nested: (SESSION, "subagent", "w1"),
        sibling: (OTHER, "subagent", "s20"),
        orphan: ("agent-nosid", "subagent", "nosid"),
    }
    progress: list[tuple[int, int]] = []
    producer = make()
    producer.progress = lambda done, total: progress.append((done, total))

    assert await producer.scan_once() == 10
    by_path: dict[str, list[FileChanged]] = {}
    for event in collector.events:
        assert event.type == "file.line_appended" and event.source == "claude-code"
        by_path.setdefault(event.payload.path, []).append(event)
    assert set(by_path) == {str(p) for p in expected}
    for path, (session_id, kind, agent_id) in expected.items():
        events = by_path[str(path)]
        got = [(e.payload.offset, e.payload.line_no, e.payload.line) for e in events]
        assert got == expected_lines(path)
        assert {(e.session_id, e.payload.file_kind, e.payload.agent_id) for e in events} == {
            (session_id, kind, agent_id)
        }
    assert progress[-1] == (5, 5)
    assert await producer.scan_once() == 0
    assert len(collector.events) == 10


async def test_batches_hold_at_most_batch_size_events_in_file_order(root, make, collector):
    path = root / "p" / f"{SESSION}.jsonl"
    write(path, *(line(n=i) for i in range(2 * BATCH_SIZE + 234)))
    assert await make().scan_once() == 2 * BATCH_SIZE + 234
    assert [len(batch) for batch in collector.published] == [BATCH_SIZE, BATCH_SIZE, 234]
    assert [e.payload.line_no for e in collector.events] == list(range(1, 2 * BATCH_SIZE + 235))


async def test_partial_last_line_is_held_until_its_newline(root, make, collector):
    path = root / "p" / f"{SESSION}.jsonl"
    write(path, line(n=1), '{"sessionId": "', end="")
    producer = make()
    assert await producer.scan_once() == 1
    assert await producer.scan_once() == 0
    write(path, f'{SESSION}", "n": 2}}')
    assert await producer.scan_once() == 1
    assert await producer.scan_once() == 0
    got = [(e.payload.offset, e.payload.line_no, e.payload.line) for e in collector.events]
    assert got == expected_lines(path)
    assert json.loads(got[-1][2])["n"] == 2


async def test_restart_resumes_without_duplicates_or_gaps(root, make, collector, tmp_path):
    path = root / "p" / f"{SESSION}.jsonl"
    write(path, line(n=1), line(n=2))
    assert await make().scan_once() == 2
    write(path, line(n=3))
    assert await make().scan_once() == 1
    ids = [e.event_id for e in collector.events]
    assert len(set(ids)) == 3
    got = [(e.payload.offset, e.payload.line_no, e.payload.line) for e in collector.events]
    assert got == expected_lines(path)
    saved = json.loads((tmp_path / "state" / "checkpoint.json").read_text())
    assert saved[str(path)]["offset"] == path.stat().st_size
    assert saved[str(path)]["line_no"] == 3
    assert saved[str(path)]["inode"] == path.stat().st_ino
    assert saved[str(path)]["size"] == path.stat().st_size


async def test_failed_publish_leaves_checkpoint_and_retries_same_event_ids(
    root, make, collector, tmp_path
):
    path = root / "p" / f"{SESSION}.jsonl"
    write(path, *(line(n=i) for i in range(BATCH_SIZE + 700)))
    checkpoint = tmp_path / "state" / "checkpoint.json"
    collector.failing = lambda call: call == 2  # the broker fails on the second batch
    producer = make()
    with pytest.raises(ConnectionError):
        await producer.scan_once()
    assert json.loads(checkpoint.read_text())[str(path)]["line_no"] == BATCH_SIZE
    failed_ids = [e.event_id for e in collector.attempted[1]]

    collector.failing = lambda call: False
    assert await producer.scan_once() == 700
    assert [e.event_id for e in collector.published[1]] == failed_ids
    assert len({e.event_id for e in collector.events}) == BATCH_SIZE + 700
    assert json.loads(checkpoint.read_text())[str(path)]["line_no"] == BATCH_SIZE + 700


async def test_failed_first_publish_writes_no_checkpoint(root, make, collector, tmp_path):
    path = root / "p" / f"{SESSION}.jsonl"
    write(path, line(n=1), line(n=2))
    collector.failing = lambda call: True
    with pytest.raises(ConnectionError):
        await make().scan_once()
    assert not (tmp_path / "state" / "checkpoint.json").exists()
    collector.failing = lambda call: False
    assert await make().scan_once() == 2  # a fresh producer: nothing was committed
    assert [e.event_id for e in collector.published[0]] == [
        e.event_id for e in collector.attempted[0]
    ]


async def test_truncation_and_replacement_restart_from_zero(root, make, collector):
    path = root / "p" / f"{SESSION}.jsonl"
    write(path, line(n=1), line(n=2), line(n=3))
    producer = make()
    assert await producer.scan_once() == 3
    path.write_text(line(n=9) + "\n")  # truncated in place: size < offset
    assert await producer.scan_once() == 1
    assert (collector.events[-1].payload.offset, collector.events[-1].payload.line_no) == (0, 1)

    replacement = path.with_suffix(".tmp")
    write(replacement, *(line(n=i, pad="x" * 100) for i in range(3)))
    os.replace(replacement, path)  # new inode, longer than the old offset
    assert await producer.scan_once() == 3
    assert [e.payload.line_no for e in collector.events[-3:]] == [1, 2, 3]


async def test_deleted_file_yields_one_removed_event(root, make, collector, tmp_path):
    proj = root / "p"
    sibling = proj / "agent-s20.jsonl"
    write(sibling, json.dumps({"sessionId": OTHER}))
    write(proj / f"{SESSION}.jsonl", line(n=1))
    producer = make()
    assert await producer.scan_once() == 2
    sibling.unlink()
    assert await producer.scan_once() == 0
    removed = [e for e in collector.events if e.type == "file.removed"]
    assert len(removed) == 1
    assert removed[0].payload.path == str(sibling)
    assert (removed[0].session_id, removed[0].payload.agent_id) == (OTHER, "s20")
    assert await producer.scan_once() == 0
    assert len(collector.events) == 3
    saved = json.loads((tmp_path / "state" / "checkpoint.json").read_text())
    assert str(sibling) not in saved


async def test_unreadable_file_is_logged_and_skipped(root, make, collector, monkeypatch, caplog):
    bad, good = root / "p" / "bad.jsonl", root / "p" / "good.jsonl"
    write(bad, line(n=1))
    write(good, line(n=1))
    real = tailing.read_chunk

    def read_chunk(path, pos, max_lines):
        if path == bad:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, pos, max_lines)

    monkeypatch.setattr(tailing, "read_chunk", read_chunk)
    producer = ClaudeCodeProducer(
        [root, root.parent / "missing"], root.parent / "cp.json", collector
    )
    assert await producer.scan_once() == 1
    assert [e.payload.path for e in collector.events] == [str(good)]
    assert any(str(bad) in record.getMessage() for record in caplog.records)


async def test_backfill_after_reset_republishes_with_same_ids(root, make, collector):
    write(root / "p" / f"{SESSION}.jsonl", line(n=1), line(n=2))
    producer = make()
    assert await producer.scan_once() == 2
    assert await producer.backfill() == 0
    producer.reset()
    assert await producer.backfill() == 2
    first, second = collector.published
    assert [e.event_id for e in first] == [e.event_id for e in second]


async def test_run_picks_up_appended_line_via_watchdog_and_stops(root, make, collector):
    path = root / "p" / f"{SESSION}.jsonl"
    write(path, line(n=1))
    stop = asyncio.Event()
    task = asyncio.create_task(make(rescan_interval=60.0).run(stop))
    await wait_for(lambda: len(collector.events) == 1)
    await asyncio.sleep(0.2)  # the first wait has begun: only watchdog can wake the loop now
    write(path, line(n=2))
    await wait_for(lambda: len(collector.events) == 2)
    assert collector.events[-1].payload.line_no == 2
    stop.set()
    await asyncio.wait_for(task, timeout=5)


async def wait_for(condition: Callable[[], bool], deadline_s: float = 2.0) -> None:
    await eventually(condition, "the line delivered", timeout=deadline_s, interval=0.02)


def test_default_roots_follow_claude_config_dir():
    roots = ClaudeCodeProducer.default_roots({"CLAUDE_CONFIG_DIR": "/a/claude, /b/cfg,"})
    assert roots == [Path("/a/claude/projects"), Path("/b/cfg/projects")]
    homes = ClaudeCodeProducer.default_roots({"HOME": "/home/me"})
    assert homes == [Path("/home/me/.claude/projects"), Path("/home/me/.config/claude/projects")]


def shared_dir() -> Path:
    default = Path(__file__).resolve().parents[2].parent / "shared"
    return Path(os.environ.get("SESSIONSTREAM_SHARED_DIR", default))


async def test_real_fixtures_publish_every_line_under_its_session(collector, tmp_path):
    fixtures = shared_dir() / "fixtures" / "sessions" / "claude-code"
    if not fixtures.is_dir():
        pytest.skip(f"shared fixtures not found at {fixtures} (set SESSIONSTREAM_SHARED_DIR)")
    files = sorted(fixtures.rglob("*.jsonl"))
    producer = ClaudeCodeProducer([fixtures], tmp_path / "cp.json", collector)

    published = await producer.scan_once()

    assert published == sum(len(expected_lines(f)) for f in files) > 0
    sessions = {e.payload.path: e.session_id for e in collector.events}
    spotter_subagents = [f for f in files if "spotter" in f.parts and "subagents" in f.parts]
    assert spotter_subagents
    for f in spotter_subagents:
        first = json.loads(f.read_text().split("\n", 1)[0])
        assert sessions[str(f)] == f.parent.parent.name == first["sessionId"]
    for f in (f for f in files if f.parent.name != "subagents" and f.stem.startswith("agent-")):
        assert sessions[str(f)] == json.loads(f.read_text().split("\n", 1)[0])["sessionId"]


async def test_a_rewrite_in_place_of_the_same_size_is_read_again(root, make, collector):
    path = root / "p" / f"{SESSION}.jsonl"
    write(path, line(n=1, text="aaaa"), line(n=2, text="bbbb"))
    producer = make()
    assert await producer.scan_once() == 2
    before = path.stat()
    with path.open("r+b") as f:  # same inode, same size, new content
        f.write(path.read_bytes().replace(b"aaaa", b"cccc").replace(b"bbbb", b"dddd"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    assert (path.stat().st_ino, path.stat().st_size) == (before.st_ino, before.st_size)
    assert await producer.scan_once() == 2
    assert [json.loads(e.payload.line)["text"] for e in collector.events] == [
        "aaaa", "bbbb", "cccc", "dddd"]


async def test_a_rewrite_that_grows_is_told_from_an_append_by_its_head(root, make, collector):
    path = root / "p" / f"{SESSION}.jsonl"
    write(path, line(n=1, text="first"))
    producer = make()
    assert await producer.scan_once() == 1
    write(path, line(n=2, text="appended"))
    assert await producer.scan_once() == 1  # an append: only the new line
    path.write_text(line(n=1, text="FIRST") + "\n" + line(n=2, text="appended") + "\n"
                    + line(n=3, text="third") + "\n")  # same inode, rewritten and grown
    assert await producer.scan_once() == 3
    assert [json.loads(e.payload.line)["text"] for e in collector.events] == [
        "first", "appended", "FIRST", "appended", "third"]


async def test_a_file_truncated_or_deleted_while_a_scan_reads_it(root, make, collector):
    long, doomed = root / "p" / f"{SESSION}.jsonl", root / "p" / f"{OTHER}.jsonl"
    write(long, *(line(n=i) for i in range(BATCH_SIZE + 700)))
    write(doomed, line(n=1))
    calls = 0

    async def publish(events):  # between two batches of the first file, the files change
        nonlocal calls
        calls += 1
        if calls == 1:
            long.write_text(line(n=9000) + "\n")  # truncated in place while being read
            doomed.unlink()  # deleted before the scan reaches it
        await collector(events)

    producer = make()
    producer._publish = publish
    await producer.scan_once()
    await producer.scan_once()
    lines = [json.loads(e.payload.line).get("n") for e in collector.events
             if e.type == "file.line_appended"]
    assert lines[:BATCH_SIZE] == list(range(BATCH_SIZE)) and lines[-1] == 9000
    assert not any(e.payload.path == str(doomed) for e in collector.events)


async def test_run_survives_a_failing_publish_and_retries_from_the_checkpoint(
        root, make, collector, caplog):
    path = root / "p" / f"{SESSION}.jsonl"
    write(path, line(n=1), line(n=2))
    collector.failing = lambda call: call <= 2  # the broker is away for two attempts
    stop = asyncio.Event()
    task = asyncio.create_task(make(rescan_interval=0.1).run(stop))
    async with asyncio.timeout(20):
        while not collector.published:
            await asyncio.sleep(0.05)
    stop.set()
    await task
    assert [e.payload.line_no for e in collector.events] == [1, 2]
    warnings = [r for r in caplog.records if "retrying with backoff" in r.getMessage()]
    assert len(warnings) == 1  # one line per failure streak, not one per attempt
