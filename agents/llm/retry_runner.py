"""The persistent retry queue: reads ``sessions.summaries.retry.v1``, tries each record again
when it is due, and commits only what is settled.

Each retry record carries the deterministic summary, its failed tries and its due time (wall
clock), so a restart loses nothing and waits no longer than the record says. The
:class:`LlmRetryRunner` keeps every record it read in a heap by due time; on each pass of the
loop (every ``wait_ms``, whether records came or not) it tries those that are due, at most
``per_pass`` at a time, so other work and the group's heartbeats are never held up. A record
is settled when its LLM record was published, its next retry re-queued (a new record, with one
more failed try) or its dead letter sent, each confirmed by the broker; the group's committed
offset of a partition is the smallest offset still held (or the end of what was read), so a
crash re-reads exactly the records not settled (and perhaps some settled after them: a retry
whose summary is already summarized is dropped, see
:meth:`~agents.llm.policy.SummaryMemory.summarized`). A record the open breaker refuses stays
held, due again when the breaker lets a probe through, its failed tries unchanged. Past
``max_held`` held records the partitions are paused until some are settled.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import TopicPartition

from agents.llm.runner import Settling
from agents.llm.service import LlmSummarizer
from schemas.summaries import LlmSummaryRetry
from streams.codecs import decode
from streams.errors import InvalidEvent
from streams.runtime import Batch
from streams.topics import SUMMARIES, SUMMARY_RETRIES, dead_letter_topic

__all__ = ["GROUP_ID", "LlmRetryRunner"]

logger = logging.getLogger(__name__)

GROUP_ID = "sessionstream.summarize_llm.retry"


@dataclass(order=True)
class _Held:
    due_at: datetime
    seq: int  # ties in due time keep reading order
    tp: TopicPartition = field(compare=False)
    offset: int = field(compare=False)
    key: bytes | None = field(compare=False)
    retry: LlmSummaryRetry = field(compare=False)


class LlmRetryRunner(Settling):
    """Consumes ``sessions.summaries.retry.v1`` as ``group_id`` until :meth:`stop`."""

    def __init__(self, bootstrap: str, llm: LlmSummarizer, *, group_id: str = GROUP_ID,
                 per_pass: int = 8, max_held: int = 10_000, wait_ms: int = 200,
                 topic: str = SUMMARY_RETRIES.name, summaries_topic: str = SUMMARIES.name
                 ) -> None:
        super().__init__("summarize_llm_retry", bootstrap, topic=topic, group_id=group_id,
                         dlq=dead_letter_topic(summaries_topic), output_topic=summaries_topic,
                         batch_size=500, wait_ms=wait_ms, partition_fetch_bytes=1024 * 1024)
        self.llm = llm
        self.summaries_topic, self.retry_topic = summaries_topic, topic
        self.per_pass = per_pass
        self.max_held = max_held
        self.retried = 0  # LLM calls made for due records
        self._heap: list[_Held] = []
        self._seq = itertools.count()
        self._held: dict[TopicPartition, set[int]] = {}  # offsets read and not settled
        self._read: dict[TopicPartition, int] = {}  # next offset after what was read
        self._committed: dict[TopicPartition, int] = {}
        self._paused = False
        llm.metrics.depth = self.depth

    def depth(self) -> int:
        """Retry records held, waiting for their due time (the retry depth gauge)."""
        return len(self._heap)

    async def handle(self, batch: Batch) -> None:
        """Hold every record read (a record that fails its schema is dead-lettered)."""
        for tp, records in batch.items():
            held = self._held.setdefault(tp, set())
            for record in records:
                try:
                    retry = decode(SUMMARY_RETRIES.value, record.value)
                except InvalidEvent as exc:
                    await self.dead_letter(record, exc)
                    continue
                heapq.heappush(self._heap, _Held(retry.due_at, next(self._seq), tp,
                                                 record.offset, record.key, retry))
                held.add(record.offset)
            self._read[tp] = records[-1].offset + 1
        await self.confirm()
        await self._commit_settled()
        if len(self._heap) >= self.max_held and not self._paused:
            assert self.consumer is not None
            self.consumer.pause(*self.consumer.assignment())
            self._paused = True

    async def after_fetch(self) -> None:
        """Try the records that are due (at most ``per_pass``), settle them, commit."""
        now = self.llm.clock()
        settled = 0
        while self._heap and self._heap[0].due_at <= now and settled < self.per_pass:
            item = heapq.heappop(self._heap)
            if item.offset not in self._held.get(item.tp, ()):
                continue  # its partition was revoked
            if await self._retry(item):
                self._held[item.tp].discard(item.offset)
            settled += 1
        if settled:
            await self.flush()
            await self._commit_settled()
        if self._paused and len(self._heap) < self.max_held // 2:
            assert self.consumer is not None
            self.consumer.resume(*self.consumer.assignment())
            self._paused = False

    async def _retry(self, item: _Held) -> bool:
        """One try of ``item``; False when it stays held (the breaker refused the call)."""
        retry = item.retry
        if self.llm.memory.summarized(retry.summary, retry.summary.event_id):
            return True  # another copy of this retry got through first
        self.retried += 1
        outcome = await self.llm.attempt(retry.summary, retry.attempt)
        if outcome.retry is not None and outcome.retry.error_type == "circuit_open":
            item.due_at = outcome.retry.due_at
            heapq.heappush(self._heap, item)
            return False
        await self.settle(outcome, retry.summary, item.key, (item.tp.partition, item.offset),
                          retry.attempt + 1)
        return True

    async def _commit_settled(self) -> None:
        """Commit, per partition, the smallest offset still held (else the end read)."""
        ends = {tp: min(self._held.get(tp) or {end}) for tp, end in self._read.items()}
        ends = {tp: end for tp, end in ends.items() if self._committed.get(tp) != end}
        if ends and await self.commit(ends):
            self._committed.update(ends)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Forget what was held of ``revoked``: their next owner reads it from the commit."""
        for tp in revoked:
            self._held.pop(tp, None)
            self._read.pop(tp, None)
            self._committed.pop(tp, None)
        self._heap = [h for h in self._heap if h.tp not in revoked]
        heapq.heapify(self._heap)
