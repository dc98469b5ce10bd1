"""``sessionstream stack`` (the local servers) and ``sessionstream schemas`` (the contract).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from app.cli_base import cli, fails_cleanly, settings_of
from streams.schema_export import export_schemas
from streams.stack import SERVERS, Stack
from streams.stack.embedded import KEEPS, choose_embedded_broker

__all__ = ["schemas", "stack"]


@cli.group()
def stack() -> None:
    """Start, stop and inspect the local stack of real servers (no Docker needed).

    \b
    Servers: kafka (Apache Kafka 4.1, KRaft), tansu (embedded Kafka-compatible broker),
    postgres (embedded PostgreSQL), neo4j (Neo4j 5.26 community, Bolt), prometheus,
    jaeger (an OTLP trace receiver with a query API, built with Go on first use).
    Data, logs and pids live under $SESSIONSTREAM_STATE_DIR/stack/<server>/; jars are cached
    under $SESSIONSTREAM_CACHE_DIR/jars/ after the first download from Maven Central, the
    Jaeger binary under $SESSIONSTREAM_CACHE_DIR/bin/.
    """


_names = click.argument("servers", nargs=-1, type=click.Choice(list(SERVERS)))


@stack.command("up")
@_names
@click.pass_context
@fails_cleanly
def stack_up(ctx: click.Context, servers: tuple[str, ...]) -> None:
    """Start SERVERS (default: all) and wait until each is ready. Safe to run twice.

    \b
    Examples:
      sessionstream stack up                  everything
      sessionstream stack up postgres tansu   just the embedded default
    """
    settings = settings_of(ctx)
    click.echo(f"starting {', '.join(servers or SERVERS)} under {settings.state_dir}/stack ...")
    Stack(settings).up(servers or None, report=click.echo)


@stack.command("down")
@_names
@click.pass_context
@fails_cleanly
def stack_down(ctx: click.Context, servers: tuple[str, ...]) -> None:
    """Stop SERVERS (default: all) and every process they started. Data is kept."""
    Stack(settings_of(ctx)).down(servers or None, report=click.echo)


@stack.command("status")
@click.pass_context
@fails_cleanly
def stack_status(ctx: click.Context) -> None:
    """Print each server's state, pid, endpoint and data dir. Exit 0 only if all are ready."""
    settings = settings_of(ctx)
    statuses = Stack(settings).status()
    click.echo(f"{'server':<11} {'state':<9} {'pid':>8}  {'endpoint':<36} data")
    for status in statuses:
        click.echo(status.line())
    if settings.broker_url:
        click.echo(f"broker for run/backfill: {settings.broker_url} (SESSIONSTREAM_BROKER_URL)")
    else:
        name, warning = choose_embedded_broker(settings)
        click.echo(f"broker for run/backfill: embedded {name}, which {KEEPS[name]}")
        if warning:
            click.echo(warning, err=True)
    if not all(s.ready for s in statuses):
        sys.exit(3)


@cli.group()
def schemas() -> None:
    """The topics' JSON Schemas (the contract downstream consumers code against)."""


@schemas.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@fails_cleanly
def schemas_export(directory: Path) -> None:
    """Write a JSON Schema for the key and value of every topic (and its .dlq) to DIRECTORY.

    \b
    Files: <topic>.key.json, <topic>.value.json, <topic>.dlq.value.json and index.json
    (topics, partitions, configs). Example:
      sessionstream schemas export ./contract && ls ./contract
    """
    written = export_schemas(directory)
    click.echo(f"wrote {len(written)} files to {directory}")
