"""The MCP server agents ask about coding sessions and the pipeline (``sessionstream mcp``).

:func:`build_server` returns an :class:`~mcp.server.mcpserver.MCPServer` with read-only tools:

* on the Postgres read models (:mod:`projections.postgres.session_reads`,
  :mod:`projections.postgres.session_search`): ``list_sessions``, ``search_sessions``,
  ``get_session`` (with its summaries), ``get_session_messages``, ``get_session_tools``,
  ``get_session_files`` and ``get_usage``;
* on the pipeline (:mod:`app.mcp_tracking`): ``get_tracking_status`` (positions, lag, stores)
  and ``get_failed_items`` (dead letters per reason, and the LLM retry queue).

Every result is one JSON object, sent both as structured content and as its JSON text. A
failure the caller can act on (an unknown session id, a bad ``since``, a store that cannot be
read) is an MCP tool error (``isError``) whose text says what to do; anything else is a bug,
which the SDK reports as a bare tool error and logs with its traceback. Transports and
authentication are :mod:`app.mcp_commands`'.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import asyncpg
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from app.mcp_tracking import TrackingTools
from projections.postgres import session_reads, session_search
from streams import __version__
from streams.errors import SessionStreamError
from streams.periods import parse_since
from streams.settings import Settings
from streams.sources import source_names

__all__ = ["INSTRUCTIONS", "SessionTools", "build_server", "plain", "reading"]

INSTRUCTIONS = """\
sessionstream keeps the AI coding-agent sessions of this machine (Claude Code, Codex, Gemini \
CLI, Antigravity, session-skill folders) in Postgres. Find sessions with list_sessions (newest \
first, filtered) or search_sessions (full text over prompts, replies and tool calls); read one \
with get_session, get_session_messages, get_session_tools and get_session_files; count tokens \
and cost with get_usage. get_tracking_status says whether the pipeline keeps up; \
get_failed_items lists what it gave up on."""

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                            open_world_hint=False)

SessionId = Annotated[str, Field(
    description="A session id as list_sessions or search_sessions return it (a Claude Code or "
                "Codex session UUID, or <project>/<slug> for a session-skill folder).")]
Since = Annotated[str | None, Field(
    description="Only what happened since: a duration back from now (30d, 12h, 90m) or an ISO "
                "date or time (2026-11-01, 2026-11-01T09:00:00Z).")]
Source = Annotated[str | None, Field(
    description="Only sessions of this source: " + ", ".join(source_names()) + ".")]
Project = Annotated[str | None, Field(
    description="Only sessions of this project (the sessions' `project` value, exactly).")]
Status = Annotated[str | None, Field(
    description="Only sessions with this status: active or closed (a session closes after a "
                "quiet period; agent-kept state may report others).")]
Offset = Annotated[int, Field(ge=0, description="Rows to skip, to page through.")]
By = Annotated[Literal["day", "model", "project", "source", "session"], Field(
    description="How to group the totals.")]


def plain(value: Any) -> Any:
    """``value`` as JSON values: times as ISO text, decimals as floats, records as objects."""
    if isinstance(value, dict | asyncpg.Record):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@contextmanager
def reading(what: str) -> Iterator[None]:
    """Store failures inside it become tool errors naming ``what`` could not be read."""
    try:
        yield
    except (SessionStreamError, asyncpg.PostgresError, OSError) as exc:
        raise ToolError(f"could not read {what}: {exc}") from exc


def _since(text: str | None) -> datetime | None:
    if text is None or not text.strip():
        return None
    try:
        return parse_since(text.strip(), datetime.now(UTC))
    except ValueError as exc:
        raise ToolError(f"since: {exc}") from exc


def _totals(rows: list[dict[str, Any]]) -> dict[str, float | int]:
    """The sum of every numeric column of ``rows`` (JSON values; the grouping ``key`` left
    out)."""
    totals: dict[str, float | int] = {}
    for row in rows:
        for name, value in row.items():
            if name != "key" and isinstance(value, int | float) and not isinstance(value, bool):
                totals[name] = totals.get(name, 0) + value
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in totals.items()}


class SessionTools:
    """The tools on the session tables, reading through ``db`` (an asyncpg pool or
    connection). Each returns one JSON object; an unknown session id is a tool error."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def register(self, server: MCPServer) -> None:
        for tool in (self.list_sessions, self.search_sessions, self.get_session,
                     self.get_session_messages, self.get_session_tools,
                     self.get_session_files, self.get_usage):
            server.add_tool(tool, annotations=READ_ONLY)

    async def _known(self, session_id: str) -> dict[str, Any]:
        with reading(f"session {session_id}"):
            found = await session_reads.get_session(self.db, session_id)
        if found is None:
            raise ToolError(f"unknown session id {session_id!r}: list_sessions and "
                            "search_sessions give the ids of the sessions kept")
        return found

    async def list_sessions(
            self, source: Source = None, project: Project = None, status: Status = None,
            since: Since = None,
            limit: Annotated[int, Field(ge=1, le=500, description="Sessions to return.")] = 50,
            offset: Offset = 0) -> dict[str, Any]:
        """Sessions, most recently active first: id, source, title, project, status, times,
        counts of prompts, tool calls and files, tokens and cost. `total` is how many match
        the filters (page with `offset`)."""
        filters: dict[str, Any] = {"source": source, "project": project, "status": status,
                                   "since": _since(since)}
        with reading("sessions"):
            rows = await session_reads.list_sessions(self.db, **filters, limit=limit,
                                                     offset=offset)
            total = await session_reads.count_sessions(self.db, **filters)
        return plain({"total": total, "offset": offset, "sessions": rows})

    async def search_sessions(
            self,
            query: Annotated[str, Field(min_length=1, description=(
                'Words to find, web-search style: several words, "a quoted phrase", or, '
                "-excluded."))],
            source: Source = None, project: Project = None, since: Since = None,
            limit: Annotated[int, Field(ge=1, le=200, description="Hits to return.")] = 20,
    ) -> dict[str, Any]:
        """Full-text search over prompts, replies, tool calls and tool results, best match
        first: each hit names its session (id, source, project, title), its kind (prompt,
        reply, tool_call, tool_result), when, and a snippet with the matches between **."""
        with reading("the search index"):
            hits = await session_search.search(self.db, query, source=source, project=project,
                                               since=_since(since), limit=limit)
        return plain({"query": query, "hits": hits})

    async def get_session(self, session_id: SessionId) -> dict[str, Any]:
        """One session in full: its row (title, project, working dir, status, times, counts,
        tokens, cost, unpriced models, lineage), `summary` and `llm_summary` (null until
        written)."""
        return plain(await self._known(session_id))

    async def get_session_messages(
            self, session_id: SessionId,
            limit: Annotated[int, Field(ge=1, le=1000, description="Messages to return.")] = 200,
            offset: Offset = 0) -> dict[str, Any]:
        """A session's prompts and replies in time order: role, when, model, text, and
        `copied` for the part a resumed or forked session copied from its origin."""
        await self._known(session_id)
        with reading(f"the messages of session {session_id}"):
            rows = await session_reads.session_messages(self.db, session_id, limit=limit,
                                                        offset=offset)
        return plain({"session_id": session_id, "offset": offset, "messages": rows})

    async def get_session_tools(self, session_id: SessionId) -> dict[str, Any]:
        """A session's tool calls in call order: name, outcome (ok, error, pending), when,
        the arguments (head) and an excerpt of the result."""
        await self._known(session_id)
        with reading(f"the tool calls of session {session_id}"):
            rows = await session_reads.session_tools(self.db, session_id)
        return plain({"session_id": session_id, "tool_calls": rows})

    async def get_session_files(self, session_id: SessionId) -> dict[str, Any]:
        """The files a session read or wrote, one per path in first-touch order: reads,
        writes, first and last touch, and the tools that touched it."""
        await self._known(session_id)
        with reading(f"the files of session {session_id}"):
            rows = await session_reads.session_files(self.db, session_id)
        return plain({"session_id": session_id, "files": rows})

    async def get_usage(self, by: By = "day", since: Since = None) -> dict[str, Any]:
        """Tokens and cost grouped by day (UTC), model, project, source or session, counted
        once per API response; `totals` sums every row. `unpriced_models` are models without
        a price (their cost counts as 0)."""
        with reading("usage"):
            rows = plain(await session_reads.usage(self.db, by=by, since=_since(since)))
        return {"by": by, "rows": rows, "totals": _totals(rows)}


def build_server(settings: Settings, db: Any) -> MCPServer:
    """The MCP server of sessionstream, reading sessions through ``db`` (an asyncpg pool or
    connection, owned by the caller) and the pipeline's state through ``settings``. Building
    it connects to nothing; each tool call reads when called."""
    server = MCPServer("sessionstream", instructions=INSTRUCTIONS, version=__version__,
                       log_level="WARNING")
    SessionTools(db).register(server)
    TrackingTools(settings).register(server, annotations=READ_ONLY)
    return server
