"""The hot path's fast encoders and readers write and read exactly what the pydantic ones do."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from agents.parsers.lines import load_json
from schemas.file_changes import (
    FileLine,
    file_line_event,
    file_removed_event,
    file_snapshot_event,
)
from streams.batches import partition_for
from streams.codecs import encode, encode_file_change

pytestmark = pytest.mark.unit

MTIMES = [datetime.fromtimestamp(1_700_000_000.123456, UTC),
          datetime.fromtimestamp(1_700_000_000, UTC)]


@pytest.mark.parametrize("mtime", MTIMES)
@pytest.mark.parametrize("line", ['{"type":"user"}', "caf\u00e9 \u2028 \"quoted\" \\ tab\t",
                                  "", "x" * 5000])
def test_a_file_change_encodes_byte_for_byte_as_pydantic_does(mtime: datetime,
                                                               line: str) -> None:
    payload = FileLine(path="/p/s.jsonl", offset=7, line_no=3, line=line, mtime=mtime)
    events = [
        file_line_event("claude-code", "s", payload),
        file_line_event("claude-code", "s", payload.model_copy(
            update={"file_kind": "subagent", "agent_id": "a1", "original_bytes": 2_000_000})),
        file_removed_event("codex", "s", payload),
        file_snapshot_event("gemini-cli", "s", payload.model_copy(update={"truncated": True})),
    ]
    for event in events:
        assert encode_file_change(event) == encode(event)


@pytest.mark.parametrize("text", [
    '{"a": 1, "b": [1.5, -2, true, null], "c": {"d": "\\u00e9"}}',
    '{"n": 123456789012345678901234567890}',  # past 64 bits: exact, as json reads it
    '{"n": -9223372036854775809, "m": 18446744073709551616}',
    '{"x": NaN}',
    '{"s": "\\ud83d\\ude00 and a lone \\ud83d"}',
])
def test_the_line_reader_reads_what_json_reads(text: str) -> None:
    value = load_json(text)
    expected = json.loads(text)
    if "NaN" in text:
        assert value["x"] != value["x"]
    elif "ud83d" in text:
        assert value["s"].startswith("\U0001f600 and a lone ")  # the lone half is replaced
    else:
        assert value == expected
        assert [type(v) for v in value.values()] == [type(v) for v in expected.values()]


def test_keys_go_where_kafkas_default_partitioner_puts_them() -> None:
    # murmur2 of the key, as the Java client computes it (values from its partitioner tests)
    assert partition_for(b"", 6) == (275646681 & 0x7FFFFFFF) % 6
    assert partition_for(b"a-little-bit-long-string", 6) == (-985981536 & 0x7FFFFFFF) % 6
