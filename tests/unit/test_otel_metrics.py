"""SessionMetrics: a snapshot of totals becomes exactly these OTel points, whoever reports it."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    InMemoryMetricReader,
    Sum,
)

from projections.otel.export import start_metrics
from projections.otel.metrics import MetricsSnapshot, SessionMetrics, provider_of
from tests.waiting import eventually

pytestmark = pytest.mark.unit

OPUS, HAIKU = "claude-opus-4-5-20251101", "claude-haiku-4-5-20251001"
SNAPSHOT = MetricsSnapshot(
    sessions={("claude-code", "active"): 2, ("claude-code", "closed"): 3, ("codex", "active"): 1},
    tool_calls={("Bash", "ok"): 4, ("Bash", "error"): 1, ("Bash", "pending"): 2,
                ("Read", "ok"): 7},
    tokens={("anthropic", OPUS, "input"): 10, ("anthropic", OPUS, "output"): 20,
            ("anthropic", OPUS, "cache_read"): 300, ("anthropic", OPUS, "cache_creation"): 40,
            ("anthropic", HAIKU, "input"): 1, ("anthropic", HAIKU, "output"): 2,
            ("anthropic", HAIKU, "cache_read"): 0, ("anthropic", HAIKU, "cache_creation"): 5},
    cost_usd={("anthropic", OPUS): 1.25, ("anthropic", HAIKU): 0.000125},
    events_processed={("postgres.session_tables", "sessions.events.v1"): 42,
                      ("neo4j.session_graph", "sessions.events.v1"): 40},
)

Points = dict[frozenset[tuple[str, Any]], Any]


def _chat(model: str, token_type: str, cache: str | None = None) -> frozenset[tuple[str, Any]]:
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
                  "gen_ai.request.model": model, "gen_ai.token.type": token_type}
    if cache is not None:
        attributes["gen_ai.token.cache"] = cache
    return frozenset(attributes.items())


def _attrs(**attributes: str) -> frozenset[tuple[str, Any]]:
    return frozenset((k.replace("__", "."), v) for k, v in attributes.items())


EXPECTED: dict[str, Points] = {
    "sessionstream.sessions.started": {
        _attrs(sessionstream__source="claude-code"): 5, _attrs(sessionstream__source="codex"): 1},
    "sessionstream.sessions.closed": {
        _attrs(sessionstream__source="claude-code"): 3, _attrs(sessionstream__source="codex"): 0},
    "sessionstream.tool.calls": {
        frozenset({("gen_ai.tool.name", "Bash"), ("sessionstream.tool.outcome", "ok")}): 4,
        frozenset({("gen_ai.tool.name", "Bash"), ("sessionstream.tool.outcome", "error")}): 1,
        frozenset({("gen_ai.tool.name", "Read"), ("sessionstream.tool.outcome", "ok")}): 7,
        frozenset({("gen_ai.tool.name", "Read"), ("sessionstream.tool.outcome", "error")}): 0},
    "sessionstream.tool.calls.pending": {
        frozenset({("gen_ai.tool.name", "Bash")}): 2, frozenset({("gen_ai.tool.name", "Read")}): 0},
    "gen_ai.client.token.usage": {
        _chat(OPUS, "input", "none"): 10, _chat(OPUS, "output"): 20,
        _chat(OPUS, "input", "read"): 300, _chat(OPUS, "input", "creation"): 40,
        _chat(HAIKU, "input", "none"): 1, _chat(HAIKU, "output"): 2,
        _chat(HAIKU, "input", "read"): 0, _chat(HAIKU, "input", "creation"): 5},
    "sessionstream.cost.usage": {
        frozenset({("gen_ai.provider.name", "anthropic"), ("gen_ai.request.model", OPUS)}): 1.25,
        frozenset({("gen_ai.provider.name", "anthropic"),
                   ("gen_ai.request.model", HAIKU)}): 0.000125},
    "sessionstream.events.processed": {
        frozenset({("sessionstream.projection", "postgres.session_tables"),
                   ("messaging.destination.name", "sessions.events.v1")}): 42,
        frozenset({("sessionstream.projection", "neo4j.session_graph"),
                   ("messaging.destination.name", "sessions.events.v1")}): 40},
}
COUNTERS = {name for name in EXPECTED if name != "sessionstream.tool.calls.pending"}


def _new() -> tuple[SessionMetrics, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return SessionMetrics(MeterProvider(metric_readers=[reader])), reader


def _collect(reader: InMemoryMetricReader) -> dict[str, Any]:
    """``{metric name: metric}`` of one collection."""
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics}


def _points(metric: Any) -> Points:
    return {frozenset(p.attributes.items()): p.value for p in metric.data.data_points}


def test_nothing_is_reported_before_the_first_snapshot() -> None:
    _, reader = _new()
    metrics = _collect(reader)
    assert all(not m.data.data_points for m in metrics.values())


def test_a_snapshot_is_reported_exactly() -> None:
    session_metrics, reader = _new()
    session_metrics.snapshot = SNAPSHOT
    metrics = _collect(reader)
    assert {name: _points(metrics[name]) for name in EXPECTED} == EXPECTED


def test_totals_are_monotonic_cumulative_counters_with_units() -> None:
    session_metrics, reader = _new()
    session_metrics.snapshot = SNAPSHOT
    metrics = _collect(reader)
    for name in COUNTERS:
        assert isinstance(metrics[name].data, Sum), name
        assert metrics[name].data.is_monotonic, name
        assert metrics[name].data.aggregation_temporality == AggregationTemporality.CUMULATIVE
    assert isinstance(metrics["sessionstream.tool.calls.pending"].data, Gauge)
    assert metrics["gen_ai.client.token.usage"].unit == "{token}"
    assert metrics["sessionstream.cost.usage"].unit == "USD"


def test_the_same_snapshot_reads_the_same_in_a_new_process_and_on_every_collection() -> None:
    first, first_reader = _new()
    first.snapshot = SNAPSHOT
    once = {name: _points(m) for name, m in _collect(first_reader).items() if name in EXPECTED}
    twice = {name: _points(m) for name, m in _collect(first_reader).items() if name in EXPECTED}
    restarted, restarted_reader = _new()
    restarted.snapshot = SNAPSHOT
    after = {name: _points(m) for name, m in _collect(restarted_reader).items()
             if name in EXPECTED}
    assert once == twice == after == EXPECTED


def test_a_new_snapshot_replaces_the_old_one() -> None:
    session_metrics, reader = _new()
    session_metrics.snapshot = SNAPSHOT
    _collect(reader)
    session_metrics.snapshot = MetricsSnapshot(
        sessions={("claude-code", "closed"): 6}, tool_calls={}, tokens={}, cost_usd={},
        events_processed={})
    metrics = _collect(reader)
    assert _points(metrics["sessionstream.sessions.started"]) == {
        _attrs(sessionstream__source="claude-code"): 6}
    assert _points(metrics["sessionstream.sessions.closed"]) == {
        _attrs(sessionstream__source="claude-code"): 6}


def test_write_durations_and_lag_are_recorded_per_projection() -> None:
    session_metrics, reader = _new()
    session_metrics.record_write("postgres.session_tables", 10, 0.02)
    session_metrics.record_write("postgres.session_tables", 0, 0.2)
    session_metrics.set_lag("postgres.session_tables", 7)
    session_metrics.set_lag("neo4j.session_graph", 0)
    session_metrics.set_lag("postgres.session_tables", 3)
    metrics = _collect(reader)
    histogram = metrics["sessionstream.projection.write.duration"]
    assert isinstance(histogram.data, Histogram)
    assert histogram.unit == "s"
    (point,) = histogram.data.data_points
    assert dict(point.attributes or {}) == {"sessionstream.projection": "postgres.session_tables"}
    assert (point.count, point.sum) == (2, pytest.approx(0.22))
    assert point.explicit_bounds[0] == 0.005
    assert _points(metrics["sessionstream.projection.lag"]) == {
        _attrs(sessionstream__projection="postgres.session_tables"): 3,
        _attrs(sessionstream__projection="neo4j.session_graph"): 0}


@pytest.mark.parametrize(("source", "model", "provider"), [
    ("claude-code", OPUS, "anthropic"),
    ("claude-code", "<synthetic>", "anthropic"),
    ("claude-code", "us.anthropic.claude-sonnet-4-5", "anthropic"),
    ("codex", "gpt-5-codex", "openai"),
    ("codex", "o3-mini", "openai"),
    ("gemini-cli", "gemini-2.5-pro", "gcp.gemini"),
    ("opencode", "anthropic/claude-sonnet-4-5", "anthropic"),
    ("kilo-code", "x-ai/grok-code-fast-1", "x_ai"),
    ("cline", "deepseek-chat", "deepseek"),
    ("roo-code", "devstral-medium", "mistral_ai"),
    ("goose", "qwen3-coder-plus", "goose"),
    ("some-agent", "mystery", "some-agent"),
    ("", "mystery", "unknown"),
])
def test_provider_of(source: str, model: str, provider: str) -> None:
    assert provider_of(source, model) == provider


async def test_run_logs_database_errors_and_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    session_metrics, _ = _new()
    session_metrics.snapshot = SNAPSHOT
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="projections.otel.metrics"):
        task = asyncio.create_task(session_metrics.run(
            stop, f"postgresql://nobody@127.0.0.1:{port}/none", interval=0.01))
        await eventually(lambda: len(caplog.records) >= 2, "two failed refreshes logged",
                         timeout=5, interval=0.01)
        stop.set()
        await asyncio.wait_for(task, 5)
    assert "metrics refresh failed" in caplog.records[0].getMessage()
    assert session_metrics.snapshot is SNAPSHOT


async def test_run_feeds_the_lag_gauge_and_survives_broker_errors(
        caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    session_metrics, reader = _new()
    stop = asyncio.Event()
    calls = 0

    async def lags() -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionResetError("broker went away")
        if calls == 3:
            stop.set()
        return {"postgres.session_tables": 10 - calls}

    with caplog.at_level(logging.WARNING, logger="projections.otel.metrics"):
        await asyncio.wait_for(session_metrics.run(
            stop, f"postgresql://nobody@127.0.0.1:{port}/none", interval=0.01, lags=lags), 5)
    assert calls == 3
    assert any("lag read failed" in r.getMessage() for r in caplog.records)
    assert _points(_collect(reader)["sessionstream.projection.lag"]) == {
        _attrs(sessionstream__projection="postgres.session_tables"): 7}


def test_otlp_metrics_carry_the_configured_headers() -> None:
    """SESSIONSTREAM_OTLP_HEADERS reach the OTLP backend with every metrics export (hosted
    backends authenticate with them), on a local HTTP server that accepts OTLP/HTTP."""
    import http.server
    import threading

    seen: list[tuple[str, dict[str, str]]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        export = start_metrics(0, f"http://127.0.0.1:{server.server_address[1]}",
                               otlp_headers={"x-api-key": "k-123", "Langsmith-Project": "p"})
        export.meter_provider.get_meter("t").create_counter("c").add(1)
        export.meter_provider.force_flush()
        export.shutdown()
    finally:
        server.shutdown()
        server.server_close()
    assert seen, "nothing exported"
    path, headers = seen[0]
    assert path == "/v1/metrics"
    assert headers["x-api-key"] == "k-123" and headers["langsmith-project"] == "p"
