"""Hostile input through the producer and the parse step, in process (no servers).

The hostile corpus (``tests/hostile.py``: 1,000+ bad lines of every kind beside ordinary
turns) is read by the real Claude producer, each record is encoded and decoded as it would
cross the broker, and parsed the way the parse agent does. Every record must fit one Kafka
record; every rejected line must be refused with a reason naming its file and line; no line
may raise anything but ``InvalidEvent``; every event parsed must encode within the limit.
The same corpus runs end to end in ``tests/integration/test_hostile_input.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from agents import parse_lines
from schemas.events import SessionEvent, UsageReported, UserPrompted
from schemas.file_changes import FileChanged
from schemas.limits import MAX_RECORD_BYTES
from streams.codecs import decode, encode, encode_record
from streams.errors import InvalidEvent
from streams.producers.claude import ClaudeCodeProducer
from streams.topics import FILE_CHANGES
from tests.hostile import write_corpus

pytestmark = pytest.mark.unit


def _produce(root: Path, tmp_path: Path) -> list[FileChanged]:
    published: list[FileChanged] = []

    async def publish(batch: list[FileChanged]) -> None:
        published.extend(batch)

    producer = ClaudeCodeProducer([root], tmp_path / "checkpoint.json", publish)
    asyncio.run(producer.scan_once())
    return published


def _parse(records: list[FileChanged]) -> tuple[list[SessionEvent], dict[tuple[str, int], str]]:
    events: list[SessionEvent] = []
    rejected: dict[tuple[str, int], str] = {}
    for record in records:
        raw = encode(record)
        assert len(raw) <= MAX_RECORD_BYTES, (record.payload.path, record.payload.line_no)
        try:
            outputs = parse_lines.decide(decode(FILE_CHANGES.value, raw))
            for out in outputs:
                encode_record(out)
        except InvalidEvent as exc:
            rejected[(record.payload.path, record.payload.line_no)] = str(exc)
            continue
        events += outputs
    return events, rejected


def test_every_bad_line_is_refused_with_its_reason_and_the_rest_parses(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    corpus = write_corpus(root)
    assert len(corpus.rejected) >= 1000
    records = _produce(root, tmp_path)
    assert len(records) == corpus.lines

    events, rejected = _parse(records)

    expected = {(str(path), n): reason for path, n, reason in corpus.rejected}
    assert set(rejected) == set(expected)
    for (path, n), reason in expected.items():
        assert f"{path} line {n}" in rejected[(path, n)], rejected[(path, n)]
        assert reason in rejected[(path, n)], rejected[(path, n)]
    for session, want in corpus.sessions.items():
        mine = [e for e in events if e.session_id == session]
        prompts = [e.payload.text for e in mine if isinstance(e.payload, UserPrompted)]
        assert sorted(prompts) == sorted(want.prompts), session
        usage = {e.payload.message_key: e.payload for e in mine
                 if isinstance(e.payload, UsageReported)}
        assert sum(u.input_tokens for u in usage.values()) == want.input_tokens
        assert sum(u.output_tokens for u in usage.values()) == want.output_tokens
    assert not any("\x00" in json.dumps(e.model_dump(mode="json")) for e in events)


def test_a_clipped_line_keeps_its_ids_usage_and_original_size(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    path = root / "p" / "big.jsonl"
    path.parent.mkdir(parents=True)
    line = {"type": "assistant", "uuid": "u1", "requestId": "r1",
            "message": {"id": "m1", "role": "assistant", "model": "claude-opus-4-6",
                        "content": [{"type": "text", "text": "A" * 1_100_000}],
                        "usage": {"input_tokens": 3, "output_tokens": 4}}}
    path.write_text(json.dumps(line) + "\n")
    [record] = _produce(root, tmp_path)
    assert record.payload.original_bytes == os.path.getsize(path) - 1
    assert "[clipped " in record.payload.line
    events, rejected = _parse([record])
    assert not rejected
    [usage] = [e.payload for e in events if isinstance(e.payload, UsageReported)]
    assert (usage.message_key, usage.input_tokens, usage.output_tokens) == ("m1:r1", 3, 4)


def test_a_fifo_or_a_symlink_loop_named_like_a_session_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    project = root / "p"
    project.mkdir(parents=True)
    os.mkfifo(project / "fifo.jsonl")  # opening it for reading would block forever
    (project / "loop.jsonl").symlink_to(project / "loop.jsonl")
    (project / "dir-loop").symlink_to(project)
    (project / "ok.jsonl").write_text(json.dumps({"type": "user", "uuid": "x", "message": {
        "role": "user", "content": "hello"}}) + "\n")
    records = _produce(root, tmp_path)
    assert [Path(r.payload.path).name for r in records] == ["ok.jsonl"]
