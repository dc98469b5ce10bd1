"""``SessionSummariesTable``: the latest summary of each session, fed by ``sessions.summaries.v1``.

``session_summaries`` keeps one row per ``session_id``: ``source``, ``status``, ``summary`` (the
latest deterministic summary as jsonb, without ``llm``), ``llm_summary``, ``llm_model``,
``llm_summarized_at`` (the latest LLM summary, null until there is one: readers always have the
deterministic summary, whether or not an LLM is configured, up or down) and ``updated_at`` (when
the row's content last changed, in event time: the summary's ``occurred_at`` or the LLM's
``summarized_at``, so a replay rebuilds identical rows).

"Latest" is by content, never arrival order: a summary replaces the stored one only when its
(``last_activity_at``, closed) is not older, because an LLM record (which repeats the
deterministic summary it was made from) may arrive after a newer deterministic summary; an LLM
text replaces the stored one only when its ``summarized_at`` is not older. Registered as
``summaries``; always built (Postgres is always there and the deterministic half costs nothing).
"""

from __future__ import annotations

from typing import Any, ClassVar

import asyncpg

from projections.base import Record
from projections.postgres.base import PostgresProjection
from projections.registry import registered
from schemas.summaries import SessionSummaryEvent
from streams.topics import SUMMARIES

__all__ = ["SessionSummariesTable"]

DDL = [
    """CREATE TABLE IF NOT EXISTS session_summaries (
        session_id text PRIMARY KEY, source text NOT NULL, status text NOT NULL,
        summary jsonb NOT NULL, llm_summary text, llm_model text,
        llm_summarized_at timestamptz, updated_at timestamptz NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS session_summaries_by_update ON session_summaries (updated_at)",
]

_ORDER = "(COALESCE(({s}->>'last_activity_at')::timestamptz, '-infinity'), {s}->>'status' = " \
         "'closed')"

UPSERT_SUMMARY = f"""
INSERT INTO session_summaries (session_id, source, status, summary, updated_at)
VALUES ($1, $2, $3, $4::jsonb, $5)
ON CONFLICT (session_id) DO UPDATE
SET source = EXCLUDED.source, status = EXCLUDED.status, summary = EXCLUDED.summary,
    updated_at = GREATEST(session_summaries.updated_at, EXCLUDED.updated_at)
WHERE {_ORDER.format(s="EXCLUDED.summary")} >= {_ORDER.format(s="session_summaries.summary")}"""

UPDATE_LLM = """
UPDATE session_summaries
SET llm_summary = $2, llm_model = $3, llm_summarized_at = $4,
    updated_at = GREATEST(updated_at, $4)
WHERE session_id = $1 AND (llm_summarized_at IS NULL OR llm_summarized_at <= $4)"""


@registered("summaries")
class SessionSummariesTable(PostgresProjection):
    """session_summaries: the latest deterministic and LLM summary per session."""

    name: ClassVar[str] = "postgres.session_summaries"
    source = SUMMARIES
    ddl = DDL
    tables = ["session_summaries"]

    async def apply(self, conn: asyncpg.Connection, records: list[Record]) -> None:
        summaries: list[tuple[Any, ...]] = []
        texts: list[tuple[Any, ...]] = []
        for record in records:
            env: SessionSummaryEvent = record.value
            s = env.payload
            summaries.append((env.session_id, env.source, s.status,
                              s.model_dump_json(exclude={"llm"}), env.occurred_at))
            if s.llm is not None:
                texts.append((env.session_id, s.llm.text, s.llm.model, s.llm.summarized_at))
        # One statement per kind keeps the order that matters: a session's summary row exists
        # before its LLM text is set on it (both ordered by content, not by arrival).
        await conn.executemany(UPSERT_SUMMARY, summaries)
        await conn.executemany(UPDATE_LLM, texts)
