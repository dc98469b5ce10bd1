"""The token and cost totals users ask for (``sessionstream usage``), read from the tables
:class:`~projections.postgres.session_tables.SessionTables` keeps: the SQL lives beside the
projection that owns the schema.
"""

from __future__ import annotations

from decimal import Decimal

import asyncpg

__all__ = ["GROUPINGS", "usage_rows"]

GROUPINGS = {  # --by: (the key selected, what it groups by)
    "session": ("s.id", "s.id"),
    "day": ("u.day::text", "u.day::text"),
    "model": ("u.model", "u.model"),
    "project": ("coalesce(s.project, '?')", "coalesce(s.project, '?')"),
    "source": ("s.source", "s.source"),
}


async def usage_rows(dsn: str, by: str) -> list[dict[str, object]]:
    """Totals of the ``usage`` view grouped ``by`` one of :data:`GROUPINGS`, one dict per
    group (``key``, the token columns, ``cost_usd`` as a Decimal, ``unpriced_models``); empty
    when the tables do not exist yet (nothing was ever projected)."""
    key, group = GROUPINGS[by]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT 1 FROM usage LIMIT 1")
    except asyncpg.UndefinedTableError:
        await conn.close()
        return []
    try:
        rows = await conn.fetch(f"""
            SELECT {key} AS key, sum(u.input_tokens)::bigint AS input_tokens,
                   sum(u.output_tokens)::bigint AS output_tokens,
                   sum(u.cache_creation_tokens)::bigint AS cache_creation_tokens,
                   sum(u.cache_read_tokens)::bigint AS cache_read_tokens,
                   sum(u.cost_usd) AS cost_usd,
                   coalesce(array_agg(DISTINCT u.model) FILTER (WHERE NOT u.priced), '{{}}')
                       AS unpriced_models
            FROM usage u JOIN sessions s ON s.id = u.session_id
            GROUP BY {group} ORDER BY 1""")
    finally:
        await conn.close()
    return [{**dict(r), "cost_usd": Decimal(r["cost_usd"] or 0)} for r in rows]
