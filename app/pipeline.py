"""The main job: producers, agents and projections assembled into one faust worker.

``Pipeline`` owns the composition and nothing else:

* producers (one per source) publish raw lines to ``sessions.file-changes.v1``;
* the ``parse_lines`` agent turns them into ``sessions.events.v1`` (one parser per source);
* the ``filter_events`` agent writes the content-filtered copy, ``sessions.filtered.v1``;
  both run on the batched :class:`~streams.stage.Stage` runtime, each in its own group;
* the summarizer folds events into ``sessions.summaries.v1`` (open, update, close);
* projection runners apply ``sessions.events.v1`` to Postgres and, when configured, Neo4j;
* the metrics exporter serves totals derived from the Postgres state (restart-safe).

Stages, producers, the summarizer and projection runners run as faust tasks, so one
process (or N, sharing partitions through their consumer groups) does the whole job.
``backfill`` mode re-reads the sources from the start, waits until every stage has caught up
with exactly what was published, then stops the worker the way Ctrl-C would.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.metrics import MeterProvider

from agents import filter_events, parse_lines
from agents.llm.summaries import LlmSummaries
from agents.summarize_runner import SummarizeRunner
from app.catch_up import wait_caught_up
from app.endpoints import Endpoints
from app.groups import APP_ID, FILTER_GROUP, PARSE_GROUP
from app.health import health_answer
from app.lifecycle import close_idle_sessions, closers_of, run_lifecycle
from app.projection_set import build_projections
from app.read_api import read_api
from app.sources import build_producers
from projections.otel.export import start_metrics
from projections.otel.mcp_telemetry_metrics import TelemetryMetrics
from projections.otel.metrics import SessionMetrics
from projections.otel.session_traces import SessionTraces, span_exporter, traces_url
from projections.pricing import PricingTable
from projections.runner import ProjectionRunner
from schemas.file_changes import FileChanged
from schemas.telemetry import TelemetryKey, TelemetryPolledEvent
from streams.app import create_app
from streams.batches import BatchSender
from streams.codecs import encode, encode_file_change, encode_key
from streams.kafka_backoff import RETRY_BACKOFF_MS
from streams.lag import end_offsets, lag_to, topic_ends
from streams.producers.http_api import bind_api, serve_api
from streams.producers.mcp_telemetry_poller import TelemetryPoller
from streams.runtime import PRODUCER_BATCH_BYTES, ConsumerRuntime
from streams.settings import Settings
from streams.stage import Stage
from streams.topics import (
    CATALOGUE,
    FILE_CHANGES,
    FILTERED,
    SESSION_EVENTS,
    TELEMETRY_POLLED,
)

__all__ = ["APP_ID", "Pipeline"]

logger = logging.getLogger(__name__)


Report = Callable[[str], None]


class Pipeline:
    """Builds the faust app of the main job; ``backfill=True`` makes it exit once caught up."""

    def __init__(self, settings: Settings, endpoints: Endpoints, *, backfill: bool = False,
                 report: Report = print, helper: bool = False) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self.backfill = backfill
        self.report = report
        # A helper (one of `--workers N`) consumes only: it shares the stages', summarizer's
        # and projections' consumer groups with the main worker, which alone watches the
        # sources, serves metrics and the publish API, and polls MCP.
        self.helper = helper
        self.app = create_app(APP_ID, endpoints.broker_url, settings.state_dir)
        self.producers = ([] if helper else
                          build_producers(settings, endpoints.sources, self._publish))
        # Metrics are served by `run` only; the port is bound here so a taken port is reported
        # before anything else starts. Backfill records into a provider nobody reads.
        self.exporter = (None if backfill or helper else
                         start_metrics(settings.metrics_port, endpoints.otlp_endpoint,
                                       settings.metrics_host,
                                       otlp_headers=settings.otlp_headers))
        # The publish API (run only) binds now too: a taken port fails before anything starts.
        self.api_socket = (bind_api(settings.api_host, settings.api_port)
                           if settings.api_port and not backfill and not helper else None)
        pricing = PricingTable.load(settings.pricing_file)
        projections = build_projections(settings, endpoints, pricing)
        self.metrics = SessionMetrics(
            self.exporter.meter_provider if self.exporter else MeterProvider(),
            list(projections.values()))
        self.projections = [
            ProjectionRunner(projection, endpoints.bootstrap, on_applied=self.metrics.record_write)
            for projection in projections.values()
        ]
        # MCP telemetry (SESSIONSTREAM_MCP_URL): the poller runs in `run` only; its metrics and
        # the telemetry tables' derived ones go to the same provider as everything else.
        telemetry_provider = self.exporter.meter_provider if self.exporter else MeterProvider()
        self.telemetry_metrics = TelemetryMetrics(telemetry_provider)
        self.telemetry_metrics.attach(projections.values())
        self.poller = None if backfill or helper else TelemetryPoller.from_settings(
            settings, self._publish_telemetry, telemetry_provider.get_meter("sessionstream.mcp"))
        # LLM summaries (SESSIONSTREAM_LLM_PROVIDER): `run` only, off by default (no calls, no
        # cost); its metrics go to the same provider as everything else.
        self.llm_summaries = None if backfill or helper else LlmSummaries.from_settings(
            settings, endpoints.bootstrap, telemetry_provider.get_meter("sessionstream.llm"))
        self._telemetry_kafka: AIOKafkaProducer | None = None
        self.summarizer = SummarizeRunner(
            endpoints.bootstrap, inactivity_timeout=settings.inactivity_timeout_s,
            update_interval=settings.summary_interval_s, pricing=pricing, report=report,
        )
        self._kafka: AIOKafkaProducer | None = None
        self._lines: BatchSender | None = None
        self._stop = asyncio.Event()
        self.helpers = 0  # helper processes the caller started beside this one
        self._register()

    def _register(self) -> None:
        app, bootstrap = self.app, self.endpoints.bootstrap
        # The faust app's group before the stages had their own: an upgrade resumes there.
        self.parse = Stage("parse_lines", bootstrap, source=FILE_CHANGES.name,
                           schema=FILE_CHANGES.value, decide=parse_lines.decide,
                           target=SESSION_EVENTS.name, dlq=FILE_CHANGES.dlq,
                           group_id=PARSE_GROUP, legacy_group=APP_ID)
        policy = filter_events.FilterPolicy.from_mapping(self.settings.content_modes)
        self.filter = Stage("filter_events", bootstrap, source=SESSION_EVENTS.name,
                            schema=SESSION_EVENTS.value,
                            decide=functools.partial(filter_events.decide, policy),
                            target=FILTERED.name, dlq=SESSION_EVENTS.dlq,
                            group_id=FILTER_GROUP, legacy_group=APP_ID, shared_decode=True)
        for runtime in (self.parse, self.filter, self.summarizer):
            app.task(self._task_of(runtime))
        if not self.helper:
            app.task(self._run_producers)
        for runner in self.projections:
            app.task(self._task_for(runner))
        if self.exporter is not None:
            app.task(self._run_metrics)
        if self.exporter is not None and self.endpoints.otlp_endpoint:
            app.task(self._run_traces)  # `run` only, with an OTLP endpoint
        if not self.backfill and not self.helper:
            app.task(self._run_lifecycle)
        if self.poller is not None:
            app.task(self._run_telemetry)
        if self.llm_summaries is not None:
            app.task(self._run_llm_summaries)
        if self.api_socket is not None:
            app.task(self._run_api)

    @staticmethod
    def _task_of(runtime: ConsumerRuntime) -> Callable[[], Any]:
        async def run_runtime() -> None:
            await runtime.run()

        run_runtime.__name__ = runtime.name
        return run_runtime

    def _task_for(self, runner: ProjectionRunner) -> Callable[[], Any]:
        async def run_projection() -> None:
            await runner.projection.start()
            try:
                await runner.run()
            finally:
                await runner.projection.stop()

        run_projection.__name__ = f"project_{runner.projection.name.replace('.', '_')}"
        return run_projection

    async def start_over(self) -> None:
        """Forget every producer checkpoint and projection position (data is kept): they point
        into a broker log that is gone. Called before the worker starts when
        ``endpoints.fresh_log``; the producers then re-publish everything and the projections
        re-apply it, converging on their natural keys."""
        for producer in self.producers:
            producer.reset()
        for runner in self.projections:
            await runner.projection.start()
            try:
                await runner.projection.forget_positions()
            finally:
                await runner.projection.stop()

    async def _publish(self, batch: list[FileChanged]) -> None:
        assert self._lines is not None
        for e in batch:
            await self._lines.add(encode_key(e.source, e.session_id), encode_file_change(e))
        await self._lines.flush()  # confirmed by the broker before the checkpoint moves

    def published_ends(self) -> dict[int, int]:
        """Per partition of the lines topic, the next offset after what this process's
        producers published and the broker confirmed."""
        return self._lines.ends if self._lines is not None else {}

    async def _run_producers(self) -> None:
        self._kafka = AIOKafkaProducer(bootstrap_servers=self.endpoints.bootstrap, acks="all",
                                       max_batch_size=PRODUCER_BATCH_BYTES,
                                       retry_backoff_ms=RETRY_BACKOFF_MS)
        await self._kafka.start()
        self._lines = BatchSender(self._kafka, FILE_CHANGES.name)
        await self._lines.start()
        try:
            if self.backfill:
                await self._backfill()
                return
            for producer in self.producers:
                self.report(f"watching {producer.source}: {_roots_line(producer.roots)}")
            await asyncio.gather(*(p.run(self._stop) for p in self.producers))
        finally:
            await self._kafka.stop()

    async def _run_api(self) -> None:
        assert self.api_socket is not None
        token = self.settings.api_token
        secret = token.get_secret_value() if token else None
        await serve_api(self.api_socket, self.endpoints.bootstrap, secret, report=self.report,
                        health=health_answer(self.settings, self.endpoints),
                        extend=read_api(self.endpoints.postgres_dsn, secret))

    async def _run_telemetry(self) -> None:
        """The MCP poller with its own producer, and the telemetry metrics' refresh loop."""
        assert self.poller is not None
        self._telemetry_kafka = AIOKafkaProducer(bootstrap_servers=self.endpoints.bootstrap,
                                                 acks="all", retry_backoff_ms=RETRY_BACKOFF_MS)
        await self._telemetry_kafka.start()
        self.report(f"polling MCP {self.poller.url}: {', '.join(self.poller.tools)}")
        try:
            await asyncio.gather(
                self.poller.run(self._stop),
                self.telemetry_metrics.run(self._stop, self.endpoints.postgres_dsn))
        finally:
            await self._telemetry_kafka.stop()

    async def _publish_telemetry(self, key: TelemetryKey, event: TelemetryPolledEvent) -> None:
        assert self._telemetry_kafka is not None
        await self._telemetry_kafka.send_and_wait(TELEMETRY_POLLED.name, encode(event),
                                                  key=key.model_dump_json().encode())

    async def _run_llm_summaries(self) -> None:
        """The LLM summarizer (:mod:`agents.llm`): summaries runner and persistent retries."""
        assert self.llm_summaries is not None
        self.report(f"llm summaries: {self.llm_summaries.endpoint}")
        await self.llm_summaries.run()

    async def _run_metrics(self) -> None:
        assert self.exporter is not None
        if self.exporter.url:
            self.report(f"metrics:  {self.exporter.url}")
        if self.exporter.otlp_endpoint:
            self.report(f"otlp:     {self.exporter.otlp_endpoint}")
        try:
            await self.metrics.run(self._stop, self.endpoints.postgres_dsn, lags=self._lags,
                                   dead_letters=self._dead_letters)
        finally:
            self.exporter.shutdown()

    async def _run_lifecycle(self) -> None:
        """Close sessions idle past the inactivity timeout in every store, while caught up."""
        await run_lifecycle(self._stop, closers_of(r.projection for r in self.projections),
                            self.settings.inactivity_timeout_s, self._caught_up,
                            interval_s=min(10.0, self.settings.inactivity_timeout_s / 2))

    async def _caught_up(self) -> bool:
        """Whether the parse stage and every projection have reached their topics' ends."""
        bootstrap = self.endpoints.bootstrap
        pending = await lag_to(bootstrap, self.parse.group_id, FILE_CHANGES.name,
                               await end_offsets(bootstrap, FILE_CHANGES.name))
        for runner in self.projections:
            pending += await lag_to(bootstrap, runner.group_id, runner.topic,
                                    await end_offsets(bootstrap, runner.topic))
        return pending == 0

    async def _run_traces(self) -> None:
        """Export the trace of every ended session (see :mod:`projections.otel.session_traces`)."""
        assert self.endpoints.otlp_endpoint
        traces = SessionTraces(span_exporter(self.endpoints.otlp_endpoint,
                                             self.settings.otlp_headers))
        self.report(f"traces:   {traces_url(self.endpoints.otlp_endpoint)}")
        await traces.run(self._stop, self.endpoints.postgres_dsn)

    async def _lags(self) -> dict[str, int]:
        """Per projection: records of its topic not applied yet (for the lag gauge)."""
        targets = self.parse.produced_ends
        return {r.projection.name: await lag_to(self.endpoints.bootstrap, r.group_id, r.topic,
                                                await self.targets(r, targets))
                for r in self.projections}

    async def _dead_letters(self) -> dict[str, int]:
        """Per dead-letter topic of the catalogue: its records (end offsets; 0 before the topic
        exists). End offsets only grow, so the counter survives restarts."""
        ends = await topic_ends(self.endpoints.bootstrap,
                                [spec.dlq for spec in CATALOGUE.values()])
        return {topic: sum(offsets.values()) for topic, offsets in ends.items()}

    async def targets(self, runner: ProjectionRunner, events: dict[int, int]) -> dict[int, int]:
        """What ``runner`` must reach: ``events`` on the events topic, else its topic's end."""
        if runner.topic == SESSION_EVENTS.name:
            return events
        return await end_offsets(self.endpoints.bootstrap, runner.topic)

    async def _backfill(self) -> None:
        published = 0
        for producer in self.producers:
            producer.reset()
            published += await producer.backfill()
        roots = sum(len(p.roots) for p in self.producers)
        self.report(f"published {published} lines from {roots} root(s); "
                    "waiting for the agents and projections to catch up...")
        await wait_caught_up(self)
        closed = await close_idle_sessions(
            closers_of(r.projection for r in self.projections),
            self.settings.inactivity_timeout_s)
        self.report("caught up" + (f"; closed {max(closed.values())} idle session(s)"
                                   if closed and max(closed.values()) else ""))
        os.kill(os.getpid(), signal.SIGTERM)  # the same clean stop as Ctrl-C


def _roots_line(roots: list[Path]) -> str:
    """The roots a producer watches, for the start-up report: those that exist, and how many
    of its default folders do not yet (an agent's folder appears when it first runs; some
    sources, such as the Cline family, look in every editor's folder)."""
    present = [str(root) for root in roots if root.is_dir()]
    missing = len(roots) - len(present)
    if not present:
        more = f" and {missing - 1} more" if missing > 1 else ""
        return f"{roots[0]}{more} (none there yet; picked up when created)"
    return ", ".join(present) + (f" (+{missing} not there yet)" if missing else "")
