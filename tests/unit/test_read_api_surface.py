"""The read API's surface without a database: its OpenAPI document is valid OpenAPI 3.1 and
describes exactly the routes the server registers (publish and health included), and every
read route applies the publish API's refusals and names a bad query parameter before it reads
anything (the DSN points at a closed port: reaching Postgres would fail the test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from app.api_document import API_DOCUMENT, OPENAPI_PATH
from app.read_api import read_api
from streams.producers.http_api import create_api
from streams.producers.idempotency import MemoryKeys
from streams.producers.publish_delivery import Publisher
from tests.unit.test_publishing import FakeProducer

pytestmark = pytest.mark.unit

NOWHERE = "postgresql://nobody@127.0.0.1:9/none"
READS = ["/api/v1/sessions", "/api/v1/sessions/s1", "/api/v1/sessions/a/b/messages",
         "/api/v1/sessions/s1/tools", "/api/v1/sessions/s1/files", "/api/v1/usage",
         "/api/v1/search?q=x"]


def served(token: str | None = None) -> Any:
    return create_api(Publisher(FakeProducer(), MemoryKeys()), token,
                      extend=read_api(NOWHERE, token))


async def _client(token: str | None) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(served(token)))
    await client.start_server()
    return client


@pytest.fixture
async def open_client() -> AsyncIterator[TestClient[Any, Any]]:
    client = await _client(None)
    yield client
    await client.close()


def test_the_document_is_valid_openapi_3_1() -> None:
    assert API_DOCUMENT["openapi"] == "3.1.0"
    validate(API_DOCUMENT)  # raises on any violation of the OpenAPI 3.1 schema


def test_the_document_describes_every_route_and_no_other() -> None:
    registered = {(route.method.lower(), route.resource.canonical)
                  for route in served().router.routes()
                  if route.resource is not None and route.method != "HEAD"}
    documented = {(method, path) for path, item in API_DOCUMENT["paths"].items()
                  for method in item}
    assert registered == documented
    assert {("post", "/api/v1/events"), ("get", "/api/v1/health"),
            ("get", "/api/v1/sessions/{id}/messages")} <= documented


async def test_the_document_is_served_without_a_token() -> None:
    client = await _client("s3cret")
    try:
        response = await client.get(OPENAPI_PATH)
        assert response.status == 200
        assert (await response.json())["paths"].keys() == API_DOCUMENT["paths"].keys()
    finally:
        await client.close()


@pytest.mark.parametrize("path", READS)
async def test_a_configured_token_is_required(path: str) -> None:
    client = await _client("s3cret")
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = await client.get(path, headers=headers)
            assert response.status == 401, path
            assert "bearer token" in (await response.json())["error"]
    finally:
        await client.close()


@pytest.mark.parametrize("path", READS)
async def test_without_a_token_web_pages_are_refused(open_client: TestClient[Any, Any],
                                                     path: str) -> None:
    response = await open_client.get(path, headers={"Origin": "https://evil.example"})
    assert response.status == 403
    assert "Origin" in (await response.json())["error"]


@pytest.mark.parametrize(("path", "named"), [
    ("/api/v1/sessions?limit=0", "limit"),
    ("/api/v1/sessions?limit=many", "limit"),
    ("/api/v1/sessions?offset=-1", "offset"),
    ("/api/v1/sessions?since=yesterday", "since"),
    ("/api/v1/sessions?colour=red", "colour"),
    ("/api/v1/sessions/s1/messages?limit=100000", "limit"),
    ("/api/v1/usage?by=week", "by"),
    ("/api/v1/search", "q"),
])
async def test_a_bad_parameter_is_named(open_client: TestClient[Any, Any], path: str,
                                        named: str) -> None:
    response = await open_client.get(path)
    body = await response.json()
    assert response.status == 400, body
    assert body["error"].startswith(named) or named in body["error"].split(":")[0]
    assert body["problems"] == []


async def test_an_unreachable_postgres_is_503(open_client: TestClient[Any, Any]) -> None:
    response = await open_client.get("/api/v1/sessions")
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert "postgres" in (await response.json())["error"]
