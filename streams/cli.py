"""The ``sessionstream`` command line: the only entry point users type.

Settings are read here, once, and handed down. Every :class:`SessionStreamError` becomes a
one-paragraph message on stderr and a non-zero exit (2 for configuration, 1 otherwise); other
exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from streams import __version__
from streams.errors import ConfigError, SessionStreamError
from streams.kafka_backoff import install_metadata_backoff
from streams.outages import install as install_outage_filter
from streams.producers.publisher import publish_once
from streams.producers.publishing import (
    MAX_BODY_BYTES,
    PublishRejected,
    check_idempotency_key,
    validate_body,
)
from streams.schema_export import export_schemas
from streams.settings import Settings, bootstrap_of, load_settings
from streams.stack import SERVERS, Stack
from streams.stack.embedded import KEEPS, choose_embedded_broker
from streams.tail import tail as tail_topic
from streams.topics import CATALOGUE

__all__ = ["cli", "fails_cleanly", "main", "settings_of"]

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


def running_broker(settings: Settings) -> str:
    """The configured broker, else the embedded one: started if it keeps its log on disk
    (Kafka), required to run already if it is in memory (Tansu: a broker started just for this
    would drop what it is given as soon as it stops)."""
    if settings.broker_url:
        return bootstrap_of(settings.broker_url)
    stack = Stack(settings)
    name, _ = choose_embedded_broker(settings)
    endpoint = stack.endpoint(name)
    if endpoint is None and name == "kafka":
        endpoint = stack.up(["kafka"], report=lambda line: click.echo(line, err=True))["kafka"]
    if endpoint is None:
        raise SessionStreamError(
            "no broker: SESSIONSTREAM_BROKER_URL is unset and the embedded broker (Tansu, in "
            "memory) is not running (start the main job with `sessionstream run`, or "
            "`sessionstream stack up tansu`)")
    return bootstrap_of(endpoint)


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


_TAILABLE = sorted([*CATALOGUE, *(f"{t}.dlq" for t in CATALOGUE)])


@cli.command()
@click.argument("topic", type=click.Choice(_TAILABLE), metavar="TOPIC")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record, not the end.")
@click.option("--follow/--no-follow", default=True, show_default=True,
              help="Keep waiting for new records (Ctrl-C to stop) or exit when caught up.")
@click.option("--session", "session_id", help="Only records of this session id.")
@click.option("-n", "--max", "limit", type=click.IntRange(min=1), help="Stop after N records.")
@click.pass_context
@fails_cleanly
def tail(ctx: click.Context, topic: str, from_beginning: bool, follow: bool,
         session_id: str | None, limit: int | None) -> None:
    """Print TOPIC as JSON lines (one record per line, with _key, _partition, _offset).

    \b
    Examples:
      sessionstream tail sessions.summaries.v1                      new summaries as they come
      sessionstream tail sessions.filtered.v1 --from-beginning --no-follow | jq .type
      sessionstream tail sessions.file-changes.v1.dlq --from-beginning   why lines were rejected
    """
    bootstrap = running_broker(settings_of(ctx))

    async def run() -> None:
        count = 0
        async for record in tail_topic(bootstrap, topic, from_beginning=from_beginning,
                                       follow=follow, session_id=session_id):
            click.echo(json.dumps(record, default=str))
            count += 1
            if limit is not None and count >= limit:
                return

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@cli.command()
@click.argument("source", type=click.File("rb"), default="-", metavar="[FILE|-]")
@click.option("-t", "--topic", required=True,
              help="Where to publish: sessions.file-changes.v1 (raw lines), sessions.events.v1 "
                   "(normalized events) or another input topic of the catalogue.")
@click.option("--dry-run", is_flag=True,
              help="Validate and print the events as they would be published; send nothing.")
@click.option("--idempotency-key", metavar="KEY",
              help="Retries with the same KEY publish once. Default: the content's sha256.")
@click.pass_context
@fails_cleanly
def publish(ctx: click.Context, source: Any, topic: str, dry_run: bool,
            idempotency_key: str | None) -> None:
    """Validate events against TOPIC's schema and publish them: all or nothing, once.

    FILE (default: stdin) holds one JSON event, a JSON array, {"events": [...]} or JSON lines.
    If any event is invalid, every invalid field is listed, nothing is published and the exit
    code is 1. A null optional field takes its default (a null list is []); a missing
    event_id is derived from the content. At most 1000 events and 5 MiB per call. The same
    input published again prints "already published" and sends nothing.

    \b
    Examples:
      sessionstream publish -t sessions.file-changes.v1 lines.jsonl
      cat batch.json | sessionstream publish -t sessions.events.v1 -
      sessionstream publish -t sessions.events.v1 --dry-run batch.json     validate only
      sessionstream publish -t sessions.events.v1 --idempotency-key job-42 batch.json
      sessionstream schemas export ./contract    the JSON Schema of every topic's events

    \b
    One event of sessions.file-changes.v1 (a raw transcript line; event_id may be left out):
      {"source": "claude-code", "session_id": "s1", "type": "file.line_appended",
       "occurred_at": "2026-03-05T12:00:00Z", "payload": {"path": "/p/s1.jsonl",
       "offset": 0, "line_no": 1, "line": "{\\"type\\": \\"user\\", ...}",
       "mtime": "2026-03-05T12:00:00Z"}}
    """
    try:  # every bad input is a PublishRejected: one "error:" line and exit 1, no traceback
        raw = source.read(MAX_BODY_BYTES + 1)
    except OSError as exc:
        raise PublishRejected(400, f"cannot read {source.name}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_BODY_BYTES:
        raise PublishRejected(413, f"{source.name} holds more than {MAX_BODY_BYTES} bytes, the "
                                   "limit per call; split it into smaller batches")
    key = check_idempotency_key(idempotency_key)
    batch = validate_body(topic, raw)
    if dry_run:
        for event in batch.events:
            click.echo(event.model_dump_json())
        click.echo(f"dry run: {len(batch.events)} valid event(s) for {batch.topic}; "
                   "nothing published", err=True)
        return
    bootstrap = running_broker(settings_of(ctx))
    receipt = asyncio.run(publish_once(bootstrap, batch, key))
    if receipt.replayed:
        click.echo(f"already published: {receipt.count} event(s) to {receipt.topic} at "
                   f"{receipt.published_at} (idempotency key {receipt.idempotency_key}); "
                   "nothing sent")
    else:
        click.echo(f"published {receipt.count} event(s) to {receipt.topic} "
                   f"(idempotency key {receipt.idempotency_key})")


def main() -> None:
    cli(prog_name="sessionstream")
