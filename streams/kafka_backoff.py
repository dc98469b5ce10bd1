"""How fast Kafka clients retry while the broker is away.

This module owns the retry pace of every Kafka client a sessionstream process runs:

* :data:`RETRY_BACKOFF_MS`, the pause of aiokafka's retry loops (fetch, group coordinator,
  heartbeat, produce). aiokafka's default is 100 ms: with a dozen loops in the worker that is
  hundreds of failed connects (and log lines) per second during an outage. Our own clients
  pass the same value as ``retry_backoff_ms`` (a unit test keeps the literals equal to it).
* :class:`BackoffTransport`, faust's aiokafka transport with that backoff on faust's own
  consumer and producer (faust has no setting for it).
* :func:`install_metadata_backoff`, the one change to aiokafka itself: a metadata refresh
  that reached no broker waits the client's backoff before it reports. aiokafka 0.14 retries
  it at once, so a producer or fetcher whose partition has no known leader (what a broker's
  clean shutdown announces) spins on connect-refused, thousands of times a second, burning a
  core. kafka-python and the Java client back off here too (kafka-python PR #733).

Recovery stays quick: a retry is at most :data:`RETRY_BACKOFF_MS` away when the broker returns.
Nothing here drops or reorders records; only the pause between attempts changes.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import aiokafka
from aiokafka.client import AIOKafkaClient
from faust.transport.drivers import aiokafka as faust_aiokafka

__all__ = ["RETRY_BACKOFF_MS", "BackoffTransport", "install_metadata_backoff", "with_backoff"]

RETRY_BACKOFF_MS = 1000
"""Pause between retries of a failed Kafka request or connection, in milliseconds."""

_MARK = "_sessionstream_backoff"


def with_backoff(consumer: aiokafka.AIOKafkaConsumer,
                 ms: int = RETRY_BACKOFF_MS) -> aiokafka.AIOKafkaConsumer:
    """``consumer``, not started yet, set up as if built with ``retry_backoff_ms=ms``.

    For consumers built by code we do not own (faust's); a unit test checks that this sets
    every attribute the constructor argument sets, so an aiokafka upgrade cannot bypass it."""
    consumer._retry_backoff_ms = ms
    consumer._client._retry_backoff = ms / 1000
    return consumer


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        return with_backoff(super()._create_worker_consumer(transport))

    def _create_client_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        return with_backoff(super()._create_client_consumer(transport))


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Producer(faust_aiokafka.Producer):
    def _settings_default(self) -> dict[str, Any]:
        return {**super()._settings_default(), "retry_backoff_ms": RETRY_BACKOFF_MS}


class BackoffTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport whose consumer and producer retry every RETRY_BACKOFF_MS."""

    Consumer = _Consumer
    Producer = _Producer


def install_metadata_backoff() -> None:
    """Make a failed aiokafka metadata refresh wait its client's retry backoff (idempotent).

    Contract: a refresh that succeeds returns at once, as before; one that reached no broker
    (or got an empty cluster) returns ``False`` after ``retry_backoff_ms``, so every loop that
    waits on :meth:`AIOKafkaClient.force_metadata_update` retries at that pace."""
    original = AIOKafkaClient._metadata_update
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    async def _metadata_update(self: AIOKafkaClient, cluster_metadata: Any, topics: Any) -> bool:
        updated = await original(self, cluster_metadata, topics)
        if not updated:
            await asyncio.sleep(self._retry_backoff)
        return updated

    setattr(_metadata_update, _MARK, True)
    AIOKafkaClient._metadata_update = _metadata_update
