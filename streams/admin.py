"""Creates the catalogue's topics (and their dead-letter topics) before anything uses them.

Declaring topics up front gives every topic the partition count the catalogue says, instead of
whatever the broker's auto-create default is. Existing topics are left as they are.
"""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.kafka_backoff import RETRY_BACKOFF_MS
from streams.topics import CATALOGUE, TopicSpec

__all__ = ["ensure_topics"]

logger = logging.getLogger(__name__)


async def ensure_topics(bootstrap: str, specs: list[TopicSpec] | None = None) -> None:
    """Create each topic of ``specs`` (default: the catalogue) and its ``.dlq`` if missing."""
    specs = specs if specs is not None else list(CATALOGUE.values())
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, retry_backoff_ms=RETRY_BACKOFF_MS)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(s.name, s.partitions, 1) for s in specs if s.name not in existing]
        wanted += [NewTopic(s.dlq, 1, 1) for s in specs if s.dlq not in existing]
        for topic in wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([topic])
            logger.info("created topic %s (%s partitions)", topic.name, topic.num_partitions)
    finally:
        await admin.close()
