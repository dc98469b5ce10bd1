"""``sessionstream run`` and ``backfill``: the worker process, its helpers and its stop.

Endpoints left unset are the embedded default: the local stack's broker (Kafka, or Tansu
without Java) and PostgreSQL, started when needed.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import click
import faust

from app.cli_base import cli, fails_cleanly, settings_of
from app.endpoints import Endpoints, remember_log, resolve_endpoints
from app.pipeline import Pipeline
from app.sources import PRODUCERS
from streams.admin import ensure_topics
from streams.errors import ConfigError
from streams.periods import PERIOD_SYNTAX, parse_since, parse_until
from streams.producers.window import Window
from streams.settings import Settings
from streams.stack.embedded import KEEPS

__all__ = ["backfill", "run", "start_worker"]


def start_worker(settings: Settings, endpoints: Endpoints, backfill: bool,
                  helper: bool = False, window: Window | None = None) -> None:
    asyncio.run(ensure_topics(endpoints.bootstrap))
    report = _quiet if helper else click.echo
    pipeline = Pipeline(settings, endpoints, backfill=backfill, report=report, helper=helper)
    for producer in pipeline.producers if window is not None else ():
        producer.limit_to(window, report)  # skipped sessions are reported, never dropped silently
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
    flight is read again at the next start (the same as after a crash).

    Without faust's spinner: it writes cursor-control codes even into a pipe or a log file,
    and the worker prints its own plain progress lines."""

    helpers: list[subprocess.Popen[bytes]] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None

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
    command = [sys.executable, "-c", "from app.cli import main; main()", "run",
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
    help="Root to read, as PATH or KIND=PATH (repeatable). Default: SESSIONSTREAM_SOURCES, "
         "else what each KIND reads by default: "
         + "; ".join(f"{kind}: {cls.help_text}" for kind, cls in PRODUCERS.items()) + ".")


_workers = click.option(
    "--workers", type=click.IntRange(1, 64), default=None,
    help="Worker processes sharing the partitions (default: SESSIONSTREAM_WORKERS, else 1). "
         "One watches the sources; the others parse, filter, summarize and project beside "
         "it, so a backfill uses more than one core. Needs Kafka (the embedded default with "
         "Java).")


def _period(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            parse_since(value, datetime.now(UTC))
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    return value


_since = click.option(
    "--since", metavar="WHEN", callback=_period,
    help="Read only sessions active since WHEN (default: SESSIONSTREAM_SINCE, else "
         f"everything): {PERIOD_SYNTAX}. A session whose files were all last modified before "
         "WHEN is skipped whole and reported, not checkpointed: it is read in full once "
         "written to again. Files already read go on. Examples: --since 30d, --since 12h, "
         "--since 2026-11-01.")


def _window(settings: Settings, since: str | None, until: str | None = None) -> Window:
    """The reading window of ``--since``/``--until`` (``--since`` over SESSIONSTREAM_SINCE)."""
    now, text = datetime.now(UTC), since or settings.since
    return Window(since=parse_since(text, now) if text else None,
                  until=parse_until(until, now) if until else None,
                  since_label=f"--since {since}" if since else f"SESSIONSTREAM_SINCE={text}",
                  until_label=f"--until {until}")


@cli.command()
@_sources
@_workers
@_since
@click.option("--helper", is_flag=True, hidden=True,
              help="Consume only (started by another worker's --workers).")
@click.pass_context
@fails_cleanly
def run(ctx: click.Context, sources: tuple[Path, ...], workers: int | None,
        since: str | None, helper: bool) -> None:
    """Run the main job until Ctrl-C: watch session files, parse, project.

    With no broker or database configured it runs on the embedded default, started if needed
    under the state dir: Apache Kafka, whose log is kept on disk (so a restart re-reads
    nothing and loses nothing; Tansu, in memory only, when Java 17+ is missing, with a
    warning), and an embedded PostgreSQL. The Neo4j graph is built when
    SESSIONSTREAM_NEO4J_URI is set or `sessionstream stack up neo4j` runs. New lines appear in
    the `sessions`, `messages`, `tool_calls`, `files_touched` and `usage` tables within
    seconds; see them with `sessionstream usage`, `sessionstream status`, any Postgres client
    on the printed DSN, and the metrics on http://127.0.0.1:9464/metrics.

    \b
    A new install reads only the last period, if one is given:
      sessionstream run --since 30d           sessions active in the last 30 days
      SESSIONSTREAM_SINCE=2w sessionstream run
    Files already read (checkpointed) always go on; new sessions are always read.
    """
    settings = _with_workers(settings_of(ctx), workers)
    endpoints = resolve_endpoints(settings, sources, _quiet if helper else click.echo)
    start_worker(settings, endpoints, backfill=False, helper=helper,
                 window=_window(settings, since))


def _backfill_help() -> str:
    """``backfill --help``, with one ``--source KIND=PATH`` example per registered source."""
    examples = "".join(f"  sessionstream backfill --source {kind}={cls.example_root}\n"
                       for kind, cls in PRODUCERS.items())
    return (
        "Re-read every source from the start, wait until every projection caught up, exit.\n\n"
        "Safe to repeat: events have deterministic ids and every projection skips what it "
        "applied.\n\n"
        "\b\nExamples:\n"
        "  sessionstream backfill                                  your own sessions\n"
        "  sessionstream demo                                      the bundled samples\n"
        f"{examples}"
        "  sessionstream backfill --workers 2                      two processes, two cores\n"
        "  sessionstream backfill --since 30d                      sessions of the last 30 days\n"
        "  sessionstream backfill --since 2026-11-01 --until 2026-11-30   November's sessions\n"
        "\n\b\nWhole sessions are kept or skipped, with their sub-agent files: --since skips a "
        "session\nlast modified before it, --until one whose first line is dated after it.\n"
        "What is skipped is reported (files, MB, the bound).\n")


@cli.command(help=_backfill_help())
@_sources
@_workers
@_since
@click.option("--until", metavar="WHEN", callback=_period,
              help=f"Skip sessions whose first activity is after WHEN: {PERIOD_SYNTAX}; a bare "
                   "date includes that day. Example: --until 2026-11-30.")
@click.pass_context
@fails_cleanly
def backfill(ctx: click.Context, sources: tuple[Path, ...], workers: int | None,
             since: str | None, until: str | None) -> None:
    """See :func:`_backfill_help` (its examples come from the sources registry)."""
    settings = _with_workers(settings_of(ctx), workers)
    start_worker(settings, resolve_endpoints(settings, sources, click.echo), backfill=True,
                 window=_window(settings, since, until))


def _with_workers(settings: Settings, workers: int | None) -> Settings:
    return settings if workers is None else settings.model_copy(update={"workers": workers})
