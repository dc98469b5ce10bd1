"""``SessionTables``: the tables a UI lists sessions from, fed by ``sessions.events.v1``.

Every write is keyed by a natural key (line uuid, ``message.id:requestId``, tool_use id, file
path and tool use), so an event published twice changes nothing; when two different reports
of one key compete, a total order decides (largest usage, then the main file's copy, then the
earliest), never arrival order, so a crash, a re-publish or a replay yields the same rows.
Usage facts keep the largest report per response (rule 1 of the session formats); a report
without a model is billed under the session's latest context model (``session_models``, see
:mod:`projections.session_models`);
``agent_progress`` mirrors never reach this topic (rule 2). The per-session counters, tokens
and cost of ``sessions`` are *derived* from the child tables in the same transaction, never
incremented, so replays cannot skew them.
``usage`` is a view: tokens and cost per session, model and day.

Responses several files hold (a resume, fork or background hand-off copies its origin's
conversation; a Codex fork replays its parent's): after each batch the lineage of every session
sharing a usage key with it is decided again by :mod:`projections.lineage` and stored as
``resumed_from`` (or the declared ``forked_from``) and ``copied_until``; a session's main-file
rows up to ``copied_until`` belong to its origin and every count, total, the ``usage`` view and
the metrics leave them out (:func:`owned`). Batches take one advisory lock, so two workers
never decide from each other's uncommitted rows.

Agent-kept state (``session.state``) is stored per facet and merged per field, newest first, into
the session row (slug, title, status, session type, dirs, current task, checkpoint, progress), so
every kind of agent lands in the same columns. ``artifacts`` holds each artifact's newest
``current`` content (a snapshot such as ``resolved.2`` only until the file itself is seen) and
``artifact_revisions`` every distinct content. A ``session.rewound`` removes the messages of
the target's own conversation (a sub-agent's rewind leaves its parent's) from its target on; it
is applied after the rows before it in the batch and before the rows after it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, ClassVar

import asyncpg

from projections.base import Record
from projections.lineage import SessionFacts, lineages
from projections.postgres.base import PostgresProjection
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
from streams.topics import SESSION_EVENTS

__all__ = ["SessionTables"]

def owned(row: str, session: str = "s") -> str:
    """SQL: the row (alias ``row``, with ``agent_id`` and ``at``) belongs to its session (alias
    ``session``): it is not in the prefix the session copied from its origin (sub-agent files
    are never copied)."""
    return (f"({row}.agent_id IS NOT NULL OR {session}.copied_until IS NULL"
            f" OR {row}.at > {session}.copied_until)")


DDL = [
    """CREATE TABLE IF NOT EXISTS sessions (
        id text PRIMARY KEY, source text NOT NULL, slug text, title text, title_rank int,
        project text, working_dir text, session_dir text, agent text NOT NULL,
        status text NOT NULL DEFAULT 'active', session_type text NOT NULL DEFAULT 'main',
        first_prompt text, started_at timestamptz, last_activity_at timestamptz,
        ended_at timestamptz, prompts int NOT NULL DEFAULT 0,
        assistant_messages int NOT NULL DEFAULT 0, tool_calls int NOT NULL DEFAULT 0,
        tool_errors int NOT NULL DEFAULT 0, files_touched int NOT NULL DEFAULT 0,
        subagents int NOT NULL DEFAULT 0, compactions int NOT NULL DEFAULT 0,
        input_tokens bigint NOT NULL DEFAULT 0, output_tokens bigint NOT NULL DEFAULT 0,
        cache_creation_tokens bigint NOT NULL DEFAULT 0,
        cache_read_tokens bigint NOT NULL DEFAULT 0, total_tokens bigint NOT NULL DEFAULT 0,
        cost_usd numeric(16, 6) NOT NULL DEFAULT 0, unpriced_models text[] NOT NULL DEFAULT '{}'
    )""",
    """CREATE TABLE IF NOT EXISTS messages (
        session_id text NOT NULL, message_key text NOT NULL, role text NOT NULL,
        agent_id text, model text, at timestamptz, content jsonb NOT NULL DEFAULT '{}',
        is_meta boolean NOT NULL DEFAULT false, PRIMARY KEY (session_id, message_key)
    )""",
    """CREATE TABLE IF NOT EXISTS tool_calls (
        session_id text NOT NULL, tool_use_id text NOT NULL, name text, input jsonb,
        agent_id text, called_at timestamptz, is_error boolean, result_excerpt text,
        resulted_at timestamptz, PRIMARY KEY (session_id, tool_use_id)
    )""",
    """CREATE TABLE IF NOT EXISTS files_touched (
        session_id text NOT NULL, path text NOT NULL, tool_use_id text NOT NULL,
        tool text NOT NULL, access text NOT NULL, at timestamptz,
        PRIMARY KEY (session_id, path, tool_use_id)
    )""",
    """CREATE TABLE IF NOT EXISTS usage_facts (
        session_id text NOT NULL, message_key text NOT NULL, model text NOT NULL,
        agent_id text, at timestamptz, input_tokens bigint NOT NULL,
        output_tokens bigint NOT NULL, cache_creation_5m_tokens bigint NOT NULL,
        cache_creation_1h_tokens bigint NOT NULL, cache_read_tokens bigint NOT NULL,
        total_tokens bigint NOT NULL, cost_usd numeric(16, 6) NOT NULL, priced boolean NOT NULL,
        PRIMARY KEY (session_id, message_key)
    )""",
    """CREATE TABLE IF NOT EXISTS subagents (
        session_id text NOT NULL, agent_id text NOT NULL, tool_use_id text,
        PRIMARY KEY (session_id, agent_id)
    )""",
    """CREATE TABLE IF NOT EXISTS compactions (
        session_id text NOT NULL, line_uuid text NOT NULL, at timestamptz, trig text,
        pre_tokens bigint, PRIMARY KEY (session_id, line_uuid)
    )""",
    # Added with the session-state and artifact events; ALTER keeps older databases usable.
    """ALTER TABLE sessions ADD COLUMN IF NOT EXISTS current_task text,
        ADD COLUMN IF NOT EXISTS checkpoint jsonb,
        ADD COLUMN IF NOT EXISTS progress_done int, ADD COLUMN IF NOT EXISTS progress_total int,
        ADD COLUMN IF NOT EXISTS state jsonb NOT NULL DEFAULT '{}',
        ADD COLUMN IF NOT EXISTS artifacts int NOT NULL DEFAULT 0""",
    """CREATE TABLE IF NOT EXISTS session_models (
        session_id text NOT NULL, agent_id text NOT NULL, model text NOT NULL,
        PRIMARY KEY (session_id, agent_id)
    )""",
    """CREATE TABLE IF NOT EXISTS session_state (
        session_id text NOT NULL, facet text NOT NULL, updated_at timestamptz NOT NULL,
        event_id text NOT NULL, fields jsonb NOT NULL, PRIMARY KEY (session_id, facet)
    )""",
    """CREATE TABLE IF NOT EXISTS artifacts (
        session_id text NOT NULL, path text NOT NULL, name text NOT NULL, artifact_type text,
        summary text, version text, described_at timestamptz, content text,
        content_sha256 text, truncated boolean NOT NULL DEFAULT false, size bigint,
        updated_at timestamptz, revision text, PRIMARY KEY (session_id, path)
    )""",
    """CREATE TABLE IF NOT EXISTS artifact_revisions (
        session_id text NOT NULL, path text NOT NULL, content_sha256 text NOT NULL,
        revision text NOT NULL, updated_at timestamptz, size bigint, content text,
        truncated boolean NOT NULL DEFAULT false,
        PRIMARY KEY (session_id, path, content_sha256)
    )""",
    # Cross-file lineage (projections.lineage): the origin a session copied its prefix from.
    """ALTER TABLE sessions ADD COLUMN IF NOT EXISTS resumed_from text,
        ADD COLUMN IF NOT EXISTS forked_from text,
        ADD COLUMN IF NOT EXISTS copied_until timestamptz,
        ADD COLUMN IF NOT EXISTS session_kind text,
        ADD COLUMN IF NOT EXISTS subagent_prompts int NOT NULL DEFAULT 0""",
    "CREATE INDEX IF NOT EXISTS usage_facts_message_key ON usage_facts (message_key)",
    "CREATE INDEX IF NOT EXISTS sessions_resumed_from ON sessions (resumed_from)",
    "CREATE INDEX IF NOT EXISTS sessions_forked_from ON sessions (forked_from)",
    f"""CREATE OR REPLACE VIEW usage AS
        SELECT f.session_id, f.model, (f.at AT TIME ZONE 'UTC')::date AS day,
               sum(f.input_tokens) AS input_tokens, sum(f.output_tokens) AS output_tokens,
               sum(f.cache_creation_5m_tokens + f.cache_creation_1h_tokens)
                   AS cache_creation_tokens,
               sum(f.cache_read_tokens) AS cache_read_tokens,
               sum(f.total_tokens) AS total_tokens, sum(f.cost_usd) AS cost_usd,
               count(*) AS responses, bool_and(f.priced) AS priced
        FROM usage_facts f LEFT JOIN sessions s ON s.id = f.session_id
        WHERE {owned("f")}
        GROUP BY f.session_id, f.model, (f.at AT TIME ZONE 'UTC')::date""",
]

_TITLE_RANK = {"summary": 1, "ai": 2, "custom": 3}
STATE_FIELDS = {"slug", "title", "status", "session_type", "project", "working_dir",
                "session_dir", "current_task", "checkpoint", "progress_done", "progress_total"}

_MINE = owned("m")
RECOMPUTE = f"""
UPDATE sessions s SET
    prompts = (SELECT count(*) FROM messages m WHERE m.session_id = s.id AND m.role = 'user'
               AND NOT m.is_meta AND m.agent_id IS NULL AND {_MINE}),
    subagent_prompts = (SELECT count(*) FROM messages m WHERE m.session_id = s.id
                        AND m.role = 'user' AND NOT m.is_meta AND m.agent_id IS NOT NULL),
    assistant_messages = (SELECT count(*) FROM messages m
                          WHERE m.session_id = s.id AND m.role = 'assistant' AND {_MINE}),
    first_prompt = (SELECT m.content->>'text' FROM messages m WHERE m.session_id = s.id
                    AND m.role = 'user' AND NOT m.is_meta AND m.agent_id IS NULL AND {_MINE}
                    ORDER BY m.at NULLS LAST, m.message_key LIMIT 1),
    tool_calls = (SELECT count(*) FROM tool_calls t WHERE t.session_id = s.id
                  AND t.name IS NOT NULL AND {owned("t").replace("t.at", "t.called_at")}),
    tool_errors = (SELECT count(*) FROM tool_calls t WHERE t.session_id = s.id AND t.is_error
                   AND {owned("t").replace("t.at", "t.called_at")}),
    files_touched = (SELECT count(DISTINCT f.path) FROM files_touched f
                     WHERE f.session_id = s.id
                     AND (s.copied_until IS NULL OR f.at > s.copied_until)),
    subagents = (SELECT count(*) FROM subagents a WHERE a.session_id = s.id),
    compactions = (SELECT count(*) FROM compactions c WHERE c.session_id = s.id
                   AND (s.copied_until IS NULL OR c.at > s.copied_until)),
    artifacts = (SELECT count(*) FROM artifacts a WHERE a.session_id = s.id),
    state = u.state,
    slug = coalesce(u.state->>'slug', s.slug),
    title = coalesce(u.state->>'title', s.title),
    project = coalesce(u.state->>'project', s.project),
    working_dir = coalesce(u.state->>'working_dir', s.working_dir),
    session_dir = coalesce(u.state->>'session_dir', s.session_dir),
    session_type = coalesce(u.state->>'session_type', 'main'),
    status = coalesce(u.state->>'status',
                      CASE WHEN s.ended_at IS NULL THEN 'active' ELSE 'closed' END),
    current_task = u.state->>'current_task', checkpoint = u.state->'checkpoint',
    progress_done = (u.state->>'progress_done')::int,
    progress_total = (u.state->>'progress_total')::int,
    input_tokens = u.input, output_tokens = u.output, cache_creation_tokens = u.cc,
    cache_read_tokens = u.cr, total_tokens = u.total, cost_usd = u.cost,
    unpriced_models = u.unpriced
FROM (
    SELECT ids.id, coalesce(sum(f.input_tokens), 0) AS input,
           coalesce(sum(f.output_tokens), 0) AS output,
           coalesce(sum(f.cache_creation_5m_tokens + f.cache_creation_1h_tokens), 0) AS cc,
           coalesce(sum(f.cache_read_tokens), 0) AS cr, coalesce(sum(f.total_tokens), 0) AS total,
           coalesce(sum(f.cost_usd), 0) AS cost,
           coalesce(array_agg(DISTINCT f.model) FILTER (WHERE NOT f.priced), '{{}}') AS unpriced,
           coalesce((SELECT jsonb_object_agg(z.key, z.value) FROM (
               SELECT DISTINCT ON (e.key) e.key, e.value
               FROM session_state x, jsonb_each(x.fields) e
               WHERE x.session_id = ids.id AND e.value <> 'null'::jsonb
               ORDER BY e.key, x.updated_at DESC, x.facet) z), '{{}}') AS state
    FROM unnest($1::text[]) AS ids(id) JOIN sessions c ON c.id = ids.id
    LEFT JOIN usage_facts f ON f.session_id = ids.id AND {owned("f", "c")}
    GROUP BY ids.id
) u WHERE s.id = u.id
"""


class SessionTables(PostgresProjection):
    """sessions, messages, tool_calls, files_touched, usage_facts (+ the ``usage`` view)."""

    name: ClassVar[str] = "postgres.session_tables"
    source = SESSION_EVENTS
    ddl = DDL
    tables = ["sessions", "messages", "tool_calls", "files_touched", "usage_facts",
              "subagents", "compactions", "session_state", "artifacts", "artifact_revisions",
              "session_models"]

    def __init__(self, dsn: str, pricing: PricingTable | None = None) -> None:
        super().__init__(dsn)
        self.pricing = pricing or PricingTable.load()
        self._models = SessionModels()
        # per batch: Claude context hints (sessionKind, forked_from), keys, sub-agent files
        self._lineage_hints: dict[str, tuple[str | None, str | None]] = {}
        self._shared_keys: set[str] = set()
        self._subagents: set[tuple[str, str]] = set()
        self._facts_changed = False

    async def apply(self, conn: asyncpg.Connection, records: list[Record]) -> None:
        # Two workers deciding lineage at once would each miss the other's uncommitted facts:
        # batches are serialized by a transaction-scoped advisory lock taken before any write
        # (taken later, it could deadlock with the row locks of the upserts), so the second
        # sees the first one's facts committed.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LINEAGE_LOCK)
        rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        sessions: dict[str, list[Any]] = {}
        ids = sorted({record.value.session_id for record in records})
        self._models = SessionModels(tuple(r) for r in await conn.fetch(LOAD_MODELS, ids))
        self._lineage_hints, self._shared_keys, self._subagents = {}, set(), set()
        self._facts_changed = False
        for record in records:
            envelope = record.value
            self._models.observe(envelope)
            self._touch_session(sessions, envelope)
            if envelope.payload.agent_id is not None:  # a sub-agent file: linked by where it is
                self._subagents.add((envelope.session_id, envelope.payload.agent_id))
            handler = self._HANDLERS.get(type(envelope.payload))
            if handler is not None:
                handler(self, rows, sessions, envelope)
            if REWIND in rows:  # a rewind applies to what came before it, not after
                await self._write(conn, sessions, rows)
        await self._write(conn, sessions, rows)
        await conn.executemany(UPSERT_SUBAGENT, [(s, a, None) for s, a in sorted(self._subagents)])
        await conn.executemany(UPSERT_MODEL, self._models.changed())
        await conn.executemany(UPDATE_HINTS, [(s, kind, parent) for s, (kind, parent)
                                              in sorted(self._lineage_hints.items())])
        # lineage reads main-file usage facts and the files' hints only: nothing else moves it
        changed = (await self._relink(conn, sorted(sessions))
                   if self._facts_changed or self._lineage_hints else set())
        await conn.execute(RECOMPUTE, sorted(set(sessions) | changed))

    async def _relink(self, conn: asyncpg.Connection, ids: list[str]) -> set[str]:
        """Re-decide the lineage of every session related to the batch's sessions (sharing a
        usage key, or a declared or decided origin), store what changed, and return those ids.

        Only sessions with something shared are looked at, so a batch of ordinary sessions
        costs one indexed lookup of its usage keys. The caller holds ``LINEAGE_LOCK``."""
        family = {r[0] for r in await conn.fetch(FAMILY_SEEDS, sorted(self._shared_keys), ids)}
        if not family:
            return set()
        for _ in range(MAX_FAMILY_ROUNDS):  # close over everything sharing facts with it
            grown = family | {r[0] for r in await conn.fetch(FAMILY_EXPAND, sorted(family))}
            if grown == family or len(grown) > MAX_FAMILY:
                break
            family = grown
        facts: dict[str, dict[str, datetime]] = defaultdict(dict)
        for session_id, key, at in await conn.fetch(FAMILY_FACTS, sorted(family)):
            facts[session_id][key] = at
        known = {r["id"]: r for r in await conn.fetch(FAMILY_SESSIONS, sorted(family))}
        decided = lineages({sid: SessionFacts(
            session_id=sid, source=r["source"], facts=facts.get(sid, {}),
            background=r["session_kind"] == "bg", forked_from=r["forked_from"],
        ) for sid, r in known.items()})
        updates = []
        for sid, lineage in decided.items():
            r = known[sid]
            resumed = lineage.origin if lineage.origin != r["forked_from"] else None
            if (resumed, lineage.copied_until) != (r["resumed_from"], r["copied_until"]):
                updates.append((sid, resumed, lineage.copied_until))
        await conn.executemany(UPDATE_LINEAGE, updates)
        return {sid for sid, _, _ in updates}

    @staticmethod
    async def _write(conn: asyncpg.Connection, sessions: dict[str, list[Any]],
                     rows: dict[str, list[tuple[Any, ...]]]) -> None:
        """Write the rows collected so far, in the order their kinds first appeared."""
        await conn.executemany(UPSERT_SESSION, list(map(tuple, sessions.values())))
        for statement, batch in rows.items():
            await conn.executemany(statement, batch)
        rows.clear()

    # -- one handler per payload type ------------------------------------------------------------

    def _touch_session(self, sessions: dict[str, list[Any]], env: Any) -> None:
        row = sessions.get(env.session_id)
        at = env.occurred_at
        if row is None:
            sessions[env.session_id] = [env.session_id, env.source, env.source, None, None, None,
                                        None, None, None, at, at, None]
            return
        row[9] = min(row[9], at)
        row[10] = max(row[10], at)

    def _context(self, rows: Any, sessions: dict[str, list[Any]], env: Any) -> None:
        p: SessionContext = env.payload
        if p.agent_id is not None:
            return
        if p.session_kind or p.forked_from:
            kind, parent = self._lineage_hints.get(env.session_id, (None, None))
            self._lineage_hints[env.session_id] = (kind or p.session_kind,
                                                   parent or p.forked_from)
        row = sessions[env.session_id]
        row[3] = row[3] or p.slug
        row[4] = row[4] or p.project
        row[5] = row[5] or p.cwd

    def _title(self, rows: Any, sessions: dict[str, list[Any]], env: Any) -> None:
        p: SessionTitled = env.payload
        row = sessions[env.session_id]
        rank = _TITLE_RANK[p.title_source]
        if row[7] is None or rank >= row[7]:
            row[6], row[7] = p.title, rank

    def _removed(self, rows: Any, sessions: dict[str, list[Any]], env: Any) -> None:
        p: SessionFileRemoved = env.payload
        if p.ends_session:
            sessions[env.session_id][11] = env.occurred_at

    def _prompt(self, rows: Any, sessions: Any, env: Any) -> None:
        p: UserPrompted = env.payload
        content = json.dumps({"text": p.text, "truncated": p.truncated,
                              "compact_summary": p.is_compact_summary})
        rows[UPSERT_MESSAGE].append((env.session_id, f"user:{p.line_uuid or env.event_id}",
                                     "user", p.agent_id, None, _ts(p.timestamp, env), content,
                                     p.is_meta or p.is_compact_summary))

    def _assistant(self, rows: Any, sessions: Any, env: Any) -> None:
        p: AssistantMessage = env.payload
        fragment = json.dumps({p.line_uuid or env.event_id: {"type": p.block_type,
                                                              "text": p.text}})
        rows[UPSERT_MESSAGE].append((env.session_id, p.message_key, "assistant", p.agent_id,
                                     p.model, _ts(p.timestamp, env), fragment, False))

    def _tool_call(self, rows: Any, sessions: Any, env: Any) -> None:
        p: ToolCalled = env.payload
        rows[UPSERT_TOOL_CALL].append((env.session_id, p.tool_use_id, p.name,
                                       json.dumps(p.input), p.agent_id, _ts(p.timestamp, env)))

    def _tool_result(self, rows: Any, sessions: Any, env: Any) -> None:
        p: ToolResulted = env.payload
        rows[UPSERT_TOOL_RESULT].append((env.session_id, p.tool_use_id, p.is_error,
                                         p.content[:500], _ts(p.timestamp, env)))

    def _file(self, rows: Any, sessions: Any, env: Any) -> None:
        p: FileTouched = env.payload
        rows[UPSERT_FILE].append((env.session_id, p.path, p.tool_use_id, p.tool, p.access,
                                  _ts(p.timestamp, env)))

    def _usage(self, rows: Any, sessions: Any, env: Any) -> None:
        p: UsageReported = env.payload
        model = self._models.resolve(env)
        cost = self.pricing.cost_of(model, p.input_tokens, p.output_tokens,
                                    p.cache_creation_5m_tokens, p.cache_creation_1h_tokens,
                                    p.cache_read_tokens, speed=p.speed)
        if p.agent_id is None:
            self._facts_changed = True
            if not p.message_key.startswith(CODEX_KEY_PREFIX):
                self._shared_keys.add(p.message_key)
        rows[UPSERT_USAGE].append((env.session_id, p.message_key, model, p.agent_id,
                                   _ts(p.timestamp, env), p.input_tokens, p.output_tokens,
                                   p.cache_creation_5m_tokens, p.cache_creation_1h_tokens,
                                   p.cache_read_tokens, p.total, cost.usd, cost.priced))

    def _subagent(self, rows: Any, sessions: Any, env: Any) -> None:
        p: SubagentLinked = env.payload
        rows[UPSERT_SUBAGENT].append((env.session_id, p.child_agent_id, p.tool_use_id))

    def _compacted(self, rows: Any, sessions: Any, env: Any) -> None:
        p: SessionCompacted = env.payload
        rows[UPSERT_COMPACTION].append((env.session_id, p.line_uuid or env.event_id,
                                        _ts(p.timestamp, env), p.trigger, p.pre_tokens))

    def _state(self, rows: Any, sessions: Any, env: Any) -> None:
        p: SessionStateReported = env.payload
        fields = p.model_dump(mode="json", include=STATE_FIELDS, exclude_none=True)
        rows[UPSERT_STATE].append((env.session_id, p.facet, p.updated_at or _ts(p.timestamp, env),
                                   env.event_id, json.dumps(fields)))

    def _artifact(self, rows: Any, sessions: Any, env: Any) -> None:
        p: ArtifactRevised = env.payload
        at = p.updated_at or _ts(p.timestamp, env)
        rows[UPSERT_ARTIFACT].append((env.session_id, p.path, p.name, p.content, p.content_sha256,
                                      p.truncated, p.size, at, p.artifact_type, p.summary,
                                      p.version, p.revision))
        rows[UPSERT_REVISION].append((env.session_id, p.path, p.content_sha256, p.revision, at,
                                      p.size, p.content, p.truncated))

    def _described(self, rows: Any, sessions: Any, env: Any) -> None:
        p: ArtifactDescribed = env.payload
        rows[UPSERT_DESCRIBED].append((env.session_id, p.path, PurePosixPath(p.path).name,
                                       p.artifact_type, p.summary, p.version,
                                       p.updated_at or _ts(p.timestamp, env)))

    def _rewound(self, rows: Any, sessions: Any, env: Any) -> None:
        p: SessionRewound = env.payload
        rows[REWIND].append((env.session_id, p.to_message_key))

    _HANDLERS: ClassVar[dict[type, Callable[..., None]]] = {
        SessionStateReported: _state, ArtifactRevised: _artifact, ArtifactDescribed: _described,
        SessionRewound: _rewound,
        SessionContext: _context, SessionTitled: _title, SessionFileRemoved: _removed,
        UserPrompted: _prompt, AssistantMessage: _assistant, ToolCalled: _tool_call,
        ToolResulted: _tool_result, FileTouched: _file, UsageReported: _usage,
        SubagentLinked: _subagent, SessionCompacted: _compacted,
    }


def _ts(value: datetime | None, env: Any) -> datetime:
    return value or env.occurred_at


UPSERT_SESSION = """
INSERT INTO sessions (id, source, agent, slug, project, working_dir, title, title_rank,
                      session_dir, started_at, last_activity_at, ended_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (id) DO UPDATE SET
    slug = coalesce(sessions.slug, EXCLUDED.slug),
    project = coalesce(sessions.project, EXCLUDED.project),
    working_dir = coalesce(sessions.working_dir, EXCLUDED.working_dir),
    title = CASE WHEN EXCLUDED.title_rank >= coalesce(sessions.title_rank, 0)
                 THEN EXCLUDED.title ELSE sessions.title END,
    title_rank = greatest(sessions.title_rank, EXCLUDED.title_rank),
    started_at = least(sessions.started_at, EXCLUDED.started_at),
    last_activity_at = greatest(sessions.last_activity_at, EXCLUDED.last_activity_at),
    ended_at = coalesce(EXCLUDED.ended_at, sessions.ended_at),
    status = CASE WHEN coalesce(EXCLUDED.ended_at, sessions.ended_at) IS NULL
                  THEN sessions.status ELSE 'closed' END
"""
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
UPSERT_FILE = """
INSERT INTO files_touched (session_id, path, tool_use_id, tool, access, at)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING
"""
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
UPSERT_SUBAGENT = """
INSERT INTO subagents (session_id, agent_id, tool_use_id) VALUES ($1, $2, $3)
ON CONFLICT (session_id, agent_id) DO UPDATE
SET tool_use_id = coalesce(subagents.tool_use_id, EXCLUDED.tool_use_id)
"""
UPSERT_COMPACTION = """
INSERT INTO compactions (session_id, line_uuid, at, trig, pre_tokens) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING
"""
# Codex usage keys are cumulative counters: equal across threads only within a declared fork.
CODEX_KEY_PREFIX = "codex:"
MAX_FAMILY_ROUNDS = 8
LINEAGE_LOCK = 0x5E55_11EA  # pg_advisory_xact_lock key of the lineage decisions
MAX_FAMILY = 500
UPDATE_HINTS = """
UPDATE sessions SET session_kind = coalesce(session_kind, $2),
                    forked_from = coalesce(forked_from, $3)
WHERE id = $1
"""
UPDATE_LINEAGE = "UPDATE sessions SET resumed_from = $2, copied_until = $3 WHERE id = $1"
# Sessions to re-decide: those holding a key of the batch that another session holds too,
# the batch's sessions already in a lineage, and the sessions naming them as origin or parent.
FAMILY_SEEDS = """
SELECT session_id FROM usage_facts WHERE agent_id IS NULL AND message_key IN (
    SELECT message_key FROM usage_facts WHERE message_key = ANY($1::text[])
    AND agent_id IS NULL GROUP BY message_key HAVING count(*) > 1)
UNION SELECT id FROM sessions WHERE id = ANY($2::text[])
    AND (resumed_from IS NOT NULL OR forked_from IS NOT NULL OR copied_until IS NOT NULL)
UNION SELECT id FROM sessions WHERE resumed_from = ANY($2::text[])
    OR forked_from = ANY($2::text[])
"""
FAMILY_EXPAND = f"""
SELECT DISTINCT o.session_id FROM usage_facts f
JOIN usage_facts o ON o.message_key = f.message_key AND o.session_id <> f.session_id
WHERE f.session_id = ANY($1::text[]) AND f.agent_id IS NULL AND o.agent_id IS NULL
  AND f.message_key NOT LIKE '{CODEX_KEY_PREFIX}%'
UNION SELECT forked_from FROM sessions WHERE id = ANY($1::text[]) AND forked_from IS NOT NULL
UNION SELECT id FROM sessions WHERE forked_from = ANY($1::text[])
UNION SELECT resumed_from FROM sessions WHERE id = ANY($1::text[]) AND resumed_from IS NOT NULL
UNION SELECT id FROM sessions WHERE resumed_from = ANY($1::text[])
"""
FAMILY_FACTS = """
SELECT session_id, message_key, at FROM usage_facts
WHERE session_id = ANY($1::text[]) AND agent_id IS NULL AND at IS NOT NULL
"""
FAMILY_SESSIONS = """
SELECT id, source, session_kind, forked_from, resumed_from, copied_until FROM sessions
WHERE id = ANY($1::text[])
"""
LOAD_MODELS = """
SELECT session_id, agent_id, model FROM session_models WHERE session_id = ANY($1::text[])
"""
UPSERT_MODEL = """
INSERT INTO session_models (session_id, agent_id, model) VALUES ($1, $2, $3)
ON CONFLICT (session_id, agent_id) DO UPDATE SET model = EXCLUDED.model
"""
UPSERT_STATE = """
INSERT INTO session_state (session_id, facet, updated_at, event_id, fields)
VALUES ($1, $2, $3, $4, $5::jsonb)
ON CONFLICT (session_id, facet) DO UPDATE SET
    updated_at = EXCLUDED.updated_at, event_id = EXCLUDED.event_id, fields = EXCLUDED.fields
WHERE (EXCLUDED.updated_at, EXCLUDED.event_id) > (session_state.updated_at, session_state.event_id)
"""
UPSERT_ARTIFACT = """
INSERT INTO artifacts (session_id, path, name, content, content_sha256, truncated, size,
                       updated_at, artifact_type, summary, version, revision)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (session_id, path) DO UPDATE SET
    name = EXCLUDED.name, content = EXCLUDED.content, content_sha256 = EXCLUDED.content_sha256,
    truncated = EXCLUDED.truncated, size = EXCLUDED.size, updated_at = EXCLUDED.updated_at,
    revision = EXCLUDED.revision,
    artifact_type = coalesce(artifacts.artifact_type, EXCLUDED.artifact_type),
    summary = coalesce(artifacts.summary, EXCLUDED.summary),
    version = coalesce(artifacts.version, EXCLUDED.version)
WHERE artifacts.updated_at IS NULL
   OR (EXCLUDED.revision = 'current', EXCLUDED.updated_at, EXCLUDED.content_sha256)
      > (artifacts.revision = 'current', artifacts.updated_at, artifacts.content_sha256)
"""
UPSERT_REVISION = """
INSERT INTO artifact_revisions (session_id, path, content_sha256, revision, updated_at, size,
                                content, truncated)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (session_id, path, content_sha256) DO UPDATE SET
    revision = EXCLUDED.revision, updated_at = EXCLUDED.updated_at
WHERE (EXCLUDED.updated_at, EXCLUDED.revision) < (artifact_revisions.updated_at,
                                                  artifact_revisions.revision)
"""
UPSERT_DESCRIBED = """
INSERT INTO artifacts (session_id, path, name, artifact_type, summary, version, described_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (session_id, path) DO UPDATE SET
    artifact_type = EXCLUDED.artifact_type, summary = EXCLUDED.summary,
    version = EXCLUDED.version, described_at = EXCLUDED.described_at
WHERE artifacts.described_at IS NULL OR EXCLUDED.described_at >= artifacts.described_at
"""
REWIND = """
DELETE FROM messages m USING messages target
WHERE target.session_id = $1 AND target.message_key IN ($2, 'user:' || $2)
  AND m.session_id = $1 AND m.at >= target.at
  AND m.agent_id IS NOT DISTINCT FROM target.agent_id
"""
