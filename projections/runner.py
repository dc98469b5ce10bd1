"""Feeds one projection from its topic: resume from the store's positions, apply, repeat.

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

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from projections.base import Projection, Record
from streams.codecs import dead_letter, decode_shared
from streams.errors import InvalidEvent, ProjectionRejected, ProjectionUnavailable
from streams.kafka_backoff import RETRY_BACKOFF_MS

__all__ = ["ProjectionRunner"]

logger = logging.getLogger(__name__)


class _SeekToStore(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ProjectionRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self.runner._expected.pop(tp, None)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.runner.seek_to_store(assigned)


class ProjectionRunner:
    """Runs ``projection`` against ``bootstrap`` until :meth:`stop`."""

    def __init__(self, projection: Projection, bootstrap: str, *, batch_size: int = 5000,
                 on_applied: Callable[[str, int, float], None] | None = None,
                 group_id: str | None = None) -> None:
        self.projection = projection
        self.topic = projection.source.name
        self.bootstrap = bootstrap
        self.batch_size = batch_size
        self.on_applied = on_applied
        self.group_id = group_id or f"sessionstream.{projection.name}"
        self._stopping = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.applied = 0
        self.dead_letters = 0
        self.next_offsets: dict[int, int] = {}  # partition -> next offset handled here
        self.idle = False  # the last fetch returned nothing: at the end of the log for now
        # Where the next record of each assigned partition must start. aiokafka may fetch from
        # the group's committed offset before the rebalance listener's seek lands; such a
        # batch does not start where the store says and is dropped (the seek refetches it).
        self._expected: dict[TopicPartition, int] = {}

    async def seek_to_store(self, assigned: set[TopicPartition]) -> None:
        assert self.consumer is not None
        stored = {(p.topic, p.partition): p.next_offset for p in await self.projection.positions()}
        missing = [tp for tp in assigned if (tp.topic, tp.partition) not in stored]
        beginnings = await self.consumer.beginning_offsets(missing) if missing else {}
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition), beginnings.get(tp, 0))
            self.consumer.seek(tp, offset)
            self._expected[tp] = offset
        logger.info("projection=%s assigned=%s resumes from store", self.projection.name,
                    sorted(tp.partition for tp in assigned))

    async def run(self) -> None:
        """Consume and apply until :meth:`stop` is called."""
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=10_000, heartbeat_interval_ms=3_000,
            max_poll_records=self.batch_size, retry_backoff_ms=RETRY_BACKOFF_MS,
            fetch_max_wait_ms=100, max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                         retry_backoff_ms=RETRY_BACKOFF_MS)
        await self.producer.start()
        self.consumer.subscribe([self.topic], listener=_SeekToStore(self))
        await self.consumer.start()
        try:
            while not self._stopping.is_set():
                batch = await self.consumer.getmany(timeout_ms=100, max_records=self.batch_size)
                self.idle = not any(batch.values())
                if not self.idle:
                    await self._handle(batch)
        finally:
            await self.consumer.stop()
            await self.producer.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def _handle(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
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
        started = time.monotonic()
        applied = await self._apply_with_retry(records)
        self.applied += applied
        if self.on_applied is not None:
            self.on_applied(self.projection.name, applied, time.monotonic() - started)
        assert self.consumer is not None
        ends = {tp: messages[-1].offset + 1 for tp, messages in fresh.items()}
        for tp, end in ends.items():
            self.next_offsets[tp.partition] = end
        try:
            await self.consumer.commit(ends)
        except KafkaError as exc:  # e.g. the partition was just revoked by a rebalance
            # Informational only: the store holds the position, committed with the data.
            logger.info("projection=%s could not commit %s to the group (%s); the store "
                        "keeps its position", self.projection.name, sorted(ends), exc)

    async def _decoded(self, message: ConsumerRecord) -> Record:
        try:
            value = decode_shared(self.projection.source.value, message.value)
        except InvalidEvent as exc:
            await self._dead_letter(message, exc)
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
        """Split a rejected batch until the poison record is alone; dead-letter it."""
        if len(records) == 1:
            await self._dead_letter_record(records[0], exc)
            return await self.projection.apply_batch([records[0].without_value()])
        half = len(records) // 2
        return (await self._apply_with_retry(records[:half])
                + await self._apply_with_retry(records[half:]))

    async def _dead_letter(self, message: ConsumerRecord, exc: Exception) -> None:
        await self._send_dead_letter(exc, message.topic, message.partition, message.offset,
                                     message.key, message.value)

    async def _dead_letter_record(self, record: Record, exc: Exception) -> None:
        raw = record.value.model_dump_json().encode() if record.value is not None else None
        await self._send_dead_letter(exc, record.topic, record.partition, record.offset,
                                     record.key, raw)

    async def _send_dead_letter(self, exc: Exception, topic: str, partition: int, offset: int,
                                key: bytes | None, value: bytes | None) -> None:
        assert self.producer is not None
        logger.warning("projection=%s dead-letters %s[%s]@%s: %s", self.projection.name,
                       topic, partition, offset, exc)
        await self.producer.send_and_wait(
            self.projection.source.dlq,
            dead_letter(self.projection.name, exc, topic, partition, offset, key, value),
            key=key,
        )
        self.dead_letters += 1
