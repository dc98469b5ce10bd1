"""One batch of session events folded into the rows the session tables write.

:class:`SessionBatch` reads the events in offset order, one handler per payload type, and
collects a :class:`~projections.postgres.session_rows.SessionRow` per session plus the rows of
each kind (:mod:`projections.postgres.session_rows`); session properties are order-insensitive
(``started_at`` the least ``occurred_at``, ``last_activity_at`` the greatest) or first-wins
(slug, project, working dir), the title of the highest rank wins (custom > ai > summary, later
on a tie), and the removal of the main file ends the session. A usage report without a model is
billed under the session's latest context model (:mod:`projections.session_models`);
``agent_progress`` mirrors never reach this topic (rule 2 of the session formats). It also
notes what the lineage pass needs: the files' origin hints, the main-file usage keys another
session may share, and whether any main-file usage fact arrived.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, ClassVar

import asyncpg

from projections.postgres.session_lineage import CODEX_KEY_PREFIX, UPDATE_HINTS
from projections.postgres.session_rows import (
    STATEMENTS,
    UPSERT_MODEL,
    UPSERT_SESSION,
    UPSERT_SUBAGENT,
    CompactionRow,
    FileRow,
    MessageRow,
    RewindRow,
    SessionRow,
    SubagentRow,
    ToolCallRow,
    ToolResultRow,
    UsageRow,
)
from projections.postgres.session_state_rows import (
    STATE_FIELDS,
    ArtifactRow,
    DescribedRow,
    RevisionRow,
    StateRow,
)
from projections.pricing import PricingTable
from projections.session_models import SessionModels
from schemas.events import (
    ArtifactDescribed,
    ArtifactRevised,
    AssistantMessage,
    FileTouched,
    SessionCompacted,
    SessionContext,
    SessionFileRemoved,
    SessionRewound,
    SessionStateReported,
    SessionTitled,
    SubagentLinked,
    ToolCalled,
    ToolResulted,
    UsageReported,
    UserPrompted,
)

__all__ = ["SessionBatch"]

_TITLE_RANK = {"summary": 1, "ai": 2, "custom": 3}


class SessionBatch:
    """What one batch writes; :meth:`fold` each event, then :meth:`write` and
    :meth:`write_links` inside the batch's transaction."""

    def __init__(self, pricing: PricingTable, models: SessionModels) -> None:
        self.pricing = pricing
        self.models = models
        self.sessions: dict[str, SessionRow] = {}
        # rows per kind, in the order the kinds first appeared (the order they are written)
        self.rows: dict[type[tuple[Any, ...]], list[tuple[Any, ...]]] = defaultdict(list)
        # for the lineage pass: Claude context hints (sessionKind, forked_from), keys
        self.lineage_hints: dict[str, tuple[str | None, str | None]] = {}
        self.shared_keys: set[str] = set()
        self.facts_changed = False
        self.subagents: set[tuple[str, str]] = set()  # sub-agent files, linked by where they are

    def fold(self, env: Any) -> None:
        """Add the effect of one event (a ``SessionEvent``) to the batch."""
        self.models.observe(env)
        self._touch_session(env)
        if env.payload.agent_id is not None:  # a sub-agent file: linked by where it is
            self.subagents.add((env.session_id, env.payload.agent_id))
        handler = self._HANDLERS.get(type(env.payload))
        if handler is not None:
            handler(self, env)

    @property
    def rewound(self) -> bool:
        """A rewind is pending: it applies to the rows before it, so write those first."""
        return RewindRow in self.rows

    async def write(self, conn: asyncpg.Connection) -> None:
        """Write the sessions and the rows collected so far, in the order their kinds first
        appeared; the rows are then forgotten (the sessions are kept for the next write)."""
        await conn.executemany(UPSERT_SESSION, [s.params() for s in self.sessions.values()])
        for kind, rows in self.rows.items():
            await conn.executemany(STATEMENTS[kind], rows)
        self.rows.clear()

    async def write_links(self, conn: asyncpg.Connection) -> None:
        """Write the sub-agents linked by where their files are, the context models learned and
        the files' lineage hints (after :meth:`write`)."""
        await conn.executemany(UPSERT_SUBAGENT, [SubagentRow(s, a, None)
                                                 for s, a in sorted(self.subagents)])
        await conn.executemany(UPSERT_MODEL, self.models.changed())
        await conn.executemany(UPDATE_HINTS, [(s, kind, parent) for s, (kind, parent)
                                              in sorted(self.lineage_hints.items())])

    def _add(self, row: tuple[Any, ...]) -> None:
        self.rows[type(row)].append(row)

    # -- one handler per payload type ------------------------------------------------------------

    def _touch_session(self, env: Any) -> None:
        row = self.sessions.get(env.session_id)
        at = env.occurred_at
        if row is None:
            self.sessions[env.session_id] = SessionRow(
                id=env.session_id, source=env.source, agent=env.source, started_at=at,
                last_activity_at=at)
            return
        row.started_at = min(row.started_at, at)
        row.last_activity_at = max(row.last_activity_at, at)

    def _context(self, env: Any) -> None:
        p: SessionContext = env.payload
        if p.agent_id is not None:
            return
        if p.session_kind or p.forked_from:
            kind, parent = self.lineage_hints.get(env.session_id, (None, None))
            self.lineage_hints[env.session_id] = (kind or p.session_kind,
                                                  parent or p.forked_from)
        row = self.sessions[env.session_id]
        row.slug = row.slug or p.slug
        row.project = row.project or p.project
        row.working_dir = row.working_dir or p.cwd

    def _title(self, env: Any) -> None:
        p: SessionTitled = env.payload
        row = self.sessions[env.session_id]
        rank = _TITLE_RANK[p.title_source]
        if row.title_rank is None or rank >= row.title_rank:
            row.title, row.title_rank = p.title, rank

    def _removed(self, env: Any) -> None:
        p: SessionFileRemoved = env.payload
        if p.ends_session:
            self.sessions[env.session_id].ended_at = env.occurred_at

    def _prompt(self, env: Any) -> None:
        p: UserPrompted = env.payload
        content = json.dumps({"text": p.text, "truncated": p.truncated,
                              "compact_summary": p.is_compact_summary})
        self._add(MessageRow(env.session_id, f"user:{p.line_uuid or env.event_id}", "user",
                             p.agent_id, None, _ts(p.timestamp, env), content,
                             p.is_meta or p.is_compact_summary))

    def _assistant(self, env: Any) -> None:
        p: AssistantMessage = env.payload
        fragment = json.dumps({p.line_uuid or env.event_id: {"type": p.block_type,
                                                              "text": p.text}})
        self._add(MessageRow(env.session_id, p.message_key, "assistant", p.agent_id, p.model,
                             _ts(p.timestamp, env), fragment, False))

    def _tool_call(self, env: Any) -> None:
        p: ToolCalled = env.payload
        self._add(ToolCallRow(env.session_id, p.tool_use_id, p.name, json.dumps(p.input),
                              p.agent_id, _ts(p.timestamp, env)))

    def _tool_result(self, env: Any) -> None:
        p: ToolResulted = env.payload
        self._add(ToolResultRow(env.session_id, p.tool_use_id, p.is_error, p.content[:500],
                                _ts(p.timestamp, env)))

    def _file(self, env: Any) -> None:
        p: FileTouched = env.payload
        self._add(FileRow(env.session_id, p.path, p.tool_use_id, p.tool, p.access,
                          _ts(p.timestamp, env)))

    def _usage(self, env: Any) -> None:
        p: UsageReported = env.payload
        model = self.models.resolve(env)
        cost = self.pricing.cost_of(model, p.input_tokens, p.output_tokens,
                                    p.cache_creation_5m_tokens, p.cache_creation_1h_tokens,
                                    p.cache_read_tokens, speed=p.speed)
        if p.agent_id is None:
            self.facts_changed = True
            if not p.message_key.startswith(CODEX_KEY_PREFIX):
                self.shared_keys.add(p.message_key)
        self._add(UsageRow(env.session_id, p.message_key, model, p.agent_id,
                           _ts(p.timestamp, env), p.input_tokens, p.output_tokens,
                           p.cache_creation_5m_tokens, p.cache_creation_1h_tokens,
                           p.cache_read_tokens, p.total, cost.usd, cost.priced))

    def _subagent(self, env: Any) -> None:
        p: SubagentLinked = env.payload
        self._add(SubagentRow(env.session_id, p.child_agent_id, p.tool_use_id))

    def _compacted(self, env: Any) -> None:
        p: SessionCompacted = env.payload
        self._add(CompactionRow(env.session_id, p.line_uuid or env.event_id,
                                _ts(p.timestamp, env), p.trigger, p.pre_tokens))

    def _state(self, env: Any) -> None:
        p: SessionStateReported = env.payload
        fields = p.model_dump(mode="json", include=STATE_FIELDS, exclude_none=True)
        self._add(StateRow(env.session_id, p.facet, p.updated_at or _ts(p.timestamp, env),
                           env.event_id, json.dumps(fields)))

    def _artifact(self, env: Any) -> None:
        p: ArtifactRevised = env.payload
        at = p.updated_at or _ts(p.timestamp, env)
        self._add(ArtifactRow(env.session_id, p.path, p.name, p.content, p.content_sha256,
                              p.truncated, p.size, at, p.artifact_type, p.summary, p.version,
                              p.revision))
        self._add(RevisionRow(env.session_id, p.path, p.content_sha256, p.revision, at, p.size,
                              p.content, p.truncated))

    def _described(self, env: Any) -> None:
        p: ArtifactDescribed = env.payload
        self._add(DescribedRow(env.session_id, p.path, PurePosixPath(p.path).name,
                               p.artifact_type, p.summary, p.version,
                               p.updated_at or _ts(p.timestamp, env)))

    def _rewound(self, env: Any) -> None:
        p: SessionRewound = env.payload
        self._add(RewindRow(env.session_id, p.to_message_key))

    _HANDLERS: ClassVar[dict[type, Callable[[SessionBatch, Any], None]]] = {
        SessionStateReported: _state, ArtifactRevised: _artifact, ArtifactDescribed: _described,
        SessionRewound: _rewound,
        SessionContext: _context, SessionTitled: _title, SessionFileRemoved: _removed,
        UserPrompted: _prompt, AssistantMessage: _assistant, ToolCalled: _tool_call,
        ToolResulted: _tool_result, FileTouched: _file, UsageReported: _usage,
        SubagentLinked: _subagent, SessionCompacted: _compacted,
    }


def _ts(value: datetime | None, env: Any) -> datetime:
    return value or env.occurred_at
