"""Sample batches of ``sessions.summaries.v1`` for the projection contract: deterministic
summaries and LLM records of two sessions over two partitions, batch 2 newer than batch 1."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agents.llm.policy import with_llm
from schemas.summaries import SessionSummaryEvent
from tests.llm_samples import active_summary, closed_summary

__all__ = ["summaries_batches", "summaries_poison"]

AT = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def _llm(summary: SessionSummaryEvent, minute: int) -> SessionSummaryEvent:
    return with_llm(summary, f"Summary of {summary.session_id} at {minute}", "model-1", "openai",
                    AT.replace(minute=minute))


def summaries_batches() -> tuple[dict[int, list[Any]], dict[int, list[Any]]]:
    early = active_summary("a", minutes=30)
    first = {0: [early, _llm(early, 1)], 3: [closed_summary("b"), None]}
    second = {0: [active_summary("a", minutes=60)], 3: [_llm(closed_summary("b"), 2)]}
    return first, second


def summaries_poison() -> SessionSummaryEvent:
    return closed_summary("b\x00")  # Postgres text cannot hold U+0000
