"""The MCP telemetry poller without a network: breaker, backoff, flattening, the client's
protocol handling (httpx.MockTransport) and graceful degradation."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from schemas.telemetry import (
    TelemetryKey,
    TelemetryPolledEvent,
    ToolPolled,
    flatten_numbers,
    tool_polled_event,
)
from streams.errors import SourceRejected, SourceUnavailable
from streams.producers.mcp_telemetry_client import McpClient, sse_data
from streams.producers.mcp_telemetry_poller import BreakerState, CircuitBreaker, TelemetryPoller
from tests.waiting import eventually

pytestmark = pytest.mark.unit

URL = "http://mcp.test/mcp"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeServer:
    """A tiny streamable-HTTP MCP server for MockTransport: tool name -> result or Exception."""

    def __init__(self, tools: dict[str, Any], *, sse: bool = True) -> None:
        self.tools = tools
        self.sse = sse
        self.up = True
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.sessions = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            raise httpx.ConnectError("connection refused", request=request)
        if request.method == "DELETE":
            return httpx.Response(200)
        message = json.loads(request.content)
        self.requests.append((dict(request.headers), message))
        if "id" not in message:
            return httpx.Response(202)
        method, params = message["method"], message.get("params", {})
        headers = {}
        if method == "initialize":
            self.sessions += 1
            headers["mcp-session-id"] = f"s{self.sessions}"
            result: Any = {"protocolVersion": params["protocolVersion"], "capabilities": {},
                           "serverInfo": {"name": "fake", "version": "1"}}
        elif request.headers.get("mcp-session-id") != f"s{self.sessions}":
            return httpx.Response(404)
        elif method == "tools/list":
            result = {"tools": [{"name": n, "inputSchema": {}} for n in self.tools]}
        else:
            outcome = self.tools[params["name"]]
            if isinstance(outcome, Exception):
                result = {"content": [{"type": "text", "text": str(outcome)}], "isError": True}
            else:
                result = {"content": [{"type": "text", "text": json.dumps(outcome)}],
                          "structuredContent": outcome, "isError": False}
        body = {"jsonrpc": "2.0", "id": message["id"], "result": result}
        if self.sse:
            note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {}}
            text = f"event: message\ndata: {json.dumps(note)}\n\n" \
                   f"event: message\ndata: {json.dumps(body)}\n\n"
            return httpx.Response(200, headers={**headers, "content-type": "text/event-stream"},
                                  text=text)
        return httpx.Response(200, headers=headers, json=body)


def _metrics(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    data = reader.get_metrics_data()
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                found[metric.name] = [
                    (dict(p.attributes or {}), getattr(p, "value", None) or getattr(p, "count", 0))
                    for p in metric.data.data_points]
    return found


def _poller(server: FakeServer, tools: list[str], published: list[TelemetryPolledEvent],
            **kwargs: Any) -> tuple[TelemetryPoller, InMemoryMetricReader, list[float]]:
    reader = InMemoryMetricReader()
    sleeps: list[float] = []

    async def publish(key: TelemetryKey, event: TelemetryPolledEvent) -> None:
        assert key == TelemetryKey(server=event.payload.server, tool=event.payload.tool)
        published.append(event)

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    poller = TelemetryPoller(URL, tools, publish, MeterProvider([reader]).get_meter("t"),
                             transport=httpx.MockTransport(server.handle), sleep=sleep,
                             **kwargs)
    return poller, reader, sleeps


async def _cycle(poller: TelemetryPoller) -> None:
    async with httpx.AsyncClient(transport=poller.transport) as http:
        poller.client = McpClient(poller.url, http)
        await poller.poll_once()


# -- pure logic --------------------------------------------------------------------------------


def test_breaker_opens_after_threshold_probes_half_open_and_closes() -> None:
    clock = FakeClock()
    moves: list[tuple[str, str]] = []
    breaker = CircuitBreaker(3, 30.0, clock=clock,
                             on_transition=lambda a, b: moves.append((a.name, b.name)))
    for _ in range(2):
        breaker.failed()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.failed()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.now += 29.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow() and breaker.state is BreakerState.HALF_OPEN
    breaker.failed()  # the probe failed: open again, for a full reset period
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.now += 30
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state is BreakerState.CLOSED and breaker.failures == 0
    assert moves == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "OPEN"),
                     ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]


def test_a_success_resets_the_consecutive_failures() -> None:
    breaker = CircuitBreaker(2, 1.0, clock=FakeClock())
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    assert breaker.state is BreakerState.CLOSED


def test_flatten_numbers_names_numeric_leaves_by_dotted_path() -> None:
    result = {"sessions": {"active": 2, "total": 10}, "ok": True, "label": "x",
              "latency": [{"p95": 480.5}, 3], "empty": None}
    assert flatten_numbers(result) == {"sessions.active": 2.0, "sessions.total": 10.0,
                                       "latency.0.p95": 480.5, "latency.1": 3.0}
    assert flatten_numbers(7) == {"value": 7.0}
    assert flatten_numbers("text") == {}
    assert len(flatten_numbers({f"k{i}": i for i in range(10)}, limit=4)) == 4


def test_the_event_id_derives_from_server_tool_and_poll_time() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    payload = ToolPolled(server=URL, tool="t", ok=True, duration_ms=1.0)
    first, again = tool_polled_event(payload, at), tool_polled_event(payload, at)
    assert first.event_id == again.event_id
    assert tool_polled_event(payload, at.replace(second=1)).event_id != first.event_id
    other = ToolPolled(server=URL, tool="u", ok=True, duration_ms=1.0)
    assert tool_polled_event(other, at).event_id != first.event_id


def test_sse_data_joins_multi_line_data_per_event() -> None:
    body = "event: message\ndata: {\"a\":\ndata: 1}\n\n: comment\ndata:2\n\n"
    assert sse_data(body) == ['{"a":\n1}', "2"]


# -- the client ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sse", [True, False])
async def test_client_handshake_session_header_and_results(sse: bool) -> None:
    server = FakeServer({"get_activity_summary": {"prompts": 3}}, sse=sse)
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handle)) as http:
        client = McpClient(URL, http, token="t0k")
        result = await client.call_tool("get_activity_summary")
    assert result.result == {"prompts": 3} and result.size_bytes > 0
    methods = [m.get("method") for _, m in server.requests]
    assert methods == ["initialize", "notifications/initialized", "tools/list", "tools/call"]
    init = server.requests[0][1]["params"]
    assert init["protocolVersion"] and init["clientInfo"]["name"] == "sessionstream"
    headers = server.requests[-1][0]
    assert headers["mcp-session-id"] == "s1" and headers["authorization"] == "Bearer t0k"
    assert headers["mcp-protocol-version"] == init["protocolVersion"]
    assert "text/event-stream" in headers["accept"]


async def test_client_translates_errors() -> None:
    server = FakeServer({"broken": RuntimeError("backend down")})
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handle)) as http:
        client = McpClient(URL, http)
        with pytest.raises(SourceRejected, match="backend down"):
            await client.call_tool("broken")
        server.sessions += 1  # the server forgot our session (it restarted)
        with pytest.raises(SourceUnavailable, match="session expired"):
            await client.call_tool("broken")
        assert not client.connected
        server.up = False
        with pytest.raises(SourceUnavailable, match="ConnectError"):
            await client.call_tool("broken")

    def rpc_error(request: httpx.Request) -> httpx.Response:
        message = json.loads(request.content)
        return httpx.Response(200, json={"jsonrpc": "2.0", "id": message["id"],
                                         "error": {"code": -32601, "message": "nope"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(rpc_error)) as http:
        with pytest.raises(SourceRejected, match="-32601"):
            await McpClient(URL, http).connect()

    async with httpx.AsyncClient(transport=httpx.MockTransport(
            lambda r: httpx.Response(503))) as http:
        with pytest.raises(SourceUnavailable, match="503"):
            await McpClient(URL, http).connect()


# -- the poller ---------------------------------------------------------------------------------


async def test_one_failing_tool_never_stops_the_others() -> None:
    server = FakeServer({"a": {"n": 1}, "broken": RuntimeError("boom"), "b": {"m": {"x": 2}}})
    published: list[TelemetryPolledEvent] = []
    poller, reader, _ = _poller(server, ["a", "broken", "missing", "b"], published)
    await _cycle(poller)
    by_tool = {e.payload.tool: e.payload for e in published}
    assert by_tool["a"].ok and by_tool["a"].values == {"n": 1.0}
    assert by_tool["b"].ok and by_tool["b"].values == {"m.x": 2.0}
    assert not by_tool["broken"].ok and "boom" in (by_tool["broken"].error or "")
    assert not by_tool["missing"].ok
    assert poller.breaker.state is BreakerState.CLOSED  # the server answered every time
    errors = {(a["gen_ai.tool.name"], a["error.type"]): v
              for a, v in _metrics(reader)["sessionstream.telemetry.poll.errors"]}
    assert errors == {("broken", "rejected"): 1, ("missing", "unknown_tool"): 1}


async def test_retries_are_bounded_with_growing_capped_backoff_then_the_breaker_opens() -> None:
    server = FakeServer({"a": {"n": 1}, "b": {"n": 2}, "c": {"n": 3}, "d": {"n": 4}})
    server.up = False
    published: list[TelemetryPolledEvent] = []
    clock = FakeClock()
    poller, reader, sleeps = _poller(server, ["a", "b", "c", "d"], published, retries=2,
                                     breaker_threshold=3, breaker_reset_s=30, backoff_s=0.2,
                                     backoff_max_s=0.5, clock=clock)
    await _cycle(poller)
    assert len(sleeps) == 3 * 2  # three calls went out, each retried twice
    assert all(0.2 <= s <= 0.5 for s in sleeps)
    assert sleeps[1] >= 0.4 or sleeps[1] == 0.5  # exponential: the second wait is longer
    assert poller.breaker.state is BreakerState.OPEN
    assert [e.payload.tool for e in published] == ["a", "b", "c"]  # d was skipped
    assert not any(e.payload.ok for e in published)
    found = _metrics(reader)
    errors = {(a["gen_ai.tool.name"], a["error.type"]): v
              for a, v in found["sessionstream.telemetry.poll.errors"]}
    assert errors == {("a", "unavailable"): 1, ("b", "unavailable"): 1,
                      ("c", "unavailable"): 1, ("d", "circuit_open"): 1}
    assert found["sessionstream.telemetry.breaker.state"][0][1] == 2

    await _cycle(poller)  # still open: nothing goes out
    assert len(published) == 3

    server.up = True
    clock.now += 30
    await _cycle(poller)  # half-open probe succeeds: closed, every tool polled
    assert poller.breaker.state is BreakerState.CLOSED
    assert [e.payload.ok for e in published[3:]] == [True] * 4
    found = _metrics(reader)
    moves = {(a["from"], a["to"]): v
             for a, v in found["sessionstream.telemetry.breaker.transitions"]}
    assert moves == {("closed", "open"): 1, ("open", "half_open"): 1, ("half_open", "closed"): 1}
    assert found["sessionstream.telemetry.breaker.state"][0][1] == 0
    assert [v for _, v in found["sessionstream.telemetry.poll.cycles"]] == [3]


async def test_publish_failures_and_bugs_never_escape_the_cycle() -> None:
    server = FakeServer({"a": {"n": 1}, "b": {"n": 2}})
    reader = InMemoryMetricReader()
    calls: list[str] = []

    async def publish(key: TelemetryKey, event: TelemetryPolledEvent) -> None:
        calls.append(key.tool)
        if key.tool == "a":
            raise KafkaConnectionError("broker gone")
        raise RuntimeError("a bug")

    poller = TelemetryPoller(URL, ["a", "b"], publish, MeterProvider([reader]).get_meter("t"),
                             transport=httpx.MockTransport(server.handle))
    await _cycle(poller)
    assert calls == ["a", "b"]
    errors = {(a["gen_ai.tool.name"], a["error.type"]): v
              for a, v in _metrics(reader)["sessionstream.telemetry.poll.errors"]}
    assert errors == {("a", "publish"): 1, ("b", "internal"): 1}


async def test_run_stops_when_told_and_ends_the_session() -> None:
    server = FakeServer({"a": {"n": 1}})
    published: list[TelemetryPolledEvent] = []
    poller, _, _ = _poller(server, ["a"], published, interval_s=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    await eventually(lambda: len(published) >= 3, "three polls published", timeout=5,
                     interval=0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert server.sessions == 1  # one session, reused across cycles
    assert poller.client is not None and not poller.client.connected
