"""Reads ``sessions.summaries.v1`` and writes LLM summaries of what it should summarize.

:class:`LlmSummarizeRunner` is a :class:`~streams.runtime.ConsumerRuntime` of its own group.
For each deterministic summary the :class:`~agents.llm.policy.SummaryMemory` wants (closed, or
long and due), it makes one :meth:`~agents.llm.service.LlmSummarizer.attempt` and settles the
outcome: the LLM record to ``sessions.summaries.v1``, a retry record to
``sessions.summaries.retry.v1``, or a dead letter to ``sessions.summaries.v1.dlq`` whose value
is the deterministic summary (so ``sessionstream redrive`` sends it back here once the cause is
fixed). The group's offsets are committed only after every output of the batch was confirmed,
so a crash repeats at most one batch. Calls are made one at a time, in order; batches are
small so a slow endpoint cannot hold a batch past the group's poll interval.

:class:`Settling` is the part shared with the retry runner: where each outcome goes.
"""

from __future__ import annotations

from aiokafka import TopicPartition

from agents.llm.service import LlmSummarizer, Outcome
from schemas.summaries import SessionSummaryEvent
from streams.batches import BatchSender
from streams.codecs import decode_shared, encode
from streams.errors import InvalidEvent
from streams.runtime import Batch, ConsumerRuntime
from streams.topics import SUMMARIES, SUMMARY_RETRIES, dead_letter_topic

__all__ = ["GROUP_ID", "LlmSummarizeRunner", "Settling"]

GROUP_ID = "sessionstream.summarize_llm"
BATCH_SIZE = 8  # LLM calls per batch, made one by one: 8 x a 30 s timeout fits a poll interval


class Settling(ConsumerRuntime):
    """A runtime that settles :class:`~agents.llm.service.Outcome` s: outputs go to
    ``sessions.summaries.v1``, retries to the retry topic, dead letters to its ``dlq``."""

    llm: LlmSummarizer
    summaries_topic: str = SUMMARIES.name
    retry_topic: str = SUMMARY_RETRIES.name
    _retries: BatchSender | None = None

    async def retries(self) -> BatchSender:
        if self._retries is None:
            assert self.producer is not None, "run() starts the producer"
            self._retries = BatchSender(self.producer, self.retry_topic)
            await self._retries.start()
        return self._retries

    async def settle(self, outcome: Outcome, envelope: SessionSummaryEvent, key: bytes | None,
                     where: tuple[int, int], tries: int) -> None:
        """Queue what ``outcome`` says for ``envelope`` (read at ``where``: partition and
        offset of ``sessions.summaries.v1``, for its dead letter); confirmed by
        :meth:`flush`."""
        if outcome.summary is not None:
            await self.send(key, encode(outcome.summary))
        elif outcome.retry is not None:
            await (await self.retries()).add(key, encode(outcome.retry))
        else:
            assert outcome.dead is not None
            await self.dead_letter(None, outcome.dead, topic=self.summaries_topic,
                                   partition=where[0], offset=where[1], key=key,
                                   value=encode(envelope), attempts=max(1, tries))

    async def flush(self) -> None:
        """Return once every output, retry and dead letter queued was confirmed."""
        await self.confirm()
        if self._retries is not None:
            await self._retries.flush()


class LlmSummarizeRunner(Settling):
    """Consumes ``sessions.summaries.v1`` as ``group_id`` until :meth:`stop`."""

    def __init__(self, bootstrap: str, llm: LlmSummarizer, *, group_id: str = GROUP_ID,
                 batch_size: int = BATCH_SIZE, topic: str = SUMMARIES.name,
                 retry_topic: str = SUMMARY_RETRIES.name) -> None:
        super().__init__("summarize_llm", bootstrap, topic=topic, group_id=group_id,
                         dlq=dead_letter_topic(topic), output_topic=topic,
                         batch_size=batch_size, partition_fetch_bytes=1024 * 1024)
        self.llm = llm
        self.summaries_topic, self.retry_topic = topic, retry_topic
        self.attempted = 0  # summaries an LLM call was attempted for

    async def handle(self, batch: Batch) -> None:
        ends: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            for record in records:
                try:
                    envelope = decode_shared(SUMMARIES.value, record.value)
                except InvalidEvent as exc:
                    await self.dead_letter(record, exc)
                    continue
                if not self.llm.memory.wants(envelope, self.llm.clock()):
                    continue
                self.attempted += 1
                outcome = await self.llm.attempt(envelope)
                await self.settle(outcome, envelope, record.key, (tp.partition, record.offset),
                                  1)
            ends[tp] = records[-1].offset + 1
        await self.flush()
        await self.commit(ends)
