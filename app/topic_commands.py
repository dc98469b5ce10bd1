"""Commands that talk to the topics directly: ``tail`` (read) and ``publish`` (write once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import click

from app.cli_base import cli, fails_cleanly, settings_of
from streams.errors import SessionStreamError
from streams.producers.publish_delivery import publish_once
from streams.producers.publish_validation import (
    MAX_BODY_BYTES,
    PublishRejected,
    check_idempotency_key,
    validate_body,
)
from streams.settings import Settings, bootstrap_of
from streams.stack import Stack
from streams.stack.embedded import choose_embedded_broker
from streams.tail import tail as tail_topic
from streams.topics import CATALOGUE

__all__ = ["publish", "running_broker", "tail"]


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
