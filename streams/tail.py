"""Read a topic as JSON lines: what ``sessionstream tail TOPIC`` prints.

A group-less consumer (it commits nothing and never disturbs the pipeline's groups) assigned
every partition of the topic, starting at the end (only what arrives from now on) or at the
beginning. Values are printed as the JSON they are; keys are added as ``_key``, and where the
record came from as ``_partition`` and ``_offset``, so a line can be traced back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.consumers import partitions_of, stop_consumer
from streams.errors import SessionStreamError
from streams.kafka_backoff import RETRY_BACKOFF_MS

__all__ = ["tail"]


async def tail(bootstrap: str, topic: str, *, from_beginning: bool = False,
               follow: bool = True, session_id: str | None = None,
               idle_s: float = 1.0) -> AsyncIterator[dict[str, Any]]:
    """Yield the records of ``topic`` as dicts; without ``follow``, stop once a fetch is empty
    for ``idle_s``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                retry_backoff_ms=RETRY_BACKOFF_MS)
    await consumer.start()
    try:
        partitions = await partitions_of(bootstrap, topic)
        if not partitions:
            raise SessionStreamError(f"topic {topic} does not exist on {bootstrap} (yet)")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
            if not any(batch.values()) and not follow:
                return
            for messages in batch.values():
                for m in messages:
                    record = _as_dict(m.value)
                    key = _as_dict(m.key) if m.key is not None else None
                    if session_id is not None and (key or {}).get("session_id") != session_id \
                            and record.get("session_id") != session_id:
                        continue
                    yield {**record, "_key": key, "_partition": m.partition,
                           "_offset": m.offset}
            await asyncio.sleep(0)
    finally:
        await stop_consumer(consumer)


def _as_dict(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        return {"_value": None}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_raw": raw.decode(errors="replace")}
    return value if isinstance(value, dict) else {"_value": value}
