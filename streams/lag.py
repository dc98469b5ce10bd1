"""Consumer-group positions and lag, read from the broker.

Partitions are always passed explicitly (Tansu drops the connection otherwise). Lag against a
*known* target (the offsets a producer was told it wrote) is exact on any broker; lag against
the broker's end offsets is only as good as its ``ListOffsets`` (wrong on Tansu after
multi-record batches, see the README).
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.consumers import partitions_of, stop_consumer
from streams.kafka_backoff import RETRY_BACKOFF_MS

__all__ = ["committed_offsets", "end_offsets", "lag_to", "topic_ends"]


async def committed_offsets(bootstrap: str, group: str, topic: str,
                            partitions: list[int]) -> dict[int, int]:
    """``{partition: committed offset}`` of ``group`` (-1 where nothing is committed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, retry_backoff_ms=RETRY_BACKOFF_MS)
    await admin.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        result = await admin.list_consumer_group_offsets(group, partitions=tps)
    finally:
        await admin.close()
    return {tp.partition: (meta.offset if meta is not None else -1)
            for tp, meta in result.items()}


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    tps = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, retry_backoff_ms=RETRY_BACKOFF_MS)
    await consumer.start()
    try:
        consumer.assign(tps)  # the topic's metadata now, not after a retry backoff
        ends = await consumer.end_offsets(tps)
    finally:
        await stop_consumer(consumer)
    return {tp.partition: offset for tp, offset in ends.items()}


async def topic_ends(bootstrap: str, topics: list[str]) -> dict[str, dict[int, int]]:
    """``{topic: {partition: end offset}}`` of many topics with one admin and one consumer
    connection (a topic the broker does not know maps to ``{}``)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, retry_backoff_ms=RETRY_BACKOFF_MS)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    tps = [TopicPartition(t["topic"], p["partition"]) for t in described
           if t.get("error_code", 0) == 0 for p in t.get("partitions", [])]
    found: dict[str, dict[int, int]] = {topic: {} for topic in topics}
    if not tps:
        return found
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, retry_backoff_ms=RETRY_BACKOFF_MS)
    await consumer.start()
    try:
        # Assigned first, the topics' metadata comes with the start of the assignment; asked
        # cold, each unknown topic would wait one retry backoff for it.
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
    finally:
        await stop_consumer(consumer)
    for tp, offset in ends.items():
        found.setdefault(tp.topic, {})[tp.partition] = offset
    return found


async def lag_to(bootstrap: str, group: str, topic: str, targets: dict[int, int]) -> int:
    """How many records ``group`` still has to commit to reach ``targets`` (next offsets)."""
    if not targets:
        return 0
    committed = await committed_offsets(bootstrap, group, topic, sorted(targets))
    return sum(max(0, end - committed.get(p, -1)) if committed.get(p, -1) >= 0 else end
               for p, end in targets.items())
