"""The batched runtime of a stateless agent: consume a batch, decide, send, confirm, commit.

A :class:`Stage` runs one pure ``decide`` (one input record -> its output records) over
``source`` with a plain aiokafka consumer of its own group: it takes what the broker has
(up to ``batch_size`` records, waiting at most ``wait_ms`` when nothing is there), decodes and
decides every record, appends the outputs to per-partition record batches
(:class:`~streams.batches.BatchSender`), waits until the broker confirmed all of them (and
every dead letter), and only then commits the inputs' offsets. A crash or a rebalance
therefore re-reads at most the batch in flight, whose outputs carry the same deterministic
event ids, so consumers that key by them apply them once: nothing lost, nothing doubled.

A record that fails its schema or its ``decide``, or whose outputs cannot be encoded within the
record limit, goes to the stage's dead-letter topic with the reason and its original key; any
other failure on one record is dead-lettered the same way. The rest goes on.

Why not a faust agent: faust's stream machinery costs an ``Event``, an ack and a producer
future per record and per output (measured by ``scripts/benchmark.py throughput --profile``,
see the README's Performance section); the same loop over whole batches costs a fraction. The
stages still run inside the faust worker, as its tasks, like the projections.

A new group with no committed offset may start from ``legacy_group``'s (the faust app's group
before this runtime), so an upgrade neither re-reads nor skips anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from schemas.envelope import Envelope
from streams.batches import BatchSender
from streams.codecs import dead_letter, decode, decode_shared, encode_key, encode_record
from streams.errors import InvalidEvent
from streams.kafka_backoff import RETRY_BACKOFF_MS
from streams.lag import committed_offsets

__all__ = ["PRODUCER_BATCH_BYTES", "Stage"]

logger = logging.getLogger(__name__)

Decide = Callable[[Any], Iterable[Envelope[Any]]]
Decode = Callable[[bytes | None], Any]

PRODUCER_BATCH_BYTES = 512 * 1024  # per partition and request; records are at most ~1 MB
YIELD_EVERY = 256  # records decided between two turns of the event loop


def _same(record: ConsumerRecord, value: Any) -> bool:
    """Whether ``record`` holds what encoding ``value`` (decoded from it) would write: its key
    is the value's session key, and its bytes hold none of the NUL escapes decoding strips."""
    return (record.key == encode_key(value.source, value.session_id)
            and b"\\u0000" not in record.value)


class _FromLegacy(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.stage.start_where_legacy_stopped(assigned)


class Stage:
    """``decide`` applied to every record of ``source``; outputs go to ``target``."""

    def __init__(self, name: str, bootstrap: str, *, source: str, schema: object,
                 decide: Decide, target: str, dlq: str, group_id: str,
                 legacy_group: str | None = None, batch_size: int = 5000,
                 wait_ms: int = 100, shared_decode: bool = False) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.source = source
        self.schema = schema
        self.decide = decide
        self.target = target
        self.dlq = dlq
        self.group_id = group_id
        self.legacy_group = legacy_group
        self.batch_size = batch_size
        self.wait_ms = wait_ms
        # Sharing pays where other consumers in this process read the same topic.
        read = decode_shared if shared_decode else decode
        self.decoder: Decode = lambda raw: read(schema, raw)
        self.processed = 0
        self.dead_letters = 0
        self.produced_ends: dict[int, int] = {}  # partition -> next offset after our outputs
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self._stopping = asyncio.Event()

    async def start_where_legacy_stopped(self, assigned: set[TopicPartition]) -> None:
        """Seek the partitions this group never committed to where ``legacy_group`` did."""
        if self.legacy_group is None or self.consumer is None:
            return
        fresh = [tp for tp in assigned if await self.consumer.committed(tp) is None]
        if not fresh:
            return
        legacy = await committed_offsets(self.bootstrap, self.legacy_group, self.source,
                                         sorted(tp.partition for tp in fresh))
        for tp in fresh:
            if legacy.get(tp.partition, -1) >= 0:
                self.consumer.seek(tp, legacy[tp.partition])
                logger.info("stage=%s starts %s where group %s stopped (%s)", self.name, tp,
                            self.legacy_group, legacy[tp.partition])

    async def run(self) -> None:
        """Consume, decide and send until :meth:`stop` is called."""
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=10_000, heartbeat_interval_ms=3_000,
            max_poll_records=self.batch_size, retry_backoff_ms=RETRY_BACKOFF_MS,
            fetch_max_wait_ms=self.wait_ms, max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=0,
            max_batch_size=PRODUCER_BATCH_BYTES, retry_backoff_ms=RETRY_BACKOFF_MS)
        await self.producer.start()
        try:
            self.consumer.subscribe([self.source], listener=_FromLegacy(self))
            await self.consumer.start()
            outputs = BatchSender(self.producer, self.target)
            dead = BatchSender(self.producer, self.dlq)
            await outputs.start()
            await dead.start()
            try:
                while not self._stopping.is_set():
                    batch = await self.consumer.getmany(timeout_ms=self.wait_ms,
                                                        max_records=self.batch_size)
                    if any(batch.values()):
                        await self._handle(batch, outputs, dead)
            finally:
                await self.consumer.stop()
        finally:
            await self.producer.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def _handle(self, batch: dict[TopicPartition, list[ConsumerRecord]],
                      outputs: BatchSender, dead: BatchSender) -> None:
        for records in batch.values():
            for n, record in enumerate(records, 1):
                if n % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # the producers and the other stages get a turn
                try:
                    value = self.decoder(record.value)
                    # Every output is encoded before any is queued: a record fails whole. An
                    # input passed on unchanged (the same object) is passed on as its bytes.
                    encoded = [(record.key, record.value) if out is value and _same(record, out)
                               else (encode_key(out.source, out.session_id), encode_record(out))
                               for out in self.decide(value)]
                except InvalidEvent as exc:
                    await self._dead_letter(dead, record, exc)
                    continue
                except Exception as exc:  # noqa: BLE001
                    # A parser bug on a shape nobody foresaw: that record is dead-lettered, the
                    # stage goes on (a raising stage would stop every record behind it).
                    logger.exception("stage=%s failed on a record", self.name)
                    await self._dead_letter(dead, record, InvalidEvent(
                        f"{self.name} failed on this record: {type(exc).__name__}: {exc}"))
                    continue
                for key, value in encoded:
                    await outputs.add(key, value)
        ends, _ = await asyncio.gather(outputs.flush(), dead.flush())  # every output confirmed
        for partition, end in ends.items():
            self.produced_ends[partition] = max(self.produced_ends.get(partition, 0), end)
        assert self.consumer is not None
        try:  # ...before the inputs are committed
            await self.consumer.commit({tp: records[-1].offset + 1
                                        for tp, records in batch.items() if records})
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # A rebalance took a partition away mid-batch: its next owner reads the batch again
            # and sends the same events (same ids), which every consumer applies once.
            logger.info("stage=%s could not commit after a rebalance (%s); the batch will be "
                        "read again", self.name, exc)
        self.processed += sum(len(records) for records in batch.values())

    async def _dead_letter(self, dead: BatchSender, record: ConsumerRecord,
                           exc: InvalidEvent) -> None:
        logger.warning("stage=%s dead-letters %s[%s]@%s: %s", self.name, record.topic,
                       record.partition, record.offset, exc)
        self.dead_letters += 1
        await dead.add(record.key, dead_letter(
            self.name, exc, record.topic, record.partition, record.offset, record.key,
            record.value))
