"""A producer's reading window (SESSIONSTREAM_SINCE, --since, --until) on real files: whole
sessions are skipped, with their sub-agent files, reported and left unchecked so that a skipped
session written to again is read whole."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.periods import parse_since, parse_until
from streams.producers.checkpoints import load_positions
from streams.producers.claude import ClaudeCodeProducer
from streams.producers.window import Window, first_activity
from tests.factories import Collector

pytestmark = pytest.mark.unit

NOW = datetime.now(UTC)
DAY = 86_400


def line(session: str, text: str, when: datetime) -> str:
    return json.dumps({"type": "user", "sessionId": session, "timestamp": when.isoformat(),
                       "message": {"role": "user", "content": text}})


def session_file(path: Path, session: str, *texts: str, started: datetime,
                 age_days: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line(session, t, started) + "\n" for t in texts))
    stamp = time.time() - age_days * DAY
    os.utime(path, (stamp, stamp))
    return path


def producer(tmp_path: Path, window: Window, reports: list[str]
             ) -> tuple[ClaudeCodeProducer, Collector]:
    collector = Collector()
    made = ClaudeCodeProducer([tmp_path / "projects"], tmp_path / "cp.json", collector)
    made.limit_to(window, reports.append)
    return made, collector


def since(text: str, label: str = "SESSIONSTREAM_SINCE") -> Window:
    return Window(since=parse_since(text, NOW), since_label=f"{label}={text}")


async def test_sessions_older_than_since_are_skipped_whole_reported_and_not_checkpointed(
        tmp_path: Path) -> None:
    project = tmp_path / "projects" / "-p"
    old_main = session_file(project / "old.jsonl", "old", "a", "b", started=NOW, age_days=60)
    old_agent = session_file(project / "old" / "subagents" / "agent-x1.jsonl", "old", "sub",
                             started=NOW, age_days=60)
    session_file(project / "new.jsonl", "new", "c", started=NOW, age_days=1)
    reports: list[str] = []
    made, collector = producer(tmp_path, since("30d"), reports)

    assert await made.scan_once() == 1
    assert {e.session_id for e in collector.events} == {"new"}
    assert made.window is not None and made.window.skipped.files["before"] == 2
    size = (old_main.stat().st_size + old_agent.stat().st_size) / 1e6
    cutoff = (NOW - timedelta(days=30)).strftime("%Y-%m-%dT%H:%MZ")
    assert reports == [f"skipped 2 files ({size:,.1f} MB) of claude-code last modified before "
                       f"{cutoff} (SESSIONSTREAM_SINCE=30d); whole sessions, not checkpointed: "
                       "read in full once written to again"]
    assert set(load_positions(tmp_path / "cp.json")) == {str(project / "new.jsonl")}

    await made.scan_once()  # a rescan skips the same files without saying it again
    assert len(reports) == 1

    # The session is resumed: its main file is appended to, so the whole session is read,
    # from the first line of each of its files.
    with old_main.open("a") as f:
        f.write(line("old", "resumed", NOW) + "\n")
    assert await made.scan_once() == 4
    old = [e for e in collector.events if e.session_id == "old"]
    assert sorted((e.payload.path, e.payload.line_no) for e in old) == sorted([
        (str(old_agent), 1), (str(old_main), 1), (str(old_main), 2), (str(old_main), 3)])
    assert made.window.skipped.files["before"] == 0


async def test_a_recent_sub_agent_keeps_its_old_main_file(tmp_path: Path) -> None:
    project = tmp_path / "projects" / "-p"
    session_file(project / "s1.jsonl", "s1", "main", started=NOW, age_days=90)
    session_file(project / "s1" / "subagents" / "agent-a.jsonl", "s1", "sub", started=NOW,
                 age_days=0)
    reports: list[str] = []
    made, collector = producer(tmp_path, since("30d"), reports)
    assert await made.scan_once() == 2
    assert {e.payload.file_kind for e in collector.events} == {"main", "subagent"}
    assert reports == []


async def test_a_file_read_before_goes_on_whatever_its_age(tmp_path: Path) -> None:
    project = tmp_path / "projects" / "-p"
    path = session_file(project / "s1.jsonl", "s1", "one", started=NOW, age_days=90)
    made, collector = producer(tmp_path, Window(), [])
    assert await made.scan_once() == 1  # an unbounded window reads everything
    made.limit_to(since("30d"), [].append)
    with path.open("a") as f:
        f.write(line("s1", "two", NOW) + "\n")
    stamp = time.time() - 60 * DAY
    os.utime(path, (stamp, stamp))
    assert await made.scan_once() == 1
    assert [e.payload.line_no for e in collector.events] == [1, 2]


async def test_until_skips_sessions_that_started_after_it(tmp_path: Path) -> None:
    project = tmp_path / "projects" / "-p"
    nov = datetime(2026, 11, 10, tzinfo=UTC)
    session_file(project / "early.jsonl", "early", "x", started=nov, age_days=0)
    session_file(project / "late.jsonl", "late", "y", started=nov + timedelta(days=30),
                 age_days=0)
    reports: list[str] = []
    window = Window(since=parse_since("2026-11-01", NOW), until=parse_until("2026-11-30", NOW),
                    since_label="--since 2026-11-01", until_label="--until 2026-11-30")
    made, collector = producer(tmp_path, window, reports)
    assert await made.scan_once() == 1
    assert {e.session_id for e in collector.events} == {"early"}
    assert len(reports) == 1
    assert reports[0].startswith("skipped 1 file (0.0 MB) of claude-code first active after "
                                 "2026-12-01 (--until 2026-11-30)")


def test_first_activity_reads_the_first_lines_time_at_the_top_or_one_level_down() -> None:
    at = datetime(2026, 3, 10, 9, tzinfo=UTC).timestamp()
    assert first_activity('{"timestamp": "2026-03-10T09:00:00Z"}') == at
    assert first_activity('{"type": "session_meta", "payload": '
                          '{"timestamp": "2026-03-10T09:00:00.000Z"}}') == at
    assert first_activity('{"sessionId": "s", "startTime": "2026-03-10T09:00:00Z"}') == at
    assert first_activity("# a Markdown artifact") is None
    assert first_activity('{"timestamp": 12}') is None
