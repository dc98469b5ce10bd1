"""The one consumer runtime: read a topic in batches, send and confirm, then move on.

Everything that reads a topic and must neither lose nor double anything (the parse and filter
stages, the summarizer, every projection) is a :class:`ConsumerRuntime`. It owns what they
share:

* the clients: a group consumer without auto-commit (the runtime decides when a batch is done)
  and an idempotent-minded producer (``acks=all``), both with the same retry pace as every
  client of the project;
* the loop: take what the broker has (up to ``batch_size`` records, waiting at most
  ``wait_ms``), hand the batch to :meth:`ConsumerRuntime.handle`, repeat until
  :meth:`ConsumerRuntime.stop`;
* send and confirm: outputs and dead letters are appended to per-partition record batches
  (:class:`~streams.batches.BatchSender`); :meth:`ConsumerRuntime.confirm` returns once the
  broker acknowledged all of them; :attr:`ConsumerRuntime.produced_ends` is, per output
  partition, the next offset after what this runtime wrote (what a backfill waits for);
* the rebalance hooks :meth:`ConsumerRuntime.on_assigned` / :meth:`ConsumerRuntime.on_revoked`
  (where a subclass seeks: to a store's positions, to a legacy group's offsets, or rebuilds
  its state);
* dead letters: :meth:`ConsumerRuntime.dead_letter` queues the record, with the reason and its
  original key, for ``<topic>.dlq``; it is confirmed with the next :meth:`confirm`;
* :meth:`ConsumerRuntime.commit`, which tolerates a partition taken away by a rebalance (its
  next owner reads the batch again; the outputs carry deterministic ids, so every consumer
  applies them once).

What "done" means is the subclass's: a stage commits after its outputs are confirmed; a
projection's position is written by its store in the same transaction as the effect (the group
commit is informational); the summarizer commits after its summaries are confirmed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from streams.batches import BatchSender
from streams.codecs import dead_letter
from streams.kafka_backoff import RETRY_BACKOFF_MS
from streams.redrive import ATTEMPT_HEADER

__all__ = ["PRODUCER_BATCH_BYTES", "Batch", "ConsumerRuntime"]

logger = logging.getLogger(__name__)

PRODUCER_BATCH_BYTES = 512 * 1024  # per partition and request; records are at most ~1 MB

Batch = dict[TopicPartition, list[ConsumerRecord]]


class _Hooks(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runtime: ConsumerRuntime) -> None:
        self.runtime = runtime

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.runtime.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.runtime.on_assigned(assigned)


class ConsumerRuntime:
    """Reads ``topic`` as consumer group ``group_id`` until :meth:`stop`; outputs (if any) go
    to ``output_topic``, dead letters to ``dlq``. ``name`` names it in logs and dead letters.

    Subclasses implement :meth:`handle`; they may override :meth:`on_assigned`,
    :meth:`on_revoked`, :meth:`after_fetch` (called after every fetch, even an empty one, for
    periodic work) and :meth:`before_stop` (called before the clients stop, for last
    outputs)."""

    def __init__(self, name: str, bootstrap: str, *, topic: str, group_id: str, dlq: str,
                 output_topic: str | None = None, batch_size: int = 5000, wait_ms: int = 100,
                 session_timeout_ms: int = 10_000,
                 partition_fetch_bytes: int = 4 * 1024 * 1024) -> None:
        self.name = name
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.dlq = dlq
        self.output_topic = output_topic
        self.batch_size = batch_size
        self.wait_ms = wait_ms
        self.session_timeout_ms = session_timeout_ms
        # What aiokafka may buffer per partition ahead of handling: memory grows with it.
        self.partition_fetch_bytes = partition_fetch_bytes
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.outputs: BatchSender | None = None
        self.dead: BatchSender | None = None
        self.dead_letters = 0
        self.idle = False  # the last fetch returned nothing: at the end of the log for now
        self.fetches = 0  # fetches made so far (a test can tell "polled, found nothing")
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Consume and handle batches until :meth:`stop` is called."""
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=min(3_000, self.session_timeout_ms // 3),
            max_poll_records=self.batch_size, retry_backoff_ms=RETRY_BACKOFF_MS,
            fetch_max_wait_ms=self.wait_ms,
            max_partition_fetch_bytes=self.partition_fetch_bytes,
        )
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=0,
            max_batch_size=PRODUCER_BATCH_BYTES, retry_backoff_ms=RETRY_BACKOFF_MS)
        await self.producer.start()
        try:
            if self.output_topic is not None:
                self.outputs = BatchSender(self.producer, self.output_topic)
                await self.outputs.start()
            self.dead = BatchSender(self.producer, self.dlq)
            await self.dead.start()
            self.consumer.subscribe([self.topic], listener=_Hooks(self))
            await self.consumer.start()
            try:
                while not self._stopping.is_set():
                    batch = await self.consumer.getmany(timeout_ms=self.wait_ms,
                                                        max_records=self.batch_size)
                    self.fetches += 1
                    self.idle = not any(batch.values())
                    if not self.idle:
                        await self.handle(batch)
                    await self.after_fetch()
                await self.before_stop()
            finally:
                await self.consumer.stop()
        finally:
            await self.producer.stop()

    @property
    def produced_ends(self) -> dict[int, int]:
        """Output partition -> next offset after what this runtime wrote and saw confirmed."""
        return self.outputs.ends if self.outputs is not None else {}

    def stop(self) -> None:
        """Ask :meth:`run` to finish after the batch in hand."""
        self._stopping.set()

    async def handle(self, batch: Batch) -> None:
        """Do this runtime's work on ``batch`` (records of assigned partitions, in offset
        order per partition). Called with nothing else running in this runtime; raising ends
        :meth:`run`, so a subclass dead-letters what one record breaks and goes on."""
        raise NotImplementedError

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Partitions given to this consumer (before their first fetch is handled)."""

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Partitions taken away (their records already handled stay handled)."""

    async def after_fetch(self) -> None:
        """Called after every fetch, whether it returned records or not."""

    async def before_stop(self) -> None:
        """Called once when :meth:`stop` ended the loop, before the clients stop."""

    async def send(self, key: bytes | None, value: bytes) -> None:
        """Queue one output record; it is confirmed by the next :meth:`confirm`."""
        assert self.outputs is not None, f"{self.name} has no output topic"
        await self.outputs.add(key, value)

    async def dead_letter(self, record: ConsumerRecord | None, exc: Exception, *,
                          topic: str | None = None, partition: int = 0, offset: int = 0,
                          key: bytes | None = None, value: bytes | None = None,
                          attempts: int = 1) -> None:
        """Queue ``record`` (or the record described by the keyword arguments) for the
        dead-letter topic with ``exc`` as the reason; confirmed by the next :meth:`confirm`.
        A record re-sent by redrive carries its delivery number (``sessionstream-attempt``),
        kept as the dead letter's ``attempts``; ``attempts`` is for the keyword form."""
        if record is not None:
            topic, partition, offset = record.topic, record.partition, record.offset
            key, value = record.key, record.value
            attempts = _attempt_of(record.headers)
        logger.warning("%s dead-letters %s[%s]@%s: %s", self.name, topic, partition, offset, exc)
        assert self.dead is not None
        self.dead_letters += 1
        await self.dead.add(key, dead_letter(self.name, exc, topic or self.topic, partition,
                                             offset, key, value, attempts))

    async def confirm(self) -> dict[int, int]:
        """Send what is queued and return once the broker acknowledged every output and dead
        letter (raising if it refused any); ``{output partition: next offset}`` of this call."""
        senders: list[Any] = [self.dead] + ([self.outputs] if self.outputs else [])
        results = await asyncio.gather(*(s.flush() for s in senders if s is not None))
        return results[-1] if self.outputs else {}

    async def commit(self, ends: dict[TopicPartition, int]) -> bool:
        """Commit ``ends`` for the group; False (logged) when a rebalance took a partition
        away meanwhile: its next owner reads those records again."""
        assert self.consumer is not None
        try:
            await self.consumer.commit(ends)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            logger.info("%s could not commit %s after a rebalance (%s)", self.name,
                        {f"{tp.topic}[{tp.partition}]": end for tp, end in ends.items()}, exc)
            return False
        return True


def _attempt_of(headers: object) -> int:
    """The ``sessionstream-attempt`` header of a record as an int; 1 when absent or garbled."""
    for name, value in headers or ():  # type: ignore[attr-defined]
        if name == ATTEMPT_HEADER:
            try:
                return max(1, int(bytes(value or b"").decode("ascii")))
            except (UnicodeDecodeError, ValueError):
                return 1
    return 1
