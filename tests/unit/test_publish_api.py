"""The publish API's HTTP contract (status codes, error bodies, bearer token, idempotency),
served by aiohttp's test server on loopback with a fake producer and in-memory keys."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.producers.http_api import EVENTS_PATH, create_api
from streams.producers.idempotency import MemoryKeys
from streams.producers.publish_delivery import Publisher
from streams.producers.publish_validation import MAX_BODY_BYTES, MAX_EVENTS
from tests.unit.test_publishing import FakeProducer, line_event

pytestmark = pytest.mark.unit

TOPIC = "sessions.file-changes.v1"


@pytest.fixture
def producer() -> FakeProducer:
    return FakeProducer()


async def _client(producer: FakeProducer, token: str | None) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(
        create_api(Publisher(producer, MemoryKeys()), token)))
    await client.start_server()
    return client


@pytest.fixture
async def client(producer: FakeProducer) -> AsyncIterator[TestClient[Any, Any]]:
    c = await _client(producer, None)
    yield c
    await c.close()


async def post(client: TestClient[Any, Any], data: bytes | str, topic: str | None = TOPIC,
               **headers: str) -> tuple[int, dict[str, Any]]:
    params = {"topic": topic} if topic else {}
    raw = data.encode() if isinstance(data, str) else data
    payload = io.BytesIO(raw) if len(raw) > 1024 * 1024 else raw  # aiohttp warns otherwise
    response = await client.post(EVENTS_PATH, data=payload, params=params, headers=headers)
    return response.status, await response.json()


async def test_a_batch_is_published_once_under_retries(client: TestClient[Any, Any],
                                                       producer: FakeProducer) -> None:
    batch = json.dumps({"events": [line_event(1), line_event(2)]})
    status, first = await post(client, batch, **{"Idempotency-Key": "req-1"})
    assert status == 201 and first["published"] == 2 and not first["already_published"]
    status, again = await post(client, batch, **{"Idempotency-Key": "req-1"})
    assert status == 200 and again["published"] == 0 and again["already_published"]
    assert again["event_ids"] == first["event_ids"] and len(producer.sent) == 2
    status, conflict = await post(client, json.dumps(line_event(3)), **{"Idempotency-Key":
                                                                        "req-1"})
    assert status == 409 and "different batch" in conflict["error"]
    assert len(producer.sent) == 2


@pytest.mark.parametrize(("data", "topic", "status", "needle"), [
    ("{nope", TOPIC, 400, "not JSON"),
    (json.dumps(line_event()), "no.such.v1", 404, "unknown topic"),
    (json.dumps(line_event()), None, 400, "no topic given"),
    (json.dumps({**line_event(), "session_id": None}), TOPIC, 422, "events[0].session_id"),
    (json.dumps(line_event(line_no="x")), TOPIC, 422, "events[0].payload.line_no"),
    (json.dumps([line_event()] * (MAX_EVENTS + 1)), TOPIC, 413, f"limit of {MAX_EVENTS}"),
    (" " * (MAX_BODY_BYTES + 1), TOPIC, 413, f"limit of {MAX_BODY_BYTES} bytes"),
])
async def test_bad_requests_publish_nothing(client: TestClient[Any, Any], producer: FakeProducer,
                                            data: str, topic: str | None, status: int,
                                            needle: str) -> None:
    got, answer = await post(client, data, topic)
    assert got == status, answer
    assert needle in answer["error"] + " ".join(answer["problems"])
    assert producer.sent == []


async def test_a_configured_token_is_required(producer: FakeProducer) -> None:
    client = await _client(producer, "s3cret")
    try:
        data = json.dumps(line_event())
        status, answer = await post(client, data)
        assert status == 401 and "bearer token" in answer["error"]
        assert (await post(client, data, Authorization="Bearer wrong"))[0] == 401
        assert producer.sent == []
        assert (await post(client, data, Authorization="Bearer s3cret"))[0] == 201
        health = await client.get("/api/v1/health")
        assert health.status == 200 and TOPIC in (await health.json())["topics"]
    finally:
        await client.close()


def test_a_non_loopback_api_without_a_token_is_refused_at_start() -> None:
    from streams.errors import ConfigError
    from streams.settings import load_settings

    with pytest.raises(ConfigError, match="SESSIONSTREAM_API_TOKEN: .*would listen on 0.0.0.0"):
        load_settings(api_host="0.0.0.0", api_port=8787, _env_file=None)
    exposed = load_settings(api_host="0.0.0.0", api_port=8787, api_token="t", _env_file=None)
    assert exposed.api_token is not None and exposed.api_token.get_secret_value() == "t"
    assert load_settings(api_host="0.0.0.0", api_port=0, _env_file=None).api_port == 0
    assert load_settings(api_host="::1", api_port=8787, _env_file=None).api_token is None
