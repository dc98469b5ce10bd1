"""Idempotency keys of published batches: what makes a retried ``publish`` a no-op.

A :class:`Receipt` records that the batch with a given digest was published under a key. The
receipts live in the broker itself, in the single-partition, compacted topic
``publish.idempotency-keys.v1`` keyed by the idempotency key: beside the data they vouch for,
so the CLI and every worker share them, they survive restarts, and when the embedded broker
starts with an empty log the receipts are gone together with the events (a local file would
then wrongly answer "already published"). Kafka transactions would close the window between
the events and their receipt, but the embedded broker supports none (see ``infra.md``): a
crash after the events were acknowledged and before the receipt was written lets one retry
publish them again, with the same deterministic event ids, which every projection dedupes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import asdict, dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.consumers import stop_consumer
from streams.kafka_backoff import RETRY_BACKOFF_MS

__all__ = ["KEYS_TOPIC", "IdempotencyKeys", "KafkaKeys", "MemoryKeys", "Receipt"]

KEYS_TOPIC = "publish.idempotency-keys.v1"


@dataclass(frozen=True)
class Receipt:
    """One published batch: under which key, what (the digest), how many, when."""

    idempotency_key: str
    topic: str
    digest: str
    count: int
    published_at: str
    event_ids: list[str] = field(default_factory=list)
    replayed: bool = False  # set on the copy returned to a retry, never stored

    def encode(self) -> bytes:
        return json.dumps({k: v for k, v in asdict(self).items() if k != "replayed"}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Receipt:
        return cls(**json.loads(raw))


class IdempotencyKeys(Protocol):
    """Where receipts are kept. ``get`` sees every receipt ``put`` before it returned."""

    async def get(self, key: str) -> Receipt | None: ...

    async def put(self, receipt: Receipt) -> None: ...


class MemoryKeys:
    """Receipts in a dict: for tests and dry runs."""

    def __init__(self) -> None:
        self.receipts: dict[str, Receipt] = {}

    async def get(self, key: str) -> Receipt | None:
        return self.receipts.get(key)

    async def put(self, receipt: Receipt) -> None:
        self.receipts[receipt.idempotency_key] = receipt


class KafkaKeys:
    """Receipts in ``publish.idempotency-keys.v1``, read into memory and kept up to date.

    ``get`` first reads what other processes wrote since the last call (up to the end offset).
    Receipts are written one record per request, so the end offset is exact even on the
    embedded broker (which under-reports it after multi-record batches)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._tp = TopicPartition(KEYS_TOPIC, 0)
        self._seen: dict[str, Receipt] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._write = asyncio.Lock()

    async def start(self) -> None:
        await _ensure_topic(self.bootstrap)
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                          retry_backoff_ms=RETRY_BACKOFF_MS)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap,
                                          enable_auto_commit=False,
                                          retry_backoff_ms=RETRY_BACKOFF_MS)
        await self._consumer.start()
        self._consumer.assign([self._tp])
        await self._consumer.seek_to_beginning(self._tp)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if self._consumer is not None:
            await stop_consumer(self._consumer)

    async def get(self, key: str) -> Receipt | None:
        await self._catch_up()
        return self._seen.get(key)

    async def put(self, receipt: Receipt) -> None:
        assert self._producer is not None, "start() first"
        async with self._write:  # one record per produce request (see the class docstring)
            await self._producer.send_and_wait(KEYS_TOPIC, receipt.encode(),
                                               key=receipt.idempotency_key.encode())
        self._seen[receipt.idempotency_key] = receipt

    async def _catch_up(self) -> None:
        assert self._consumer is not None, "start() first"
        end = (await self._consumer.end_offsets([self._tp]))[self._tp]
        empty = 0
        while await self._consumer.position(self._tp) < end and empty < 3:
            batch = await self._consumer.getmany(self._tp, timeout_ms=500)
            records = batch.get(self._tp, [])
            empty = 0 if records else empty + 1
            for record in records:
                if record.value is not None:
                    receipt = Receipt.decode(record.value)
                    self._seen[receipt.idempotency_key] = receipt


async def _ensure_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, retry_backoff_ms=RETRY_BACKOFF_MS)
    await admin.start()
    try:
        if KEYS_TOPIC not in set(await admin.list_topics()):
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(
                    KEYS_TOPIC, 1, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()
