"""The batched stage runtime on real brokers (Apache Kafka 4.1 and Tansu), running the filter
agent: every good record comes out once, on the partition Kafka's own partitioner gives its
key; an event the policy leaves as it is comes out as the very bytes that went in, a changed
one re-encoded; a record that fails its schema or the agent is dead-lettered with its key and
the reason, and the rest goes on; the group's offsets are committed only past what was sent;
a second run of the same group reads nothing again."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents import filter_events
from schemas.envelope import derive_event_id
from schemas.events import SessionEvent, ToolResulted, UsageReported, UserPrompted
from streams.admin import ensure_topics
from streams.batches import partition_for
from streams.codecs import decode, encode, encode_key
from streams.lag import committed_offsets
from streams.stage import Stage
from streams.tail import tail
from streams.topics import FILTERED, SESSION_EVENTS

pytestmark = pytest.mark.contract

AT = datetime(2026, 1, 1, tzinfo=UTC)
PARTITIONS = 3


def _event(session: str, n: int, payload: Any) -> SessionEvent:
    return SessionEvent(event_id=derive_event_id("stage", session, n), source="claude-code",
                        type=payload.kind, occurred_at=AT, session_id=session, payload=payload)


def _usage(n: int) -> UsageReported:
    return UsageReported(message_key=f"m{n}:r{n}", model="m", input_tokens=n, output_tokens=1)


def _decide(event: SessionEvent) -> list[SessionEvent]:
    if isinstance(event.payload, UserPrompted) and event.payload.text == "bug":
        raise KeyError("a parser bug")
    return filter_events.decide(filter_events.FilterPolicy(), event)


async def _read_all(bootstrap: str, topic: str) -> list[tuple[int, bytes, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[int, bytes, bytes]] = []
        async with asyncio.timeout(30):
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    out += [(tp.partition, r.key, r.value) for r in records]
        return out
    finally:
        await consumer.stop()


async def _run_until(stage: Stage, done: Any) -> None:
    task = asyncio.create_task(stage.run())
    try:
        async with asyncio.timeout(60):
            while not done():
                if task.done():
                    task.result()
                await asyncio.sleep(0.1)
    finally:
        stage.stop()
        await task


async def test_a_stage_sends_every_output_once_and_dead_letters_the_rest(
        broker_url: str) -> None:
    bootstrap = broker_url.removeprefix("kafka://")
    name = uuid.uuid4().hex[:12]
    source = dataclasses.replace(SESSION_EVENTS, name=f"test.{name}.events.v1",
                                 partitions=PARTITIONS)
    target = dataclasses.replace(FILTERED, name=f"test.{name}.filtered.v1",
                                 partitions=PARTITIONS)
    await ensure_topics(bootstrap, [source, target])
    long_result = "x" * 1000  # a tool result the default policy summarizes
    good = [_event(f"s{n % 7}", n, _usage(n) if n % 3 else ToolResulted(
        tool_use_id=f"t{n}", content=long_result)) for n in range(600)]
    sent: list[tuple[bytes, bytes]] = [(encode_key(e.source, e.session_id), encode(e))
                                       for e in good]
    bad = [(encode_key("claude-code", "s-junk"), b'{"not": "an event"}'),
           (encode_key("claude-code", "s-bug"),
            encode(_event("s-bug", 0, UserPrompted(text="bug"))))]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in sent[:300] + bad + sent[300:]:
            await producer.send_and_wait(source.name, value, key=key)
    finally:
        await producer.stop()

    group = f"g-{name}"
    stage = Stage("filter_events", bootstrap, source=source.name, schema=source.value,
                  decide=_decide, target=target.name, dlq=source.dlq, group_id=group,
                  batch_size=128)
    await _run_until(stage, lambda: stage.processed == len(good) + len(bad))

    out = await _read_all(bootstrap, target.name)
    assert len(out) == len(good)
    by_id = {decode(target.value, value).event_id: (partition, key, value)
             for partition, key, value in out}
    assert set(by_id) == {e.event_id for e in good}
    for event, (key, value) in zip(good, sent, strict=True):
        partition, out_key, out_value = by_id[event.event_id]
        assert out_key == key and partition == partition_for(key, PARTITIONS)
        if isinstance(event.payload, UsageReported):
            assert out_value == value  # passed on as it came
        else:
            assert decode(target.value, out_value).payload.content.startswith("x" * 280 + "…")
    assert stage.produced_ends == {p: sum(1 for q, _, _ in out if q == p)
                                   for p in {q for q, _, _ in out}}

    dead = [r async for r in tail(bootstrap, source.dlq, from_beginning=True, follow=False,
                                  idle_s=1.5)]
    reasons = {r["_key"]["session_id"]: str(r["error"]) for r in dead}
    assert set(reasons) == {"s-junk", "s-bug"} and stage.dead_letters == 2
    assert "does not match its schema" in reasons["s-junk"]
    assert "KeyError" in reasons["s-bug"] and "a parser bug" in reasons["s-bug"]

    committed = await committed_offsets(bootstrap, group, source.name, list(range(PARTITIONS)))
    assert sum(committed.values()) == len(good) + len(bad)

    again = Stage("filter_events", bootstrap, source=source.name, schema=source.value,
                  decide=_decide, target=target.name, dlq=source.dlq, group_id=group)
    assigned_at: list[int] = []

    def fetched_thrice_after_assignment() -> bool:
        if again.consumer is None or len(again.consumer.assignment()) != PARTITIONS:
            return False
        if not assigned_at:
            assigned_at.append(again.fetches)
        return again.fetches >= assigned_at[0] + 3

    # Every partition assigned, then three fetches from the committed offsets: nothing to do.
    await _run_until(again, fetched_thrice_after_assignment)
    assert again.processed == 0
    assert len(await _read_all(bootstrap, target.name)) == len(good)
