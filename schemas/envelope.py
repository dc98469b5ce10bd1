"""The one envelope every topic carries, and deterministic event ids.

An :class:`Envelope` wraps a typed ``payload`` with ``event_id``, ``source``, ``type``,
``schema_version``, ``occurred_at`` and ``session_id``. ``event_id`` is derived from what the
event *is* (for a file line: source, file identity and byte offset), never from when it was
published, so publishing the same line twice yields the same event and consumers can dedupe.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Envelope", "SessionKey", "derive_event_id"]

P = TypeVar("P", bound=BaseModel)


def derive_event_id(*parts: object) -> str:
    """A stable 32-hex-digit id from the identifying parts of an event."""
    joined = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(joined.encode()).hexdigest()[:32]


class SessionKey(BaseModel):
    """Key of every session topic: one session always lands on one partition, in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="Producer kind, e.g. claude-code.")
    session_id: str


class Envelope(BaseModel, Generic[P]):
    """What every session topic carries as its value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=8, description="Deterministic id; same fact, same id.")
    source: str
    type: str
    schema_version: int = Field(default=1, ge=1)
    occurred_at: datetime
    session_id: str
    payload: P
