"""The LLM summarizer on real Kafka (and Postgres) against a local LLM server (aiohttp, in the
test process: the LLM is an external service) speaking both APIs.

Each test has its own summaries, retry and dead-letter topics and consumer groups, and backoff
delays of a fraction of a second. What is checked: a closed session's deterministic summary is
summarized by either provider and re-published on the summaries topic; 429 with Retry-After,
timeouts and 5xx are retried through the persistent retry topic (the wait honours Retry-After);
401 is dead-lettered at once with the reason, never retried; the breaker opens after N
failures, makes no calls while open and closes through a half-open probe; a retry queued
before a restart is tried by the next runner; and, the deterministic summarizer and the
``session_summaries`` projection running beside it, the deterministic row is there while the
LLM is down and gets its ``llm_summary`` once the LLM is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from opentelemetry.sdk.metrics import MeterProvider

from agents.llm.client import LlmClient
from agents.llm.summaries import LlmSummaries
from agents.summarize_runner import SummarizeRunner
from projections.postgres.session_summaries import SessionSummariesTable
from projections.runner import ProjectionRunner
from schemas.dead_letters import DeadLetter
from schemas.summaries import LlmSummaryRetry, SessionSummaryEvent
from streams.admin import ensure_topics
from streams.breaker import BreakerState
from streams.codecs import decode, encode, encode_key
from streams.consumers import partitions_of
from streams.settings import bootstrap_of
from streams.topics import SESSION_EVENTS, SUMMARIES, SUMMARY_RETRIES
from tests.llm_samples import closed_summary, summary_events
from tests.llm_server import Answer, FakeLlm, anthropic_error, openai_error
from tests.waiting import eventually

pytestmark = pytest.mark.contract

FAST = [0.2, 0.2, 0.2, 0.2, 0.2]


@dataclasses.dataclass
class Topics:
    summaries: str
    retries: str
    events: str

    @property
    def dlq(self) -> str:
        return f"{self.summaries}.dlq"


@pytest.fixture
async def kafka(stack: dict[str, str]) -> str:
    return bootstrap_of(stack["kafka"])


@pytest.fixture
async def topics(kafka: str) -> Topics:
    run = uuid.uuid4().hex[:10]
    names = Topics(f"test.summaries.{run}.v1", f"test.retries.{run}.v1", f"test.events.{run}.v1")
    await ensure_topics(kafka, [dataclasses.replace(SUMMARIES, name=names.summaries),
                                dataclasses.replace(SUMMARY_RETRIES, name=names.retries),
                                dataclasses.replace(SESSION_EVENTS, name=names.events)])
    return names


@pytest.fixture
async def fake() -> AsyncIterator[FakeLlm]:
    async with FakeLlm() as server:
        yield server


def build(kafka: str, topics: Topics, fake: FakeLlm, provider: str = "openai", *,
          timeout_s: float = 5.0, delays: list[float] = FAST, threshold: int = 5,
          reset_s: float = 60.0, group: str | None = None) -> LlmSummaries:
    url = f"{fake.url}/v1" if provider == "openai" else fake.url
    client = LlmClient(provider, "test-model", url=url, api_key="key-1",  # type: ignore[arg-type]
                       timeout_s=timeout_s)
    return LlmSummaries.build(
        kafka, client, MeterProvider().get_meter("test"), delays=delays,
        breaker_threshold=threshold, breaker_reset_s=reset_s, retry_wait_ms=50,
        topic=topics.summaries, retry_topic=topics.retries,
        group_id=group or f"test.llm.{uuid.uuid4().hex[:8]}")


@contextlib.asynccontextmanager
async def running(*runners: Any) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        yield
    finally:
        for r in runners:
            r.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)


async def publish(kafka: str, topic: str, *envelopes: Any) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    try:
        for e in envelopes:
            await producer.send_and_wait(topic, encode(e), key=encode_key(e.source, e.session_id))
    finally:
        await producer.stop()


async def read(kafka: str, topic: str, schema: object) -> list[Any]:
    """Every record of ``topic`` up to its end now, decoded with ``schema``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await partitions_of(kafka, topic)]
        if not tps:
            return []  # the topic is not there yet
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp, first in (await consumer.beginning_offsets(tps)).items():
            consumer.seek(tp, first)
        out: list[Any] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += [decode(schema, r.value) for r in records if r.offset < ends[
                    TopicPartition(r.topic, r.partition)]]
        return out
    finally:
        await consumer.stop()


async def llm_records(kafka: str, topics: Topics) -> list[SessionSummaryEvent]:
    return [e for e in await read(kafka, topics.summaries, SUMMARIES.value)
            if e.payload.llm is not None]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_closed_session_gets_an_llm_summary_from_either_provider(
        kafka: str, topics: Topics, fake: FakeLlm, provider: str) -> None:
    summary = closed_summary(f"s-{provider}")
    await publish(kafka, topics.summaries, summary)
    llm = build(kafka, topics, fake, provider)
    async with running(llm):
        records = await eventually(lambda: llm_records(kafka, topics), "the LLM record",
                                   timeout=60, interval=0.5)
    [record] = records
    assert record.payload.llm is not None
    assert record.payload.llm.text == "Summary: Session s-" + provider + " from claude-code " \
        "(closed)."
    assert record.payload.llm.provider == provider
    assert record.payload.llm.summary_event_id == summary.event_id
    assert record.payload.model_copy(update={"llm": None}) == summary.payload
    [request] = fake.requests
    assert request.path == ("/v1/chat/completions" if provider == "openai" else "/v1/messages")
    assert "Fix the parser" in request.body["messages"][-1]["content"]


async def test_429_waits_for_retry_after_then_succeeds(kafka: str, topics: Topics,
                                                       fake: FakeLlm) -> None:
    fake.fail(openai_error(429, "rate_limit_exceeded", "slow down", **{"Retry-After": "2"}))
    await publish(kafka, topics.summaries, closed_summary())
    llm = build(kafka, topics, fake)
    async with running(llm):
        await eventually(lambda: llm_records(kafka, topics), "the LLM record", timeout=60,
                         interval=0.5)
    first, second = fake.requests
    assert second.at - first.at >= 2.0  # Retry-After, not the 0.2 s backoff
    [retry] = await read(kafka, topics.retries, SUMMARY_RETRIES.value)
    assert (retry.attempt, retry.error_type) == (1, "rate_limit")


async def test_timeouts_and_5xx_are_retried_through_the_retry_topic(
        kafka: str, topics: Topics, fake: FakeLlm) -> None:
    fake.fail(Answer(200, delay=2.0), anthropic_error(529, "overloaded_error", "Overloaded"),
              anthropic_error(500, "api_error", "oops"))
    await publish(kafka, topics.summaries, closed_summary())
    llm = build(kafka, topics, fake, "anthropic", timeout_s=0.5)
    async with running(llm):
        await eventually(lambda: llm_records(kafka, topics), "the LLM record", timeout=60,
                         interval=0.5)
    retries: list[LlmSummaryRetry] = await read(kafka, topics.retries, SUMMARY_RETRIES.value)
    assert [(r.attempt, r.error_type) for r in retries] == [(1, "timeout"), (2, "server"),
                                                           (3, "server")]
    assert len(fake.requests) == 4


async def test_401_is_dead_lettered_at_once_with_the_reason(kafka: str, topics: Topics,
                                                            fake: FakeLlm) -> None:
    fake.answer = openai_error(401, "invalid_api_key", "Incorrect API key provided")
    summary = closed_summary()
    await publish(kafka, topics.summaries, summary)
    llm = build(kafka, topics, fake)
    async with running(llm):
        dead = await eventually(lambda: read(kafka, topics.dlq, DeadLetter), "a dead letter",
                                timeout=60, interval=0.5)
        await asyncio.sleep(1.0)  # time for a retry, if one were (wrongly) queued
    [letter] = dead
    assert letter.error.startswith("[auth]") and "invalid_api_key" in letter.error
    assert letter.topic == topics.summaries
    assert decode(SUMMARIES.value, letter.value.encode()) == summary  # redrive sends it back
    assert await read(kafka, topics.retries, SUMMARY_RETRIES.value) == []
    assert len(fake.requests) == 1 and await llm_records(kafka, topics) == []


async def test_the_breaker_opens_after_n_failures_and_closes_through_half_open(
        kafka: str, topics: Topics, fake: FakeLlm) -> None:
    fake.answer = Answer(503, {"error": {"message": "down"}})
    await publish(kafka, topics.summaries, *(closed_summary(f"s{i}") for i in range(3)))
    llm = build(kafka, topics, fake, threshold=2, reset_s=2.0, delays=[0.2] * 5)
    moves: list[tuple[str, str]] = []
    transition = llm.llm.breaker.on_transition
    assert transition is not None

    def record(old: BreakerState, new: BreakerState) -> None:
        moves.append((old.name, new.name))
        transition(old, new)

    llm.llm.breaker.on_transition = record
    async with running(llm):
        await eventually(lambda: llm.llm.breaker.state is BreakerState.OPEN, "an open breaker",
                         timeout=60)
        calls = len(fake.requests)
        await asyncio.sleep(1.0)
        assert len(fake.requests) == calls  # no call while open
        fake.answer = None  # the LLM is back: the half-open probe succeeds
        records = await eventually(
            lambda: _three(llm_records(kafka, topics)), "three LLM records", timeout=60,
            interval=0.5)
    assert {r.session_id for r in records} == {"s0", "s1", "s2"}
    assert ("OPEN", "HALF_OPEN") in moves and moves[-1] == ("HALF_OPEN", "CLOSED")


async def _three(records: Any) -> list[SessionSummaryEvent] | None:
    found = await records
    return found if len(found) >= 3 else None


async def test_a_queued_retry_survives_a_restart_of_the_runner(kafka: str, topics: Topics,
                                                               fake: FakeLlm) -> None:
    fake.answer = Answer(503, {"error": {"message": "down"}})
    await publish(kafka, topics.summaries, closed_summary())
    group = f"test.llm.{uuid.uuid4().hex[:8]}"
    first = build(kafka, topics, fake, delays=[8.0] * 5, group=group)
    async with running(first):
        await eventually(lambda: read(kafka, topics.retries, SUMMARY_RETRIES.value),
                         "a retry record", timeout=60, interval=0.3)
    assert len(fake.requests) == 1  # stopped before the retry was due
    fake.answer = None
    second = build(kafka, topics, fake, delays=[8.0] * 5, group=group)
    async with running(second):
        [record] = await eventually(lambda: llm_records(kafka, topics), "the LLM record",
                                    timeout=60, interval=0.5)
    assert record.session_id == "s1" and len(fake.requests) == 2
    assert second.retries.retried == 1 and second.summaries.attempted == 0


async def test_the_table_has_the_deterministic_summary_while_the_llm_is_down_then_its_text(
        kafka: str, topics: Topics, fake: FakeLlm, pg_dsn: str) -> None:
    fake.answer = Answer(503, {"error": {"message": "down"}})

    class Table(SessionSummariesTable):
        source = dataclasses.replace(SUMMARIES, name=topics.summaries)

    table = Table(pg_dsn)
    await table.start()
    run = uuid.uuid4().hex[:8]
    summarizer = SummarizeRunner(kafka, source_topic=topics.events,
                                 target_topic=topics.summaries, group_id=f"test.sum.{run}",
                                 update_interval=0)
    projector = ProjectionRunner(table, kafka, group_id=f"test.proj.{run}")
    llm = build(kafka, topics, fake, delays=[1.0] * 5)
    await publish(kafka, topics.events, *summary_events("s-table"))

    async def row() -> asyncpg.Record | None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            return await conn.fetchrow("SELECT * FROM session_summaries WHERE session_id = $1",
                                       "s-table")
        finally:
            await conn.close()

    try:
        async with running(summarizer, projector, llm):
            down = await eventually(lambda: _closed(row()), "the deterministic row", timeout=60,
                                    interval=0.3)
            assert down["llm_summary"] is None and down["llm_model"] is None
            assert '"title": "Fix the parser"' in down["summary"]
            await eventually(lambda: read(kafka, topics.retries, SUMMARY_RETRIES.value),
                             "a retry record", timeout=60, interval=0.3)
            fake.answer = None
            up = await eventually(lambda: _with_text(row()), "the llm_summary", timeout=60,
                                  interval=0.3)
    finally:
        await table.stop()
    assert up["llm_summary"].startswith("Summary: Session s-table")
    assert up["llm_model"] == "test-model-0613" and up["llm_summarized_at"] is not None
    assert up["status"] == "closed" and up["source"] == "claude-code"


async def _closed(row: Any) -> Any:
    found = await row
    return found if found is not None and found["status"] == "closed" else None


async def _with_text(row: Any) -> Any:
    found = await row
    return found if found is not None and found["llm_summary"] else None
