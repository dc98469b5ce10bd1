"""``sessionstream search``: full-text search of the sessions in Postgres, from the terminal.

The search itself is :func:`projections.postgres.session_search.search`; this module reads the
options, finds Postgres (starting the embedded one if needed, as ``usage`` does) and prints.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

import asyncpg
import click

from app.cli_base import cli, fails_cleanly, settings_of
from projections.postgres.session_reads import translated_errors
from projections.postgres.session_search import search as search_sessions
from streams.settings import Settings
from streams.stack import Stack

__all__ = ["search"]


def _since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or date-time "
                                 "(2026-03-01 or 2026-03-01T09:00:00Z)") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _dsn(settings: Settings) -> str:
    if settings.postgres_dsn:
        return settings.postgres_dsn.get_secret_value()
    return Stack(settings).up(["postgres"], report=lambda _: None)["postgres"]


async def _search(dsn: str, query: str, **options: Any) -> list[dict[str, Any]]:
    with translated_errors():
        conn = await asyncpg.connect(dsn)
    try:
        return await search_sessions(conn, query, **options)
    finally:
        await conn.close()


def _line(hit: dict[str, Any]) -> str:
    when = hit["at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M") if hit["at"] else "-"
    title = f"  {hit['title']}" if hit["title"] else ""
    return (f"{hit['rank']:>6.3f}  {hit['session_id']}  {hit['kind']:<11} {when}{title}\n"
            f"        {hit['snippet']}")


@cli.command()
@click.argument("query")
@click.option("--source", help="Only sessions of this source (claude-code, codex, ...).")
@click.option("--project", help="Only sessions of this project.")
@click.option("--since", callback=_since,
              help="Only hits at or after this ISO 8601 date or date-time (UTC unless given).")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True,
              help="How many hits to print.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hit.")
@click.pass_context
@fails_cleanly
def search(ctx: click.Context, query: str, source: str | None, project: str | None,
           since: datetime | None, limit: int, as_json: bool) -> None:
    """Search prompts, replies, tool calls and tool results; best hits first.

    QUERY is read like a web search: words (all must appear; stemmed, so "failing" finds
    "fails"), "a quoted phrase", `or` between alternatives, -word to exclude. Each hit is
    printed as its rank, session, kind (prompt, reply, tool_call, tool_result), time (UTC)
    and title, then a snippet with the matched words between ** marks. Works whether or not
    `run` is running; on the embedded default it starts the embedded PostgreSQL if needed.
    Exit status: 0 when something was found, 1 when nothing was (or Postgres cannot be
    read: the message says so), 2 on a usage error.

    \b
    Examples:
      sessionstream search "flaky test"
      sessionstream search '"connection refused" -docker' --source codex
      sessionstream search 'migration or schema' --project shop --since 2026-03-01
      sessionstream search pytest --limit 5 --json
    """
    hits = asyncio.run(_search(_dsn(settings_of(ctx)), query, source=source,
                               project=project, since=since, limit=limit))
    for hit in hits:
        click.echo(json.dumps(hit, default=str) if as_json else _line(hit))
    if not hits:
        click.echo(f"no hits for {query!r}", err=True)
        sys.exit(1)
