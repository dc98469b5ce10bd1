"""The projection runner on real brokers (Apache Kafka 4.1 and Tansu): a record the store
rejects, or that a projection fails on with an error nobody translated, is dead-lettered with
its original key and the reason; every other record is applied once."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import UTC, datetime
from typing import ClassVar

import pytest
from aiokafka import AIOKafkaProducer

from projections.base import Position, Projection, Record
from projections.runner import ProjectionRunner
from schemas.envelope import derive_event_id
from schemas.events import SessionEvent, UserPrompted
from streams.admin import ensure_topics
from streams.codecs import encode, encode_key
from streams.errors import ProjectionRejected
from streams.tail import tail
from streams.topics import SESSION_EVENTS, TopicSpec

pytestmark = pytest.mark.contract


class _Memory(Projection):
    """Applies prompts to a list; refuses 'reject' for good, trips over 'bug'."""

    name: ClassVar[str] = "memory"
    source: ClassVar[TopicSpec] = SESSION_EVENTS

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.next: dict[int, int] = {}

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def reset(self) -> None: ...
    async def forget_positions(self) -> None: ...

    async def positions(self) -> list[Position]:
        return [Position(self.source.name, p, o) for p, o in self.next.items()]

    async def apply_batch(self, records: list[Record]) -> int:
        texts = [r.value.payload.text for r in records if r.value is not None]
        if "reject" in texts:
            raise ProjectionRejected("memory refuses 'reject'")
        if "bug" in texts:
            raise KeyError("a bug nobody translated")
        self.texts += texts
        for r in records:
            self.next[r.partition] = r.offset + 1
        return len(records)


async def test_poison_records_are_dead_lettered_with_their_key(broker_url: str) -> None:
    bootstrap = broker_url.removeprefix("kafka://")
    spec = dataclasses.replace(SESSION_EVENTS, name=f"test.{uuid.uuid4().hex[:12]}.v1",
                               partitions=1)
    await ensure_topics(bootstrap, [spec])
    projection = _Memory()
    projection.source = spec  # type: ignore[misc]
    texts = ["a", "b", "reject", "c", "bug", "d"]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n, text in enumerate(texts):
            event = SessionEvent(
                event_id=derive_event_id("runner", n), source="claude-code",
                type="user.prompted", occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
                session_id=f"s-{text}", payload=UserPrompted(text=text))
            await producer.send_and_wait(spec.name, encode(event),
                                         key=encode_key("claude-code", f"s-{text}"))
    finally:
        await producer.stop()

    runner = ProjectionRunner(projection, bootstrap, group_id=f"g-{uuid.uuid4().hex[:8]}")
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(60):
            while runner.next_offsets.get(0) != len(texts):
                await asyncio.sleep(0.2)
    finally:
        runner.stop()
        await task

    assert projection.texts == ["a", "b", "c", "d"]
    dead = [r async for r in tail(bootstrap, spec.dlq, from_beginning=True, follow=False,
                                  idle_s=1.5)]
    assert sorted(r["_key"]["session_id"] for r in dead) == ["s-bug", "s-reject"]
    errors = {r["_key"]["session_id"]: str(r["error"]) for r in dead}
    assert "memory refuses 'reject'" in errors["s-reject"]
    assert "KeyError" in errors["s-bug"]
    assert all(json.loads(str(r["value"]))["payload"]["text"] in {"reject", "bug"}
               for r in dead)


async def test_a_new_owner_commits_the_stores_position_when_nothing_is_left_to_apply(
        broker_url: str) -> None:
    """The previous owner of a partition applied its last batch and lost the partition before
    committing: the store is ahead of the group. The new owner has nothing to apply, and still
    brings the group to the store's position (a backfill waits for the group to catch up)."""
    from streams.lag import committed_offsets

    bootstrap = broker_url.removeprefix("kafka://")
    spec = dataclasses.replace(SESSION_EVENTS, name=f"test.{uuid.uuid4().hex[:12]}.v1",
                               partitions=1)
    await ensure_topics(bootstrap, [spec])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(3):
            event = SessionEvent(
                event_id=derive_event_id("runner-owner", n), source="claude-code",
                type="user.prompted", occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
                session_id="s-owner", payload=UserPrompted(text=f"p{n}"))
            await producer.send_and_wait(spec.name, encode(event),
                                         key=encode_key("claude-code", "s-owner"))
    finally:
        await producer.stop()
    projection = _Memory()
    projection.source = spec  # type: ignore[misc]
    projection.next = {0: 3}  # everything applied by a previous owner, never committed
    group = f"g-{uuid.uuid4().hex[:8]}"
    runner = ProjectionRunner(projection, bootstrap, group_id=group)
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(60):
            while (await committed_offsets(bootstrap, group, spec.name, [0])).get(0) != 3:
                await asyncio.sleep(0.2)
    finally:
        runner.stop()
        await task
    assert projection.texts == []  # nothing applied twice
