"""Commands on the stores: ``replay`` (rebuild one), ``status`` (positions, lag, dead letters)
and ``usage`` (token and cost totals).
"""

from __future__ import annotations

import asyncio
import json
import sys

import click

from app.cli_base import cli, fails_cleanly, settings_of
from app.endpoints import inspect_endpoints, resolve_endpoints
from app.health import check_health
from app.projection_set import build_projections, resolve_name
from app.replay import replay as replay_projection
from app.status import collect_report
from projections.postgres.usage import GROUPINGS, usage_rows
from streams.settings import Settings
from streams.stack import Stack

__all__ = ["replay", "status", "usage"]


@cli.command()
@click.argument("projection")
@click.option("--force", is_flag=True,
              help="Replay even when the topic holds less than the store applied (rows the "
                   "log cannot rebuild are lost).")
@click.pass_context
@fails_cleanly
def replay(ctx: click.Context, projection: str, force: bool) -> None:
    """Rebuild PROJECTION from the topics: reset its data and position, re-apply everything.

    PROJECTION is a projection's name or alias, e.g. `postgres` (postgres.session_tables) or
    `neo4j` (neo4j.session_graph); an unknown one lists every registered projection.
    Stop `sessionstream run` first: two writers of one store would fight over its position.
    Progress is printed as it goes; the result equals the live projection. Refused, with the
    reason, when the topic ends before what the store applied (a broker that lost its log).
    """
    settings = settings_of(ctx)
    endpoints = resolve_endpoints(settings, (), click.echo)
    built = build_projections(settings, endpoints)
    chosen = built[resolve_name(projection, built)]
    asyncio.run(replay_projection(chosen, endpoints.bootstrap, report=click.echo, force=force,
                                  inactivity_timeout_s=settings.inactivity_timeout_s))


@cli.command()
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per projection and agent; its dead letters per reason "
                   'are under "dead_letter_reasons".')
@click.option("--check", is_flag=True,
              help="Instead: the deep health check (broker, every store, lag over "
                   "SESSIONSTREAM_HEALTH_MAX_LAG, dead letters), the same as the worker's "
                   "GET /api/v1/health; exit 0 when healthy, 1 when not.")
@click.pass_context
@fails_cleanly
def status(ctx: click.Context, as_json: bool, check: bool) -> None:
    """Per projection and agent: position, lag and dead letters; then the dead letters per
    topic, consumer and reason (count, last failure, most attempts).

    Reads the stores' own positions (so it works whether or not `run` is running) and, when
    the broker is reachable, the topics' end offsets and dead-letter topics. Re-send dead
    letters after a fix with `sessionstream redrive TOPIC.dlq`.
    """
    settings = settings_of(ctx)
    if check:
        _check(settings, as_json)
        return
    report = asyncio.run(collect_report(settings))
    if as_json:
        for row in report.rows:
            reasons = [d.as_dict() for d in report.dead_letters if d.consumer == row.consumer]
            click.echo(json.dumps({**row.as_dict(), "dead_letter_reasons": reasons}))
        return
    click.echo(f"{'consumer':<26} {'topic':<26} {'position':>10} {'end':>10} {'lag':>8} "
               f"{'dead letters':>12}")
    for row in report.rows:
        click.echo(row.line())
    if report.dead_letters:
        click.echo(f"\ndead letters\n{'topic':<30} {'consumer':<26} {'count':>6} "
                   f"{'last failed_at':<19} {'attempts':>8}  reason")
        for dead in report.dead_letters:
            click.echo(dead.line())


def _check(settings: Settings, as_json: bool) -> None:
    """``status --check``: print the health report; exit 1 unless healthy."""
    endpoints, missing = inspect_endpoints(settings)
    if missing:
        for line in missing:
            click.echo(f"{line}: UNHEALTHY", err=not as_json)
        sys.exit(1)
    health = asyncio.run(check_health(settings, endpoints))
    if as_json:
        click.echo(json.dumps(health.as_dict()))
    else:
        for line in health.lines():
            click.echo(line)
    if not health.healthy:
        sys.exit(1)


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
    rows = asyncio.run(usage_rows(dsn, by))
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
