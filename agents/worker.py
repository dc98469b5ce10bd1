"""The main job: producers, agents and projections assembled into one faust worker.

``Pipeline`` owns the composition and nothing else: which producer feeds which topic, which
agent turns which topic into which, which projections run. Producers and projection runners
run as faust tasks beside the agents, so one process (or N, sharing partitions through their
consumer groups) does the whole job. ``backfill`` mode re-reads the sources from the start,
waits until every stage has caught up, then stops the worker the way Ctrl-C would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import faust
from aiokafka import AIOKafkaProducer

from agents import parse_claude_lines
from agents.flow import Flow
from projections.postgres.session_tables import SessionTables
from projections.runner import ProjectionRunner
from schemas.file_changes import FileChanged
from streams.app import create_app
from streams.codecs import encode, encode_key
from streams.lag import lag_to
from streams.producers.claude import ClaudeCodeProducer
from streams.settings import Settings
from streams.topics import FILE_CHANGES, SESSION_EVENTS

__all__ = ["APP_ID", "Endpoints", "Pipeline"]

logger = logging.getLogger(__name__)

APP_ID = "sessionstream"


@dataclass(frozen=True)
class Endpoints:
    """Where the worker's stores are, resolved by the CLI (configured or embedded)."""

    broker_url: str
    postgres_dsn: str
    sources: list[Path] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return ";".join(u.removeprefix("kafka://") for u in self.broker_url.split(";"))


class Pipeline:
    """Builds the faust app of the main job; ``backfill=True`` makes it exit once caught up."""

    def __init__(self, settings: Settings, endpoints: Endpoints, *, backfill: bool = False,
                 report: callable = print) -> None:  # type: ignore[valid-type]
        self.settings = settings
        self.endpoints = endpoints
        self.backfill = backfill
        self.report = report
        self.app = create_app(APP_ID, endpoints.broker_url, settings.state_dir)
        self.producer = ClaudeCodeProducer(
            roots=endpoints.sources or ClaudeCodeProducer.default_roots(os.environ),
            checkpoint_path=settings.state_dir / "checkpoints" / "claude-code.json",
            publish=self._publish,
        )
        self.projections = [ProjectionRunner(SessionTables(endpoints.postgres_dsn),
                                             endpoints.bootstrap)]
        self._kafka: AIOKafkaProducer | None = None
        self._published_ends: dict[int, int] = {}
        self._stop = asyncio.Event()
        self._register()

    def _register(self) -> None:
        app = self.app
        raw = {"key_serializer": "raw", "value_serializer": "raw"}
        file_changes = app.topic(FILE_CHANGES.name, partitions=FILE_CHANGES.partitions, **raw)
        events = app.topic(SESSION_EVENTS.name, partitions=SESSION_EVENTS.partitions, **raw)
        dlq = app.topic(FILE_CHANGES.dlq, partitions=1, **raw)
        self.flow = flow = Flow("parse_claude_lines", FILE_CHANGES.value,
                                parse_claude_lines.decide, events, dlq)

        async def parse_claude_lines_agent(stream: faust.StreamT) -> None:
            await flow(stream)

        app.agent(file_changes, name="parse_claude_lines")(parse_claude_lines_agent)
        app.task(self._run_producer)
        for runner in self.projections:
            app.task(self._task_for(runner))

    def _task_for(self, runner: ProjectionRunner):  # noqa: ANN202 - faust task
        async def run_projection() -> None:
            await runner.projection.start()
            try:
                await runner.run()
            finally:
                await runner.projection.stop()

        run_projection.__name__ = f"project_{runner.projection.name.replace('.', '_')}"
        return run_projection

    async def _publish(self, batch: list[FileChanged]) -> None:
        assert self._kafka is not None
        futures = [await self._kafka.send(FILE_CHANGES.name, encode(e),
                                          key=encode_key(e.source, e.session_id))
                   for e in batch]
        for meta in await asyncio.gather(*futures):
            self._published_ends[meta.partition] = max(
                self._published_ends.get(meta.partition, 0), meta.offset + 1)

    async def _run_producer(self) -> None:
        self._kafka = AIOKafkaProducer(bootstrap_servers=self.endpoints.bootstrap, acks="all",
                                       linger_ms=5)
        await self._kafka.start()
        try:
            if self.backfill:
                await self._backfill()
            else:
                roots = ", ".join(str(r) for r in self.producer.roots)
                self.report(f"watching {roots}")
                await self.producer.run(self._stop)
        finally:
            await self._kafka.stop()

    async def _backfill(self) -> None:
        self.producer.reset()
        published = await self.producer.backfill()
        self.report(f"published {published} lines from {len(self.producer.roots)} root(s); "
                    "waiting for the agents and projections to catch up...")
        await self._wait_caught_up()
        self.report("caught up")
        os.kill(os.getpid(), signal.SIGTERM)  # the same clean stop as Ctrl-C

    async def _wait_caught_up(self) -> None:
        """Until the parse agent has committed past every line published here, and each
        projection past every event the agent produced (exact targets, any broker)."""
        bootstrap = self.endpoints.bootstrap
        while True:
            lags = {"parse": await lag_to(bootstrap, APP_ID, FILE_CHANGES.name,
                                          self._published_ends)}
            for runner in self.projections:
                lags[runner.projection.name] = await lag_to(
                    bootstrap, runner.group_id, runner.topic, self.flow.produced_ends)
            if sum(lags.values()) == 0:
                return
            self.report("  remaining: " + ", ".join(f"{k}={v}" for k, v in lags.items()))
            await asyncio.sleep(1.0)
