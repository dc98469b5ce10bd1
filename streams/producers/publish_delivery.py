"""Sending a validated batch once per idempotency key: the I/O half of publishing.

:meth:`Publisher.publish` looks the key up, sends every record of the batch, waits until the
broker acknowledged all of them, and only then writes the receipt. A retry with the same key
and the same content gets the earlier receipt back (``replayed``) and sends nothing; the same
key with other content is refused (409). Without a key given, the key is the batch's content
digest, so re-publishing identical content is a no-op too. Within one process, requests with
the same key are serialized; across processes a race of two first attempts can publish twice
(identical event ids, deduped downstream).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams.admin import ensure_topics
from streams.errors import SessionStreamError
from streams.kafka_backoff import RETRY_BACKOFF_MS
from streams.producers.idempotency import IdempotencyKeys, KafkaKeys, Receipt
from streams.producers.publish_validation import PublishRejected, ValidBatch
from streams.topics import CATALOGUE

__all__ = ["PublishFailed", "Publisher", "default_key", "publish_once"]

logger = logging.getLogger(__name__)


class PublishFailed(SessionStreamError):
    """The broker did not acknowledge every record; retry with the same idempotency key."""


class Sender(Protocol):
    async def send(self, topic: str, value: bytes, key: bytes) -> Awaitable[Any]: ...


def default_key(batch: ValidBatch) -> str:
    return f"sha256:{batch.digest}"


class Publisher:
    """Publishes validated batches through ``sender`` (an started ``AIOKafkaProducer``)."""

    def __init__(self, sender: Sender, keys: IdempotencyKeys) -> None:
        self.sender = sender
        self.keys = keys
        self._locks: dict[str, asyncio.Lock] = {}

    async def publish(self, batch: ValidBatch, idempotency_key: str | None = None) -> Receipt:
        """Send ``batch`` unless ``idempotency_key`` already published it.

        Returns the receipt (``replayed=True`` for a retry). Raises :class:`PublishRejected`
        (409) when the key was used for other content, :class:`PublishFailed` when the broker
        did not acknowledge every record (some may be published: retrying is safe)."""
        key = idempotency_key or default_key(batch)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            earlier = await self.keys.get(key)
            if earlier is not None:
                if earlier.digest != batch.digest or earlier.topic != batch.topic:
                    raise PublishRejected(
                        409, f"idempotency key {key!r} was used for a different batch "
                             f"({earlier.count} events to {earlier.topic} at "
                             f"{earlier.published_at}); use a new key for new content")
                logger.info("publish replayed key=%s topic=%s count=%s", key, batch.topic,
                            earlier.count)
                return Receipt(**{**earlier.__dict__, "replayed": True})
            await self._send(batch)
            receipt = Receipt(key, batch.topic, batch.digest, len(batch.records),
                              datetime.now(UTC).isoformat(), batch.event_ids)
            await self.keys.put(receipt)
        logger.info("published key=%s topic=%s count=%s", key, batch.topic, receipt.count)
        return receipt

    async def _send(self, batch: ValidBatch) -> None:
        try:
            futures = [await self.sender.send(batch.topic, value, key=key)
                       for key, value in batch.records]
            await asyncio.gather(*futures)
        except KafkaError as exc:
            raise PublishFailed(f"the broker did not take the batch ({exc}); retry with the "
                                "same idempotency key") from exc


async def publish_once(bootstrap: str, batch: ValidBatch,
                       idempotency_key: str | None = None) -> Receipt:
    """Publish ``batch`` from a short-lived producer (what ``sessionstream publish`` does)."""
    keys = KafkaKeys(bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                retry_backoff_ms=RETRY_BACKOFF_MS)
    try:
        await ensure_topics(bootstrap, [CATALOGUE[batch.topic]])
        await producer.start()
        await keys.start()
        return await Publisher(producer, keys).publish(batch, idempotency_key)
    except KafkaError as exc:
        raise PublishFailed(f"cannot publish to {bootstrap}: {exc}") from exc
    finally:
        await keys.stop()
        await producer.stop()
