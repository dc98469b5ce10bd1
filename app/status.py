"""What ``sessionstream status`` reports: per consumer, its position, the topic's end, the lag
and its dead letters.

Projections report the positions their *stores* hold (the truth they resume from), so status
works with no worker running; agents report their consumer group's committed offsets. The end
offsets and dead-letter counts need the broker: when it is not reachable, those columns are
left empty and the reason is printed. Dead letters are counted per consumer by reading the
dead-letter topics (they are small by design: each record is a failure someone should read),
and broken down per topic, consumer and reason (:func:`streams.redrive.reason_of`: the error
type and the head of the error, without file and line) in :class:`DeadLetterRow`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field

from aiokafka.errors import KafkaError

from agents.summarize_runner import GROUP_ID as SUMMARIZE_GROUP
from app.endpoints import Endpoints
from app.pipeline import FILTER_GROUP, PARSE_GROUP
from app.projection_set import build_projections
from streams.errors import SessionStreamError
from streams.lag import committed_offsets, topic_ends
from streams.redrive import reason_of
from streams.settings import Settings
from streams.stack import Stack
from streams.stack.embedded import choose_embedded_broker
from streams.tail import tail
from streams.topics import FILE_CHANGES, SESSION_EVENTS

__all__ = ["DeadLetterRow", "StatusReport", "StatusRow", "collect_report", "collect_status"]

logger = logging.getLogger(__name__)


@dataclass
class StatusRow:
    consumer: str
    topic: str
    position: int | None
    end: int | None
    dead_letters: int | None
    note: str = ""

    @property
    def lag(self) -> int | None:
        if self.position is None or self.end is None:
            return None
        return max(0, self.end - self.position)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "lag": self.lag}

    def line(self) -> str:
        def cell(value: int | None) -> str:
            return "-" if value is None else str(value)

        text = (f"{self.consumer:<26} {self.topic:<26} {cell(self.position):>10} "
                f"{cell(self.end):>10} {cell(self.lag):>8} {cell(self.dead_letters):>12}")
        return f"{text}  {self.note}" if self.note else text


@dataclass
class DeadLetterRow:
    """Dead letters of one dead-letter topic, consumer and reason."""

    topic: str
    consumer: str
    reason: str
    count: int = 0
    last_failed_at: str = ""
    max_attempts: int = 1

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def line(self) -> str:
        return (f"{self.topic:<30} {self.consumer:<26} {self.count:>6} "
                f"{self.last_failed_at[:19]:<19} {self.max_attempts:>8}  {self.reason}")


@dataclass
class StatusReport:
    """Everything ``status`` prints: a row per consumer, and the dead letters per reason."""

    rows: list[StatusRow]
    dead_letters: list[DeadLetterRow] = field(default_factory=list)


def _count_dead(rows: dict[tuple[str, str, str], DeadLetterRow], topic: str,
                record: dict[str, object]) -> None:
    consumer = str(record.get("consumer"))
    reason = reason_of(str(record.get("error_type", "")), str(record.get("error", "")))
    row = rows.setdefault((topic, consumer, reason), DeadLetterRow(topic, consumer, reason))
    row.count += 1
    failed = str(record.get("failed_at") or "")
    row.last_failed_at = max(row.last_failed_at, failed)
    attempts = record.get("attempts", 1)
    row.max_attempts = max(row.max_attempts, attempts if isinstance(attempts, int) else 1)


async def collect_status(settings: Settings) -> list[StatusRow]:
    """Status rows for the agents and every projection the settings enable."""
    return (await collect_report(settings)).rows


async def collect_report(settings: Settings) -> StatusReport:
    """:class:`StatusReport` for the agents and every projection the settings enable."""
    stack = Stack(settings)
    dsn = (settings.postgres_dsn.get_secret_value() if settings.postgres_dsn
           else stack.up(["postgres"], report=lambda _: None)["postgres"])
    broker = settings.broker_url or stack.endpoint(choose_embedded_broker(settings)[0])
    endpoints = Endpoints(
        broker_url=broker or "", postgres_dsn=dsn,
        neo4j_uri=settings.neo4j_uri or stack.endpoint("neo4j"),
        neo4j_user=settings.neo4j_user if settings.neo4j_password else None,
        neo4j_password=(settings.neo4j_password.get_secret_value()
                        if settings.neo4j_password else None),
    )
    bootstrap = endpoints.bootstrap if broker else None
    projections = build_projections(settings, endpoints)
    ends: dict[str, int | None] = {}
    dead: Counter[str] = Counter()
    reasons: dict[tuple[str, str, str], DeadLetterRow] = {}
    note = ""
    if bootstrap:
        try:
            # Every topic a consumer reads (the projections' included: the summaries topic).
            read_topics = sorted({FILE_CHANGES.name, SESSION_EVENTS.name,
                                  *(p.source.name for p in projections.values())})
            ends.update({topic: sum(offsets.values())
                         for topic, offsets in (await topic_ends(bootstrap, read_topics)).items()})
            for spec in (FILE_CHANGES, SESSION_EVENTS):
                async for record in tail(bootstrap, spec.dlq, from_beginning=True, follow=False,
                                         idle_s=0.5):
                    dead[str(record.get("consumer"))] += 1
                    _count_dead(reasons, spec.dlq, record)
        except (OSError, SessionStreamError, KafkaError) as exc:
            note = f"broker unreachable: {exc}"
            bootstrap = None
    else:
        note = "broker not running"

    rows: list[StatusRow] = []
    agents = (("parse_lines", PARSE_GROUP, FILE_CHANGES.name),
              ("filter_events", FILTER_GROUP, SESSION_EVENTS.name),
              ("summarize", SUMMARIZE_GROUP, SESSION_EVENTS.name))
    for name, group, topic in agents:
        position = None
        if bootstrap:
            committed = await committed_offsets(bootstrap, group, topic,
                                                list(range(SESSION_EVENTS.partitions)))
            position = sum(max(0, o) for o in committed.values())
        rows.append(StatusRow(name, topic, position, ends.get(topic),
                              dead.get(name, 0) if bootstrap else None, note))
    for name, projection in projections.items():
        try:
            await projection.start()
            try:
                positions = await projection.positions()
            finally:
                await projection.stop()
        except SessionStreamError as exc:
            rows.append(StatusRow(name, projection.source.name, None, None, None,
                                  f"store unreachable: {exc}"))
            continue
        position = sum(p.next_offset for p in positions)
        rows.append(StatusRow(name, projection.source.name, position,
                              ends.get(projection.source.name),
                              dead.get(name, 0) if bootstrap else None, note))
    by_count = sorted(reasons.values(), key=lambda r: (r.topic, r.consumer, -r.count, r.reason))
    return StatusReport(rows, by_count)
