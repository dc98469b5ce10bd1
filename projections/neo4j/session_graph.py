"""``SessionGraph``: who did what with which tools, files and models, fed by ``sessions.events.v1``.

The graph::

    (:Project {name})-[:HAS_SESSION]->(:Session {id, source, title, slug, working_dir, project,
        started_at, last_activity_at, ended_at, status, agent_id, session_kind, forked_from,
        resumed_from, copied_until})
    (:Session)-[:USED_TOOL {count}]->(:Tool {name})
    (:Session)-[:TOUCHED {reads, writes}]->(:File {path})
    (:Session)-[:USED_MODEL {tokens, input, output, cache_creation, cache_read, responses}]
        ->(:Model {name})
    (:Session)-[:SPAWNED {tool_use_id}]->(:Session)
    (:Session)-[:RESUMED_FROM]->(:Session)    a resume, fork or hand-off decided from the facts
    (:Session)-[:FORKED_FROM]->(:Session)     the parent a session declares (Codex fork)

Sub-agents are sessions of their own: the events of a sub-agent file (``payload.agent_id``
set) belong to the session ``f"{session_id}:{agent_id}"`` (see :func:`session_node_id`), which
its main session ``SPAWNED`` (linked by where the file lives, with or without a
``SubagentLinked``; a ``SubagentLinked`` adds its ``tool_use_id``, and one from another
sub-agent's file links that sub-agent instead). So a session's own relationships count its own
work only (a fact a sub-agent file replays from its parent's stays the parent's, see Dedup);
``(s)-[:SPAWNED*0..]->(x)`` spans the tree. Only main sessions hang off a ``Project``, named
by the first ``SessionContext.project`` (else ``cwd``) of the main file.
Session properties are order-insensitive (``started_at`` is the least ``occurred_at``,
``last_activity_at`` the greatest) or first-wins in offset order (slug, working_dir, project,
and from the main file ``session_kind`` and ``forked_from``); the title of the highest rank wins
(custom > ai > summary, later on a tie); a removed file closes its session (``status =
'closed'``, ``ended_at``).

Ownership: a resumed, forked or handed-off session's file copies its origin's conversation, so
after every batch the lineage of the sessions sharing usage keys with the batch's (or related
to them by ``resumed_from``/``forked_from``) is re-decided with :func:`projections.lineage
.lineages` exactly as the Postgres store does, into ``resumed_from`` (the origin, unless it is
the declared ``forked_from``) and ``copied_until``. A main session's tool calls, file accesses
and responses timed at or before its ``copied_until`` belong to its origin and are left out of
its aggregates.

Dedup: the same fact can arrive twice at different offsets (one ``tool_use_id`` on two lines,
several usage reports of one response) and in two files of one session (a Codex sub-agent
thread, filed under its parent's session, replays the parent's history with the same usage keys
and tool ids), so nothing is incremented. Each fact is MERGEd as a small node keyed, like the
Postgres rows, by the root session (``session_id``, never the sub-agent's node id):
``(:ToolCall {key, session_id, agent_id, id, name, at})`` by ``tool_use_id``,
``(:FileAccess {key, session_id, agent_id, path, access, tool, tool_use_id, at})`` by access,
``tool_use_id`` and path, ``(:Response {key, session_id, agent_id, message_key, model, at,
input, output, cache_creation, cache_read, total})`` by ``message_key``; ``at`` is the line's
``timestamp``, else the event's ``occurred_at``. Of its reports one wins, by the total order of
the Postgres store (see :func:`_rank`): for a response the larger total, then for every kind the
smaller ``agent_id`` (the main file's ``None`` first), the earlier ``at``, then (responses) the
smaller model; on a full tie the stored one stays. The winner's properties are stored, and the
node hangs off its agent's session node, ``(:Session)-[:HAS_TOOL_CALL|HAS_FILE_ACCESS|
HAS_RESPONSE]->``, exactly one relationship: when the winner's agent changes, the relationship
moves (deleted from the old owner, created from the new one). So a replayed fact counts once,
for the main session (a sub-agent's larger report of it, as in Postgres, for the sub-agent),
and the lineage facts, the main session's responses, stay on the main node. Then, in the same
transaction, lineage is re-decided and the aggregate relationships of every session the batch
touched, a fact moved away from, or whose lineage changed are deleted and recomputed from those
nodes. Every batch first writes one bookkeeping node, ``(:LineageLock {id: 1})``, whose write
lock (held until commit) serializes the batches of several workers, so no lineage is decided
without the other worker's facts. Every write is one ``UNWIND $rows`` statement per kind per
batch. The offsets make a
re-applied batch a no-op, and a replay (``reset()`` then every record again) yields the same
graph. A usage report without a model is billed under its session's latest context model, kept
in ``(:SessionModel {key, session, agent, model})`` nodes (see :mod:`projections.session_models`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import neo4j

from projections.base import Record
from projections.lineage import SessionFacts, lineages
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
# Codex usage keys are cumulative counters: equal across threads only within a declared fork.
CODEX_KEY_PREFIX = "codex:"
# How far the lineage family of a batch is followed (the bounds of the Postgres store).
MAX_FAMILY_ROUNDS = 8
MAX_FAMILY = 500


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
    shared_keys: set[str] = field(default_factory=set)  # main-file keys another file may hold


class SessionGraph(Neo4jProjection):
    """Projects, sessions, sub-agents, tools, files and models as a graph."""

    name: ClassVar[str] = "neo4j.session_graph"
    source = SESSION_EVENTS
    # The schema: uniqueness of every node key, plus the indexes the lineage lookups use.
    constraints: ClassVar[list[str]] = [
        *(f"CREATE CONSTRAINT {label.lower()}_{key} IF NOT EXISTS "
          f"FOR (n:{label}) REQUIRE n.{key} IS UNIQUE"
          for label, key in [("Project", "name"), ("Session", "id"), ("Tool", "name"),
                             ("File", "path"), ("Model", "name"), ("ToolCall", "key"),
                             ("FileAccess", "key"), ("Response", "key"),
                             ("SessionModel", "key"), ("LineageLock", "id")]),
        *(f"CREATE INDEX {label.lower()}_{key} IF NOT EXISTS FOR (n:{label}) ON (n.{key})"
          for label, key in [("Response", "message_key"), ("Session", "resumed_from"),
                             ("Session", "forked_from")]),
    ]
    labels: ClassVar[list[str]] = ["SessionModel", "ToolCall", "FileAccess", "Response", "Tool",
                                   "File", "Model", "Session", "Project"]
    _models = SessionModels()

    async def apply(self, tx: neo4j.AsyncManagedTransaction, records: list[Record]) -> None:
        # Two workers deciding lineage at once would each miss the other's uncommitted facts:
        # every batch first write-locks one node (held until commit), so the second one reads
        # the first one's facts committed.
        await _run(tx, LOCK_LINEAGE, [1])
        batch = _Batch()
        ids = sorted({record.value.session_id for record in records})
        known = await (await tx.run(LOAD_MODELS, ids=ids)).data()
        self._models = SessionModels((r["session"], r["agent"], r["model"]) for r in known)
        for record in records:
            envelope = record.value
            self._models.observe(envelope)
            self._touch_session(batch, envelope)
            if envelope.payload.agent_id is not None:  # a sub-agent file: linked by where it is
                self._link(batch, envelope.session_id, envelope.payload.agent_id, envelope.source)
            handler = self._HANDLERS.get(type(envelope.payload))
            if handler is not None:
                handler(self, batch, envelope)
        await _run(tx, UPSERT_SESSIONS, list(batch.sessions.values()))
        await _run(tx, UPSERT_SPAWNED, list(batch.spawned.values()))
        facts = [(UPSERT_TOOL_CALLS, RECOMPUTE_TOOLS, batch.tool_calls),
                 (UPSERT_FILE_ACCESSES, RECOMPUTE_FILES, batch.accesses),
                 (UPSERT_RESPONSES, RECOMPUTE_MODELS, batch.responses)]
        # Per kind, the sessions that gained or kept a fact and those a fact moved away from.
        owners = [{row["session"] for row in rows.values()}
                  | await _moved(tx, upsert, list(rows.values())) for upsert, _, rows in facts]
        await _run(tx, UPSERT_MODELS, [{"session": s, "agent": a, "model": m}
                                       for s, a, m in self._models.changed()])
        changed = await self._relink(tx, ids, sorted(batch.shared_keys))
        for (_, recompute, _), sessions in zip(facts, owners, strict=True):
            await _run(tx, recompute, sorted(sessions | changed))

    async def _relink(self, tx: neo4j.AsyncManagedTransaction, ids: list[str],
                      keys: list[str]) -> set[str]:
        """Re-decide the lineage of every main session related to the batch's sessions
        (sharing a usage key, or a declared or decided origin) as the Postgres store does, store
        it with its ``RESUMED_FROM``/``FORKED_FROM`` edges, and return the sessions whose
        ``(resumed_from, copied_until)`` changed.

        Only sessions with something shared are looked at, so a batch of ordinary sessions
        costs one indexed lookup of its usage keys."""
        family = {r["id"] for r in await (await tx.run(FAMILY_SEEDS, keys=keys, ids=ids)).data()
                  if r["id"] is not None}
        if not family:
            return set()
        new = family
        for _ in range(MAX_FAMILY_ROUNDS):  # close over everything sharing facts with it
            found = await (await tx.run(FAMILY_EXPAND, ids=sorted(new))).data()
            grown = family | {r["id"] for r in found if r["id"] is not None}
            if grown == family or len(grown) > MAX_FAMILY:
                break
            family, new = grown, grown - family
        members = sorted(family)
        facts: dict[str, dict[str, datetime]] = {}
        for r in await (await tx.run(FAMILY_FACTS, ids=members)).data():
            facts.setdefault(r["session"], {})[r["key"]] = _native(r["at"])
        known = {r["id"]: r for r in await (await tx.run(FAMILY_SESSIONS, ids=members)).data()}
        decided = lineages({sid: SessionFacts(
            session_id=sid, source=r["source"], facts=facts.get(sid, {}),
            background=r["session_kind"] == "bg", forked_from=r["forked_from"],
        ) for sid, r in known.items()})
        updates, changed = [], set()
        for sid, lineage in sorted(decided.items()):
            r = known[sid]
            resumed = lineage.origin if lineage.origin != r["forked_from"] else None
            stored = (r["resumed_from"], _native(r["copied_until"]))
            edges = ([resumed] if resumed else [],
                     [r["forked_from"]] if r["parent_known"] else [])
            if (resumed, lineage.copied_until) != stored:
                changed.add(sid)
            elif edges == (sorted(r["resumed_edges"]), sorted(r["forked_edges"])):
                continue
            updates.append({"id": sid, "resumed_from": resumed,
                            "copied_until": lineage.copied_until, "forked_from": r["forked_from"]})
        await _run(tx, UPDATE_LINEAGE, updates)
        return changed

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
                "session_kind": None, "forked_from": None,
            }
            return
        row["started_at"] = min(row["started_at"], at)
        row["last_activity_at"] = max(row["last_activity_at"], at)

    @staticmethod
    def _link(batch: _Batch, session_id: str, agent_id: str, source: str,
              parent: str | None = None, tool_use_id: str | None = None) -> None:
        """``(parent)-[:SPAWNED]->(sub-agent)``; the parent defaults to the main session."""
        parent = parent or session_node_id(session_id, None)
        child = session_node_id(session_id, agent_id)
        row = batch.spawned.setdefault((parent, child), {
            "parent": parent, "child": child, "source": source, "agent_id": agent_id,
            "tool_use_id": None,
        })
        row["tool_use_id"] = row["tool_use_id"] or tool_use_id

    def _context(self, batch: _Batch, env: Any) -> None:
        p: SessionContext = env.payload
        row = batch.sessions[session_node_id(env.session_id, p.agent_id)]
        row["slug"] = row["slug"] or p.slug
        row["working_dir"] = row["working_dir"] or p.cwd
        if p.agent_id is None:
            row["project"] = row["project"] or p.project or p.cwd
            row["session_kind"] = row["session_kind"] or p.session_kind
            row["forked_from"] = row["forked_from"] or p.forked_from

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
        # A sub-agent's own file naming itself (Codex, Gemini) is the main session's link.
        spawner = None if p.agent_id == p.child_agent_id else p.agent_id
        self._link(batch, env.session_id, p.child_agent_id, env.source,
                   parent=session_node_id(env.session_id, spawner), tool_use_id=p.tool_use_id)

    def _tool_call(self, batch: _Batch, env: Any) -> None:
        p: ToolCalled = env.payload
        _keep(batch.tool_calls, f"{env.session_id}|{p.tool_use_id}", env, {
            "session_id": env.session_id, "agent_id": p.agent_id, "id": p.tool_use_id,
            "name": p.name, "at": p.timestamp or env.occurred_at,
        })

    def _file(self, batch: _Batch, env: Any) -> None:
        p: FileTouched = env.payload
        _keep(batch.accesses, f"{env.session_id}|{p.access}|{p.tool_use_id}|{p.path}", env, {
            "session_id": env.session_id, "agent_id": p.agent_id, "path": p.path,
            "access": p.access, "tool": p.tool, "tool_use_id": p.tool_use_id,
            "at": p.timestamp or env.occurred_at,
        })

    def _usage(self, batch: _Batch, env: Any) -> None:
        p: UsageReported = env.payload
        if p.agent_id is None and not p.message_key.startswith(CODEX_KEY_PREFIX):
            batch.shared_keys.add(p.message_key)
        _keep(batch.responses, f"{env.session_id}|{p.message_key}", env, {
            "session_id": env.session_id, "agent_id": p.agent_id, "message_key": p.message_key,
            "model": self._models.resolve(env), "at": p.timestamp or env.occurred_at,
            "input": p.input_tokens, "output": p.output_tokens,
            "cache_creation": p.cache_creation_5m_tokens + p.cache_creation_1h_tokens,
            "cache_read": p.cache_read_tokens, "total": p.total,
        })

    _HANDLERS: ClassVar[dict[type, Callable[..., None]]] = {
        SessionContext: _context, SessionTitled: _title, SessionFileRemoved: _removed,
        SubagentLinked: _subagent, ToolCalled: _tool_call, FileTouched: _file,
        UsageReported: _usage,
    }


def _rank(props: dict[str, Any]) -> tuple[Any, ...]:
    """The total order of the reports of one fact, smallest wins (the Postgres store's):
    a response's larger total, then (for all kinds) the main file before a sub-agent's (the
    smaller ``agent_id``), the earlier ``at``, the smaller model."""
    lead = (-props["total"],) if "total" in props else ()
    tail = (props["model"],) if "total" in props else ()
    return (*lead, props["agent_id"] or "", props["at"], *tail)


def _keep(rows: dict[str, dict[str, Any]], key: str, env: Any, props: dict[str, Any]) -> None:
    """Keep the winning report of the fact ``key`` within a batch (the first on a full tie),
    with the node of its agent as its owner."""
    known = rows.get(key)
    if known is not None and not _rank(props) < _rank(known["props"]):
        return
    rows[key] = {"key": key, "session": session_node_id(env.session_id, props["agent_id"]),
                 "props": props}


def _native(value: Any) -> Any:
    """A driver temporal value as Python's (``None`` stays ``None``)."""
    return value.to_native() if hasattr(value, "to_native") else value


LOCK_LINEAGE = """
UNWIND $rows AS row
MERGE (l:LineageLock {id: row}) SET l.id = row
"""
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


async def _moved(tx: neo4j.AsyncManagedTransaction, statement: str, rows: list[Any]) -> set[str]:
    """Run an ``_upsert_fact`` statement; the sessions a fact moved away from."""
    if not rows:
        return set()
    found = await (await tx.run(statement, rows=rows)).data()
    return {r["moved"] for r in found if r["moved"] is not None}


UPSERT_SESSIONS = """
UNWIND $rows AS row
MERGE (s:Session {id: row.id})
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
    s.ended_at = coalesce(row.ended_at, s.ended_at),
    s.status = CASE WHEN coalesce(row.ended_at, s.ended_at) IS NULL
                    THEN 'active' ELSE 'closed' END
WITH s WHERE s.project IS NOT NULL
MERGE (p:Project {name: s.project})
MERGE (p)-[:HAS_SESSION]->(s)
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


def _upsert_fact(label: str, rel: str, wins: str) -> str:
    """MERGE a fact node by its key (root session and natural key); when the row's report
    ``wins`` over the stored one (see :func:`_rank`; ``agent``/``held`` are the row's and the
    stored ``agent_id`` or ``''``), take its properties and hang the node off the row's session
    node, deleting the relationship from the previous owner, whose id is returned."""
    return f"""
UNWIND $rows AS row
MATCH (s:Session {{id: row.session}})
MERGE (f:{label} {{key: row.key}})
WITH s, row, f, coalesce(row.props.agent_id, '') AS agent, coalesce(f.agent_id, '') AS held
WHERE f.at IS NULL OR {wins}
SET f += row.props
WITH s, f
OPTIONAL MATCH (old:Session)-[h:{rel}]->(f) WHERE old <> s
DELETE h
MERGE (s)-[:{rel}]->(f)
RETURN DISTINCT old.id AS moved
"""


# The main file before a sub-agent's, then the earlier report.
_EARLIER = "agent < held OR (agent = held AND row.props.at < f.at)"
UPSERT_TOOL_CALLS = _upsert_fact("ToolCall", "HAS_TOOL_CALL", _EARLIER)
UPSERT_FILE_ACCESSES = _upsert_fact("FileAccess", "HAS_FILE_ACCESS", _EARLIER)
# The larger total, then the main file, the earlier report, the smaller model.
UPSERT_RESPONSES = _upsert_fact("Response", "HAS_RESPONSE", """row.props.total > f.total
    OR (row.props.total = f.total AND (agent < held OR (agent = held
        AND (row.props.at < f.at OR (row.props.at = f.at AND row.props.model < f.model)))))""")
# Lineage (see SessionGraph._relink and the FAMILY_* queries of the Postgres store). The
# sessions to re-decide: those holding a key of the batch that another main session holds
# too, the batch's sessions already in a lineage, and the sessions naming them as origin or
# parent.
FAMILY_SEEDS = """
UNWIND $keys AS key
MATCH (s:Session)-[:HAS_RESPONSE]->(:Response {message_key: key})
WHERE s.agent_id IS NULL
WITH key, collect(DISTINCT s.id) AS holders WHERE size(holders) > 1
UNWIND holders AS id
RETURN id
UNION
MATCH (s:Session) WHERE s.id IN $ids AND (s.resumed_from IS NOT NULL
    OR s.forked_from IS NOT NULL OR properties(s).copied_until IS NOT NULL)
RETURN s.id AS id
UNION
MATCH (s:Session) WHERE s.resumed_from IN $ids RETURN s.id AS id
UNION
MATCH (s:Session) WHERE s.forked_from IN $ids RETURN s.id AS id
"""
# One round of the closure: main sessions sharing a (non-Codex) usage key with one of $ids,
# and their declared and decided relatives.
FAMILY_EXPAND = f"""
UNWIND $ids AS id
MATCH (s:Session {{id: id}})-[:HAS_RESPONSE]->(r:Response)
WHERE s.agent_id IS NULL AND NOT r.message_key STARTS WITH '{CODEX_KEY_PREFIX}'
MATCH (o:Session)-[:HAS_RESPONSE]->(:Response {{message_key: r.message_key}})
WHERE o.agent_id IS NULL AND o.id <> id
RETURN DISTINCT o.id AS id
UNION
MATCH (s:Session) WHERE s.id IN $ids AND s.forked_from IS NOT NULL RETURN s.forked_from AS id
UNION
MATCH (s:Session) WHERE s.forked_from IN $ids RETURN s.id AS id
UNION
MATCH (s:Session) WHERE s.id IN $ids AND s.resumed_from IS NOT NULL RETURN s.resumed_from AS id
UNION
MATCH (s:Session) WHERE s.resumed_from IN $ids RETURN s.id AS id
"""
FAMILY_FACTS = """
UNWIND $ids AS id
MATCH (s:Session {id: id})-[:HAS_RESPONSE]->(r:Response)
WHERE s.agent_id IS NULL AND r.at IS NOT NULL
RETURN s.id AS session, r.message_key AS key, r.at AS at
"""
FAMILY_SESSIONS = """
UNWIND $ids AS id
MATCH (s:Session {id: id}) WHERE s.agent_id IS NULL
WITH s, properties(s) AS p
RETURN s.id AS id, p.source AS source, p.session_kind AS session_kind,
       p.forked_from AS forked_from, p.resumed_from AS resumed_from,
       p.copied_until AS copied_until,
       [(s)-[:RESUMED_FROM]->(o:Session) | o.id] AS resumed_edges,
       [(s)-[:FORKED_FROM]->(o:Session) | o.id] AS forked_edges,
       COUNT { MATCH (parent:Session {id: s.forked_from}) } > 0 AS parent_known
"""
# The decided lineage, and exactly one RESUMED_FROM (the decided origin, unless it is the
# declared parent) and one FORKED_FROM (the declared parent, once its node exists) per session.
UPDATE_LINEAGE = """
UNWIND $rows AS row
MATCH (s:Session {id: row.id})
SET s.resumed_from = row.resumed_from, s.copied_until = row.copied_until
WITH s, row
CALL (s) {
    MATCH (s)-[old:RESUMED_FROM|FORKED_FROM]->()
    DELETE old
}
CALL (s, row) {
    MATCH (o:Session {id: row.resumed_from})
    MERGE (s)-[:RESUMED_FROM]->(o)
}
CALL (s, row) {
    MATCH (p:Session {id: row.forked_from})
    MERGE (s)-[:FORKED_FROM]->(p)
}
"""
# Each RECOMPUTE gets the ids of the sessions the batch touched or whose lineage changed, drops
# their aggregate relationships and derives them again from the keyed fact nodes, leaving out
# the facts a session copied from its origin (at or before its copied_until). (properties(s)
# reads the lineage keys without a server warning while no session has one yet.)
RECOMPUTE_TOOLS = """
UNWIND $rows AS id
MATCH (s:Session {id: id})
OPTIONAL MATCH (s)-[old:USED_TOOL]->(:Tool)
DELETE old
WITH DISTINCT s, properties(s).copied_until AS until
MATCH (s)-[:HAS_TOOL_CALL]->(c:ToolCall)
WHERE until IS NULL OR c.at > until
WITH s, c.name AS name, count(c) AS calls
MERGE (t:Tool {name: name})
CREATE (s)-[:USED_TOOL {count: calls}]->(t)
"""
RECOMPUTE_FILES = """
UNWIND $rows AS id
MATCH (s:Session {id: id})
OPTIONAL MATCH (s)-[old:TOUCHED]->(:File)
DELETE old
WITH DISTINCT s, properties(s).copied_until AS until
MATCH (s)-[:HAS_FILE_ACCESS]->(a:FileAccess)
WHERE until IS NULL OR a.at > until
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
WITH DISTINCT s, properties(s).copied_until AS until
MATCH (s)-[:HAS_RESPONSE]->(r:Response)
WHERE until IS NULL OR r.at > until
WITH s, r.model AS model, sum(r.total) AS tokens, sum(r.input) AS input,
     sum(r.output) AS output, sum(r.cache_creation) AS cache_creation,
     sum(r.cache_read) AS cache_read, count(r) AS responses
MERGE (m:Model {name: model})
CREATE (s)-[:USED_MODEL {tokens: tokens, input: input, output: output,
                         cache_creation: cache_creation, cache_read: cache_read,
                         responses: responses}]->(m)
"""
