"""``SessionGraph``: who did what with which tools, files and models, fed by ``sessions.events.v1``.

The graph::

    (:Project {name})-[:HAS_SESSION]->(:Session {id, source, title, slug, working_dir, project,
        started_at, last_activity_at, ended_at, status, closed_reason, first_closed_at,
        agent_id, session_kind, forked_from, resumed_from, copied_until})
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
work only (a fact a sub-agent file replays from its parent's stays the parent's);
``(s)-[:SPAWNED*0..]->(x)`` spans the tree. Only main sessions hang off a ``Project``, named
by the first ``SessionContext.project`` (else ``cwd``) of the main file.

A session is ``active`` until it closes: its file removed (``closed_reason`` removed) or no
event for the inactivity timeout (:meth:`SessionGraph.close_idle`, ``closed_reason``
inactive, ``ended_at`` its last activity); an inactive one reopens on a later event.

One write transaction per batch: take the lineage lock, fold the events
(:mod:`~projections.neo4j.session_graph_batch`), write the session nodes, the ``SPAWNED`` edges
and the fact nodes (:mod:`~projections.neo4j.session_graph_facts`), re-decide lineage
(:mod:`~projections.neo4j.session_graph_lineage`), then derive the aggregate relationships.
Every write is one ``UNWIND $rows`` statement per kind per batch. The offsets make a
re-applied batch a no-op, and a replay (``reset()`` then every record again) yields the same
graph. A usage report without a model is billed under its session's latest context model, kept
in ``(:SessionModel {key, session, agent, model})`` nodes (see :mod:`projections.session_models`).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import neo4j

from projections.base import Record
from projections.neo4j.base import Neo4jProjection, run_rows
from projections.neo4j.session_graph_batch import (
    CLOSE_IDLE,
    UPSERT_SESSIONS,
    UPSERT_SPAWNED,
    GraphBatch,
    session_node_id,
)
from projections.neo4j.session_graph_facts import recompute_aggregates, upsert_facts
from projections.neo4j.session_graph_lineage import LOCK_LINEAGE, relink
from projections.registry import registered
from projections.session_models import SessionModels
from streams.topics import SESSION_EVENTS

__all__ = ["SessionGraph", "session_node_id"]

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


@registered("neo4j")
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

    async def apply(self, tx: neo4j.AsyncManagedTransaction, records: list[Record]) -> None:
        # Two workers deciding lineage at once would each miss the other's uncommitted facts:
        # every batch first write-locks one node (held until commit), so the second one reads
        # the first one's facts committed.
        await run_rows(tx, LOCK_LINEAGE, [1])
        ids = sorted({record.value.session_id for record in records})
        known = await (await tx.run(LOAD_MODELS, ids=ids)).data()
        batch = GraphBatch(SessionModels((r["session"], r["agent"], r["model"]) for r in known))
        for record in records:
            batch.fold(record.value)
        await run_rows(tx, UPSERT_SESSIONS, list(batch.sessions.values()))
        await run_rows(tx, UPSERT_SPAWNED, list(batch.spawned.values()))
        owners = await upsert_facts(tx, batch)
        await run_rows(tx, UPSERT_MODELS, [{"session": s, "agent": a, "model": m}
                                           for s, a, m in batch.models.changed()])
        changed = await relink(tx, ids, sorted(batch.shared_keys))
        await recompute_aggregates(tx, owners, changed)

    async def close_idle(self, before: datetime) -> list[str]:
        """Close every open session node whose last event is older than ``before``; returns
        their ids (a later event reopens one). Takes the batches' lock. ``[]`` when not
        started; store errors are translated as a batch's are."""
        if self.driver is None:
            return []

        async def close(tx: neo4j.AsyncManagedTransaction) -> list[str]:
            await run_rows(tx, LOCK_LINEAGE, [1])
            return [r["id"] async for r in await tx.run(CLOSE_IDLE, before=before)]

        async with self._translated(), self.driver.session(database=self.database) as session:
            return list(await session.execute_write(close))
