"""Feeds the :class:`~agents.summarize_sessions.Summarizer` from ``sessions.events.v1`` and
publishes its summaries to ``sessions.summaries.v1``.

The session states live in memory, one :class:`Summarizer` per assigned partition, and are
rebuilt rather than restored: faust tables are not used because the embedded broker (Tansu)
restores them wrongly. On every assignment, each assigned partition whose state is not already
at the group's committed offset is re-read from its beginning up to that offset by a separate
group-less consumer and folded without emitting; live consumption then resumes at the committed
offset. Offsets are committed only after the summaries of a batch were confirmed by the broker,
so a crash re-applies at most the last batch (a summary is a whole state: the latest wins). A
periodic tick on the wall clock emits the rate-limited updates and closes idle sessions. A
restart re-emits the close summary of every idle session it rebuilt; identical content has an
identical ``event_id``, so consumers can dedupe.

It is a :class:`~streams.runtime.ConsumerRuntime`: the clients, the loop, send-and-confirm and
dead letters are the runtime's; the rebuild on assignment and the tick are this module's."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from agents.summarize_sessions import Summarizer
from projections.pricing import PricingTable
from schemas.summaries import SessionSummaryEvent
from streams.codecs import decode_shared, encode, encode_key
from streams.errors import InvalidEvent
from streams.kafka_backoff import RETRY_BACKOFF_MS
from streams.runtime import Batch, ConsumerRuntime
from streams.topics import SESSION_EVENTS, SUMMARIES

__all__ = ["GROUP_ID", "SummarizeRunner"]

logger = logging.getLogger(__name__)

GROUP_ID = "sessionstream.summarize"
REBUILD_IDLE_S = 10.0  # give up rebuilding a partition that yields nothing for this long


class SummarizeRunner(ConsumerRuntime):
    """Consumes ``source_topic`` as group ``group_id`` and publishes summaries to
    ``target_topic`` until :meth:`stop`.

    ``report``, when given, receives one human-readable line per rebuild. ``clock`` gives
    the wall-clock ``now`` handed to the summarizer (injectable for tests).
    """

    def __init__(self, bootstrap: str, *, inactivity_timeout: float = 300.0,
                 update_interval: float = 10.0, tick_interval: float = 1.0,
                 pricing: PricingTable | None = None,
                 source_topic: str = SESSION_EVENTS.name, target_topic: str = SUMMARIES.name,
                 group_id: str = GROUP_ID, batch_size: int = 5000,
                 session_timeout_ms: int = 10_000,
                 report: Callable[[str], None] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__("summarize_sessions", bootstrap, topic=source_topic, group_id=group_id,
                         dlq=SESSION_EVENTS.dlq, output_topic=target_topic,
                         batch_size=batch_size, session_timeout_ms=session_timeout_ms,
                         # aiokafka's default: the summarizer's fetches are buffered beside the
                         # stages' and the projections' (4 MB each); more buys it nothing
                         partition_fetch_bytes=1024 * 1024)
        self.inactivity_timeout = inactivity_timeout
        self.update_interval = update_interval
        self.tick_interval = tick_interval
        self.pricing = pricing or PricingTable.load()
        self.report = report
        self.clock = clock
        self.summarizers: dict[int, Summarizer] = {}  # source partition -> its sessions
        self._positions: dict[int, int] = {}  # source partition -> next offset folded in
        self.processed = 0  # source records consumed live (skipped ones included)
        self.skipped = 0  # source records dead-lettered (undecodable or unfoldable)
        self.rebuilt = 0  # source records folded while rebuilding
        self.emitted = 0  # summaries confirmed by the broker
        self._next_tick = time.monotonic() + tick_interval
        self._lock = asyncio.Lock()  # one of: live batch, tick, rebuild, release

    def _summarizer(self) -> Summarizer:
        return Summarizer(self.pricing, inactivity_timeout=self.inactivity_timeout,
                          update_interval=self.update_interval)

    async def handle(self, batch: Batch) -> None:
        # aiokafka starts fetching a new assignment before its listener has returned: the
        # lock keeps live records away from a partition while its state is rebuilt.
        async with self._lock:
            assert self.consumer is not None
            assigned = self.consumer.assignment()
            mine = {tp: records for tp, records in batch.items() if records and tp in assigned}
            if mine:
                await self._handle(mine)

    async def after_fetch(self) -> None:
        """The tick: rate-limited updates and closes of idle sessions, once per interval."""
        if time.monotonic() < self._next_tick:
            return
        async with self._lock:
            now = self.clock()
            await self._publish([s for z in self.summarizers.values() for s in z.tick(now)])
        self._next_tick = time.monotonic() + self.tick_interval

    async def before_stop(self) -> None:
        """Pending updates are published before the consumer leaves."""
        async with self._lock:
            await self._publish([s for z in self.summarizers.values()
                                 for s in z.flush(self.clock())])

    async def _handle(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Fold every partition's records, publish their summaries, commit once."""
        outputs: list[SessionSummaryEvent] = []
        ends: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            summarizer = self.summarizers.setdefault(tp.partition, self._summarizer())
            start = self._positions.get(tp.partition, 0)
            now = self.clock()
            for record in records:
                if record.offset < start:
                    continue
                try:
                    outputs += summarizer.apply(decode_shared(SESSION_EVENTS.value, record.value),
                                                   now)
                except Exception as exc:  # noqa: BLE001
                    # One record the summarizer cannot fold (a bad record, a shape nobody
                    # foresaw) is dead-lettered with the reason; it must not stop every
                    # session behind it.
                    if not isinstance(exc, InvalidEvent):
                        logger.error("summarize failed on %s[%s]@%s", record.topic,
                                     record.partition, record.offset, exc_info=exc)
                    self.skipped += 1
                    await self.dead_letter(record, exc)
            ends[tp] = records[-1].offset + 1
            self.processed += len(records)
        await self._publish(outputs, always=True)  # summaries and dead letters confirmed
        if await self.commit(ends):
            for tp, end in ends.items():
                self._positions[tp.partition] = end
        else:  # a partition is being moved: whoever gets it (us included) rebuilds its state
            for tp in ends:
                self._positions.pop(tp.partition, None)

    async def _publish(self, summaries: list[SessionSummaryEvent], always: bool = False) -> None:
        """Send ``summaries`` in order and return once the broker confirmed every one (and
        every dead letter queued); ``always``: confirm even when there are none."""
        if not summaries and not always:
            return
        for summary in summaries:
            await self.send(encode_key(summary.source, summary.session_id), encode(summary))
        await self.confirm()
        self.emitted += len(summaries)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.release(revoked)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.rebuild(assigned)

    async def release(self, revoked: set[TopicPartition]) -> None:
        """Publish the pending updates of ``revoked`` partitions. Their states are kept: a
        partition handed straight back (an eager rebalance revokes everything) needs no
        rebuild, which :meth:`rebuild` checks against the committed offset."""
        async with self._lock:
            now = self.clock()
            for tp in revoked:
                summarizer = self.summarizers.get(tp.partition)
                if summarizer is not None:
                    await self._publish(summarizer.flush(now))

    async def rebuild(self, assigned: set[TopicPartition]) -> None:
        """Forget the partitions no longer ours; keep a state whose position is still the
        group's committed offset; fold every other assigned partition from its beginning up
        to the committed offset (nothing when none is committed), without emitting."""
        async with self._lock:
            await self._rebuild(assigned)

    async def _rebuild(self, assigned: set[TopicPartition]) -> None:
        assert self.consumer is not None
        mine = {tp.partition for tp in assigned}
        for partition in set(self.summarizers) - mine:
            del self.summarizers[partition]
            self._positions.pop(partition, None)
        targets = {}
        for tp in assigned:
            committed = await self.consumer.committed(tp) or 0
            if tp.partition in self.summarizers and self._positions.get(tp.partition) == committed:
                continue
            self.summarizers[tp.partition] = self._summarizer()
            self._positions[tp.partition] = committed
            if committed:
                targets[tp] = committed
        if targets:
            started = time.monotonic()
            folded = await self._fold(targets)
            self.rebuilt += folded
            sessions = sum(len(self.summarizers[tp.partition]) for tp in targets)
            message = (f"summarize rebuilt {sessions} session(s) from {folded} event(s) of "
                       f"partitions {sorted(tp.partition for tp in targets)} in "
                       f"{time.monotonic() - started:.1f}s")
            logger.info(message)
            if self.report is not None:
                self.report(message)

    async def _fold(self, targets: dict[TopicPartition, int]) -> int:
        """Read ``targets`` (partition -> end offset, exclusive) with a group-less consumer."""
        reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                  auto_offset_reset="earliest", max_poll_records=self.batch_size,
                                  retry_backoff_ms=RETRY_BACKOFF_MS)
        await reader.start()
        folded, remaining = 0, dict(targets)
        try:
            reader.assign(list(remaining))
            await reader.seek_to_beginning(*remaining)
            idle_since = time.monotonic()
            while remaining:
                batch = await reader.getmany(*remaining, timeout_ms=500)
                folded += self._fold_batch(batch, remaining)
                if any(batch.values()):
                    idle_since = time.monotonic()
                for tp in [tp for tp, end in remaining.items()
                           if await reader.position(tp) >= end]:
                    del remaining[tp]
                if remaining and time.monotonic() - idle_since > REBUILD_IDLE_S:
                    logger.warning("summarize rebuild got nothing for %.0fs; states of "
                                   "partitions %s may be incomplete", REBUILD_IDLE_S,
                                   sorted(tp.partition for tp in remaining))
                    break
        finally:
            await reader.stop()
        return folded

    def _fold_batch(self, batch: dict[TopicPartition, list[ConsumerRecord]],
                    remaining: dict[TopicPartition, int]) -> int:
        folded = 0
        for tp, records in batch.items():
            summarizer = self.summarizers[tp.partition]
            for record in records:
                if tp not in remaining or record.offset >= remaining[tp]:
                    break
                try:
                    summarizer.fold(decode_shared(SESSION_EVENTS.value, record.value))
                except Exception:  # noqa: BLE001, S112
                    continue  # dead-lettered when it was consumed live
                folded += 1
        return folded
