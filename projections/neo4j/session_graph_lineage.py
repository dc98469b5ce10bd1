"""The lineage relink pass of the session graph: which session owns a response several hold.

A resumed, forked or handed-off session's file copies its origin's conversation, so after every
batch the lineage of the sessions sharing usage keys with the batch's (or related to them by
``resumed_from``/``forked_from``) is re-decided with :func:`projections.lineage.lineages`
exactly as the Postgres store does, into ``resumed_from`` (the origin, unless it is the
declared ``forked_from``) and ``copied_until``, with exactly one ``RESUMED_FROM`` and one
``FORKED_FROM`` edge per session. A main session's tool calls, file accesses and responses
timed at or before its ``copied_until`` belong to its origin and are left out of its aggregates
(:mod:`projections.neo4j.session_graph_facts`), and so do its sub-agent nodes' where the main
file echoes its sub-agents (:data:`~projections.lineage.ECHOED_SUBAGENT_SOURCES`). Every batch
first writes one bookkeeping node, ``(:LineageLock {id: 1})`` (:data:`LOCK_LINEAGE`), whose
write lock (held until commit) serializes the batches of several workers, so no lineage is
decided without the other worker's facts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import neo4j

from projections.lineage import ECHOED_SUBAGENT_SOURCES, SessionFacts, lineages
from projections.neo4j.base import run_rows

__all__ = ["CODEX_KEY_PREFIX", "LOCK_LINEAGE", "relink"]

# Codex usage keys are cumulative counters: equal across threads only within a declared fork.
CODEX_KEY_PREFIX = "codex:"
# How far the lineage family of a batch is followed (the bounds of the Postgres store).
MAX_FAMILY_ROUNDS = 8
MAX_FAMILY = 500

LOCK_LINEAGE = """
UNWIND $rows AS row
MERGE (l:LineageLock {id: row}) SET l.id = row
"""
# The sessions to re-decide (see the FAMILY_* queries of the Postgres store): those holding a
# key of the batch that another main session holds too, the batch's sessions already in a
# lineage, and the sessions naming them as origin or parent.
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
# The sub-agent nodes whose copied prefix follows their main session's (the aggregates of both
# are derived again when the main session's lineage changes).
ECHOED_SUBAGENTS = f"""
MATCH (s:Session)-[:SPAWNED*1..]->(c:Session)
WHERE s.id IN $ids AND c.source IN {sorted(ECHOED_SUBAGENT_SOURCES)!r}
RETURN DISTINCT c.id AS id
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


async def relink(tx: neo4j.AsyncManagedTransaction, ids: list[str],
                 keys: list[str]) -> set[str]:
    """Re-decide the lineage of every main session related to the sessions ``ids`` (sharing
    one of the usage ``keys``, or a declared or decided origin) as the Postgres store does,
    store it with its ``RESUMED_FROM``/``FORKED_FROM`` edges, and return the sessions whose
    ``(resumed_from, copied_until)`` changed, with their sub-agent nodes where the main file
    echoes its sub-agents.

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
    await run_rows(tx, UPDATE_LINEAGE, updates)
    if changed:
        echoed = await (await tx.run(ECHOED_SUBAGENTS, ids=sorted(changed))).data()
        changed |= {r["id"] for r in echoed}
    return changed


def _native(value: Any) -> Any:
    """A driver temporal value as Python's (``None`` stays ``None``)."""
    return value.to_native() if hasattr(value, "to_native") else value
