"""The instruments the dashboards add: active sessions, sessions closed at least once (a reopened
session stays counted), files touched, the database's size and dead letters per topic."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, Sum

from projections.otel.metrics import MetricsSnapshot, SessionMetrics
from tests.waiting import eventually

pytestmark = pytest.mark.unit

SOURCE = "sessionstream.source"
TOPIC = "messaging.destination.name"
SNAPSHOT = MetricsSnapshot(
    sessions={("claude-code", "active"): 4, ("claude-code", "closed"): 3, ("codex", "active"): 1,
              ("session-skill", "in_progress"): 2},
    tool_calls={}, tokens={}, cost_usd={}, events_processed={},
    reopened={"claude-code": 2, "codex": 0, "session-skill": 1},
    files_touched={"claude-code": 17, "codex": 0, "session-skill": 0},
    database_bytes=8_000_000,
)


def _new() -> tuple[SessionMetrics, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return SessionMetrics(MeterProvider(metric_readers=[reader])), reader


def _collect(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics}


def _points(metric: Any) -> dict[frozenset[tuple[str, Any]], Any]:
    return {frozenset(p.attributes.items()): p.value for p in metric.data.data_points}


def _by(key: str, **values: int) -> dict[frozenset[tuple[str, Any]], Any]:
    return {frozenset({(key, k.replace("_", "-"))}): v for k, v in values.items()}


def test_closed_counts_sessions_closed_now_and_reopened_since() -> None:
    metrics, reader = _new()
    metrics.snapshot = SNAPSHOT
    closed = _collect(reader)["sessionstream.sessions.closed"]
    assert isinstance(closed.data, Sum) and closed.data.is_monotonic
    assert _points(closed) == _by(SOURCE, claude_code=5, codex=0, session_skill=1)


def test_active_is_a_gauge_of_status_active_with_zeros() -> None:
    metrics, reader = _new()
    metrics.snapshot = SNAPSHOT
    active = _collect(reader)["sessionstream.sessions.active"]
    assert isinstance(active.data, Gauge)
    assert _points(active) == _by(SOURCE, claude_code=4, codex=1, session_skill=0)


def test_files_touched_and_database_size() -> None:
    metrics, reader = _new()
    metrics.snapshot = SNAPSHOT
    collected = _collect(reader)
    files = collected["sessionstream.files.touched"]
    assert isinstance(files.data, Sum) and files.data.is_monotonic
    assert _points(files) == _by(SOURCE, claude_code=17, codex=0, session_skill=0)
    size = collected["sessionstream.postgres.database.size"]
    assert isinstance(size.data, Gauge) and size.unit == "By"
    assert _points(size) == {frozenset(): 8_000_000}


def test_nothing_before_the_first_reads() -> None:
    metrics, reader = _new()
    collected = _collect(reader)
    for name in ("sessionstream.sessions.active", "sessionstream.files.touched",
                 "sessionstream.postgres.database.size", "sessionstream.dead_letters"):
        assert name not in collected or not collected[name].data.data_points, name


def test_dead_letters_are_a_counter_per_topic_replaced_by_each_read() -> None:
    metrics, reader = _new()
    metrics.set_dead_letters({"sessions.events.v1.dlq": 0, "sessions.file-changes.v1.dlq": 2})
    metrics.set_dead_letters({"sessions.events.v1.dlq": 1, "sessions.file-changes.v1.dlq": 2})
    dead = _collect(reader)["sessionstream.dead_letters"]
    assert isinstance(dead.data, Sum) and dead.data.is_monotonic
    assert _points(dead) == {frozenset({(TOPIC, "sessions.events.v1.dlq")}): 1,
                             frozenset({(TOPIC, "sessions.file-changes.v1.dlq")}): 2}


async def test_run_reads_dead_letters_and_keeps_the_last_on_broker_errors(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics, reader = _new()
    answers: list[dict[str, int] | Exception] = [{"a.dlq": 3}, KafkaConnectionError()]

    async def dead_letters() -> dict[str, int]:
        answer = answers.pop(0) if answers else KafkaConnectionError()
        if isinstance(answer, Exception):
            raise answer
        return answer

    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="projections.otel.metrics"):
        # No database listens there: the refresh fails and is logged, the broker reads go on.
        task = asyncio.create_task(metrics.run(stop, "postgresql://nobody@127.0.0.1:1/none",
                                               interval=0.01, dead_letters=dead_letters))
        await eventually(lambda: not answers and any(
            "dead-letter read failed" in r.getMessage() for r in caplog.records),
            "a dead-letter read to fail after one succeeded", timeout=10, interval=0.01)
        stop.set()
        await asyncio.wait_for(task, 10)
    assert _points(_collect(reader)["sessionstream.dead_letters"]) == {
        frozenset({(TOPIC, "a.dlq")}): 3}
