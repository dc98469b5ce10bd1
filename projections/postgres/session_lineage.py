"""The lineage relink pass of the session tables: which session owns a response several hold.

A resume, fork or background hand-off copies its origin's conversation; a Codex fork replays
its parent's. After each batch, the lineage of every session sharing a usage key with the
batch's sessions (or related to them by ``resumed_from``/``forked_from``) is decided again by
:mod:`projections.lineage` and stored as ``resumed_from`` (or the declared ``forked_from``) and
``copied_until``; a session's main-file rows up to ``copied_until`` belong to its origin (see
``owned`` in :mod:`projections.postgres.session_schema`). What the files say of their origin
(Claude's ``sessionKind``, Codex's ``forked_from``) is stored first, first-wins. Batches take
one advisory lock, :data:`LINEAGE_LOCK`, so two workers never decide from each other's
uncommitted rows.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import asyncpg

from projections.lineage import SessionFacts, lineages

__all__ = ["CODEX_KEY_PREFIX", "LINEAGE_LOCK", "UPDATE_HINTS", "relink"]

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


async def relink(conn: asyncpg.Connection, ids: list[str], keys: list[str]) -> set[str]:
    """Re-decide the lineage of every session related to the sessions ``ids`` (sharing one of
    the usage ``keys``, or a declared or decided origin), store what changed, and return those
    ids.

    Only sessions with something shared are looked at, so a batch of ordinary sessions
    costs one indexed lookup of its usage keys. The caller holds ``LINEAGE_LOCK``."""
    family = {r[0] for r in await conn.fetch(FAMILY_SEEDS, keys, ids)}
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
