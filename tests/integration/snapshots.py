"""Canonical dumps of the read models, to compare two runs of the pipeline exactly."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import neo4j

TABLES = {
    "sessions": "id",
    "messages": "session_id, message_key",
    "tool_calls": "session_id, tool_use_id",
    "files_touched": "session_id, path, tool_use_id",
    "usage_facts": "session_id, message_key",
    "subagents": "session_id, agent_id",
    "compactions": "session_id, line_uuid",
    "session_state": "session_id, facet",
    "session_models": "session_id, agent_id",
    "artifacts": "session_id, path",
    "artifact_revisions": "session_id, path, content_sha256",
}


async def postgres_tables(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every projected table (positions excluded), in key order."""
    conn = await asyncpg.connect(dsn)
    try:
        return {table: [tuple(r) for r in await conn.fetch(
                    f"SELECT * FROM {table} ORDER BY {key}")]
                for table, key in TABLES.items()}
    finally:
        await conn.close()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


async def graph(driver: neo4j.AsyncDriver) -> dict[str, list[str]]:
    """Nodes and relationships of the graph (offset nodes excluded), canonically sorted."""
    nodes, _, _ = await driver.execute_query(
        "MATCH (n) WHERE NOT n:ProjectionOffset RETURN labels(n) AS labels, properties(n) AS p")
    rels, _, _ = await driver.execute_query(
        "MATCH (a)-[r]->(b) RETURN type(r) AS type, labels(a) AS la, properties(a) AS pa, "
        "labels(b) AS lb, properties(b) AS pb, properties(r) AS pr")
    return {
        "nodes": sorted(_canonical([sorted(r["labels"]), r["p"]]) for r in nodes),
        "relationships": sorted(_canonical([r["type"], sorted(r["la"]), r["pa"], sorted(r["lb"]),
                                            r["pb"], r["pr"]]) for r in rels),
    }
