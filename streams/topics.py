"""The topic catalogue: every topic's name, key and value schema, partitions and config.

Topics are the public contract other teams consume; their names follow
``<domain>.<family>.v<N>`` and each consumer's dead letters go to ``<topic>.dlq``. All session
topics are keyed by :class:`~schemas.envelope.SessionKey` so one session stays on one partition,
in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from schemas.envelope import SessionKey
from schemas.events import SessionEvent
from schemas.file_changes import FileChanged
from schemas.summaries import LlmSummaryRetry, SessionSummaryEvent
from schemas.telemetry import TelemetryKey, TelemetryPolledEvent

__all__ = [
    "CATALOGUE", "FILE_CHANGES", "FILTERED", "SESSION_EVENTS", "SUMMARIES", "SUMMARY_RETRIES",
    "TELEMETRY_POLLED", "TopicSpec", "dead_letter_topic",
]


@dataclass(frozen=True)
class TopicSpec:
    """One topic of the catalogue."""

    name: str
    key: type[BaseModel]
    value: object  # a pydantic model class or a parametrized generic
    description: str
    partitions: int = 6
    config: dict[str, str] = field(default_factory=dict)

    @property
    def dlq(self) -> str:
        return dead_letter_topic(self.name)


def dead_letter_topic(name: str) -> str:
    return f"{name}.dlq"


_RETAIN_FOREVER = {"retention.ms": "-1", "cleanup.policy": "delete"}

FILE_CHANGES = TopicSpec(
    "sessions.file-changes.v1", SessionKey, FileChanged,
    "Raw complete lines appended to watched session files, with file, offset and mtime.",
    config=_RETAIN_FOREVER,
)
SESSION_EVENTS = TopicSpec(
    "sessions.events.v1", SessionKey, SessionEvent,
    "Normalized session events (prompts, responses, tool calls, usage, files, titles...).",
    config=_RETAIN_FOREVER,
)
FILTERED = TopicSpec(
    "sessions.filtered.v1", SessionKey, SessionEvent,
    "Normalized events with content FULL, SUMMARY (truncated) or OMIT per message type.",
    config=_RETAIN_FOREVER,
)
SUMMARIES = TopicSpec(
    "sessions.summaries.v1", SessionKey, SessionSummaryEvent,
    "The latest summary of each session, re-emitted on open, update and close.",
    config={"cleanup.policy": "compact"},
)
SUMMARY_RETRIES = TopicSpec(
    "sessions.summaries.retry.v1", SessionKey, LlmSummaryRetry,
    "Summaries whose LLM summary failed transiently, each with its attempt and the time it is "
    "due again (the LLM summarizer's persistent retry queue; kept until retried).",
    config=_RETAIN_FOREVER,
)
TELEMETRY_POLLED = TopicSpec(
    "telemetry.polled.v1", TelemetryKey, TelemetryPolledEvent,
    "One call of one tool of a polled MCP server: outcome, duration, size, result and its "
    "numeric values flattened to dotted names. Keyed by (server, tool).",
    config=_RETAIN_FOREVER,
)

CATALOGUE: dict[str, TopicSpec] = {
    t.name: t for t in (FILE_CHANGES, SESSION_EVENTS, FILTERED, SUMMARIES, SUMMARY_RETRIES,
                        TELEMETRY_POLLED)
}
