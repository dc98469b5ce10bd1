"""Redrive: re-send dead letters to the topic they came from, once the cause is fixed.

:func:`plan_redrive` reads ``<topic>.dlq`` up to its end at the start of the call (dead letters
written meanwhile, by the redrive's own records failing again, wait for the next redrive) and
selects the dead letters a :class:`Selection` names (consumer, reason, ``failed_at`` period).
:func:`send_plan` re-sends each one's original value with its original key to its original
topic and partition, with two headers: ``sessionstream-attempt`` (the delivery it is: 2 for a
first redrive) and ``sessionstream-redriven-from`` (``<dlq>/<partition>@<offset>``). A consumer
that fails on it again writes a new dead letter whose ``attempts`` is that number
(:meth:`streams.runtime.ConsumerRuntime.dead_letter`).

What was redriven is recorded in the ledger ``<topic>.dlq.redriven``: a compacted topic, one
record per redriven dead letter, keyed ``<partition>@<offset>``, written only after the broker
acknowledged every re-sent record, so a second redrive skips it (``all_again`` re-sends
anyway). A ledger rather than a consumer-group offset because a filtered redrive must leave
the other dead letters for a later one, and because Kafka forgets the offsets of an idle group
after ``offsets.retention.minutes`` (7 days by default) while the ledger is kept. A crash
between the re-sends and the ledger write re-sends those records at the next redrive: harmless,
since consumers dedupe by deterministic event ids (a record that succeeded adds nothing).

A dead letter that cannot be repeated byte for byte is reported and skipped, never re-sent
damaged: ``value_truncated`` (only its head was kept), a value that was not UTF-8 (kept as
``repr``), an empty value, or one from another topic than the dlq's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from schemas.dead_letters import DeadLetter
from streams.consumers import partitions_of, stop_consumer
from streams.kafka_backoff import RETRY_BACKOFF_MS

__all__ = ["ATTEMPT_HEADER", "REDRIVEN_FROM_HEADER", "Letter", "Plan", "Selection",
           "ledger_topic", "plan_redrive", "reason_of", "send_plan"]

ATTEMPT_HEADER = "sessionstream-attempt"
"""Kafka header of a re-sent record: which delivery of the value it is (2 = the first redrive),
as ASCII digits."""
REDRIVEN_FROM_HEADER = "sessionstream-redriven-from"
"""Kafka header of a re-sent record: the dead letter it came from,
``<dlq topic>/<partition>@<offset>``."""

_LOCATION = re.compile(r"^.*? line \d+: ")
REASON_CHARS = 60


def ledger_topic(dlq: str) -> str:
    """The compacted topic recording what was redriven from ``dlq``."""
    return f"{dlq}.redriven"


def reason_of(error_type: str, error: str) -> str:
    """A dead letter's reason, short enough to group by: its error type and the head of its
    error without the file and line it names, numbers as ``N`` (``InvalidEvent: not JSON``)."""
    short = _LOCATION.sub("", error, count=1).split(" (", 1)[0].strip()
    short = re.sub(r"\d+", "N", short)
    if len(short) > REASON_CHARS:
        short = short[:REASON_CHARS - 1] + "…"
    return f"{error_type}: {short}" if short else error_type


@dataclass(frozen=True)
class Letter:
    """One dead letter and where it is in its dlq."""

    dlq: str
    partition: int
    offset: int
    dead: DeadLetter

    @property
    def where(self) -> str:
        return f"{self.dlq}/{self.partition}@{self.offset}"

    @property
    def reason(self) -> str:
        return reason_of(self.dead.error_type, self.dead.error)

    def unrepeatable(self) -> str | None:
        """Why the original record cannot be re-sent as it was, or None when it can."""
        dead = self.dead
        if dead.topic != self.dlq.removesuffix(".dlq"):
            return f"from another topic ({dead.topic})"
        if dead.value_truncated:
            return "value truncated (only its head was kept)"
        if dead.value_bytes is None:
            return "empty value"
        if len(dead.value.encode("utf-8", "surrogatepass")) != dead.value_bytes:
            return "value not kept byte for byte (it was not UTF-8)"
        return None


@dataclass(frozen=True)
class Selection:
    """Which dead letters to redrive: all, or those of ``consumers``, whose error or error
    type contains ``reason`` (case-insensitive) and that failed within [since, until)."""

    consumers: frozenset[str] = frozenset()
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, letter: Letter) -> bool:
        dead = letter.dead
        if self.consumers and dead.consumer not in self.consumers:
            return False
        if self.reason and self.reason.lower() not in f"{dead.error_type}\n{dead.error}".lower():
            return False
        failed = dead.failed_at if dead.failed_at.tzinfo else dead.failed_at.replace(tzinfo=UTC)
        return ((self.since is None or failed >= self.since)
                and (self.until is None or failed < self.until))


@dataclass
class Plan:
    """What a redrive of ``dlq`` would do: ``send`` re-sends, ``unrepeatable`` skips with the
    reason, ``already`` were redriven before (skipped), ``unreadable`` dlq records are not dead
    letters at all."""

    dlq: str
    send: list[Letter] = field(default_factory=list)
    unrepeatable: list[tuple[Letter, str]] = field(default_factory=list)
    already: list[Letter] = field(default_factory=list)
    unreadable: int = 0
    read: int = 0


async def plan_redrive(bootstrap: str, dlq: str, selection: Selection,
                       all_again: bool = False) -> Plan:
    """Read ``dlq`` (to its end now) and the ledger, and sort the selected dead letters into a
    :class:`Plan`. Sends nothing."""
    plan = Plan(dlq)
    done = set() if all_again else {r.key.decode() for r in
                                    await _read_to_end(bootstrap, ledger_topic(dlq))
                                    if r.key is not None}
    for record in await _read_to_end(bootstrap, dlq):
        plan.read += 1
        try:
            dead = DeadLetter.model_validate_json(record.value or b"")
        except ValidationError:
            plan.unreadable += 1
            continue
        letter = Letter(dlq, record.partition, record.offset, dead)
        if not selection.matches(letter):
            continue
        why = letter.unrepeatable()
        if f"{letter.partition}@{letter.offset}" in done:
            plan.already.append(letter)
        elif why is not None:
            plan.unrepeatable.append((letter, why))
        else:
            plan.send.append(letter)
    return plan


async def send_plan(bootstrap: str, plan: Plan) -> int:
    """Re-send ``plan.send`` (original key, value, topic and partition, with the attempt
    headers), wait until the broker acknowledged all of them, then record them in the ledger.
    Returns how many were re-sent. A failure raises before the ledger is written, so those
    dead letters stay pending (a retry may re-send some twice, which consumers dedupe)."""
    if not plan.send:
        return 0
    await _ensure_ledger(bootstrap, plan.dlq)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                retry_backoff_ms=RETRY_BACKOFF_MS)
    await producer.start()
    try:
        sent = await asyncio.gather(*[await producer.send(
            letter.dead.topic, letter.dead.value.encode("utf-8", "surrogatepass"),
            key=letter.dead.key.encode() if letter.dead.key is not None else None,
            partition=letter.dead.partition,
            headers=[(ATTEMPT_HEADER, str(letter.dead.attempts + 1).encode()),
                     (REDRIVEN_FROM_HEADER, letter.where.encode())])
            for letter in plan.send])
        now = datetime.now(UTC).isoformat()
        await asyncio.gather(*[await producer.send(
            ledger_topic(plan.dlq), key=f"{letter.partition}@{letter.offset}".encode(),
            value=json.dumps({"redriven_at": now, "attempt": letter.dead.attempts + 1,
                              "topic": meta.topic, "partition": meta.partition,
                              "offset": meta.offset}).encode())
            for letter, meta in zip(plan.send, sent, strict=True)])
    finally:
        await producer.stop()
    return len(sent)


async def _ensure_ledger(bootstrap: str, dlq: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, retry_backoff_ms=RETRY_BACKOFF_MS)
    await admin.start()
    try:
        if ledger_topic(dlq) not in set(await admin.list_topics()):
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(ledger_topic(dlq), 1, 1, topic_configs={
                    "cleanup.policy": "compact"})])
    finally:
        await admin.close()


async def _read_to_end(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """Every record of ``topic`` up to its end offsets at the start of the call (none when the
    topic does not exist)."""
    partitions = await partitions_of(bootstrap, topic)
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                retry_backoff_ms=RETRY_BACKOFF_MS)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, messages in batch.items():
                records.extend(m for m in messages if m.offset < ends[tp])
        return records
    finally:
        await stop_consumer(consumer)
