"""Feeds one projection from its topic: resume from the store's positions, apply, repeat.

A :class:`ProjectionRunner` is a :class:`~streams.runtime.ConsumerRuntime` whose "done" is the
store's: positions are written with the data, in one transaction.

The projection's store is the source of truth for its position: on every partition assignment
the consumer seeks to the positions the store holds (or the beginning), so a crash, a
rebalance or a second worker neither loses nor re-applies an event. Kafka offsets are also
committed after each applied batch, only so that ordinary Kafka tools can show the group's lag.
Transient store errors retry the same batch after ``retry_after``; a batch the store rejects is
split to find the poison record, which goes to ``<topic>.dlq`` with the reason, and the rest
goes on. A record that fails its schema is dead-lettered the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from projections.base import Projection, Record
from streams.codecs import decode_shared
from streams.errors import InvalidEvent, ProjectionRejected, ProjectionUnavailable
from streams.runtime import Batch, ConsumerRuntime

__all__ = ["ProjectionRunner"]

logger = logging.getLogger(__name__)


class ProjectionRunner(ConsumerRuntime):
    """Runs ``projection`` against ``bootstrap`` until :meth:`stop`."""

    def __init__(self, projection: Projection, bootstrap: str, *, batch_size: int = 5000,
                 on_applied: Callable[[str, int, float], None] | None = None,
                 group_id: str | None = None) -> None:
        super().__init__(projection.name, bootstrap, topic=projection.source.name,
                         group_id=group_id or f"sessionstream.{projection.name}",
                         dlq=projection.source.dlq, batch_size=batch_size)
        self.projection = projection
        self.on_applied = on_applied
        self.applied = 0
        self.next_offsets: dict[int, int] = {}  # partition -> next offset handled here
        # Where the next record of each assigned partition must start. aiokafka may fetch from
        # the group's committed offset before the rebalance listener's seek lands; such a
        # batch does not start where the store says and is dropped (the seek refetches it).
        self._expected: dict[TopicPartition, int] = {}
        # The store's positions of newly assigned partitions, to commit after the next fetch:
        # the previous owner may have applied a batch and lost the rebalance before its
        # commit, and with nothing new to apply the group would show that lag forever (a
        # backfill waits for the group to catch up).
        self._to_commit: dict[TopicPartition, int] = {}

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self._expected.pop(tp, None)
            self._to_commit.pop(tp, None)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.seek_to_store(assigned)

    async def seek_to_store(self, assigned: set[TopicPartition]) -> None:
        assert self.consumer is not None
        stored = {(p.topic, p.partition): p.next_offset for p in await self.projection.positions()}
        missing = [tp for tp in assigned if (tp.topic, tp.partition) not in stored]
        beginnings = await self.consumer.beginning_offsets(missing) if missing else {}
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition), beginnings.get(tp, 0))
            self.consumer.seek(tp, offset)
            self._expected[tp] = offset
            if offset > 0:
                self._to_commit[tp] = offset
        logger.info("projection=%s assigned=%s resumes from store", self.projection.name,
                    sorted(tp.partition for tp in assigned))

    async def handle(self, batch: Batch) -> None:
        """Apply what ``batch`` holds past the store's position, every partition in one
        transaction (fewer, larger transactions: the per-session totals are derived once per
        batch), then tell the group (informational: the store holds the position)."""
        fresh: dict[TopicPartition, list[ConsumerRecord]] = {}
        for tp, messages in batch.items():
            expected = self._expected.get(tp)
            if expected is None:
                continue  # not (yet) assigned through the listener
            messages = [m for m in messages if m.offset >= expected]
            if not messages or messages[0].offset != expected:
                if messages:
                    logger.debug("projection=%s drops a fetch of %s from %s (store at %s)",
                                 self.projection.name, tp, messages[0].offset, expected)
                continue
            self._expected[tp] = messages[-1].offset + 1
            fresh[tp] = messages
        if not fresh:
            return
        records = [await self._decoded(m) for messages in fresh.values() for m in messages]
        await self.confirm()  # dead letters are out before the store moves past them
        started = time.monotonic()
        applied = await self._apply_with_retry(records)
        self.applied += applied
        if self.on_applied is not None:
            self.on_applied(self.projection.name, applied, time.monotonic() - started)
        ends = {tp: messages[-1].offset + 1 for tp, messages in fresh.items()}
        for tp, end in ends.items():
            self.next_offsets[tp.partition] = end
        # Informational only: the store holds the position, committed with the data.
        for tp in ends:
            self._to_commit.pop(tp, None)  # superseded by this later position
        await self.commit(ends)

    async def after_fetch(self) -> None:
        """Commit the store's positions of partitions assigned since the last fetch (see
        ``_to_commit``), outside the rebalance listener."""
        if self._to_commit:
            pending, self._to_commit = self._to_commit, {}
            await self.commit(pending)

    async def _decoded(self, message: ConsumerRecord) -> Record:
        try:
            value = decode_shared(self.projection.source.value, message.value)
        except InvalidEvent as exc:
            await self.dead_letter(message, exc)
            value = None  # applied as a no-op so the position still moves past it
        return Record(message.topic, message.partition, message.offset, value, message.key)

    async def _apply_with_retry(self, records: list[Record]) -> int:
        while True:
            try:
                return await self.projection.apply_batch(records)
            except ProjectionUnavailable as exc:
                logger.warning("projection=%s unavailable, retrying in %.1fs: %s",
                               self.projection.name, exc.retry_after, exc)
                await asyncio.sleep(exc.retry_after)
            except ProjectionRejected as exc:
                return await self._reject(records, exc)
            except Exception as exc:  # noqa: BLE001
                # Not translated by the store: a bug meeting an unforeseen value. Treated as a
                # rejection, so the poison record is found and dead-lettered; the rest goes on.
                logger.exception("projection=%s failed on a batch", self.projection.name)
                return await self._reject(records, ProjectionRejected(
                    f"{self.projection.name} failed: {type(exc).__name__}: {exc}"))

    async def _reject(self, records: list[Record], exc: ProjectionRejected) -> int:
        """Split a rejected batch until the poison record is alone; dead-letter it (confirmed
        before the store records its position past it)."""
        if len(records) == 1:
            record = records[0]
            raw = record.value.model_dump_json().encode() if record.value is not None else None
            await self.dead_letter(None, exc, topic=record.topic, partition=record.partition,
                                   offset=record.offset, key=record.key, value=raw)
            await self.confirm()
            return await self.projection.apply_batch([record.without_value()])
        half = len(records) // 2
        return (await self._apply_with_retry(records[:half])
                + await self._apply_with_retry(records[half:]))
