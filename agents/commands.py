"""The pipeline's commands (``run``, ``backfill``, ``replay``, ``status``, ``usage``) added to
the ``sessionstream`` CLI.

They live here, not in :mod:`streams.cli`, because they assemble agents and projections and
imports flow one way (schemas <- streams <- projections <- agents). Endpoints left unset are the
embedded default: the local stack's broker (Kafka, or Tansu without Java) and PostgreSQL,
started when needed.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

import asyncpg
import click
import faust

from agents.endpoints import Endpoints, remember_log, resolve_endpoints
from agents.projection_set import build_projections, resolve_name
from agents.replay import replay as replay_projection
from agents.sources import PRODUCERS
from agents.status import collect_status
from agents.worker import Pipeline
from streams.admin import ensure_topics
from streams.cli import cli, fails_cleanly, settings_of
from streams.errors import ConfigError
from streams.settings import Settings
from streams.stack import Stack
from streams.stack.embedded import KEEPS

__all__ = ["main"]


def _start_worker(settings: Settings, endpoints: Endpoints, backfill: bool,
                  helper: bool = False) -> None:
    asyncio.run(ensure_topics(endpoints.bootstrap))
    report = _quiet if helper else click.echo
    pipeline = Pipeline(settings, endpoints, backfill=backfill, report=report, helper=helper)
    if not helper:
        kept = (f" (embedded {endpoints.embedded_broker}: "
                f"{KEEPS[endpoints.embedded_broker]})" if endpoints.embedded_broker else "")
        click.echo(f"broker:   {endpoints.broker_url}{kept}\npostgres: {endpoints.postgres_dsn}\n"
                   f"neo4j:    {endpoints.neo4j_uri or 'off (not configured, not running)'}")
        if settings.workers > 1:
            click.echo(f"workers:  {settings.workers} processes sharing the partitions")
        if endpoints.fresh_log:
            click.echo("the broker's log is new to this state dir (a first start, an upgrade, "
                       "or a broker that lost its log): reading every source from the start; "
                       "rows already in the stores are kept and converge")
            asyncio.run(pipeline.start_over())
            remember_log(settings, endpoints)
    helpers = [] if helper else _spawn_helpers(settings, endpoints)
    pipeline.helpers = len(helpers)
    _tune_gc()
    # Plain lines on the terminal: faust would otherwise log every print as "[WARNING] b'...'".
    worker = _Worker(pipeline.app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.helpers = helpers
    try:
        worker.execute_from_commandline()
    finally:
        _stop_helpers(helpers)


def _quiet(_: str) -> None:
    pass


STOP_GRACE_S = 8.0


class _Worker(faust.Worker):  # type: ignore[misc]
    """faust's worker with a bound on stopping: Ctrl-C (or SIGTERM) starts the usual clean
    stop, and a process still running :data:`STOP_GRACE_S` later exits anyway, so no stuck
    client call can hold Ctrl-C. Nothing is lost by it: every stage commits only what the
    broker confirmed and every store keeps its position with its data, so whatever was in
    flight is read again at the next start (the same as after a crash)."""

    helpers: list[subprocess.Popen[bytes]] = []

    def _on_sigint(self) -> None:
        self._arm_deadline()
        super()._on_sigint()

    def _on_sigterm(self) -> None:
        self._arm_deadline()
        super()._on_sigterm()

    def _arm_deadline(self) -> None:
        if getattr(self, "_deadline", None) is None:
            self._deadline = threading.Timer(STOP_GRACE_S, self._exit_now)
            self._deadline.daemon = True
            self._deadline.start()

    def _exit_now(self) -> None:
        print(f"still stopping after {STOP_GRACE_S:.0f} s: exiting now; what was in flight "
              "is read again at the next start", file=sys.stderr, flush=True)
        for process in self.helpers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        sys.stdout.flush()
        os._exit(0)


def _spawn_helpers(settings: Settings, endpoints: Endpoints) -> list[subprocess.Popen[bytes]]:
    """``settings.workers - 1`` consume-only processes (``run --helper``) in this one's
    environment: they join the same consumer groups, so the broker spreads the partitions."""
    if settings.workers <= 1:
        return []
    if endpoints.embedded_broker == "tansu":
        raise ConfigError("--workers above 1 needs Kafka (Tansu, the broker used without "
                          "Java, under-reports end offsets, so a backfill could not tell "
                          "when its helpers are done); install Java 17+ or use 1 worker")
    command = [sys.executable, "-c", "from agents.commands import main; main()", "run",
               "--helper"]
    return [subprocess.Popen(command, stdin=subprocess.DEVNULL)
            for _ in range(settings.workers - 1)]


def _stop_helpers(helpers: list[subprocess.Popen[bytes]]) -> None:
    """Stop the helpers as Ctrl-C would (their pending summaries are published), then wait."""
    for process in helpers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in helpers:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tune_gc() -> None:
    """Fewer cyclic-GC passes for a process that allocates a few objects per record: what
    was imported and built at start-up is frozen out of every later pass, and the youngest
    generation is collected every 50,000 allocations instead of 700 (measured on the hot
    path: each pass walked every live object, ~20% of the parse time). Reference counting
    still frees almost everything at once; only cycles wait longer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


_sources = click.option(
    "--source", "sources", multiple=True, type=click.Path(path_type=Path),
    help="Root to read, as PATH or KIND=PATH (repeatable; kinds: "
         f"{', '.join(PRODUCERS)}). Default: SESSIONSTREAM_SOURCES, else each source's own "
         "paths (~/.claude/projects, ~/.codex/sessions, ~/.gemini/tmp, ~/.gemini/antigravity, "
         "~/.gemini/antigravity-cli, $SESSIONSTREAM_SKILL_ROOTS).")


_workers = click.option(
    "--workers", type=click.IntRange(1, 64), default=None,
    help="Worker processes sharing the partitions (default: SESSIONSTREAM_WORKERS, else 1). "
         "One watches the sources; the others parse, filter, summarize and project beside "
         "it, so a backfill uses more than one core. Needs Kafka (the embedded default with "
         "Java).")


@cli.command()
@_sources
@_workers
@click.option("--helper", is_flag=True, hidden=True,
              help="Consume only (started by another worker's --workers).")
@click.pass_context
@fails_cleanly
def run(ctx: click.Context, sources: tuple[Path, ...], workers: int | None,
        helper: bool) -> None:
    """Run the main job until Ctrl-C: watch session files, parse, project.

    With no broker or database configured it runs on the embedded default, started if needed
    under the state dir: Apache Kafka, whose log is kept on disk (so a restart re-reads
    nothing and loses nothing; Tansu, in memory only, when Java 17+ is missing, with a
    warning), and an embedded PostgreSQL. The Neo4j graph is built when
    SESSIONSTREAM_NEO4J_URI is set or `sessionstream stack up neo4j` runs. New lines appear in
    the `sessions`, `messages`, `tool_calls`, `files_touched` and `usage` tables within
    seconds; see them with `sessionstream usage`, `sessionstream status`, any Postgres client
    on the printed DSN, and the metrics on http://127.0.0.1:9464/metrics.
    """
    settings = _with_workers(settings_of(ctx), workers)
    endpoints = resolve_endpoints(settings, sources, _quiet if helper else click.echo)
    _start_worker(settings, endpoints, backfill=False, helper=helper)


@cli.command()
@_sources
@_workers
@click.pass_context
@fails_cleanly
def backfill(ctx: click.Context, sources: tuple[Path, ...], workers: int | None) -> None:
    """Re-read every source from the start, wait until every projection caught up, exit.

    Safe to repeat: events have deterministic ids and every projection skips what it applied.

    \b
    Examples:
      sessionstream backfill                                  your own sessions
      sessionstream backfill --source ../shared/fixtures/sessions/claude-code
      sessionstream backfill --source codex=~/.codex/sessions
      sessionstream backfill --source gemini-cli=~/.gemini/tmp
      sessionstream backfill --source antigravity=~/.gemini/antigravity
      sessionstream backfill --source session-skill=~/code    every agents/sessions/<slug>/
      sessionstream backfill --workers 2                      two processes, two cores
    """
    settings = _with_workers(settings_of(ctx), workers)
    _start_worker(settings, resolve_endpoints(settings, sources, click.echo), backfill=True)


def _with_workers(settings: Settings, workers: int | None) -> Settings:
    return settings if workers is None else settings.model_copy(update={"workers": workers})


@cli.command()
@click.argument("projection")
@click.option("--force", is_flag=True,
              help="Replay even when the topic holds less than the store applied (rows the "
                   "log cannot rebuild are lost).")
@click.pass_context
@fails_cleanly
def replay(ctx: click.Context, projection: str, force: bool) -> None:
    """Rebuild PROJECTION from the topics: reset its data and position, re-apply everything.

    PROJECTION is `postgres` (postgres.session_tables) or `neo4j` (neo4j.session_graph).
    Stop `sessionstream run` first: two writers of one store would fight over its position.
    Progress is printed as it goes; the result equals the live projection. Refused, with the
    reason, when the topic ends before what the store applied (a broker that lost its log).
    """
    settings = settings_of(ctx)
    endpoints = resolve_endpoints(settings, (), click.echo)
    built = build_projections(settings, endpoints)
    chosen = built[resolve_name(projection, built)]
    asyncio.run(replay_projection(chosen, endpoints.bootstrap, report=click.echo, force=force))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per projection.")
@click.pass_context
@fails_cleanly
def status(ctx: click.Context, as_json: bool) -> None:
    """Per projection and agent: position, lag and dead letters.

    Reads the stores' own positions (so it works whether or not `run` is running) and, when
    the broker is reachable, the topics' end offsets and dead-letter counts.
    """
    settings = settings_of(ctx)
    rows = asyncio.run(collect_status(settings))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.as_dict()))
        return
    click.echo(f"{'consumer':<26} {'topic':<26} {'position':>10} {'end':>10} {'lag':>8} "
               f"{'dead letters':>12}")
    for row in rows:
        click.echo(row.line())


GROUPINGS = {
    "session": ("s.id", "s.id"),
    "day": ("u.day::text", "u.day::text"),
    "model": ("u.model", "u.model"),
    "project": ("coalesce(s.project, '?')", "coalesce(s.project, '?')"),
}


@cli.command()
@click.option("--by", "by", type=click.Choice(list(GROUPINGS)), default="session",
              show_default=True, help="How to group the totals.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
@click.pass_context
@fails_cleanly
def usage(ctx: click.Context, by: str, as_json: bool) -> None:
    """Token and cost totals from Postgres (deduplicated: one row per API response).

    Works whether or not `run` is running; on the embedded default it starts the embedded
    PostgreSQL if needed.
    """
    settings = settings_of(ctx)
    dsn = (settings.postgres_dsn.get_secret_value() if settings.postgres_dsn
           else Stack(settings).up(["postgres"], report=lambda _: None)["postgres"])
    rows = asyncio.run(_usage_rows(dsn, by))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str))
        return
    click.echo(f"{by:<40} {'input':>12} {'output':>10} {'cache_write':>12} {'cache_read':>14}"
               f" {'cost_usd':>10}")
    for row in rows:
        click.echo(f"{str(row['key'])[:40]:<40} {row['input_tokens']:>12} "
                   f"{row['output_tokens']:>10} {row['cache_creation_tokens']:>12} "
                   f"{row['cache_read_tokens']:>14} {row['cost_usd']:>10.4f}")
    unpriced = sorted({m for row in rows for m in row["unpriced_models"]})
    if unpriced:
        click.echo(f"not priced (unknown models, cost counted as 0): {', '.join(unpriced)}",
                   err=True)


async def _usage_rows(dsn: str, by: str) -> list[dict[str, object]]:
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


def main() -> None:
    logging.getLogger("faust").setLevel(logging.WARNING)
    cli(prog_name="sessionstream")


if __name__ == "__main__":
    sys.exit(main())
