"""The fact nodes of the session graph, and the aggregate relationships derived from them.

The same fact can arrive twice at different offsets (one ``tool_use_id`` on two lines, several
usage reports of one response) and in two files of one session (a Codex sub-agent thread, filed
under its parent's session, replays the parent's history with the same usage keys and tool
ids), so nothing is incremented. Each fact is MERGEd as a small node keyed, like the Postgres
rows, by the root session (``session_id``, never the sub-agent's node id):
``(:ToolCall {key, session_id, agent_id, id, name, at})`` by ``tool_use_id``,
``(:FileAccess {key, session_id, agent_id, path, access, tool, tool_use_id, at})`` by access,
``tool_use_id`` and path, ``(:Response {key, session_id, agent_id, message_key, model, at,
input, output, cache_creation, cache_read, total})`` by ``message_key``; ``at`` is the line's
``timestamp``, else the event's ``occurred_at``. Of its reports one wins, by the total order of
the Postgres store: for a response the larger total, then for every kind the smaller
``agent_id`` (the main file's ``None`` first), the earlier ``at``, then (responses) the smaller
model; on a full tie the stored one stays. The winner's properties are stored, and the node
hangs off its agent's session node, ``(:Session)-[:HAS_TOOL_CALL|HAS_FILE_ACCESS|
HAS_RESPONSE]->``, exactly one relationship: when the winner's agent changes, the relationship
moves (deleted from the old owner, created from the new one). So a replayed fact counts once,
for the main session (a sub-agent's larger report of it, as in Postgres, for the sub-agent).

Then the aggregate relationships (``USED_TOOL``, ``TOUCHED``, ``USED_MODEL``) of every session
the batch touched, a fact moved away from, or whose lineage changed are deleted and derived
again from those nodes (:func:`recompute_aggregates`), leaving out what a session copied from
its origin (a sub-agent node's too, where the main file echoes its sub-agents).
"""

from __future__ import annotations

import neo4j

from projections.lineage import ECHOED_SUBAGENT_SOURCES
from projections.neo4j.base import run_rows
from projections.neo4j.session_graph_batch import GraphBatch, Row

__all__ = ["recompute_aggregates", "upsert_facts"]


def _upsert_fact(label: str, rel: str, wins: str) -> str:
    """MERGE a fact node by its key (root session and natural key); when the row's report
    ``wins`` over the stored one (``agent``/``held`` are the row's and the stored ``agent_id``
    or ``''``), take its properties and hang the node off the row's session node, deleting the
    relationship from the previous owner, whose id is returned."""
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
# The end of the prefix a session node copied: its own ``copied_until``; for a sub-agent node of
# a source whose main file echoes its sub-agents (ECHOED_SUBAGENT_SOURCES), its main session's.
_UNTIL = f"""WITH DISTINCT s
OPTIONAL MATCH (root:Session)-[:SPAWNED*1..]->(s)
WHERE s.agent_id IS NOT NULL AND s.source IN {sorted(ECHOED_SUBAGENT_SOURCES)!r}
  AND root.agent_id IS NULL
WITH s, max(properties(root).copied_until) AS inherited
WITH s, coalesce(properties(s).copied_until, inherited) AS until
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
{until}MATCH (s)-[:HAS_TOOL_CALL]->(c:ToolCall)
WHERE until IS NULL OR c.at > until
WITH s, c.name AS name, count(c) AS calls
MERGE (t:Tool {name: name})
CREATE (s)-[:USED_TOOL {count: calls}]->(t)
""".replace("{until}", _UNTIL)
RECOMPUTE_FILES = """
UNWIND $rows AS id
MATCH (s:Session {id: id})
OPTIONAL MATCH (s)-[old:TOUCHED]->(:File)
DELETE old
{until}MATCH (s)-[:HAS_FILE_ACCESS]->(a:FileAccess)
WHERE until IS NULL OR a.at > until
WITH s, a.path AS path, sum(CASE a.access WHEN 'read' THEN 1 ELSE 0 END) AS reads,
     sum(CASE a.access WHEN 'write' THEN 1 ELSE 0 END) AS writes
MERGE (f:File {path: path})
CREATE (s)-[:TOUCHED {reads: reads, writes: writes}]->(f)
""".replace("{until}", _UNTIL)
RECOMPUTE_MODELS = """
UNWIND $rows AS id
MATCH (s:Session {id: id})
OPTIONAL MATCH (s)-[old:USED_MODEL]->(:Model)
DELETE old
{until}MATCH (s)-[:HAS_RESPONSE]->(r:Response)
WHERE until IS NULL OR r.at > until
WITH s, r.model AS model, sum(r.total) AS tokens, sum(r.input) AS input,
     sum(r.output) AS output, sum(r.cache_creation) AS cache_creation,
     sum(r.cache_read) AS cache_read, count(r) AS responses
MERGE (m:Model {name: model})
CREATE (s)-[:USED_MODEL {tokens: tokens, input: input, output: output,
                         cache_creation: cache_creation, cache_read: cache_read,
                         responses: responses}]->(m)
""".replace("{until}", _UNTIL)

# Per kind of fact: its upsert and the recompute of the aggregates derived from it.
_KINDS = [(UPSERT_TOOL_CALLS, RECOMPUTE_TOOLS), (UPSERT_FILE_ACCESSES, RECOMPUTE_FILES),
          (UPSERT_RESPONSES, RECOMPUTE_MODELS)]


def _facts(batch: GraphBatch) -> list[dict[str, Row]]:
    """The batch's fact rows, in the order of ``_KINDS``."""
    return [batch.tool_calls, batch.accesses, batch.responses]


async def upsert_facts(tx: neo4j.AsyncManagedTransaction, batch: GraphBatch) -> list[set[str]]:
    """Write the batch's facts (after its session nodes); per kind, the sessions that gained or
    kept a fact and those a fact moved away from."""
    owners = []
    for (upsert, _), rows in zip(_KINDS, _facts(batch), strict=True):
        owners.append({row["session"] for row in rows.values()}
                      | await _moved(tx, upsert, list(rows.values())))
    return owners


async def recompute_aggregates(tx: neo4j.AsyncManagedTransaction, owners: list[set[str]],
                               changed: set[str]) -> None:
    """Derive the aggregates of the ``owners`` of each kind (:func:`upsert_facts`) and of the
    sessions whose lineage ``changed``, from their fact nodes."""
    for (_, recompute), sessions in zip(_KINDS, owners, strict=True):
        await run_rows(tx, recompute, sorted(sessions | changed))


async def _moved(tx: neo4j.AsyncManagedTransaction, statement: str, rows: list[Row]) -> set[str]:
    """Run an ``_upsert_fact`` statement; the sessions a fact moved away from."""
    if not rows:
        return set()
    found = await (await tx.run(statement, rows=rows)).data()
    return {r["moved"] for r in found if r["moved"] is not None}
