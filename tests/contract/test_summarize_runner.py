"""The summarize runner on real brokers (Apache Kafka 4.1 and Tansu): summaries on open and on
close with exact figures, and states rebuilt from the events topic after a restart."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.summarize_runner import SummarizeRunner
from projections.pricing import ModelPrice, PricingTable
from schemas.envelope import derive_event_id
from schemas.events import (
    AssistantMessage,
    EventPayload,
    SessionEvent,
    ToolCalled,
    UsageReported,
    UserPrompted,
)
from schemas.summaries import SessionSummaryEvent, TokenCounts
from streams.admin import ensure_topics
from streams.codecs import decode, encode, encode_key
from streams.topics import SESSION_EVENTS, SUMMARIES
from tests.waiting import eventually

pytestmark = pytest.mark.contract

PRICING = PricingTable({"model-a": ModelPrice(input=Decimal(3), output=Decimal(15))})
TIMEOUT_S = 60.0


@dataclasses.dataclass
class Topics:
    bootstrap: str
    events: str
    summaries: str


@pytest.fixture
async def topics(broker_url: str) -> Topics:
    bootstrap = broker_url.removeprefix("kafka://")
    name = uuid.uuid4().hex[:12]
    t = Topics(bootstrap, f"test.{name}.events.v1", f"test.{name}.summaries.v1")
    await ensure_topics(bootstrap, [
        dataclasses.replace(SESSION_EVENTS, name=t.events, partitions=3),
        dataclasses.replace(SUMMARIES, name=t.summaries, partitions=1, config={}),
    ])
    return t


def ev(session: str, payload: EventPayload, at: datetime, n: int) -> SessionEvent:
    return SessionEvent(event_id=derive_event_id(session, n), source="claude-code",
                        type=payload.kind, occurred_at=at, session_id=session, payload=payload)


async def publish(bootstrap: str, topic: str, events: list[SessionEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topic, encode(event),
                                         key=encode_key(event.source, event.session_id))
    finally:
        await producer.stop()


class Summaries:
    """Reads the summaries topic from the beginning, keeping everything seen."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap,
                                         auto_offset_reset="earliest", enable_auto_commit=False)
        self.topic = topic
        self.seen: list[SessionSummaryEvent] = []

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.assign([TopicPartition(self.topic, 0)])
        await self.consumer.seek_to_beginning()

    async def until(self, found: Callable[[SessionSummaryEvent], bool]) -> SessionSummaryEvent:
        """The first summary (seen or to come) for which ``found`` holds."""
        checked = 0

        async def next_found() -> SessionSummaryEvent | None:
            nonlocal checked
            for summary in self.seen[checked:]:
                if found(summary):
                    return summary
            checked = len(self.seen)
            batch = await self.consumer.getmany(timeout_ms=500)
            self.seen += [decode(SUMMARIES.value, r.value) for rs in batch.values() for r in rs]
            return None

        return await eventually(next_found, "such a summary", timeout=TIMEOUT_S, interval=0,
                                detail=lambda: [(s.session_id, s.payload.status,
                                                 s.payload.prompts) for s in self.seen])


@pytest.fixture
async def summaries(topics: Topics) -> AsyncIterator[Summaries]:
    reader = Summaries(topics.bootstrap, topics.summaries)
    await reader.start()
    yield reader
    await reader.consumer.stop()


def runner_for(topics: Topics, group: str) -> SummarizeRunner:
    return SummarizeRunner(topics.bootstrap, inactivity_timeout=3.0, update_interval=60.0,
                           tick_interval=0.2, pricing=PRICING, source_topic=topics.events,
                           target_topic=topics.summaries, group_id=group,
                           session_timeout_ms=6_000)


def conversation(session: str, start: datetime, prompts: int) -> list[SessionEvent]:
    """``prompts`` turns: a prompt, an answer with one Bash call, and two usage reports of
    the answer (the second larger)."""
    events = []
    for i in range(prompts):
        at, key = start + timedelta(milliseconds=10 * i), f"{session}-m{i}"
        events += [
            ev(session, UserPrompted(text=f"prompt {i}", line_uuid=f"{session}-u{i}"), at, 4 * i),
            ev(session, AssistantMessage(message_key=key, model="model-a"), at, 4 * i + 1),
            ev(session, ToolCalled(tool_use_id=f"{session}-t{i}", name="Bash", message_key=key),
               at, 4 * i + 2),
            ev(session, UsageReported(message_key=key, model="model-a", input_tokens=100,
                                      output_tokens=10), at, 4 * i + 3),
            ev(session, UsageReported(message_key=key, model="model-a", input_tokens=100,
                                      output_tokens=20), at, 4 * i + 100),
        ]
    return events


async def running(runner: SummarizeRunner) -> asyncio.Task[None]:
    return asyncio.create_task(runner.run())


async def stopped(runner: SummarizeRunner, task: asyncio.Task[None]) -> None:
    runner.stop()
    await asyncio.wait_for(task, TIMEOUT_S)


async def test_open_and_close_summaries_then_state_rebuilt_after_a_restart(
    topics: Topics, summaries: Summaries
) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    group = f"test.summarize.{uuid.uuid4().hex[:8]}"
    await publish(topics.bootstrap, topics.events,
                  conversation("A", start, 2) + conversation("B", start, 3))

    runner = runner_for(topics, group)
    task = await running(runner)
    try:
        opened = await summaries.until(lambda s: s.session_id == "A")
        closed_a = await summaries.until(
            lambda s: s.session_id == "A" and s.payload.status == "closed")
        closed_b = await summaries.until(
            lambda s: s.session_id == "B" and s.payload.status == "closed")
    finally:
        await stopped(runner, task)

    assert opened.payload.model_dump(include={"status", "prompts", "first_prompt",
                                              "started_at"}) == {
        "status": "active", "prompts": 1, "first_prompt": "prompt 0", "started_at": start}
    assert closed_a.payload.model_dump(include={
        "status", "prompts", "assistant_messages", "tool_calls", "tools", "ended_at",
        "duration_s", "tokens", "cost_usd"}) == {
        "status": "closed", "prompts": 2, "assistant_messages": 2, "tool_calls": 2,
        "tools": {"Bash": 2}, "ended_at": start + timedelta(milliseconds=10),
        "duration_s": 0.01, "tokens": TokenCounts(input=200, output=40).model_dump(),
        "cost_usd": Decimal("0.0012")}  # 2 x (100 x $3 + 20 x $15) per million
    assert (closed_b.payload.prompts, closed_b.payload.tokens.output) == (3, 60)
    assert runner.processed == 25 and runner.skipped == 0
    assert runner.emitted == 4  # open and close of A and B
    assert runner.produced_ends == {0: 4}

    # A new turn of A, published while no runner runs: the next runner rebuilds A from the
    # events topic (up to the group's committed offset), so A's summary counts all 3 turns.
    later = start + timedelta(seconds=1)
    await publish(topics.bootstrap, topics.events,
                  [e.model_copy(update={"event_id": derive_event_id("A", "late", i)})
                   for i, e in enumerate(conversation("A", later, 3)[10:])])
    restarted = runner_for(topics, group)
    task = await running(restarted)
    new_end = later + timedelta(milliseconds=20)
    try:
        resumed = await summaries.until(  # emitted at once on the new turn's prompt
            lambda s: s.session_id == "A" and s.payload.last_activity_at == new_end)
        reclosed_a = await summaries.until(
            lambda s: s.session_id == "A" and s.payload.ended_at == new_end)
        reclosed_b = await summaries.until(
            lambda s: s.session_id == "B" and s.payload.status == "closed" and s is not closed_b)
    finally:
        await stopped(restarted, task)

    assert restarted.rebuilt == 25 and restarted.processed == 5
    assert resumed.payload.model_dump(include={"status", "prompts", "tool_calls", "tokens",
                                               "first_prompt", "started_at"}) == {
        "status": "active", "prompts": 3, "tool_calls": 2, "first_prompt": "prompt 0",
        "started_at": start, "tokens": TokenCounts(input=200, output=40).model_dump()}
    assert reclosed_a.payload.model_dump(include={"status", "prompts", "tool_calls",
                                                  "tokens"}) == {
        "status": "closed", "prompts": 3, "tool_calls": 3,
        "tokens": TokenCounts(input=300, output=60).model_dump()}
    # B, idle since before the restart, is closed again with the very same summary and id.
    assert (reclosed_b.event_id, reclosed_b.payload) == (closed_b.event_id, closed_b.payload)
