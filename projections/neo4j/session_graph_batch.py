"""One batch of session events folded into the rows the session graph writes.

:class:`GraphBatch` reads the events in offset order, one handler per payload type, and keeps
what the batch writes keyed by natural keys, so repeats within the batch collapse: a row per
session node (:func:`session_node_id`: a sub-agent is a session of its own), per ``SPAWNED``
edge, and per fact (tool call, file access, response). Session properties are order-insensitive
(``started_at`` the least ``occurred_at``, ``last_activity_at`` the greatest) or first-wins in
offset order (slug, working_dir, project, and from the main file ``session_kind`` and
``forked_from``); the title of the highest rank wins (custom > ai > summary, later on a tie); a
removed file closes its session. Of several reports of one fact the batch keeps the winner by
:func:`_rank`, the order the store applies across batches too
(:mod:`projections.neo4j.session_graph_facts`). :data:`UPSERT_SESSIONS` and
:data:`UPSERT_SPAWNED` write the session and spawn rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from projections.neo4j.session_graph_lineage import CODEX_KEY_PREFIX
from projections.session_models import SessionModels
from schemas.events import (
    FileTouched,
    SessionContext,
    SessionFileRemoved,
    SessionTitled,
    SubagentLinked,
    ToolCalled,
    UsageReported,
)

__all__ = ["CLOSE_IDLE", "UPSERT_SESSIONS", "UPSERT_SPAWNED", "GraphBatch", "session_node_id"]

_TITLE_RANK = {"summary": 1, "ai": 2, "custom": 3}

Row = dict[str, Any]


def session_node_id(session_id: str, agent_id: str | None) -> str:
    """The ``Session.id`` of a main session (``agent_id`` None) or of one of its sub-agents."""
    return session_id if agent_id is None else f"{session_id}:{agent_id}"


@dataclass
class GraphBatch:
    """What one batch writes; :meth:`fold` each event, then write the rows."""

    models: SessionModels  # the latest context model per session, for usage without one
    sessions: dict[str, Row] = field(default_factory=dict)
    spawned: dict[tuple[str, str], Row] = field(default_factory=dict)
    tool_calls: dict[str, Row] = field(default_factory=dict)
    accesses: dict[str, Row] = field(default_factory=dict)
    responses: dict[str, Row] = field(default_factory=dict)
    shared_keys: set[str] = field(default_factory=set)  # main-file keys another file may hold

    def fold(self, env: Any) -> None:
        """Add the effect of one event (a ``SessionEvent``) to the batch."""
        self.models.observe(env)
        self._touch_session(env)
        if env.payload.agent_id is not None:  # a sub-agent file: linked by where it is
            self._link(env.session_id, env.payload.agent_id, env.source)
        handler = self._HANDLERS.get(type(env.payload))
        if handler is not None:
            handler(self, env)

    # -- one handler per payload type ------------------------------------------------------------

    def _touch_session(self, env: Any) -> None:
        node = session_node_id(env.session_id, env.payload.agent_id)
        at = env.occurred_at
        row = self.sessions.get(node)
        if row is None:
            self.sessions[node] = {
                "id": node, "source": env.source, "agent_id": env.payload.agent_id,
                "started_at": at, "last_activity_at": at, "slug": None, "working_dir": None,
                "project": None, "title": None, "title_rank": None, "ended_at": None,
                "session_kind": None, "forked_from": None,
            }
            return
        row["started_at"] = min(row["started_at"], at)
        row["last_activity_at"] = max(row["last_activity_at"], at)

    def _link(self, session_id: str, agent_id: str, source: str, parent: str | None = None,
              tool_use_id: str | None = None) -> None:
        """``(parent)-[:SPAWNED]->(sub-agent)``; the parent defaults to the main session."""
        parent = parent or session_node_id(session_id, None)
        child = session_node_id(session_id, agent_id)
        row = self.spawned.setdefault((parent, child), {
            "parent": parent, "child": child, "source": source, "agent_id": agent_id,
            "tool_use_id": None,
        })
        row["tool_use_id"] = row["tool_use_id"] or tool_use_id

    def _context(self, env: Any) -> None:
        p: SessionContext = env.payload
        row = self.sessions[session_node_id(env.session_id, p.agent_id)]
        row["slug"] = row["slug"] or p.slug
        row["working_dir"] = row["working_dir"] or p.cwd
        if p.agent_id is None:
            row["project"] = row["project"] or p.project or p.cwd
            row["session_kind"] = row["session_kind"] or p.session_kind
            row["forked_from"] = row["forked_from"] or p.forked_from

    def _title(self, env: Any) -> None:
        p: SessionTitled = env.payload
        row = self.sessions[session_node_id(env.session_id, p.agent_id)]
        rank = _TITLE_RANK[p.title_source]
        if row["title_rank"] is None or rank >= row["title_rank"]:
            row["title"], row["title_rank"] = p.title, rank

    def _removed(self, env: Any) -> None:
        p: SessionFileRemoved = env.payload
        if p.file_kind == "artifact":
            return
        self.sessions[session_node_id(env.session_id, p.agent_id)]["ended_at"] = env.occurred_at

    def _subagent(self, env: Any) -> None:
        p: SubagentLinked = env.payload
        # A sub-agent's own file naming itself (Codex, Gemini) is the main session's link.
        spawner = None if p.agent_id == p.child_agent_id else p.agent_id
        self._link(env.session_id, p.child_agent_id, env.source,
                   parent=session_node_id(env.session_id, spawner), tool_use_id=p.tool_use_id)

    def _tool_call(self, env: Any) -> None:
        p: ToolCalled = env.payload
        _keep(self.tool_calls, f"{env.session_id}|{p.tool_use_id}", env, {
            "session_id": env.session_id, "agent_id": p.agent_id, "id": p.tool_use_id,
            "name": p.name, "at": p.timestamp or env.occurred_at,
        })

    def _file(self, env: Any) -> None:
        p: FileTouched = env.payload
        _keep(self.accesses, f"{env.session_id}|{p.access}|{p.tool_use_id}|{p.path}", env, {
            "session_id": env.session_id, "agent_id": p.agent_id, "path": p.path,
            "access": p.access, "tool": p.tool, "tool_use_id": p.tool_use_id,
            "at": p.timestamp or env.occurred_at,
        })

    def _usage(self, env: Any) -> None:
        p: UsageReported = env.payload
        if p.agent_id is None and not p.message_key.startswith(CODEX_KEY_PREFIX):
            self.shared_keys.add(p.message_key)
        _keep(self.responses, f"{env.session_id}|{p.message_key}", env, {
            "session_id": env.session_id, "agent_id": p.agent_id, "message_key": p.message_key,
            "model": self.models.resolve(env), "at": p.timestamp or env.occurred_at,
            "input": p.input_tokens, "output": p.output_tokens,
            "cache_creation": p.cache_creation_5m_tokens + p.cache_creation_1h_tokens,
            "cache_read": p.cache_read_tokens, "total": p.total,
        })

    _HANDLERS: ClassVar[dict[type, Callable[[GraphBatch, Any], None]]] = {
        SessionContext: _context, SessionTitled: _title, SessionFileRemoved: _removed,
        SubagentLinked: _subagent, ToolCalled: _tool_call, FileTouched: _file,
        UsageReported: _usage,
    }


def _rank(props: Row) -> tuple[Any, ...]:
    """The total order of the reports of one fact, smallest wins (the Postgres store's):
    a response's larger total, then (for all kinds) the main file before a sub-agent's (the
    smaller ``agent_id``), the earlier ``at``, the smaller model."""
    lead = (-props["total"],) if "total" in props else ()
    tail = (props["model"],) if "total" in props else ()
    return (*lead, props["agent_id"] or "", props["at"], *tail)


def _keep(rows: dict[str, Row], key: str, env: Any, props: Row) -> None:
    """Keep the winning report of the fact ``key`` within a batch (the first on a full tie),
    with the node of its agent as its owner."""
    known = rows.get(key)
    if known is not None and not _rank(props) < _rank(known["props"]):
        return
    rows[key] = {"key": key, "session": session_node_id(env.session_id, props["agent_id"]),
                 "props": props}


# The lifecycle, as in the Postgres ``sessions`` table: a session closed for inactivity
# (``closed_reason = 'inactive'``) reopens on an event later than its ``ended_at``; one whose
# file was removed stays closed; ``first_closed_at`` is set once. ``reopens`` is decided on
# the values before this SET.
UPSERT_SESSIONS = """
UNWIND $rows AS row
MERGE (s:Session {id: row.id})
WITH s, row, (s.closed_reason = 'inactive' AND row.ended_at IS NULL
              AND row.last_activity_at > s.ended_at) AS reopens
SET s.source = coalesce(s.source, row.source),
    s.agent_id = coalesce(s.agent_id, row.agent_id),
    s.slug = coalesce(s.slug, row.slug),
    s.working_dir = coalesce(s.working_dir, row.working_dir),
    s.project = coalesce(s.project, row.project),
    s.session_kind = coalesce(s.session_kind, row.session_kind),
    s.forked_from = coalesce(s.forked_from, row.forked_from),
    s.started_at = CASE WHEN s.started_at IS NULL OR row.started_at < s.started_at
                        THEN row.started_at ELSE s.started_at END,
    s.last_activity_at = CASE WHEN s.last_activity_at IS NULL
                                   OR row.last_activity_at > s.last_activity_at
                              THEN row.last_activity_at ELSE s.last_activity_at END,
    s.title = CASE WHEN row.title IS NOT NULL AND row.title_rank >= coalesce(s.title_rank, 0)
                   THEN row.title ELSE s.title END,
    s.title_rank = CASE WHEN row.title IS NOT NULL
                             AND row.title_rank >= coalesce(s.title_rank, 0)
                        THEN row.title_rank ELSE s.title_rank END,
    s.ended_at = CASE WHEN row.ended_at IS NOT NULL THEN row.ended_at
                      WHEN reopens THEN null ELSE s.ended_at END,
    s.closed_reason = CASE WHEN row.ended_at IS NOT NULL THEN 'removed'
                           WHEN reopens THEN null ELSE s.closed_reason END,
    s.first_closed_at = coalesce(s.first_closed_at, row.ended_at),
    s.status = CASE WHEN row.ended_at IS NOT NULL THEN 'closed'
                    WHEN reopens OR s.ended_at IS NULL THEN 'active' ELSE 'closed' END
WITH s WHERE s.project IS NOT NULL
MERGE (p:Project {name: s.project})
MERGE (p)-[:HAS_SESSION]->(s)
"""
# Close every open session (sub-agents included) quiet since before $before.
CLOSE_IDLE = """
MATCH (s:Session) WHERE s.ended_at IS NULL AND s.last_activity_at < $before
SET s.ended_at = s.last_activity_at, s.closed_reason = 'inactive',
    s.first_closed_at = coalesce(s.first_closed_at, s.last_activity_at), s.status = 'closed'
RETURN s.id AS id
"""
# The parent may not be known yet (a sub-agent file read before its main file).
UPSERT_SPAWNED = """
UNWIND $rows AS row
MERGE (p:Session {id: row.parent})
ON CREATE SET p.source = row.source, p.status = 'active'
MERGE (c:Session {id: row.child})
ON CREATE SET c.source = row.source, c.agent_id = row.agent_id, c.status = 'active'
MERGE (p)-[r:SPAWNED]->(c)
SET r.tool_use_id = coalesce(r.tool_use_id, row.tool_use_id)
"""
