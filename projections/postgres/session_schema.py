"""The session tables' schema: the tables, the ``usage`` view, and the per-session totals.

``sessions`` holds one row per session; its counters, tokens and cost are *derived*: after each
batch :data:`RECOMPUTE` re-reads them from the child tables (``messages``, ``tool_calls``,
``files_touched``, ``usage_facts``, ``subagents``, ``compactions``, ``artifacts``) and merges
the agent-kept ``session_state`` facets per field, newest first, into the session's columns
(slug, title, status, session type, dirs, current task, checkpoint, progress). Nothing is
incremented, so replays cannot skew them. A session's main-file rows up to its
``copied_until`` belong to its origin (see :mod:`projections.postgres.session_lineage`):
:func:`owned` is the one predicate every count, the ``usage`` view (tokens and cost per
session, model and day) and the metrics use to leave them out.
"""

from __future__ import annotations

from projections.lineage import ECHOED_SUBAGENT_SOURCES

__all__ = ["DDL", "RECOMPUTE", "TABLES", "owned"]


def owned(row: str, session: str = "s") -> str:
    """SQL: the row (alias ``row``, with ``agent_id`` and ``at``) belongs to its session (alias
    ``session``, a ``sessions`` row, or all NULL from an outer join): it is not in the prefix
    the session copied from its origin. A sub-agent's row is never copied, except where the
    main file echoes the sub-agents (:data:`~projections.lineage.ECHOED_SUBAGENT_SOURCES`)."""
    echoed = ", ".join(f"'{source}'" for source in sorted(ECHOED_SUBAGENT_SOURCES))
    return (f"(({row}.agent_id IS NOT NULL AND {session}.source NOT IN ({echoed}))"
            f" OR {session}.copied_until IS NULL OR {row}.at > {session}.copied_until)")


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
    # The lifecycle: why a session closed (removed | inactive) and when it first closed.
    """ALTER TABLE sessions ADD COLUMN IF NOT EXISTS closed_reason text,
        ADD COLUMN IF NOT EXISTS first_closed_at timestamptz""",
    """CREATE INDEX IF NOT EXISTS sessions_open_by_activity ON sessions (last_activity_at)
        WHERE ended_at IS NULL""",
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
    # Full-text search (projections.postgres.session_search): the searchable text of a message
    # and of a tool call, one definition each, so the GIN expression indexes and the queries
    # compute the same expression.
    """CREATE OR REPLACE FUNCTION session_message_text(role text, content jsonb) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE WHEN role = 'user' THEN content->>'text' ELSE (
            SELECT string_agg(e.value->>'text', E'\\n' ORDER BY e.key) FROM jsonb_each(content) e
            WHERE jsonb_typeof(e.value) = 'object' AND e.value->>'type' = 'text') END $$""",
    """CREATE OR REPLACE FUNCTION session_tool_text(name text, input jsonb) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT concat_ws(E'\\n', name, (SELECT string_agg(e.value, E'\\n' ORDER BY e.key)
            FROM jsonb_each_text(CASE WHEN jsonb_typeof(input) = 'object' THEN input END) e)) $$""",
    # Paths are split into their words ("tests/test_pay.py" finds "pay"): the default parser
    # would keep a path as one word.
    """CREATE OR REPLACE FUNCTION session_search_vector(body text) RETURNS tsvector
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT to_tsvector('english', regexp_replace(coalesce(body, ''), '[/.]+', ' ', 'g')) $$""",
    """CREATE INDEX IF NOT EXISTS messages_search ON messages
        USING gin (session_search_vector(session_message_text(role, content)))""",
    """CREATE INDEX IF NOT EXISTS tool_calls_input_search ON tool_calls
        USING gin (session_search_vector(session_tool_text(name, input)))""",
    """CREATE INDEX IF NOT EXISTS tool_calls_result_search ON tool_calls
        USING gin (session_search_vector(result_excerpt))""",
]

TABLES = ["sessions", "messages", "tool_calls", "files_touched", "usage_facts", "subagents",
          "compactions", "session_state", "artifacts", "artifact_revisions", "session_models"]

_MINE = owned("m")
RECOMPUTE = f"""
UPDATE sessions s SET
    prompts = (SELECT count(*) FROM messages m WHERE m.session_id = s.id AND m.role = 'user'
               AND NOT m.is_meta AND m.agent_id IS NULL AND {_MINE}),
    subagent_prompts = (SELECT count(*) FROM messages m WHERE m.session_id = s.id
                        AND m.role = 'user' AND NOT m.is_meta AND m.agent_id IS NOT NULL
                        AND {_MINE}),
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
