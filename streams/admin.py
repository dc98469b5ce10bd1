"""Creates the catalogue's topics (and their dead-letter topics) before anything uses them.

Declaring topics up front gives every topic the partition count the catalogue says, instead of
whatever the broker's auto-create default is. Existing topics are left as they are.
"""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from streams.errors import BrokerUnavailable
from streams.kafka_backoff import RETRY_BACKOFF_MS
from streams.topics import CATALOGUE, TopicSpec

__all__ = ["ensure_topics"]

logger = logging.getLogger(__name__)


async def ensure_topics(bootstrap: str, specs: list[TopicSpec] | None = None) -> None:
    """Create each topic of ``specs`` (default: the catalogue) and its ``.dlq`` if missing,
    with the catalogue's configs (retention forever, compaction); topics that exist get those
    configs set again, so a topic created by an older version stops expiring its records.

    Raises :class:`~streams.errors.BrokerUnavailable` naming the broker when it cannot be
    reached."""
    specs = specs if specs is not None else list(CATALOGUE.values())
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, retry_backoff_ms=RETRY_BACKOFF_MS)
    try:
        await admin.start()
    except KafkaError as exc:
        raise BrokerUnavailable(f"cannot reach the Kafka broker at {bootstrap} ({exc}); "
                                "is it running? (`sessionstream stack status`)") from exc
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(s.name, s.partitions, 1, topic_configs=dict(s.config) or None)
                  for s in specs if s.name not in existing]
        wanted += [NewTopic(s.dlq, 1, 1) for s in specs if s.dlq not in existing]
        for topic in wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([topic])
            logger.info("created topic %s (%s partitions)", topic.name, topic.num_partitions)
        await _configure([s for s in specs if s.name in existing and s.config], admin)
    finally:
        await admin.close()


async def _configure(specs: list[TopicSpec], admin: AIOKafkaAdminClient) -> None:
    """Set the catalogue's configs on existing topics; a broker that cannot (Tansu keeps no
    topic configs) is logged, not fatal: the records are there either way."""
    if not specs:
        return
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, s.name,
                                                  dict(s.config)) for s in specs])
    except KafkaError as exc:
        logger.info("could not set topic configs (%s); the broker keeps its defaults", exc)
