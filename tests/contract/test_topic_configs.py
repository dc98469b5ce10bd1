"""Topics are created with the catalogue's configs on real brokers (Kafka 4.1 and Tansu), and
existing topics get them set again: the source-of-truth topics never expire their records."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.admin import ensure_topics
from streams.errors import BrokerUnavailable
from streams.topics import SESSION_EVENTS

pytestmark = pytest.mark.contract


async def _retention(bootstrap: str, topic: str) -> str | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)])
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] == "retention.ms":
                    return str(entry[1])
    finally:
        await admin.close()
    return None


async def test_topics_keep_their_records_forever(broker_url: str, stack: dict[str, str]) -> None:
    bootstrap = broker_url.removeprefix("kafka://")
    spec = dataclasses.replace(SESSION_EVENTS, name=f"test.{uuid.uuid4().hex[:12]}.v1",
                               partitions=2)
    await ensure_topics(bootstrap, [spec])
    await ensure_topics(bootstrap, [spec])  # existing: configs set again, no error
    if broker_url == stack["kafka"]:  # Tansu keeps no topic configs (a documented gap)
        assert await _retention(bootstrap, spec.name) == "-1"


async def test_an_unreachable_broker_is_named_not_a_traceback() -> None:
    with pytest.raises(BrokerUnavailable, match="cannot reach the Kafka broker at 127.0.0.1:1"):
        await ensure_topics("127.0.0.1:1", [])
