"""``SessionGraph``: who did what with which tools, files and models, fed by ``sessions.events.v1``.

The graph::

    (:Project {name})-[:HAS_SESSION]->(:Session {id, source, title, slug, working_dir, project,
        started_at, last_activity_at, ended_at, status, agent_id})
    (:Session)-[:USED_TOOL {count}]->(:Tool {name})
    (:Session)-[:TOUCHED {reads, writes}]->(:File {path})
    (:Session)-[:USED_MODEL {tokens, input, output, cache_creation, cache_read, responses}]
        ->(:Model {name})
    (:Session)-[:SPAWNED {tool_use_id}]->(:Session)

Sub-agents are sessions of their own: the events of a sub-agent file (``payload.agent_id``
set) belong to the session ``f"{session_id}:{agent_id}"`` (see :func:`session_node_id`), and a
``SubagentLinked`` event links its own session to ``f"{session_id}:{child_agent_id}"``. So a
session's own relationships count its own work only; ``(s)-[:SPAWNED*0..]->(x)`` spans the
tree. Only main sessions hang off a ``Project``, named by the first ``SessionContext.project``
(else ``cwd``) of the main file. Session properties are order-insensitive (``started_at`` is
the least ``occurred_at``, ``last_activity_at`` the greatest) or first-wins in offset order
(slug, working_dir, project); the title of the highest rank wins (custom > ai > summary, later
on a tie); a removed file closes its session (``status = 'closed'``, ``ended_at``).

Dedup: the same fact can arrive twice at different offsets (one ``tool_use_id`` on two lines,
several usage reports of one response), so nothing is incremented. Each fact is MERGEd as a
small keyed node hanging off its session: ``(:Session)-[:HAS_TOOL_CALL]->(:ToolCall {key,
session_id, id, name})`` keyed by session and ``tool_use_id``, ``(:Session)-[:HAS_FILE_ACCESS]
->(:FileAccess {key, session_id, path, access, tool, tool_use_id})`` keyed by session, access,
``tool_use_id`` and path, ``(:Session)-[:HAS_RESPONSE]->(:Response {key, session_id,
message_key, model, input, output, cache_creation, cache_read, total})`` keyed by session and
``message_key``, where a report replaces the stored one only when its total is larger (the
first wins a tie). Then, in the same transaction, the aggregate relationships of every session
the batch touched are deleted and recomputed from those nodes. Every write is one ``UNWIND
$rows`` statement per kind per batch. The offsets make a re-applied batch a no-op, and a
replay (``reset()`` then every record again) yields the same graph. A usage report without a
model is billed under its session's latest context model, kept in ``(:SessionModel {key,
session, agent, model})`` nodes (see :mod:`projections.session_models`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import neo4j

from projections.base import Record
from projections.neo4j.base import Neo4jProjection
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
from streams.topics import SESSION_EVENTS

__all__ = ["SessionGraph", "session_node_id"]

_TITLE_RANK = {"summary": 1, "ai": 2, "custom": 3}


def session_node_id(session_id: str, agent_id: str | None) -> str:
    """The ``Session.id`` of a main session (``agent_id`` None) or of one of its sub-agents."""
    return session_id if agent_id is None else f"{session_id}:{agent_id}"


@dataclass
class _Batch:
    """What one batch writes, keyed by natural keys so repeats within the batch collapse."""

    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    spawned: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    tool_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    accesses: dict[str, dict[str, Any]] = field(default_factory=dict)
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)


class SessionGraph(Neo4jProjection):
    """Projects, sessions, sub-agents, tools, files and models as a graph."""

    name: ClassVar[str] = "neo4j.session_graph"
    source = SESSION_EVENTS
    constraints: ClassVar[list[str]] = [
        f"CREATE CONSTRAINT {label.lower()}_{key} IF NOT EXISTS "
        f"FOR (n:{label}) REQUIRE n.{key} IS UNIQUE"
        for label, key in [("Project", "name"), ("Session", "id"), ("Tool", "name"),
                           ("File", "path"), ("Model", "name"), ("ToolCall", "key"),
                           ("FileAccess", "key"), ("Response", "key"), ("SessionModel", "key")]
    ]
    labels: ClassVar[list[str]] = ["SessionModel", "ToolCall", "FileAccess", "Response", "Tool",
                                   "File", "Model", "Session", "Project"]
    _models = SessionModels()

    async def apply(self, tx: neo4j.AsyncManagedTransaction, records: list[Record]) -> None:
        batch = _Batch()
        ids = sorted({record.value.session_id for record in records})
        known = await (await tx.run(LOAD_MODELS, ids=ids)).data()
        self._models = SessionModels((r["session"], r["agent"], r["model"]) for r in known)
        for record in records:
            envelope = record.value
            self._models.observe(envelope)
            self._touch_session(batch, envelope)
            handler = self._HANDLERS.get(type(envelope.payload))
            if handler is not None:
                handler(self, batch, envelope)
        await _run(tx, UPSERT_SESSIONS, list(batch.sessions.values()))
        await _run(tx, UPSERT_SPAWNED, list(batch.spawned.values()))
        await _run(tx, UPSERT_TOOL_CALLS, list(batch.tool_calls.values()))
        await _run(tx, UPSERT_FILE_ACCESSES, list(batch.accesses.values()))
        await _run(tx, UPSERT_RESPONSES, list(batch.responses.values()))
        await _run(tx, UPSERT_MODELS, [{"session": s, "agent": a, "model": m}
                                       for s, a, m in self._models.changed()])
        for statement, rows in [(RECOMPUTE_TOOLS, batch.tool_calls),
                                (RECOMPUTE_FILES, batch.accesses),
                                (RECOMPUTE_MODELS, batch.responses)]:
            await _run(tx, statement, sorted({row["session"] for row in rows.values()}))

    # -- one handler per payload type ------------------------------------------------------------

    def _touch_session(self, batch: _Batch, env: Any) -> None:
        node = session_node_id(env.session_id, env.payload.agent_id)
        at = env.occurred_at
        row = batch.sessions.get(node)
        if row is None:
            batch.sessions[node] = {
                "id": node, "source": env.source, "agent_id": env.payload.agent_id,
                "started_at": at, "last_activity_at": at, "slug": None, "working_dir": None,
                "project": None, "title": None, "title_rank": None, "ended_at": None,
            }
            return
        row["started_at"] = min(row["started_at"], at)
        row["last_activity_at"] = max(row["last_activity_at"], at)

    def _context(self, batch: _Batch, env: Any) -> None:
        p: SessionContext = env.payload
        row = batch.sessions[session_node_id(env.session_id, p.agent_id)]
        row["slug"] = row["slug"] or p.slug
        row["working_dir"] = row["working_dir"] or p.cwd
        if p.agent_id is None:
            row["project"] = row["project"] or p.project or p.cwd

    def _title(self, batch: _Batch, env: Any) -> None:
        p: SessionTitled = env.payload
        row = batch.sessions[session_node_id(env.session_id, p.agent_id)]
        rank = _TITLE_RANK[p.title_source]
        if row["title_rank"] is None or rank >= row["title_rank"]:
            row["title"], row["title_rank"] = p.title, rank

    def _removed(self, batch: _Batch, env: Any) -> None:
        p: SessionFileRemoved = env.payload
        if p.file_kind == "artifact":
            return
        batch.sessions[session_node_id(env.session_id, p.agent_id)]["ended_at"] = env.occurred_at

    def _subagent(self, batch: _Batch, env: Any) -> None:
        p: SubagentLinked = env.payload
        parent = session_node_id(env.session_id, p.agent_id)
        child = session_node_id(env.session_id, p.child_agent_id)
        row = batch.spawned.setdefault((parent, child), {
            "parent": parent, "child": child, "source": env.source,
            "agent_id": p.child_agent_id, "tool_use_id": None,
        })
        row["tool_use_id"] = row["tool_use_id"] or p.tool_use_id

    def _tool_call(self, batch: _Batch, env: Any) -> None:
        p: ToolCalled = env.payload
        session = session_node_id(env.session_id, p.agent_id)
        key = f"{session}|{p.tool_use_id}"
        batch.tool_calls.setdefault(key, {"key": key, "session": session,
                                          "id": p.tool_use_id, "name": p.name})

    def _file(self, batch: _Batch, env: Any) -> None:
        p: FileTouched = env.payload
        session = session_node_id(env.session_id, p.agent_id)
        key = f"{session}|{p.access}|{p.tool_use_id}|{p.path}"
        batch.accesses.setdefault(key, {
            "key": key, "session": session, "path": p.path, "access": p.access, "tool": p.tool,
            "tool_use_id": p.tool_use_id,
        })

    def _usage(self, batch: _Batch, env: Any) -> None:
        p: UsageReported = env.payload
        session = session_node_id(env.session_id, p.agent_id)
        key = f"{session}|{p.message_key}"
        known = batch.responses.get(key)
        if known is not None and p.total <= known["props"]["total"]:
            return
        batch.responses[key] = {"key": key, "session": session, "props": {
            "session_id": session, "message_key": p.message_key,
            "model": self._models.resolve(env),
            "input": p.input_tokens, "output": p.output_tokens,
            "cache_creation": p.cache_creation_5m_tokens + p.cache_creation_1h_tokens,
            "cache_read": p.cache_read_tokens, "total": p.total,
        }}

    _HANDLERS: ClassVar[dict[type, Callable[..., None]]] = {
        SessionContext: _context, SessionTitled: _title, SessionFileRemoved: _removed,
        SubagentLinked: _subagent, ToolCalled: _tool_call, FileTouched: _file,
        UsageReported: _usage,
    }


# The latest context model per session and sub-agent (billing of usage lines without one).
LOAD_MODELS = """
MATCH (c:SessionModel) WHERE c.session IN $ids
RETURN c.session AS session, c.agent AS agent, c.model AS model
"""
UPSERT_MODELS = """
UNWIND $rows AS row
MERGE (c:SessionModel {key: row.session + '|' + row.agent})
SET c.session = row.session, c.agent = row.agent, c.model = row.model
"""


async def _run(tx: neo4j.AsyncManagedTransaction, statement: str, rows: list[Any]) -> None:
    if rows:
        await (await tx.run(statement, rows=rows)).consume()


UPSERT_SESSIONS = """
UNWIND $rows AS row
MERGE (s:Session {id: row.id})
SET s.source = coalesce(s.source, row.source),
    s.agent_id = coalesce(s.agent_id, row.agent_id),
    s.slug = coalesce(s.slug, row.slug),
    s.working_dir = coalesce(s.working_dir, row.working_dir),
    s.project = coalesce(s.project, row.project),
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
    s.ended_at = coalesce(row.ended_at, s.ended_at),
    s.status = CASE WHEN coalesce(row.ended_at, s.ended_at) IS NULL
                    THEN 'active' ELSE 'closed' END
WITH s WHERE s.project IS NOT NULL
MERGE (p:Project {name: s.project})
MERGE (p)-[:HAS_SESSION]->(s)
"""
UPSERT_SPAWNED = """
UNWIND $rows AS row
MATCH (p:Session {id: row.parent})
MERGE (c:Session {id: row.child})
ON CREATE SET c.source = row.source, c.agent_id = row.agent_id, c.status = 'active'
MERGE (p)-[r:SPAWNED]->(c)
SET r.tool_use_id = coalesce(r.tool_use_id, row.tool_use_id)
"""
UPSERT_TOOL_CALLS = """
UNWIND $rows AS row
MATCH (s:Session {id: row.session})
MERGE (c:ToolCall {key: row.key})
ON CREATE SET c.session_id = row.session, c.id = row.id, c.name = row.name
MERGE (s)-[:HAS_TOOL_CALL]->(c)
"""
UPSERT_FILE_ACCESSES = """
UNWIND $rows AS row
MATCH (s:Session {id: row.session})
MERGE (a:FileAccess {key: row.key})
ON CREATE SET a.session_id = row.session, a.path = row.path, a.access = row.access,
              a.tool = row.tool, a.tool_use_id = row.tool_use_id
MERGE (s)-[:HAS_FILE_ACCESS]->(a)
"""
UPSERT_RESPONSES = """
UNWIND $rows AS row
MATCH (s:Session {id: row.session})
MERGE (r:Response {key: row.key})
ON CREATE SET r += row.props
ON MATCH SET r += CASE WHEN row.props.total > r.total THEN row.props ELSE {} END
MERGE (s)-[:HAS_RESPONSE]->(r)
"""
# Each RECOMPUTE gets the ids of the sessions the batch touched, drops their aggregate
# relationships and derives them again from the keyed fact nodes.
RECOMPUTE_TOOLS = """
UNWIND $rows AS id
MATCH (s:Session {id: id})
OPTIONAL MATCH (s)-[old:USED_TOOL]->(:Tool)
DELETE old
WITH DISTINCT s
MATCH (s)-[:HAS_TOOL_CALL]->(c:ToolCall)
WITH s, c.name AS name, count(c) AS calls
MERGE (t:Tool {name: name})
CREATE (s)-[:USED_TOOL {count: calls}]->(t)
"""
RECOMPUTE_FILES = """
UNWIND $rows AS id
MATCH (s:Session {id: id})
OPTIONAL MATCH (s)-[old:TOUCHED]->(:File)
DELETE old
WITH DISTINCT s
MATCH (s)-[:HAS_FILE_ACCESS]->(a:FileAccess)
WITH s, a.path AS path, sum(CASE a.access WHEN 'read' THEN 1 ELSE 0 END) AS reads,
     sum(CASE a.access WHEN 'write' THEN 1 ELSE 0 END) AS writes
MERGE (f:File {path: path})
CREATE (s)-[:TOUCHED {reads: reads, writes: writes}]->(f)
"""
RECOMPUTE_MODELS = """
UNWIND $rows AS id
MATCH (s:Session {id: id})
OPTIONAL MATCH (s)-[old:USED_MODEL]->(:Model)
DELETE old
WITH DISTINCT s
MATCH (s)-[:HAS_RESPONSE]->(r:Response)
WITH s, r.model AS model, sum(r.total) AS tokens, sum(r.input) AS input,
     sum(r.output) AS output, sum(r.cache_creation) AS cache_creation,
     sum(r.cache_read) AS cache_read, count(r) AS responses
MERGE (m:Model {name: model})
CREATE (s)-[:USED_MODEL {tokens: tokens, input: input, output: output,
                         cache_creation: cache_creation, cache_read: cache_read,
                         responses: responses}]->(m)
"""
