"""``sessions.summaries.v1``: one deterministic summary of a session, re-emitted as it changes.

Emitted on open, on update (rate-limited) and on close. A consumer keeps the latest per
``session_id`` (the topic is keyed by session, so it compacts naturally on a real Kafka).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.envelope import Envelope

__all__ = ["SessionSummary", "SessionSummaryEvent", "TokenCounts"]


class TokenCounts(BaseModel):
    """Claude's four disjoint buckets (cache writes split by TTL); ``total`` is their sum."""

    model_config = ConfigDict(extra="forbid")

    input: int = 0
    output: int = 0
    cache_creation_5m: int = 0
    cache_creation_1h: int = 0
    cache_read: int = 0

    @property
    def total(self) -> int:
        return (self.input + self.output + self.cache_creation_5m + self.cache_creation_1h
                + self.cache_read)


class SessionSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["session.summary"] = "session.summary"
    session_id: str
    source: str
    status: Literal["active", "closed"]
    title: str | None = None
    first_prompt: str | None = None
    project: str | None = None
    working_dir: str | None = None
    started_at: datetime | None = None
    last_activity_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: float = 0.0
    prompts: int = 0
    assistant_messages: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    tools: dict[str, int] = Field(default_factory=dict)
    files: list[str] = Field(default_factory=list)
    tokens: TokenCounts = Field(default_factory=TokenCounts)
    tokens_by_model: dict[str, TokenCounts] = Field(default_factory=dict)
    cost_usd: Decimal = Decimal(0)
    unpriced_models: list[str] = Field(default_factory=list)


SessionSummaryEvent = Envelope[SessionSummary]
