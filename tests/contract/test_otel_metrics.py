"""The metrics projection against real Postgres: totals derived from the tables, scraped over HTTP
and pushed over OTLP, identical after an interrupted ingest and after a restart."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from prometheus_client.parser import text_string_to_metric_families

from projections.base import Position, Record
from projections.otel.export import MetricsExport, start_metrics
from projections.otel.metrics import SessionMetrics
from projections.postgres.session_tables import SessionTables
from projections.pricing import PricingTable
from schemas.envelope import Envelope
from schemas.events import (
    SessionContext,
    SessionFileRemoved,
    ToolCalled,
    ToolResulted,
    UsageReported,
)
from streams.errors import ConfigError
from streams.topics import SESSION_EVENTS

pytestmark = pytest.mark.contract

TOPIC = SESSION_EVENTS.name
OPUS, HAIKU = "claude-opus-4-5-20251101", "claude-haiku-4-5-20251001"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SCOPE_LABELS = {"otel_scope_name", "otel_scope_version", "otel_scope_schema_url"}


def _record(partition: int, offset: int, session: str, payload: Any) -> Record:
    envelope = Envelope[Any](
        event_id=f"{session}-{offset:08d}", source="claude-code", type=payload.kind,
        occurred_at=T0 + timedelta(seconds=offset), session_id=session, payload=payload)
    return Record(TOPIC, partition, offset, envelope)


def _records() -> list[Record]:
    s1 = [
        SessionContext(cwd="/src/app", slug="brave-otter"),
        ToolCalled(tool_use_id="t1", name="Bash", input={"command": "ls"}),
        ToolResulted(tool_use_id="t1", content="a b"),
        ToolCalled(tool_use_id="t2", name="Read", input={"file_path": "/x"}),
        ToolResulted(tool_use_id="t2", is_error=True, content="no such file"),
        ToolCalled(tool_use_id="t3", name="Bash", input={"command": "sleep 9"}),  # no result
        UsageReported(message_key="m1:r1", model=OPUS, input_tokens=1000, output_tokens=100),
        UsageReported(message_key="m1:r1", model=OPUS, input_tokens=1000, output_tokens=2000,
                      cache_creation_5m_tokens=300, cache_read_tokens=40000),  # larger: wins
        UsageReported(message_key="m2:r2", model=HAIKU, input_tokens=10, output_tokens=20,
                      cache_creation_1h_tokens=5000),
        SessionFileRemoved(path="/home/u/.claude/projects/app/s1.jsonl"),
    ]
    s2 = [
        SessionContext(cwd="/src/lib"),
        UsageReported(message_key="m3:r3", model=OPUS, input_tokens=1, output_tokens=2),
        ToolResulted(tool_use_id="t9", content="orphan result"),  # its call was never seen
    ]
    records = [_record(0, i, "s1", p) for i, p in enumerate(s1)]
    records += [_record(1, i, "s2", p) for i, p in enumerate(s2)]
    records.append(Record(TOPIC, 1, len(s2), None))  # a dead-lettered record: still processed
    return records


def _cost(model: str, input_tokens: int, output_tokens: int, cache_5m: int = 0,
          cache_1h: int = 0, cache_read: int = 0) -> Decimal:
    return PricingTable.load().cost_of(model, input_tokens, output_tokens, cache_5m, cache_1h,
                                       cache_read).usd


OPUS_USD = _cost(OPUS, 1000, 2000, cache_5m=300, cache_read=40000) + _cost(OPUS, 1, 2)
HAIKU_USD = _cost(HAIKU, 10, 20, cache_1h=5000)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def _tokens(model: str, token_type: str, cache: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return _key("gen_ai_client_token_usage_total", gen_ai_operation_name="chat",
                gen_ai_provider_name="anthropic", gen_ai_request_model=model,
                gen_ai_token_type=token_type, gen_ai_token_cache=cache)


PROJ = {"sessionstream_projection": "postgres.session_tables"}
EXPECTED = {
    _key("sessionstream_sessions_started_total", sessionstream_source="claude-code"): 2,
    _key("sessionstream_sessions_closed_total", sessionstream_source="claude-code"): 1,
    _key("sessionstream_events_processed_total", messaging_destination_name=TOPIC, **PROJ): 14,
    _key("sessionstream_tool_calls_total", gen_ai_tool_name="Bash",
         sessionstream_tool_outcome="ok"): 1,
    _key("sessionstream_tool_calls_total", gen_ai_tool_name="Bash",
         sessionstream_tool_outcome="error"): 0,
    _key("sessionstream_tool_calls_total", gen_ai_tool_name="Read",
         sessionstream_tool_outcome="ok"): 0,
    _key("sessionstream_tool_calls_total", gen_ai_tool_name="Read",
         sessionstream_tool_outcome="error"): 1,
    _key("sessionstream_tool_calls_pending", gen_ai_tool_name="Bash"): 1,
    _key("sessionstream_tool_calls_pending", gen_ai_tool_name="Read"): 0,
    _tokens(OPUS, "input", "none"): 1001,
    _tokens(OPUS, "output", ""): 2002,
    _tokens(OPUS, "input", "read"): 40000,
    _tokens(OPUS, "input", "creation"): 300,
    _tokens(HAIKU, "input", "none"): 10,
    _tokens(HAIKU, "output", ""): 20,
    _tokens(HAIKU, "input", "read"): 0,
    _tokens(HAIKU, "input", "creation"): 5000,
    _key("sessionstream_cost_usage_USD_total", gen_ai_provider_name="anthropic",
         gen_ai_request_model=OPUS): float(OPUS_USD),
    _key("sessionstream_cost_usage_USD_total", gen_ai_provider_name="anthropic",
         gen_ai_request_model=HAIKU): float(HAIKU_USD),
}
DERIVED = {name for name, _ in EXPECTED}


async def _ingest_with_a_crash(dsn: str) -> None:
    """Apply part of the records, drop the worker (nothing more is committed, as with SIGKILL),
    then let a new worker receive everything again from the start, twice."""
    records = _records()
    first = SessionTables(dsn)
    await first.start()
    assert await first.apply_batch(records[:5]) == 5
    await first.stop()
    second = SessionTables(dsn)
    await second.start()
    try:
        assert await second.apply_batch(records) == len(records) - 5
        assert await second.apply_batch(records) == 0
    finally:
        await second.stop()


async def _scrape(export: MetricsExport) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The derived series of the endpoint, scope labels dropped."""
    assert export.url is not None
    async with httpx.AsyncClient() as client:
        response = await client.get(export.url)
    response.raise_for_status()
    return {(s.name, frozenset((k, v) for k, v in s.labels.items() if k not in SCOPE_LABELS)):
            s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples if s.name in DERIVED}


@pytest.fixture
def exports() -> Iterator[list[MetricsExport]]:
    """Exporters a test started; shut down at the end whatever happened."""
    started: list[MetricsExport] = []
    yield started
    for export in started:
        export.shutdown()


async def test_scraped_totals_are_the_state_and_a_restart_does_not_double_count(
        pg_dsn: str, exports: list[MetricsExport]) -> None:
    await _ingest_with_a_crash(pg_dsn)
    exports.append(start_metrics(_free_port(), None))
    metrics = SessionMetrics(exports[0].meter_provider)
    assert await _scrape(exports[0]) == {}  # nothing (not zeros) before the first refresh
    await metrics.refresh(pg_dsn)
    assert await _scrape(exports[0]) == EXPECTED
    await metrics.refresh(pg_dsn)
    assert await _scrape(exports[0]) == EXPECTED  # refreshing never adds

    exports[0].shutdown()  # the worker restarts: new provider, new endpoint, same database
    exports.append(start_metrics(_free_port(), None))
    restarted = SessionMetrics(exports[1].meter_provider)
    await restarted.refresh(pg_dsn)
    assert await _scrape(exports[1]) == EXPECTED


async def test_run_refreshes_from_a_pool_until_stopped(pg_dsn: str) -> None:
    await _ingest_with_a_crash(pg_dsn)
    export = start_metrics(_free_port(), None)
    try:
        metrics = SessionMetrics(export.meter_provider)
        stop = asyncio.Event()
        task = asyncio.create_task(metrics.run(stop, pg_dsn, interval=0.05))
        for _ in range(200):
            if metrics.snapshot is not None:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)
        assert await _scrape(export) == EXPECTED
    finally:
        export.shutdown()


class _GraphStub:
    """A projection whose positions live in another store."""

    name = "neo4j.session_graph"

    async def positions(self) -> list[Position]:
        return [Position(TOPIC, 0, 10), Position(TOPIC, 3, 2)]


async def test_positions_of_projections_in_other_stores_are_counted(pg_dsn: str) -> None:
    await _ingest_with_a_crash(pg_dsn)
    export = start_metrics(_free_port(), None)
    try:
        metrics = SessionMetrics(export.meter_provider, projections=[_GraphStub()])
        snapshot = await metrics.refresh(pg_dsn)
        assert snapshot.events_processed == {("postgres.session_tables", TOPIC): 14,
                                             ("neo4j.session_graph", TOPIC): 12}
    finally:
        export.shutdown()


async def test_a_projection_not_started_yet_is_left_out_not_fatal(pg_dsn: str) -> None:
    """The worker starts the metrics and the projections side by side: a refresh that comes
    first reads the committed rows and skips the projection, instead of crashing the worker."""
    await _ingest_with_a_crash(pg_dsn)
    export = start_metrics(_free_port(), None)
    try:
        metrics = SessionMetrics(export.meter_provider, projections=[SessionTables(pg_dsn)])
        snapshot = await metrics.refresh(pg_dsn)
        assert snapshot.events_processed == {("postgres.session_tables", TOPIC): 14}
    finally:
        export.shutdown()


def test_a_port_in_use_is_a_config_error_naming_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"SESSIONSTREAM_METRICS_PORT={port}"):
            start_metrics(port, None)


class _Collector(BaseHTTPRequestHandler):
    requests: ClassVar[list[ExportMetricsServiceRequest]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        type(self).requests.append(ExportMetricsServiceRequest.FromString(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _pushed_tokens(request: ExportMetricsServiceRequest) -> dict[frozenset[Any], int]:
    points: dict[frozenset[Any], int] = {}
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != "gen_ai.client.token.usage":
                    continue
                assert metric.sum.is_monotonic
                assert (metric.sum.aggregation_temporality
                        == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE)
                for p in metric.sum.data_points:
                    labels = frozenset((a.key, a.value.string_value) for a in p.attributes)
                    points[labels] = p.as_int
    return points


async def test_otlp_pushes_the_same_cumulative_totals(pg_dsn: str) -> None:
    await _ingest_with_a_crash(pg_dsn)
    collector = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    _Collector.requests.clear()
    export = start_metrics(0, f"http://127.0.0.1:{collector.server_address[1]}",
                           export_interval_s=0.1)
    try:
        assert export.otlp_endpoint == f"http://127.0.0.1:{collector.server_address[1]}/v1/metrics"
        await SessionMetrics(export.meter_provider).refresh(pg_dsn)
        pushed: dict[frozenset[Any], int] = {}
        deadline = time.monotonic() + 10
        while not pushed and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            pushed = next((p for r in reversed(_Collector.requests)
                           if (p := _pushed_tokens(r))), {})
    finally:
        export.shutdown()
        collector.shutdown()
        collector.server_close()
    def chat(model: str, token_type: str, cache: str | None = None) -> frozenset[Any]:
        labels = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
                  "gen_ai.request.model": model, "gen_ai.token.type": token_type}
        return frozenset({**labels, **({"gen_ai.token.cache": cache} if cache else {})}.items())

    expected = {chat(OPUS, "input", "none"): 1001, chat(OPUS, "output"): 2002,
                chat(OPUS, "input", "read"): 40000, chat(OPUS, "input", "creation"): 300,
                chat(HAIKU, "input", "none"): 10, chat(HAIKU, "output"): 20,
                chat(HAIKU, "input", "read"): 0, chat(HAIKU, "input", "creation"): 5000}
    assert pushed == expected


def test_an_unreachable_otlp_endpoint_neither_fails_nor_hangs() -> None:
    port = _free_port()
    export = start_metrics(0, f"http://127.0.0.1:{port}/v1/metrics", export_interval_s=0.1,
                           otlp_timeout_s=1.0)
    assert (export.url, export.otlp_endpoint) == (None, f"http://127.0.0.1:{port}/v1/metrics")
    SessionMetrics(export.meter_provider)
    started = time.monotonic()
    export.shutdown()
    export.shutdown()  # idempotent
    assert time.monotonic() - started < 10
