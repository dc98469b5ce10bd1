"""The LLM summarizer of one worker: built from settings, run as one task.

:meth:`LlmSummaries.from_settings` returns None unless ``SESSIONSTREAM_LLM_PROVIDER`` is set
(off by default: no calls, no cost). :meth:`LlmSummaries.run` opens the HTTP client, recalls
which summaries were summarized already (the LLM records of ``sessions.summaries.v1``, read
once from the beginning up to the end at start, by a group-less consumer: re-emitted close
summaries are then not summarized again), and runs the summaries runner and the retry runner
side by side until cancelled or :meth:`stop`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.metrics import Meter

from agents.llm.client import LlmClient
from agents.llm.metrics import LlmMetrics
from agents.llm.policy import DEFAULT_DELAYS_S, RetrySchedule, SummaryMemory
from agents.llm.prompts import Prompts
from agents.llm.retry_runner import LlmRetryRunner
from agents.llm.runner import GROUP_ID, LlmSummarizeRunner
from agents.llm.service import LlmSummarizer
from streams.breaker import CircuitBreaker
from streams.codecs import decode
from streams.consumers import partitions_of
from streams.errors import InvalidEvent
from streams.kafka_backoff import RETRY_BACKOFF_MS
from streams.settings import Settings
from streams.topics import SUMMARIES, SUMMARY_RETRIES

__all__ = ["LlmSummaries"]

logger = logging.getLogger(__name__)

RECALL_IDLE_S = 10.0  # stop recalling a partition that yields nothing for this long


class LlmSummaries:
    """The service and its two runners on the broker at ``bootstrap``."""

    def __init__(self, bootstrap: str, llm: LlmSummarizer, *, retry_wait_ms: int = 200,
                 topic: str = SUMMARIES.name, retry_topic: str = SUMMARY_RETRIES.name,
                 group_id: str = GROUP_ID) -> None:
        self.bootstrap = bootstrap
        self.llm = llm
        self.topic = topic
        self.summaries = LlmSummarizeRunner(bootstrap, llm, topic=topic, retry_topic=retry_topic,
                                            group_id=group_id)
        self.retries = LlmRetryRunner(bootstrap, llm, wait_ms=retry_wait_ms, topic=retry_topic,
                                      summaries_topic=topic, group_id=f"{group_id}.retry")
        self.recalled = 0  # LLM records read back at start

    @classmethod
    def build(cls, bootstrap: str, client: LlmClient, meter: Meter, *,
              prompts: Prompts | None = None, update_interval: float = 1800.0,
              delays: Sequence[float] = DEFAULT_DELAYS_S, breaker_threshold: int = 5,
              breaker_reset_s: float = 60.0,
              clock: Callable[[], datetime] = lambda: datetime.now(UTC),
              **where: Any) -> LlmSummaries:
        """Everything from its parts (tests inject short delays, a local endpoint and, in
        ``where``, their own topics and group: see :meth:`__init__`)."""
        metrics = LlmMetrics(meter, client.endpoint)
        breaker = CircuitBreaker(breaker_threshold, breaker_reset_s, name="llm")
        llm = LlmSummarizer(client, prompts or Prompts.load(), metrics,
                            memory=SummaryMemory(update_interval), schedule=RetrySchedule(delays),
                            breaker=breaker, clock=clock)
        return cls(bootstrap, llm, **where)

    @classmethod
    def from_settings(cls, settings: Settings, bootstrap: str, meter: Meter
                      ) -> LlmSummaries | None:
        """What ``SESSIONSTREAM_LLM_*`` describe, or None when no provider is set."""
        if settings.llm_provider is None:
            return None
        assert settings.llm_model is not None  # the settings check it
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        client = LlmClient(settings.llm_provider, settings.llm_model, url=settings.llm_url,
                           api_key=key, timeout_s=settings.llm_timeout_s,
                           max_tokens=settings.llm_max_tokens)
        prompts = Prompts.load(settings.llm_prompt_file_system, settings.llm_prompt_file_user)
        return cls.build(bootstrap, client, meter, prompts=prompts,
                         update_interval=settings.llm_update_interval_s,
                         delays=settings.llm_retry_delays_s,
                         breaker_threshold=settings.llm_breaker_threshold,
                         breaker_reset_s=settings.llm_breaker_reset_s)

    @property
    def endpoint(self) -> str:
        return self.llm.client.endpoint

    async def run(self) -> None:
        """Recall, then run both runners until cancelled or stopped; the client closes last."""
        await self.llm.client.open()
        try:
            await self.recall()
            await asyncio.gather(self.summaries.run(), self.retries.run())
        finally:
            await self.llm.client.close()

    def stop(self) -> None:
        self.summaries.stop()
        self.retries.stop()

    async def recall(self) -> None:
        """Read every LLM record of ``sessions.summaries.v1`` into the memory."""
        reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                  auto_offset_reset="earliest", retry_backoff_ms=RETRY_BACKOFF_MS)
        await reader.start()
        try:
            # The topic's partitions from the broker (the consumer's own metadata knows only
            # topics it was assigned or subscribed to).
            partitions = await partitions_of(self.bootstrap, self.topic)
            tps = [TopicPartition(self.topic, p) for p in partitions]
            if tps:
                await self._recall(reader, tps)
        finally:
            await reader.stop()
        logger.info("llm summarizer recalled %s LLM summaries", self.recalled)

    async def _recall(self, reader: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        reader.assign(tps)
        ends = await reader.end_offsets(tps)
        remaining = {tp: end for tp, end in ends.items() if end > 0}
        # Explicit seeks: seek_to_beginning right after end_offsets was seen to leave a
        # partition at its end.
        for tp, first in (await reader.beginning_offsets(list(remaining))).items():
            reader.seek(tp, first)
        idle_since = time.monotonic()
        while remaining:
            batch = await reader.getmany(*remaining, timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if record.value is None or b'"llm":{' not in record.value:
                        continue  # a deterministic summary: nothing to recall
                    try:
                        envelope = decode(SUMMARIES.value, record.value)
                    except InvalidEvent:
                        continue  # dead-lettered by the consumers that met it live
                    if envelope.payload.llm is not None:
                        self.llm.memory.remember(envelope)
                        self.recalled += 1
            if any(batch.values()):
                idle_since = time.monotonic()
            for tp in [tp for tp, end in remaining.items() if await reader.position(tp) >= end]:
                del remaining[tp]
            if remaining and time.monotonic() - idle_since > RECALL_IDLE_S:
                logger.warning("llm summarizer recall got nothing for %.0fs; going on",
                               RECALL_IDLE_S)
                return
