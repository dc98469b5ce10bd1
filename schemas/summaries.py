"""``sessions.summaries.v1``: one deterministic summary of a session, re-emitted as it changes.

Emitted on open, on update (rate-limited) and on close. A consumer keeps the latest per
``session_id`` (the topic is keyed by session, so it compacts naturally on a real Kafka).

**LLM summaries (optional, additive).** When an LLM endpoint is configured, the LLM summarizer
re-publishes a deterministic summary it read, unchanged, with :attr:`SessionSummary.llm` set
(:class:`LlmSummary`: a short text, the model, when, and the ``event_id`` of the deterministic
summary it was made from); its envelope ``type`` is ``session.summary.llm``. Every other
summary leaves ``llm`` out of its JSON entirely (not ``null``), so deterministic summaries, and
their content-derived ids, are byte for byte what they were before the field existed. A
consumer that ignores ``llm`` sees one more copy of a summary it already had (the same
content). Because the LLM record is written after the call returns, a newer deterministic
summary of the session may precede it in the topic: a consumer keeping one summary per session
should keep the greatest (``last_activity_at``, ``status == "closed"``), not simply the last.

``sessions.summaries.retry.v1`` carries :class:`LlmSummaryRetry`: a deterministic summary
whose LLM summary failed transiently, with its attempt and the time it is due again.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from schemas.envelope import Envelope

__all__ = ["LlmSummary", "LlmSummaryRetry", "SessionSummary", "SessionSummaryEvent",
           "TokenCounts"]


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


class LlmSummary(BaseModel):
    """A short summary of a session written by an LLM from its deterministic summary."""

    model_config = ConfigDict(extra="forbid")

    text: str
    model: str = Field(description="The model that wrote it, as the endpoint reported it.")
    provider: Literal["openai", "anthropic"]
    summarized_at: datetime
    summary_event_id: str = Field(description="event_id of the deterministic summary it "
                                              "summarizes.")


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
    llm: LlmSummary | None = Field(
        default=None, description="Only on records of the LLM summarizer; absent otherwise.")

    @model_serializer(mode="wrap")
    def _without_absent_llm(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        # A summary without an LLM text serializes exactly as before the field existed. No
        # return annotation on purpose: pydantic would take it as the JSON Schema of the model.
        data = handler(self)
        if isinstance(data, dict) and data.get("llm", 0) is None:
            del data["llm"]
        return data


SessionSummaryEvent = Envelope[SessionSummary]


class LlmSummaryRetry(BaseModel):
    """A deterministic summary whose LLM summary failed transiently, waiting for ``due_at``.

    ``attempt`` counts the tries that failed so far (the first, made on arrival, is 1; a record
    deferred by an open circuit breaker before any try has 0)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["session.summary.llm-retry"] = "session.summary.llm-retry"
    attempt: int = Field(ge=0)
    due_at: datetime
    error_type: str = Field(description="The class of the last failure: rate_limit, quota, "
                                        "network, timeout, server, circuit_open.")
    error: str
    summary: SessionSummaryEvent
