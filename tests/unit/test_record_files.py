"""Record files: a database or a whole-JSON document published record by record.

A toy producer reads a SQLite table (cursor: the highest update time) and a JSON document
(cursor: :func:`~streams.producers.records.changed`); the base must publish each changed
record once, skip unchanged files without reading them, notice writes that only reach the
write-ahead log, keep positions only after publishing, and publish nothing when the file goes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest

from schemas.file_changes import FileChanged, FileKind
from streams.producers.base import FileProducer
from streams.producers.records import Record, changed, digest, sqlite_rows

pytestmark = pytest.mark.unit


class ToyProducer(FileProducer):
    source: ClassVar[str] = "toy"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.reads = 0

    def matches(self, path: Path) -> bool:
        return path.suffix in (".db", ".json", ".jsonl")

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        return path.stem, "main", None

    def records(self, path: Path, cursor: str | None
                ) -> tuple[list[Record], str | None] | None:
        if path.suffix == ".db":
            self.reads += 1
            since = int(cursor or 0)
            rows = sqlite_rows(path, "SELECT id, session, body, updated FROM msg "
                               "WHERE updated >= ? ORDER BY updated", (since,))
            found = [Record(session_id=r["session"], key=str(r["id"]), version=str(r["updated"]),
                            text=r["body"], at=datetime.fromtimestamp(r["updated"], UTC))
                     for r in rows]
            return found, str(max([since, *(r["updated"] for r in rows)]))
        if path.suffix == ".json":
            self.reads += 1
            document = json.loads(path.read_text())
            elements = [Record(session_id=document["id"], key=str(n), version=digest(text),
                               text=text)
                        for n, element in enumerate(document["messages"])
                        for text in [json.dumps(element)]]
            return changed(elements, cursor)
        return None


@pytest.fixture
def published() -> list[FileChanged]:
    return []


def _producer(tmp_path: Path, published: list[FileChanged]) -> ToyProducer:
    async def publish(events: list[FileChanged]) -> None:
        published.extend(events)

    return ToyProducer(roots=[tmp_path / "root"], checkpoint_path=tmp_path / "cp.json",
                       publish=publish)


def _db(path: Path, rows: list[tuple[int, str, str, int]], wal: bool = False) -> None:
    """Write ``rows``; the file then looks written a minute ago (settled, see below)."""
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS msg (id INTEGER PRIMARY KEY, session TEXT, "
                 "body TEXT, updated INTEGER)")
    conn.executemany("INSERT OR REPLACE INTO msg VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    _settle(path)


def _settle(path: Path) -> None:
    """Date ``path`` a minute back, a minute further each call (so it still changes)."""
    global _clock
    _clock -= 60
    os.utime(path, (_clock, _clock))


_clock = time.time() - 3600


async def test_database_rows_are_published_once_and_updates_again(
        tmp_path: Path, published: list[FileChanged]) -> None:
    (tmp_path / "root").mkdir()
    db = tmp_path / "root" / "store.db"
    _db(db, [(1, "s1", '{"a": 1}', 100), (2, "s2", '{"b": 2}', 200)])
    producer = _producer(tmp_path, published)
    assert await producer.scan_once() == 2
    assert [(e.session_id, e.payload.line) for e in published] == [
        ("s1", '{"a": 1}'), ("s2", '{"b": 2}')]
    assert published[0].occurred_at == datetime.fromtimestamp(100, UTC)
    assert all(e.type == "file.line_appended" and e.payload.path == str(db) for e in published)

    reads = producer.reads
    assert await producer.scan_once() == 0
    assert producer.reads == reads  # unchanged size and mtime: not even opened

    _db(db, [(3, "s2", '{"c": 3}', 300)])
    first_ids = {e.event_id for e in published}
    assert await producer.scan_once() == 2  # >= the cursor: the row at 200 again, and 300
    again, new = published[2], published[3]
    assert again.event_id in first_ids  # the same record read again is the same event
    assert new.payload.line == '{"c": 3}' and new.event_id not in first_ids

    _db(db, [(1, "s1", '{"a": 2}', 400)])  # a row updated in place: a new version
    assert await producer.scan_once() == 2  # the row at 300 again, and the updated one
    assert published[-1].payload.line == '{"a": 2}'
    assert published[-1].event_id not in first_ids


async def test_a_write_only_in_the_write_ahead_log_is_read(
        tmp_path: Path, published: list[FileChanged]) -> None:
    (tmp_path / "root").mkdir()
    db = tmp_path / "root" / "live.db"
    _db(db, [(1, "s1", "{}", 1)], wal=True)
    keep = sqlite3.connect(db)  # an open connection keeps the log from being folded in
    try:
        producer = _producer(tmp_path, published)
        assert await producer.scan_once() == 1
        before = db.stat()
        keep.execute("INSERT INTO msg VALUES (2, 's1', '{\"n\": 2}', 2)")
        keep.commit()
        os.utime(db, ns=(before.st_atime_ns, before.st_mtime_ns))  # the main file is as before
        assert Path(f"{db}-wal").exists()
        assert await producer.scan_once() == 2
        assert published[-1].payload.line == '{"n": 2}'
    finally:
        keep.close()


async def test_a_document_republishes_only_changed_elements(
        tmp_path: Path, published: list[FileChanged]) -> None:
    (tmp_path / "root").mkdir()
    doc = tmp_path / "root" / "thread.json"
    doc.write_text(json.dumps({"id": "t1", "messages": [{"n": 1}, {"n": 2}]}))
    producer = _producer(tmp_path, published)
    assert await producer.scan_once() == 2
    doc.write_text(json.dumps({"id": "t1", "messages": [{"n": 1}, {"n": 2, "done": True},
                                                        {"n": 3}]}))
    assert await producer.scan_once() == 2
    assert [json.loads(e.payload.line) for e in published[2:]] == [{"n": 2, "done": True},
                                                                   {"n": 3}]
    assert {e.session_id for e in published} == {"t1"}


async def test_a_half_written_document_is_skipped_then_read(
        tmp_path: Path, published: list[FileChanged], caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "root").mkdir()
    doc = tmp_path / "root" / "thread.json"
    doc.write_text('{"id": "t1", "messages": [{"n"')
    producer = _producer(tmp_path, published)
    assert await producer.scan_once() == 0
    assert "thread.json" in caplog.text
    doc.write_text(json.dumps({"id": "t1", "messages": [{"n": 1}]}))
    assert await producer.scan_once() == 1


async def test_positions_survive_a_restart_and_removal_publishes_nothing(
        tmp_path: Path, published: list[FileChanged]) -> None:
    (tmp_path / "root").mkdir()
    db = tmp_path / "root" / "store.db"
    _db(db, [(1, "s1", "{}", 5)])
    assert await _producer(tmp_path, published).scan_once() == 1
    restarted = _producer(tmp_path, published)
    assert await restarted.scan_once() == 0 and restarted.reads == 0
    db.unlink()
    assert await restarted.scan_once() == 0
    assert len(published) == 1  # no file.removed: the sessions in it did not end
    assert str(db) not in json.loads((tmp_path / "cp.json").read_text())


async def test_other_files_of_a_record_source_are_tailed_as_lines(
        tmp_path: Path, published: list[FileChanged]) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "old.jsonl").write_text('{"x": 1}\n{"x": 2}\n')
    assert await _producer(tmp_path, published).scan_once() == 2
    assert {e.session_id for e in published} == {"old"}


def test_an_unreadable_database_is_an_os_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(OSError, match="bad.db"):
        sqlite_rows(bad, "SELECT 1 FROM msg")


def test_changed_keeps_a_token_per_record_and_drops_gone_ones() -> None:
    one = Record(session_id="s", key="1", version="a", text="{}")
    two = Record(session_id="s", key="2", version="a", text="{}")
    fresh, cursor = changed([one, two], None)
    assert fresh == [one, two]
    assert changed([one, two], cursor) == ([], cursor)
    moved = Record(session_id="s", key="2", version="b", text="{}")
    fresh, after = changed([one, moved], cursor)
    assert fresh == [moved] and len(after) == len(cursor)


async def test_a_file_changed_just_before_a_read_is_read_again_until_it_settles(
        tmp_path: Path, published: list[FileChanged]) -> None:
    """A SQLite commit reaches the write-ahead log a moment before readers see it: a read
    right after a change must not be the last one, or a commit it missed would stay unread."""
    (tmp_path / "root").mkdir()
    db = tmp_path / "root" / "store.db"
    _db(db, [(1, "s1", "{}", 5)])
    os.utime(db)  # just now
    producer = _producer(tmp_path, published)
    assert await producer.scan_once() == 1
    reads = producer.reads
    await producer.scan_once()
    assert producer.reads == reads + 1  # not settled: read again
    _settle(db)
    await producer.scan_once()
    assert producer.reads == reads + 2  # the file changed (its date): read once more
    await producer.scan_once()
    assert producer.reads == reads + 2  # settled and unchanged: not read


async def test_the_next_scan_comes_early_while_a_record_file_settles(
        tmp_path: Path, published: list[FileChanged]) -> None:
    (tmp_path / "root").mkdir()
    db = tmp_path / "root" / "store.db"
    _db(db, [(1, "s1", "{}", 5)])
    producer = _producer(tmp_path, published)
    await producer.scan_once()
    assert producer.next_rescan == producer.rescan_interval  # settled: the usual interval
    os.utime(db)  # changed just now
    await producer.scan_once()
    assert producer.next_rescan < 2 < producer.rescan_interval


async def test_a_file_whose_records_fail_unexpectedly_stops_no_other(
        tmp_path: Path, published: list[FileChanged], caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "bad.json").write_text(json.dumps({"id": "t1"}))  # no "messages"
    (tmp_path / "root" / "good.json").write_text(json.dumps({"id": "t2", "messages": [{}]}))
    assert await _producer(tmp_path, published).scan_once() == 1
    assert {e.session_id for e in published} == {"t2"}
    assert "bad.json" in caplog.text and "KeyError" in caplog.text
