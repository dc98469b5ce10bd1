"""Builders the tests share: session events, projection records and an in-memory ``publish``.

Each one fills what a test does not look at with one fixed, valid value, so a test names only
what it checks. Times are offsets in seconds on one clock (:data:`T0`); event ids are derived
from what the event is, as producers derive them, so equal arguments give equal events.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from projections.base import Record
from schemas.envelope import derive_event_id
from schemas.events import EventPayload, SessionEvent
from schemas.file_changes import FileChanged
from streams.topics import SESSION_EVENTS

__all__ = ["T0", "Collector", "at", "records", "session_event"]

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """The time ``seconds`` after :data:`T0`."""
    return T0 + timedelta(seconds=seconds)


def session_event(payload: EventPayload, seconds: float = 0, *, session: str = "s1",
                  source: str = "claude-code", event_id: str | None = None) -> SessionEvent:
    """A ``sessions.events.v1`` event carrying ``payload``, which occurred ``seconds`` after T0.

    Without ``event_id`` the id is derived from the source, session, time and payload: events
    that differ in any of them get distinct ids, the same arguments the same id.
    """
    occurred_at = at(seconds)
    if event_id is None:
        event_id = derive_event_id(source, session, occurred_at.isoformat(),
                                   payload.model_dump_json())
    return SessionEvent(event_id=event_id, source=source, type=payload.kind,
                        occurred_at=occurred_at, session_id=session, payload=payload)


def records(values: Iterable[Any], *, topic: str = SESSION_EVENTS.name, partition: int = 0,
            first_offset: int = 0) -> list[Record]:
    """``values`` as one batch of one topic-partition, at consecutive offsets from
    ``first_offset``: what a projection runner hands to ``apply_batch``."""
    return [Record(topic, partition, first_offset + i, value) for i, value in enumerate(values)]


class Collector:
    """An in-memory ``publish`` for a producer: keeps every event it is given, in order."""

    def __init__(self) -> None:
        self.events: list[FileChanged] = []

    async def __call__(self, events: list[FileChanged]) -> None:
        self.events.extend(events)
