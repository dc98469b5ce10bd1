"""Send many records at once: one record batch per partition, one round trip, all confirmed.

``AIOKafkaProducer.send`` costs a Python partitioner call (murmur2 in pure Python), a future
and an accumulator lookup per record; on the hot path that was most of a stage's time. A
:class:`BatchSender` appends records to aiokafka's record-batch builders instead (its C
extension writes them), one per partition, and sends each full builder with ``send_batch``.
Keys go to the partition Kafka's default partitioner would choose (murmur2 of the key, as
every other producer of these topics does, Java and ``send`` included), so one session stays
on one partition whoever publishes it; the choice is cached per key.
:meth:`BatchSender.flush` returns once the broker confirmed every record (or raises), with the
next offset after the last record written per partition; :attr:`BatchSender.ends` keeps the
largest of those over every flush (what a backfill waits for its consumers to reach).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

__all__ = ["BatchSender", "partition_for"]

_CACHE_LIMIT = 100_000  # keys remembered per topic (a session key is ~60 bytes)


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partition of ``key`` among ``partitions`` (murmur2, positive)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class BatchSender:
    """Buffers records for ``topic`` per partition; :meth:`flush` sends and confirms them."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self._partitions = 0
        self._keys: dict[bytes, int] = {}
        self._builders: dict[int, Any] = {}
        self._sent: list[tuple[int, int, asyncio.Future[Any]]] = []  # partition, records, fut
        self.pending = 0  # records added since the last flush
        self.ends: dict[int, int] = {}  # partition -> next offset after our last confirmed record

    async def start(self) -> None:
        """Learn the topic's partition count (the broker's, not the catalogue's)."""
        self._partitions = len(await self.producer.partitions_for(self.topic))

    def partition(self, key: bytes | None) -> int:
        if key is None:  # only dead letters, whose topics have one partition
            return 0
        partition = self._keys.get(key)
        if partition is None:
            if len(self._keys) >= _CACHE_LIMIT:
                self._keys.clear()
            partition = self._keys[key] = partition_for(key, self._partitions)
        return partition

    async def add(self, key: bytes | None, value: bytes) -> None:
        """Queue one record; a full batch of its partition is sent (not awaited) now."""
        partition = self.partition(key)
        builder = self._builders.get(partition)
        if builder is None:
            builder = self._builders[partition] = self.producer.create_batch()
        if builder.append(key=key, value=value, timestamp=None) is None:
            await self._send(partition, builder)
            builder = self._builders[partition] = self.producer.create_batch()
            if builder.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit one batch")
        self.pending += 1

    async def _send(self, partition: int, builder: Any) -> None:
        count = builder.record_count()
        future = await self.producer.send_batch(builder, self.topic, partition=partition)
        self._sent.append((partition, count, future))

    async def flush(self) -> dict[int, int]:
        """Send what is buffered, wait for every batch sent since the last flush, and return
        ``{partition: next offset after our last record}``."""
        for partition, builder in list(self._builders.items()):
            if builder.record_count():
                await self._send(partition, builder)
        self._builders.clear()
        sent, self._sent = self._sent, []
        self.pending = 0
        ends: dict[int, int] = {}
        for (partition, count, _), meta in zip(
                sent, await asyncio.gather(*(f for _, _, f in sent)), strict=True):
            ends[partition] = max(ends.get(partition, 0), meta.offset + count)
        for partition, end in ends.items():
            self.ends[partition] = max(self.ends.get(partition, 0), end)
        return ends
