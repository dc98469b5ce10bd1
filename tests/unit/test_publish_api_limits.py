"""The publish API against hostile input: bodies nested past the depth limit, NUL characters,
half-sent requests and piled-up connections, bodies that are not declared JSON, compression
bombs, and no answer 500 whatever the body. Served on loopback with a fake producer: by
aiohttp's test server, or by :func:`running_api` on a real socket with small limits."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from schemas.limits import MAX_DEPTH
from streams.producers.http_api import (
    EVENTS_PATH,
    ApiLimits,
    bind_api,
    create_api,
    running_api,
)
from streams.producers.idempotency import MemoryKeys
from streams.producers.publish_delivery import Publisher
from streams.producers.publish_validation import MAX_BODY_BYTES
from tests.unit.test_publish_api import post
from tests.unit.test_publishing import FakeProducer, line_event
from tests.waiting import eventually

pytestmark = pytest.mark.unit

TOPIC = "sessions.file-changes.v1"
EVENTS = "sessions.events.v1"
WAIT_S = 5.0  # how long a test waits for an answer the server owes within 0.5 s


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer()


@pytest.fixture
async def client(producer: FakeProducer) -> AsyncIterator[TestClient[Any, Any]]:
    c: TestClient[Any, Any] = TestClient(TestServer(create_api(Publisher(producer,
                                                                         MemoryKeys()))))
    await c.start_server()
    yield c
    await c.close()


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def tool_event(depth: int) -> dict[str, Any]:
    """A sessions.events.v1 event nesting exactly ``depth`` levels (event, payload, input,
    then lists)."""
    return {"source": "codex", "session_id": "s1", "type": "tool.called",
            "occurred_at": "2026-03-05T12:00:00Z",
            "payload": {"kind": "tool.called", "tool_use_id": "t1", "name": "Read",
                        "input": {"x": nested(depth - 3)}}}


# 1. Nesting --------------------------------------------------------------------------------


async def test_a_body_nested_past_the_depth_limit_is_a_400_naming_the_limit(
        client: TestClient[Any, Any], producer: FakeProducer) -> None:
    status, answer = await post(client, b"[" * 100_000 + b"]" * 100_000)
    assert status == 400, answer
    assert f"at most {MAX_DEPTH} levels" in answer["error"] and "MAX_DEPTH" in answer["error"]

    # a little past the limit: json.loads copes, pydantic could not serialize it downstream
    status, answer = await post(client, json.dumps(tool_event(MAX_DEPTH + 1)), EVENTS)
    assert status == 400, answer
    assert answer["error"].startswith(f"events[0] nests more than {MAX_DEPTH} levels")
    lines = "\n".join([json.dumps(line_event(1)), json.dumps(nested(MAX_DEPTH + 1))])
    status, answer = await post(client, lines)
    assert status == 400 and f"line 2 nests more than {MAX_DEPTH}" in answer["error"]
    assert producer.sent == []

    status, answer = await post(client, json.dumps(tool_event(MAX_DEPTH)), EVENTS)
    assert status == 201, answer


# 2. NUL and integers -----------------------------------------------------------------------


async def test_nul_never_reaches_the_topic_and_a_huge_integer_names_its_field(
        client: TestClient[Any, Any], producer: FakeProducer) -> None:
    event = line_event(line='{"type": "user", "text": "a\u0000b"}', path="/p/s\u0000.jsonl")
    status, answer = await post(client, json.dumps(event))  # NUL sent as the escape \u0000
    assert status == 201, answer
    [(_, _, value)] = producer.sent
    assert b"\\u0000" not in value and b"\x00" not in value
    assert json.loads(value)["payload"]["path"] == "/p/s.jsonl"

    status, answer = await post(client, json.dumps(line_event(offset=10**20)))
    assert status == 422
    assert answer["problems"][0].startswith("events[0].payload.offset: ")
    assert len(producer.sent) == 1


# 3. Slow and piled-up connections ----------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(producer: FakeProducer, **limits: Any) -> AsyncIterator[int]:
    """The API on a real loopback socket with ``limits``; yields its port."""
    sock = bind_api("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = create_api(Publisher(producer, MemoryKeys()), None, ApiLimits(**limits))
    async with running_api(app, sock):
        yield port


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader,
                                                       asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def answer_of(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the next HTTP answer on ``reader``."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    lines = head.decode().split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines
                  if line.lower().startswith("content-length:"))
    body = await asyncio.wait_for(reader.readexactly(length), WAIT_S)
    return int(lines[0].split()[1]), json.loads(body)


HEAD = (f"POST {EVENTS_PATH}?topic={TOPIC} HTTP/1.1\r\nHost: localhost\r\n"
        "Content-Type: application/json\r\n").encode()


async def test_headers_not_complete_within_the_header_timeout_close_the_connection(
        producer: FakeProducer) -> None:
    async with serving(producer, header_timeout_s=0.5) as port:
        async with connection(port) as (reader, writer):
            writer.write(HEAD)  # the blank line that ends the headers never comes
            assert await asyncio.wait_for(reader.read(), WAIT_S) == b""

        # one byte every 0.1 s: the header timeout is a deadline, not an idle timeout
        async with connection(port) as (reader, writer):
            closed = asyncio.ensure_future(reader.read())
            sent = 0
            for byte in HEAD:  # about 100 bytes: 10 s if the server waited for them all
                if closed.done():
                    break
                with contextlib.suppress(ConnectionError):
                    writer.write(bytes([byte]))
                    await writer.drain()
                sent += 1
                await asyncio.sleep(0.1)
            assert await asyncio.wait_for(closed, WAIT_S) == b""
            assert sent < len(HEAD)
    assert producer.sent == []


async def test_a_body_slower_than_the_body_timeout_is_a_408(producer: FakeProducer) -> None:
    async with (serving(producer, body_timeout_s=0.5) as port,
                connection(port) as (reader, writer)):
        writer.write(HEAD + b"Content-Length: 1000\r\n\r\n[")  # 999 bytes never come
        status, answer = await answer_of(reader)
    assert status == 408 and "did not arrive within 0.5 s" in answer["error"]
    assert producer.sent == []


async def test_connections_over_the_limit_are_refused_at_once(producer: FakeProducer) -> None:
    health = b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n"
    async with serving(producer, max_connections=3) as port, contextlib.AsyncExitStack() as held:
        open_ = [await held.enter_async_context(connection(port)) for _ in range(3)]
        async with connection(port) as (reader, _):
            status, answer = await answer_of(reader)
            assert status == 503 and "too many open connections" in answer["error"]
            assert await asyncio.wait_for(reader.read(), WAIT_S) == b""  # closed, not queued

        reader, writer = open_[0]
        writer.write(health)
        assert (await answer_of(reader))[0] == 200  # the held ones are served
        writer.close()  # one place frees up: a new connection is served again
        assert await eventually(lambda: _served(port, health), "a free place", timeout=WAIT_S,
                                interval=0.05) == 200


async def _served(port: int, request: bytes) -> int | None:
    """The status of ``request`` on a new connection; None while it is refused (503)."""
    async with connection(port) as (reader, writer):
        writer.write(request)
        status, _ = await answer_of(reader)
    return None if status == 503 else status


# 4. Content types --------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [
    "application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=b",
    "image/png",
])
async def test_a_body_not_declared_json_is_a_415_naming_the_header_to_send(
        client: TestClient[Any, Any], producer: FakeProducer, content_type: str) -> None:
    status, answer = await post(client, json.dumps(line_event()),
                                **{"Content-Type": content_type})
    assert status == 415, answer
    assert "'Content-Type: application/json'" in answer["error"]
    assert producer.sent == []


async def test_json_types_and_a_missing_type_are_accepted(client: TestClient[Any, Any],
                                                          producer: FakeProducer) -> None:
    for n, content_type in enumerate(["application/json", "application/json; charset=utf-8",
                                      "application/vnd.batch+json", "application/x-ndjson"], 1):
        status, _ = await post(client, json.dumps(line_event(n)),
                               **{"Content-Type": content_type})
        assert status == 201, content_type
    response = await client.post(EVENTS_PATH, params={"topic": TOPIC},
                                 data=json.dumps(line_event(9)).encode(),
                                 skip_auto_headers=["Content-Type"])
    assert response.status == 201
    status, answer = await post(client, json.dumps(line_event(10)),
                                **{"Content-Type": "application/json; charset=latin-1"})
    assert status == 415 and "send UTF-8" in answer["error"]
    assert len(producer.sent) == 5


# 5. Compression ----------------------------------------------------------------------------


@pytest.mark.parametrize(("encoding", "compress"), [("gzip", gzip.compress),
                                                    ("deflate", zlib.compress)])
async def test_a_compression_bomb_is_a_413_quoting_the_decompressed_limit(
        client: TestClient[Any, Any], producer: FakeProducer, encoding: str,
        compress: Any) -> None:
    bomb = compress(b" " * (4 * MAX_BODY_BYTES))
    status, answer = await post(client, bomb, **{"Content-Encoding": encoding})
    assert status == 413
    assert answer["error"].startswith(f"decompressed body is over the limit of "
                                      f"{MAX_BODY_BYTES} bytes")
    assert str(len(bomb)) not in answer["error"]
    ok = compress(json.dumps(line_event()).encode())
    assert (await post(client, ok, **{"Content-Encoding": encoding}))[0] == 201


# 6. No 500 for any body --------------------------------------------------------------------


HOSTILE = {
    "deep arrays": b"[" * 100_000 + b"]" * 100_000,
    "deep objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "deep wrapper": b'{"events": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    "empty": b"",
    "blank": b" \r\n\t ",
    "not UTF-8": b"\xff\xfe\xfd",
    "NUL byte": b"\x00",
    "NUL escape only": b'"\\u0000"',
    "null": b"null",
    "empty array": b"[]",
    "nested empty arrays": b"[[[]]]",
    "events not a list": b'{"events": 5}',
    "topic not a string": b'{"topic": [1], "events": [1]}',
    "too many digits": b"1" * 5000,
    "NaN and Infinity": b'[{"source": NaN, "session_id": Infinity}]',
    "1e400": b'{"source": 1e400}',
    "lone surrogates": b'{"source": "\\ud800", "session_id": "\\udc00"}',
    "BOM only": b"\xef\xbb\xbf",
    "lines of junk": b"{}\n[\n",
    "U+2028 inside a JSON line": ('{"source": "a\u2028b"}\n{"source": "c"}').encode(),
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
async def test_no_body_makes_the_api_answer_500(client: TestClient[Any, Any],
                                                producer: FakeProducer, body: bytes) -> None:
    for headers in ({}, {"Content-Type": "application/x-ndjson"}):
        status, answer = await post(client, body, **headers)
        assert 400 <= status < 500 and answer["error"], (status, answer)
    status, answer = await post(client, gzip.compress(body)[:-9] + b"junk",
                                **{"Content-Encoding": "gzip"})  # corrupt compression
    assert 400 <= status < 500 and answer["error"], (status, answer)
    assert producer.sent == []


async def test_headers_that_are_not_utf8_are_4xx(producer: FakeProducer) -> None:
    body = json.dumps(line_event()).encode()
    server = TestServer(create_api(Publisher(producer, MemoryKeys()), "s3cret"))
    await server.start_server()
    assert server.port is not None
    try:
        for header in (b"Authorization: Bearer \xff\xfe", b"Authorization: Bearer s3cret\r\n"
                                                          b"Idempotency-Key: \xff\xfe"):
            async with connection(server.port) as (reader, writer):
                writer.write(HEAD + header + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
                             + body)
                status, answer = await answer_of(reader)
                assert status in (400, 401) and answer["error"], answer
    finally:
        await server.close()
    assert producer.sent == []


async def test_a_web_page_cannot_publish_to_a_tokenless_api(client: TestClient[Any, Any],
                                                           producer: FakeProducer) -> None:
    response = await client.post(EVENTS_PATH, params={"topic": TOPIC},
                                 data=json.dumps(line_event(11)).encode(),
                                 headers={"Origin": "https://evil.example"},
                                 skip_auto_headers=["Content-Type"])
    assert response.status == 403
    assert "SESSIONSTREAM_API_TOKEN" in (await response.json())["error"]
    assert producer.sent == []
