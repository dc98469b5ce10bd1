"""The topics' limits (``schemas/limits.py``) and where they are enforced: the producer's
clipping, the codecs and the parse step's JSON reader."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ValidationError

from agents import parse_lines
from agents.parsers.lines import JsonTooDeep, load_json
from schemas.dead_letters import DeadLetter
from schemas.events import UsageReported
from schemas.file_changes import FileLine, file_line_event
from schemas.limits import MAX_DEPTH, MAX_SAFE_INT, depth_problem, strip_nul_escapes
from streams.codecs import MAX_DEAD_VALUE_BYTES, dead_letter, encode, encode_record
from streams.errors import InvalidEvent
from streams.producers.clipping import LINE_BUDGET_BYTES, fit_line, fit_text, json_size

pytestmark = pytest.mark.unit


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("text", [_deep(MAX_DEPTH), '{"a": "' + "[" * 10_000 + '"}',
                                  '{"a": "\\"[[[[' + "[" * 500 + '"}', "[]" * 10_000])
def test_depth_within_the_limit_or_brackets_inside_strings_pass(text: str) -> None:
    assert depth_problem(text) is None
    assert depth_problem(text.encode()) is None


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 100_000])
def test_depth_past_the_limit_is_named_without_recursion(depth: int) -> None:
    problem = depth_problem('{"x": ' + _deep(depth) + "}")
    assert problem is not None and f"more than {MAX_DEPTH} levels" in problem
    with pytest.raises(JsonTooDeep):
        load_json(_deep(depth))


def test_nul_escapes_are_dropped_but_an_escaped_backslash_stays() -> None:
    raw = b'{"a": "x\\u0000y", "b": "\\\\u0000", "c": "\\\\\\u0000z"}'
    assert json.loads(strip_nul_escapes(raw)) == {"a": "xy", "b": "\\u0000", "c": "\\z"}


def _line_event(text: str, line_no: int = 3):  # type: ignore[no-untyped-def]
    payload = FileLine(path="/p/s.jsonl", offset=0, line_no=line_no, line=text,
                       mtime=datetime(2026, 1, 1, tzinfo=UTC))
    return file_line_event("claude-code", "s", payload)


def _usage_line(**usage: object) -> str:
    return json.dumps({"type": "assistant", "uuid": "u", "requestId": "r", "message": {
        "id": "m", "role": "assistant", "model": "claude-opus-4-6", "content": [],
        "usage": usage}})


def test_a_token_count_past_the_safe_integer_range_is_refused_with_the_field() -> None:
    with pytest.raises(InvalidEvent, match=r"/p/s.jsonl line 3: .*input_tokens.*less than or"):
        parse_lines.decide(_line_event(_usage_line(input_tokens=2**63, output_tokens=1)))
    [usage] = [e.payload for e in parse_lines.decide(
        _line_event(_usage_line(input_tokens=MAX_SAFE_INT, output_tokens=1)))
        if isinstance(e.payload, UsageReported)]
    assert usage.input_tokens == MAX_SAFE_INT
    with pytest.raises(ValidationError):
        UsageReported(message_key="m", input_tokens=MAX_SAFE_INT + 1)


def test_nul_in_a_line_is_stripped_before_any_store_sees_it() -> None:
    escaped = json.dumps({"type": "user", "uuid": "u", "message": {
        "role": "user", "content": "a\u0000b"}})
    raw_nul = '{"type":"user","uuid":"u","message":{"role":"user","content":"c\x00d"}}'
    texts = [e.payload.text for line in (escaped, raw_nul)
             for e in parse_lines.decide(_line_event(line)) if e.type == "user.prompted"]
    assert texts == ["ab", "cd"]


def test_a_deep_line_is_refused_at_parse_time_with_its_file_and_line() -> None:
    line = '{"type":"user","message":{"role":"user","content":' + _deep(300) + "}}"
    with pytest.raises(InvalidEvent, match=r"/p/s.jsonl line 3: JSON nested more than 64"):
        parse_lines.decide(_line_event(line))


class _Deep(BaseModel):
    value: object


def test_encode_turns_a_serialization_failure_into_invalid_event() -> None:
    nested: object = []
    for _ in range(400):
        nested = [nested]
    with pytest.raises(InvalidEvent, match="cannot be encoded"):
        encode(_Deep(value=nested))
    with pytest.raises(InvalidEvent, match="over the limit of 100 bytes"):
        encode_record(_Deep(value="x" * 200), limit=100)


def test_fit_line_clips_long_strings_and_keeps_numbers_and_ids() -> None:
    line = json.dumps({"id": "m1", "usage": {"input_tokens": 5},
                       "content": ["\n" * 300_000, "short"], "k" * 200_000: 1})
    clipped = fit_line(line)
    assert clipped is not None and json_size(clipped) <= LINE_BUDGET_BYTES
    value = json.loads(clipped)
    assert value["id"] == "m1" and value["usage"] == {"input_tokens": 5}
    assert value["content"][1] == "short" and "[clipped " in value["content"][0]
    assert fit_line('{"small": 1}') is None
    assert fit_line("x" * 2_000_000) == "x" * 4096  # not JSON: the head, for the dead letter


def test_fit_text_cuts_a_snapshot_that_escapes_past_the_budget() -> None:
    text, cut = fit_text("\x01" * 200_000, budget=100_000)
    assert cut and json_size(text) <= 100_000
    assert fit_text("plain", budget=100) == ("plain", False)


def test_a_dead_letter_of_a_huge_value_fits_one_record_and_keeps_the_key() -> None:
    value = ("é" * 1_000_000).encode()
    raw = dead_letter("parse_lines", InvalidEvent("too big"), "t", 0, 5, b'{"k": 1}', value)
    letter = DeadLetter.model_validate_json(raw)
    assert len(raw) < 1_000_000
    assert letter.key == '{"k": 1}' and letter.value_truncated
    assert letter.value_bytes == len(value)
    assert len(letter.value.encode()) <= MAX_DEAD_VALUE_BYTES
