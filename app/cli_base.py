"""The ``sessionstream`` command group and what every command shares: settings and errors.

Commands live beside it, one module per family (:mod:`app.stack_commands`,
:mod:`app.topic_commands`, :mod:`app.worker_commands`, :mod:`app.store_commands`);
:mod:`app.cli` gathers them and is the one entry point. Settings are read here, once, and
handed down. Every :class:`SessionStreamError` becomes a
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
from streams.kafka_backoff import install_metadata_backoff
from streams.outages import install as install_outage_filter
from streams.settings import Settings, load_settings

__all__ = ["cli", "fails_cleanly", "settings_of"]

F = TypeVar("F", bound=Callable[..., Any])


def fails_cleanly(func: F) -> F:
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


def settings_of(ctx: click.Context) -> Settings:
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
    install_outage_filter()  # a broker outage is a few lines, not one per retry
    install_metadata_backoff()  # ...and a few attempts per second, not a busy loop
