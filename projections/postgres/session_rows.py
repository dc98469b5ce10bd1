"""The rows a batch of session events writes, one named type per kind, each beside its upsert.

Every write is keyed by a natural key (line uuid, ``message.id:requestId``, tool_use id, file
path and tool use), so an event published twice changes nothing; when two different reports
of one key compete, the ``WHERE`` of the upsert applies a total order (largest usage, then the
main file's copy, then the earliest), never arrival order, so a crash, a re-publish or a replay
yields the same rows. Each row type's fields are its statement's parameters, in order:
:data:`STATEMENTS` maps a row type to the statement that writes it (the state and artifact
rows are in :mod:`projections.postgres.session_state_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from projections.postgres.session_state_rows import STATE_STATEMENTS

__all__ = [
    "CLOSE_IDLE", "LOAD_MODELS", "STATEMENTS", "UPSERT_MODEL", "UPSERT_SESSION", "CompactionRow",
    "FileRow",
    "MessageRow", "RewindRow", "SessionRow", "SubagentRow", "ToolCallRow", "ToolResultRow",
    "UsageRow",
]


@dataclass(slots=True)
class SessionRow:
    """The ``sessions`` columns a batch folds from its events (the derived ones come later)."""

    id: str
    source: str
    agent: str
    started_at: datetime
    last_activity_at: datetime
    slug: str | None = None
    project: str | None = None
    working_dir: str | None = None
    title: str | None = None
    title_rank: int | None = None
    session_dir: str | None = None
    ended_at: datetime | None = None

    def params(self) -> tuple[object, ...]:
        """The parameters of :data:`UPSERT_SESSION`."""
        return (self.id, self.source, self.agent, self.slug, self.project, self.working_dir,
                self.title, self.title_rank, self.session_dir, self.started_at,
                self.last_activity_at, self.ended_at)


# A session closed for inactivity reopens when a batch brings an event later than its close
# (its ``ended_at``, the last activity before the quiet); one closed because its file was
# removed stays closed. ``first_closed_at`` is set once and never cleared (the metrics count
# sessions that have closed at least once from it, so a reopen never lowers a counter).
_REOPENS = ("sessions.closed_reason = 'inactive' AND EXCLUDED.ended_at IS NULL"
            " AND EXCLUDED.last_activity_at > sessions.ended_at")
UPSERT_SESSION = f"""
INSERT INTO sessions (id, source, agent, slug, project, working_dir, title, title_rank,
                      session_dir, started_at, last_activity_at, ended_at, closed_reason,
                      first_closed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
        CASE WHEN $12::timestamptz IS NULL THEN NULL ELSE 'removed' END, $12)
ON CONFLICT (id) DO UPDATE SET
    slug = coalesce(sessions.slug, EXCLUDED.slug),
    project = coalesce(sessions.project, EXCLUDED.project),
    working_dir = coalesce(sessions.working_dir, EXCLUDED.working_dir),
    title = CASE WHEN EXCLUDED.title_rank >= coalesce(sessions.title_rank, 0)
                 THEN EXCLUDED.title ELSE sessions.title END,
    title_rank = greatest(sessions.title_rank, EXCLUDED.title_rank),
    started_at = least(sessions.started_at, EXCLUDED.started_at),
    last_activity_at = greatest(sessions.last_activity_at, EXCLUDED.last_activity_at),
    ended_at = CASE WHEN EXCLUDED.ended_at IS NOT NULL THEN EXCLUDED.ended_at
                    WHEN {_REOPENS} THEN NULL ELSE sessions.ended_at END,
    closed_reason = CASE WHEN EXCLUDED.ended_at IS NOT NULL THEN 'removed'
                         WHEN {_REOPENS} THEN NULL ELSE sessions.closed_reason END,
    first_closed_at = coalesce(sessions.first_closed_at, EXCLUDED.ended_at),
    status = CASE WHEN EXCLUDED.ended_at IS NOT NULL THEN 'closed'
                  WHEN {_REOPENS} THEN 'active' ELSE sessions.status END
"""
# Close every session quiet since before $1 (its last event's time, compared with the caller's
# clock minus the inactivity timeout): ``ended_at`` is its last activity, the reason
# 'inactive'. A status kept by the agent (session-skill state) stays that status. Returns ids.
CLOSE_IDLE = """
UPDATE sessions SET ended_at = last_activity_at, closed_reason = 'inactive',
    first_closed_at = coalesce(first_closed_at, last_activity_at),
    status = coalesce(state->>'status', 'closed')
WHERE ended_at IS NULL AND last_activity_at < $1
RETURNING id
"""


class MessageRow(NamedTuple):
    session_id: str
    message_key: str
    role: str
    agent_id: str | None
    model: str | None
    at: datetime
    content: str  # a JSON object, merged into the stored one
    is_meta: bool


UPSERT_MESSAGE = """
INSERT INTO messages (session_id, message_key, role, agent_id, model, at, content, is_meta)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
ON CONFLICT (session_id, message_key) DO UPDATE SET
    content = messages.content || EXCLUDED.content,
    model = coalesce(messages.model, EXCLUDED.model), at = least(messages.at, EXCLUDED.at),
    -- a line a sub-agent file replays from its parent belongs to the parent, in any order
    agent_id = CASE WHEN messages.agent_id IS NULL OR EXCLUDED.agent_id IS NULL THEN NULL
                    ELSE least(messages.agent_id, EXCLUDED.agent_id) END
"""


class ToolCallRow(NamedTuple):
    session_id: str
    tool_use_id: str
    name: str
    input: str  # JSON
    agent_id: str | None
    called_at: datetime


UPSERT_TOOL_CALL = """
INSERT INTO tool_calls (session_id, tool_use_id, name, input, agent_id, called_at)
VALUES ($1, $2, $3, $4::jsonb, $5, $6)
ON CONFLICT (session_id, tool_use_id) DO UPDATE SET
    name = EXCLUDED.name, input = EXCLUDED.input, agent_id = EXCLUDED.agent_id,
    called_at = EXCLUDED.called_at
WHERE tool_calls.name IS NULL
   OR (coalesce(EXCLUDED.agent_id, ''), EXCLUDED.called_at)
      < (coalesce(tool_calls.agent_id, ''), tool_calls.called_at)
"""


class ToolResultRow(NamedTuple):
    session_id: str
    tool_use_id: str
    is_error: bool
    result_excerpt: str
    resulted_at: datetime


UPSERT_TOOL_RESULT = """
INSERT INTO tool_calls (session_id, tool_use_id, is_error, result_excerpt, resulted_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (session_id, tool_use_id) DO UPDATE SET
    is_error = EXCLUDED.is_error, result_excerpt = EXCLUDED.result_excerpt,
    resulted_at = EXCLUDED.resulted_at
WHERE tool_calls.resulted_at IS NULL
   OR (EXCLUDED.resulted_at, EXCLUDED.is_error, EXCLUDED.result_excerpt)
      < (tool_calls.resulted_at, tool_calls.is_error, tool_calls.result_excerpt)
"""


class FileRow(NamedTuple):
    session_id: str
    path: str
    tool_use_id: str
    tool: str
    access: str
    at: datetime


UPSERT_FILE = """
INSERT INTO files_touched (session_id, path, tool_use_id, tool, access, at)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING
"""


class UsageRow(NamedTuple):
    session_id: str
    message_key: str
    model: str
    agent_id: str | None
    at: datetime
    input_tokens: int
    output_tokens: int
    cache_creation_5m_tokens: int
    cache_creation_1h_tokens: int
    cache_read_tokens: int
    total_tokens: int
    cost_usd: Decimal
    priced: bool


UPSERT_USAGE = """
INSERT INTO usage_facts (session_id, message_key, model, agent_id, at, input_tokens,
    output_tokens, cache_creation_5m_tokens, cache_creation_1h_tokens, cache_read_tokens,
    total_tokens, cost_usd, priced)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (session_id, message_key) DO UPDATE SET
    model = EXCLUDED.model, agent_id = EXCLUDED.agent_id, at = EXCLUDED.at,
    input_tokens = EXCLUDED.input_tokens, output_tokens = EXCLUDED.output_tokens,
    cache_creation_5m_tokens = EXCLUDED.cache_creation_5m_tokens,
    cache_creation_1h_tokens = EXCLUDED.cache_creation_1h_tokens,
    cache_read_tokens = EXCLUDED.cache_read_tokens, total_tokens = EXCLUDED.total_tokens,
    cost_usd = EXCLUDED.cost_usd, priced = EXCLUDED.priced
WHERE EXCLUDED.total_tokens > usage_facts.total_tokens
   OR (EXCLUDED.total_tokens = usage_facts.total_tokens
       AND (coalesce(EXCLUDED.agent_id, ''), EXCLUDED.at, EXCLUDED.model)
           < (coalesce(usage_facts.agent_id, ''), usage_facts.at, usage_facts.model))
"""


class SubagentRow(NamedTuple):
    session_id: str
    agent_id: str
    tool_use_id: str | None


UPSERT_SUBAGENT = """
INSERT INTO subagents (session_id, agent_id, tool_use_id) VALUES ($1, $2, $3)
ON CONFLICT (session_id, agent_id) DO UPDATE
SET tool_use_id = coalesce(subagents.tool_use_id, EXCLUDED.tool_use_id)
"""


class CompactionRow(NamedTuple):
    session_id: str
    line_uuid: str
    at: datetime
    trig: str | None
    pre_tokens: int | None


UPSERT_COMPACTION = """
INSERT INTO compactions (session_id, line_uuid, at, trig, pre_tokens) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING
"""


class RewindRow(NamedTuple):
    """Removes the messages of the target's own conversation (a sub-agent's rewind leaves its
    parent's) from the target on; their usage was billed and stays."""

    session_id: str
    to_message_key: str


REWIND = """
DELETE FROM messages m USING messages target
WHERE target.session_id = $1 AND target.message_key IN ($2, 'user:' || $2)
  AND m.session_id = $1 AND m.at >= target.at
  AND m.agent_id IS NOT DISTINCT FROM target.agent_id
"""

# The latest context model per session and sub-agent (rows of SessionModels.changed()).
LOAD_MODELS = """
SELECT session_id, agent_id, model FROM session_models WHERE session_id = ANY($1::text[])
"""
UPSERT_MODEL = """
INSERT INTO session_models (session_id, agent_id, model) VALUES ($1, $2, $3)
ON CONFLICT (session_id, agent_id) DO UPDATE SET model = EXCLUDED.model
"""

STATEMENTS: dict[type[tuple[object, ...]], str] = {
    MessageRow: UPSERT_MESSAGE, ToolCallRow: UPSERT_TOOL_CALL, ToolResultRow: UPSERT_TOOL_RESULT,
    FileRow: UPSERT_FILE, UsageRow: UPSERT_USAGE, SubagentRow: UPSERT_SUBAGENT,
    CompactionRow: UPSERT_COMPACTION, RewindRow: REWIND, **STATE_STATEMENTS,
}
