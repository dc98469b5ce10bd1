"""Full-text search over what sessions said and did: prompts, replies, tool calls (name and
arguments) and tool results (their stored excerpt), ranked, with a snippet of each hit.

The query is read by Postgres' ``websearch_to_tsquery`` (words, ``"quoted phrases"``, ``or``,
``-excluded``), matched against the ``english`` text-search vectors the GIN indexes of
:mod:`projections.postgres.session_schema` are built on (``session_search_vector``: paths
split into words; the same expressions here, so a search reads the indexes, never every row),
ranked by ``ts_rank_cd`` (how many terms, how close together) and cut into a snippet of the
original text by ``ts_headline`` with the matches between :data:`MARK` pairs (a word found
inside a path is not marked: the snippet keeps the path whole). Only a
session's own rows are searched: a prefix copied from an origin is found in the origin.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from projections.postgres.session_reads import translated_errors
from projections.postgres.session_schema import owned
from streams.errors import ProjectionError

__all__ = ["KINDS", "MARK", "search"]

KINDS = ("prompt", "reply", "tool_call", "tool_result")
"""What a hit is: a prompt typed to the agent, a reply of the agent, a tool call (its name and
arguments) or a tool result."""

MARK = "**"
"""Put before and after each matched word of a snippet."""

_HEADLINE = f'StartSel="{MARK}", StopSel="{MARK}", MaxWords=24, MinWords=8, MaxFragments=2'

_MESSAGE_TEXT = "coalesce(session_message_text(m.role, m.content), '')"
_TOOL_TEXT = "session_tool_text(t.name, t.input)"
_RESULT_TEXT = "coalesce(t.result_excerpt, '')"
_MESSAGE_VECTOR = "session_search_vector(session_message_text(m.role, m.content))"
_TOOL_VECTOR = "session_search_vector(session_tool_text(t.name, t.input))"
_RESULT_VECTOR = "session_search_vector(t.result_excerpt)"
_TOOL_MINE = owned("t").replace("t.at", "t.called_at")

# Each branch: (kind, at, text) of the rows whose vector matches; the vector expressions are
# exactly those of the indexes.
_HITS = f"""
    SELECT m.session_id, CASE m.role WHEN 'user' THEN 'prompt' ELSE 'reply' END AS kind,
           m.at, {_MESSAGE_TEXT} AS body,
           ts_rank_cd({_MESSAGE_VECTOR}, q.q) AS rank
    FROM q, messages m JOIN sessions s ON s.id = m.session_id
    WHERE {_MESSAGE_VECTOR} @@ q.q AND NOT m.is_meta AND {owned("m")}
    UNION ALL
    SELECT t.session_id, 'tool_call', t.called_at, {_TOOL_TEXT},
           ts_rank_cd({_TOOL_VECTOR}, q.q)
    FROM q, tool_calls t JOIN sessions s ON s.id = t.session_id
    WHERE {_TOOL_VECTOR} @@ q.q AND {_TOOL_MINE}
    UNION ALL
    SELECT t.session_id, 'tool_result', t.resulted_at, {_RESULT_TEXT},
           ts_rank_cd({_RESULT_VECTOR}, q.q)
    FROM q, tool_calls t JOIN sessions s ON s.id = t.session_id
    WHERE {_RESULT_VECTOR} @@ q.q AND {_TOOL_MINE}
"""


def _filters(source: str | None, project: str | None,
             since: datetime | None) -> tuple[str, list[Any]]:
    """The WHERE clause on the hits joined to their session, with its arguments from $3."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (("s.source", source), ("s.project", project), ("h.at", since)):
        if value is not None:
            args.append(value)
            op = ">=" if column == "h.at" else "="
            clauses.append(f"{column} {op} ${len(args) + 2}")
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args


async def search(db: Any, query: str, *, source: str | None = None,
                 project: str | None = None, since: datetime | None = None,
                 limit: int = 20) -> list[dict[str, Any]]:
    """The ``limit`` best hits of ``query`` in sessions matching every given filter (``since``:
    the hit happened at or after it), best first (then newest): ``session_id``, ``source``,
    ``project``, ``title``, ``kind`` (one of :data:`KINDS`), ``at``, ``snippet``, ``rank``.

    A query of no searchable words (empty, or only stop words such as "the") finds nothing;
    so does a database the projection never wrote to. Raises
    :class:`~streams.errors.ProjectionUnavailable` when Postgres cannot be reached and
    :class:`~streams.errors.ProjectionError` when its tables predate the search functions."""
    where, args = _filters(source, project, since)
    # the snippets are cut for the kept hits only: ts_headline re-parses the whole text
    sql = f"""
        WITH q AS (SELECT websearch_to_tsquery('english', $1) AS q),
        hits AS ({_HITS})
        SELECT h.session_id, s.source, s.project, s.title, h.kind, h.at,
               ts_headline('english', h.body, q.q, '{_HEADLINE}') AS snippet, h.rank
        FROM (SELECT h.* FROM hits h JOIN sessions s ON s.id = h.session_id {where}
              ORDER BY h.rank DESC, h.at DESC NULLS LAST, h.session_id, h.kind LIMIT $2) h
        JOIN sessions s ON s.id = h.session_id, q
        ORDER BY h.rank DESC, h.at DESC NULLS LAST, h.session_id, h.kind"""
    with translated_errors():
        try:
            rows = await db.fetch(sql, query, limit, *args)
        except asyncpg.UndefinedTableError:
            return []
        except asyncpg.UndefinedFunctionError as exc:
            raise ProjectionError("the search indexes are not created yet: start `sessionstream "
                                  "run` (or `replay postgres`) once with this version") from exc
    return [{**dict(r), "snippet": " ".join(r["snippet"].split()), "rank": float(r["rank"])}
            for r in rows]
