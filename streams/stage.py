"""A stateless agent on the consumer runtime: consume a batch, decide, send, confirm, commit.

A :class:`Stage` runs one pure ``decide`` (one input record -> its output records) over
``source`` as a :class:`~streams.runtime.ConsumerRuntime` of its own group: it decodes and
decides every record of a batch, queues the outputs, waits until the broker confirmed all of
them (and every dead letter), and only then commits the inputs' offsets. A crash or a rebalance
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

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from schemas.envelope import Envelope
from streams.codecs import decode, decode_shared, encode_key, encode_record
from streams.errors import InvalidEvent
from streams.lag import committed_offsets
from streams.runtime import PRODUCER_BATCH_BYTES, Batch, ConsumerRuntime

__all__ = ["PRODUCER_BATCH_BYTES", "Stage"]

logger = logging.getLogger(__name__)

Decide = Callable[[Any], Iterable[Envelope[Any]]]
Decode = Callable[[bytes | None], Any]

YIELD_EVERY = 256  # records decided between two turns of the event loop


def _same(record: ConsumerRecord, value: Any) -> bool:
    """Whether ``record`` holds what encoding ``value`` (decoded from it) would write: its key
    is the value's session key, and its bytes hold none of the NUL escapes decoding strips."""
    return (record.key == encode_key(value.source, value.session_id)
            and b"\\u0000" not in record.value)


class Stage(ConsumerRuntime):
    """``decide`` applied to every record of ``source``; outputs go to ``target``."""

    def __init__(self, name: str, bootstrap: str, *, source: str, schema: object,
                 decide: Decide, target: str, dlq: str, group_id: str,
                 legacy_group: str | None = None, batch_size: int = 5000,
                 wait_ms: int = 100, shared_decode: bool = False) -> None:
        super().__init__(name, bootstrap, topic=source, group_id=group_id, dlq=dlq,
                         output_topic=target, batch_size=batch_size, wait_ms=wait_ms)
        self.schema = schema
        self.decide = decide
        self.legacy_group = legacy_group
        # Sharing pays where other consumers in this process read the same topic.
        read = decode_shared if shared_decode else decode
        self.decoder: Decode = lambda raw: read(schema, raw)
        self.processed = 0

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.start_where_legacy_stopped(assigned)

    async def start_where_legacy_stopped(self, assigned: set[TopicPartition]) -> None:
        """Seek the partitions this group never committed to where ``legacy_group`` did."""
        if self.legacy_group is None or self.consumer is None:
            return
        fresh = [tp for tp in assigned if await self.consumer.committed(tp) is None]
        if not fresh:
            return
        legacy = await committed_offsets(self.bootstrap, self.legacy_group, self.topic,
                                         sorted(tp.partition for tp in fresh))
        for tp in fresh:
            if legacy.get(tp.partition, -1) >= 0:
                self.consumer.seek(tp, legacy[tp.partition])
                logger.info("stage=%s starts %s where group %s stopped (%s)", self.name, tp,
                            self.legacy_group, legacy[tp.partition])

    async def handle(self, batch: Batch) -> None:
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
                    await self.dead_letter(record, exc)
                    continue
                except Exception as exc:  # noqa: BLE001
                    # A parser bug on a shape nobody foresaw: that record is dead-lettered, the
                    # stage goes on (a raising stage would stop every record behind it).
                    logger.exception("stage=%s failed on a record", self.name)
                    await self.dead_letter(record, InvalidEvent(
                        f"{self.name} failed on this record: {type(exc).__name__}: {exc}"))
                    continue
                for key, value in encoded:
                    await self.send(key, value)
        await self.confirm()  # every output confirmed...
        await self.commit({tp: records[-1].offset + 1  # ...before the inputs are committed
                           for tp, records in batch.items() if records})
        self.processed += sum(len(records) for records in batch.values())
