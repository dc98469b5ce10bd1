"""Publishing: validation of raw input against a topic's schema (every reject case, null ->
defaults, field paths, hostile input: nesting, NUL, bad keys), the publish command's one-line
errors, and the publisher's idempotency with an in-memory key store."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.limits import MAX_DEPTH
from streams.producers.idempotency import MemoryKeys
from streams.producers.publish_delivery import Publisher
from streams.producers.publish_validation import (
    MAX_BODY_BYTES,
    MAX_EVENTS,
    MAX_KEY_CHARS,
    PublishRejected,
    check_idempotency_key,
    publishable_topics,
    validate_body,
)

pytestmark = pytest.mark.unit

LINES = "sessions.file-changes.v1"
EVENTS = "sessions.events.v1"


def line_event(n: int = 1, **payload: Any) -> dict[str, Any]:
    return {"source": "claude-code", "session_id": "s1", "type": "file.line_appended",
            "occurred_at": "2026-03-05T12:00:00Z",
            "payload": {"path": "/p/s1.jsonl", "offset": 100 * n, "line_no": n,
                        "line": '{"type":"user"}', "mtime": "2026-03-05T12:00:00Z", **payload}}


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def rejected(topic: str | None, raw: bytes) -> PublishRejected:
    with pytest.raises(PublishRejected) as info:
        validate_body(topic, raw)
    return info.value


def test_a_valid_single_event_gets_a_derived_id_and_its_session_key() -> None:
    batch = validate_body(LINES, body(line_event()))
    assert batch.topic == LINES and len(batch.records) == 1
    key, value = batch.records[0]
    assert json.loads(key) == {"source": "claude-code", "session_id": "s1"}
    assert len(json.loads(value)["event_id"]) == 32
    assert validate_body(LINES, body(line_event())).digest == batch.digest  # deterministic


def test_array_wrapper_and_json_lines_are_the_same_batch() -> None:
    events = [line_event(1), line_event(2)]
    as_array = validate_body(LINES, body(events))
    as_wrapper = validate_body(None, body({"topic": LINES, "events": events}))
    as_lines = validate_body(LINES, "\n".join(json.dumps(e) for e in events).encode())
    assert as_array.digest == as_wrapper.digest == as_lines.digest
    assert len(as_array.records) == 2


def test_missing_required_field_is_named_with_its_event_index() -> None:
    second = line_event(2)
    del second["payload"]["path"]
    exc = rejected(LINES, body([line_event(1), second]))
    assert exc.status == 422
    assert exc.problems == ["events[1].payload.path: Field required"]
    assert "1 of 2 events are invalid" in exc.message and "nothing was published" in str(exc)


def test_wrong_types_are_all_listed() -> None:
    exc = rejected(LINES, body([line_event(1, line_no="three"), {**line_event(2), "source": 7},
                                line_event(3)]))
    assert exc.status == 422
    assert exc.problems[0].startswith("events[0].payload.line_no: Input should be a valid "
                                      "integer")
    assert exc.problems[1] == "events[1].source: Input should be a valid string"
    assert len(exc.problems) == 2


def test_discriminated_union_errors_name_the_kind() -> None:
    event = {"source": "claude-code", "session_id": "s1", "type": "user.prompted",
             "occurred_at": "2026-03-05T12:00:00Z", "payload": {"kind": "user.prompted"}}
    exc = rejected(EVENTS, body(event))
    assert exc.problems == ["events[0].payload[user.prompted].text: Field required"]


def test_nulls_become_defaults_and_a_null_list_an_empty_list() -> None:
    event = line_event(line=None, file_kind=None, truncated=None, agent_id=None)
    event["schema_version"] = None
    payload = json.loads(validate_body(LINES, body(event)).records[0][1])
    assert payload["schema_version"] == 1
    assert payload["payload"]["line"] == "" and payload["payload"]["file_kind"] == "main"
    assert payload["payload"]["truncated"] is False and payload["payload"]["agent_id"] is None

    tool = {"source": "codex", "session_id": "s2", "type": "tool.called",
            "occurred_at": "2026-03-05T12:00:00Z",
            "payload": {"kind": "tool.called", "tool_use_id": "t1", "name": "Read",
                        "input": None, "is_sidechain": None, "message_key": None}}
    value = json.loads(validate_body(EVENTS, body(tool)).records[0][1])
    assert value["payload"]["input"] == {} and value["payload"]["is_sidechain"] is False


def test_a_null_list_field_without_default_becomes_empty() -> None:
    from pydantic import BaseModel

    from streams.producers.publish_validation import fill_nulls

    class Inner(BaseModel):
        tags: list[str]
        size: int = 3

    class Outer(BaseModel):
        items: list[Inner]
        maybe: Inner | None = None

    filled = fill_nulls(Outer, {"items": [{"tags": None, "size": None}], "maybe": None})
    assert Outer.model_validate(filled).model_dump() == {
        "items": [{"tags": [], "size": 3}], "maybe": None}


def test_a_required_field_sent_as_null_is_still_an_error() -> None:
    exc = rejected(LINES, body(line_event(path=None)))
    assert exc.problems == ["events[0].payload.path: Input should be a valid string"]


def test_unknown_and_derived_topics_are_refused_naming_the_publishable_ones() -> None:
    unknown = rejected("sessions.nope.v1", body(line_event()))
    assert unknown.status == 404
    assert "unknown topic 'sessions.nope.v1'" in unknown.message
    assert all(t in unknown.message for t in publishable_topics())
    assert LINES in publishable_topics() and EVENTS in publishable_topics()
    derived = rejected("sessions.summaries.v1", body(line_event()))
    assert derived.status == 422 and "summarize_sessions agent" in derived.message
    assert rejected("sessions.filtered.v1", b"{}").status == 422
    assert "dead letters" in rejected(f"{LINES}.dlq", b"{}").message
    assert rejected(None, body(line_event())).status == 400


def test_a_body_that_is_not_json_is_a_400() -> None:
    exc = rejected(LINES, b"{not json")
    assert exc.status == 400 and exc.message.startswith("body is not JSON")
    lines = rejected(LINES, json.dumps(line_event()).encode() + b"\n{oops\n")
    assert lines.status == 400 and "line 2" in lines.message
    assert rejected(LINES, b"\xff\xfe").status == 400
    assert rejected(LINES, body([1, "x"])).problems == [
        "events[0]: expected a JSON object, got int", "events[1]: expected a JSON object, got str"]


def test_oversized_batches_and_bodies_are_413() -> None:
    too_many = rejected(LINES, body([line_event(i + 1) for i in range(MAX_EVENTS + 1)]))
    assert too_many.status == 413 and f"limit of {MAX_EVENTS}" in too_many.message
    too_big = rejected(LINES, b" " * (MAX_BODY_BYTES + 1))
    assert too_big.status == 413 and "bytes" in too_big.message
    huge = rejected(LINES, body(line_event(line="x" * 1_100_000)))
    assert huge.status == 422 and "per event" in huge.problems[0]
    assert rejected(LINES, b"[]").status == 422


def test_nesting_past_the_depth_limit_is_a_400_before_any_parsing() -> None:
    deep = rejected(LINES, b"[" * 100_000 + b"]" * 100_000)  # json.loads: RecursionError
    assert deep.status == 400 and f"at most {MAX_DEPTH} levels" in deep.message
    assert "schemas.limits.MAX_DEPTH" in deep.message
    as_lines = rejected(LINES, body(line_event()) + b"\n" + b"[" * 100_000 + b"]" * 100_000)
    assert as_lines.status == 400 and "MAX_DEPTH" in as_lines.message
    event = line_event()
    event["payload"]["extra"] = json.loads("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))
    too_deep = rejected(LINES, body([line_event(), event]))  # 65 levels with the event itself
    assert too_deep.status == 400
    assert too_deep.message.startswith(f"events[1] nests more than {MAX_DEPTH} levels")


def test_nul_is_stripped_before_validation() -> None:
    event = line_event(line='{"text": "a\u0000b"}', path="/p/\u0000s1.jsonl")
    raw = body(event)
    assert b"\\u0000" in raw  # json.dumps writes NUL as the escape
    value = validate_body(LINES, raw).records[0][1]
    assert b"\\u0000" not in value and b"\x00" not in value
    payload = json.loads(value)["payload"]
    assert payload["path"] == "/p/s1.jsonl" and payload["line"] == '{"text": "ab"}'
    kept = json.loads(validate_body(LINES, body(line_event(line="a\\u0000"))).records[0][1])
    assert kept["payload"]["line"] == "a\\u0000"  # a backslash and "u0000" are text, kept


def test_json_lines_are_split_on_newlines_only() -> None:
    events = [line_event(1, line="a\u2028b\x85c"), line_event(2)]
    raw = "\n".join(json.dumps(e, ensure_ascii=False) for e in events).encode()
    assert validate_body(LINES, raw).digest == validate_body(LINES, body(events)).digest


def test_an_empty_body_says_so() -> None:
    for raw in (b"", b" \n\t", b"\xef\xbb\xbf"):
        exc = rejected(LINES, raw)
        assert exc.status == 400 and exc.message.startswith("body is empty"), raw


def test_idempotency_keys_are_printable_utf8_of_bounded_length() -> None:
    assert check_idempotency_key("job-42 é") == "job-42 é" and check_idempotency_key(None) is None
    for key in ("", "x" * (MAX_KEY_CHARS + 1), "a\nb", "\udcff\udcfe"):
        with pytest.raises(PublishRejected) as info:
            check_idempotency_key(key)
        assert info.value.status == 400 and "idempotency key" in info.value.message


@pytest.mark.parametrize(("content", "needle"), [
    (b"[" * 100_000 + b"]" * 100_000, "MAX_DEPTH"),
    (b"\xff\xfe\xfd", "not UTF-8"),
    (b"{nope", "not JSON"),
    (b"", "empty"),
    (b" " * (MAX_BODY_BYTES + 1), f"more than {MAX_BODY_BYTES} bytes"),
])
def test_the_publish_command_refuses_bad_input_in_one_line(tmp_path: Any, content: bytes,
                                                           needle: str) -> None:
    from click.testing import CliRunner

    from app.cli import cli

    source = tmp_path / "batch.json"
    source.write_bytes(content)
    result = CliRunner().invoke(cli, ["publish", "-t", LINES, "--dry-run", str(source)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert needle in result.stderr and "Traceback" not in result.output


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> Any:
        self.sent.append((topic, key, value))
        import asyncio
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_the_same_key_publishes_once_and_other_content_conflicts() -> None:
    producer = FakeProducer()
    publisher = Publisher(producer, MemoryKeys())
    batch = validate_body(LINES, body([line_event(1), line_event(2)]))
    first = await publisher.publish(batch, "job-1")
    again = await publisher.publish(validate_body(LINES, body([line_event(1), line_event(2)])),
                                    "job-1")
    assert (first.replayed, again.replayed) == (False, True)
    assert len(producer.sent) == 2 and again.event_ids == first.event_ids
    with pytest.raises(PublishRejected) as info:
        await publisher.publish(validate_body(LINES, body([line_event(3)])), "job-1")
    assert info.value.status == 409 and "different batch" in info.value.message
    default = await publisher.publish(batch)  # no key given: the content digest is the key
    assert default.idempotency_key == f"sha256:{batch.digest}" and not default.replayed
    assert (await publisher.publish(batch)).replayed and len(producer.sent) == 4
