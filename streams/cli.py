"""The ``sessionstream`` command line: the only entry point users type.

Settings are read here, once, and handed down. Every :class:`SessionStreamError` becomes a
one-paragraph message on stderr and a non-zero exit (2 for configuration, 1 otherwise); other
exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from streams import __version__
from streams.errors import ConfigError, SessionStreamError
from streams.settings import Settings, load_settings
from streams.stack import SERVERS, Stack

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


def _fails_cleanly(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except SessionStreamError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _settings(ctx: click.Context) -> Settings:
    if ctx.obj is None:
        ctx.obj = load_settings()
    return ctx.obj  # type: ignore[no-any-return]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sessionstream")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Turn AI coding-agent sessions into data you can query, graph and count.

    Producers publish session-file changes to Kafka topics; faust agents parse, deduplicate and
    summarize them; projections write Postgres tables, a Neo4j graph and OpenTelemetry metrics.

    Configuration comes from SESSIONSTREAM_* environment variables (see the README). With none
    set, everything runs on the embedded default under the state dir.

    \b
    Quick start:
      sessionstream stack up        start the local servers (Kafka, Tansu, Postgres, Neo4j, ...)
      sessionstream stack status    see what runs where
      sessionstream run             start the main job on the embedded default
      sessionstream backfill        ingest everything once, wait until caught up, exit
      sessionstream usage --by day  token and cost totals from Postgres
    """
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")


@cli.group()
def stack() -> None:
    """Start, stop and inspect the local stack of real servers (no Docker needed).

    \b
    Servers: kafka (Apache Kafka 4.1, KRaft), tansu (embedded Kafka-compatible broker),
    postgres (embedded PostgreSQL), neo4j (Neo4j 5.26 community, Bolt), prometheus.
    Data, logs and pids live under $SESSIONSTREAM_STATE_DIR/stack/<server>/; jars are cached
    under $SESSIONSTREAM_CACHE_DIR/jars/ after the first download from Maven Central.
    """


_names = click.argument("servers", nargs=-1, type=click.Choice(list(SERVERS)))


@stack.command("up")
@_names
@click.pass_context
@_fails_cleanly
def stack_up(ctx: click.Context, servers: tuple[str, ...]) -> None:
    """Start SERVERS (default: all) and wait until each is ready. Safe to run twice.

    \b
    Examples:
      sessionstream stack up                  everything
      sessionstream stack up postgres tansu   just the embedded default
    """
    settings = _settings(ctx)
    click.echo(f"starting {', '.join(servers or SERVERS)} under {settings.state_dir}/stack ...")
    Stack(settings).up(servers or None, report=click.echo)


@stack.command("down")
@_names
@click.pass_context
@_fails_cleanly
def stack_down(ctx: click.Context, servers: tuple[str, ...]) -> None:
    """Stop SERVERS (default: all) and every process they started. Data is kept."""
    Stack(_settings(ctx)).down(servers or None, report=click.echo)


@stack.command("status")
@click.pass_context
@_fails_cleanly
def stack_status(ctx: click.Context) -> None:
    """Print each server's state, pid, endpoint and data dir. Exit 0 only if all are ready."""
    statuses = Stack(_settings(ctx)).status()
    click.echo(f"{'server':<11} {'state':<9} {'pid':>8}  {'endpoint':<36} data")
    for status in statuses:
        click.echo(status.line())
    if not all(s.ready for s in statuses):
        sys.exit(3)


def main() -> None:
    cli(prog_name="sessionstream")
