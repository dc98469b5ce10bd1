"""Small, broker-agnostic helpers for group-less consumers (tail, lag, status).

``partitions_of`` asks the broker for a topic's partitions through the admin client (a fresh
consumer's metadata only covers topics it subscribed to). ``stop_consumer`` stops a consumer
and swallows the cancellation aiokafka's group-less coordinator can surface from ``stop()``
when its internal task never ran, while still propagating a cancellation of the caller.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from streams.kafka_backoff import RETRY_BACKOFF_MS

__all__ = ["partitions_of", "stop_consumer"]


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    """The partition ids of ``topic`` (empty when the broker does not know it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, retry_backoff_ms=RETRY_BACKOFF_MS)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for t in described if t.get("error_code", 0) == 0
                  for p in t.get("partitions", []))


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
