"""``sessionstream redrive TOPIC.dlq``: re-send dead letters to their topic after a fix.

The logic is :mod:`streams.redrive`; this module parses the options and prints the plan and
what was done.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import click

from app.cli_base import cli, fails_cleanly, settings_of
from app.topic_commands import running_broker
from streams.periods import PERIOD_SYNTAX, parse_since, parse_until
from streams.redrive import Plan, Selection, ledger_topic, plan_redrive, send_plan
from streams.topics import CATALOGUE

__all__ = ["redrive"]

SHOWN = 5  # dead letters listed by --dry-run


def _when(parse: object) -> object:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None
                 ) -> datetime | None:
        if value is None:
            return None
        try:
            return parse(value, datetime.now(UTC))  # type: ignore[operator, no-any-return]
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    return callback


@cli.command()
@click.argument("dlq", type=click.Choice(sorted(f"{t}.dlq" for t in CATALOGUE)),
                metavar="TOPIC.dlq")
@click.option("--consumer", "consumers", multiple=True, metavar="NAME",
              help="Only dead letters of this consumer (repeatable): parse_lines, "
                   "filter_events, summarize, or a projection such as postgres.session_tables.")
@click.option("--reason", metavar="TEXT",
              help="Only dead letters whose error or error type contains TEXT "
                   "(case-insensitive).")
@click.option("--since", callback=_when(parse_since), metavar="WHEN",
              help=f"Only dead letters that failed at or after WHEN: {PERIOD_SYNTAX}.")
@click.option("--until", callback=_when(parse_until), metavar="WHEN",
              help="Only dead letters that failed before WHEN (a bare date includes that day).")
@click.option("--dry-run", is_flag=True,
              help="Print what would be re-sent (per consumer and reason, and the first few); "
                   "send nothing.")
@click.option("--all-again", is_flag=True,
              help="Re-send the selected dead letters even if an earlier redrive sent them.")
@click.pass_context
@fails_cleanly
def redrive(ctx: click.Context, dlq: str, consumers: tuple[str, ...], reason: str | None,
            since: datetime | None, until: datetime | None, dry_run: bool,
            all_again: bool) -> None:
    """Re-send the dead letters of TOPIC.dlq to TOPIC, once the cause is fixed.

    Each is re-sent with its original key, value and partition and a header counting the
    attempt; one that fails again is dead-lettered again with attempts = 2, 3, ... Consumers
    dedupe by event id, so a record that had succeeded after all adds nothing. What was
    re-sent is recorded (after the broker acknowledged it) in TOPIC.dlq.redriven, so running
    redrive twice sends each dead letter once. A dead letter whose value was truncated (over
    256 KiB) or not kept byte for byte cannot be re-sent: it is reported and skipped.

    \b
    Examples:
      sessionstream status                                    dead letters per reason
      sessionstream redrive sessions.file-changes.v1.dlq --dry-run
      sessionstream redrive sessions.file-changes.v1.dlq --consumer parse_lines
      sessionstream redrive sessions.events.v1.dlq --reason "not JSON" --since 2d
      sessionstream redrive sessions.events.v1.dlq --all-again --until 2026-11-30
    """
    bootstrap = running_broker(settings_of(ctx))
    selection = Selection(frozenset(consumers), reason, since, until)
    plan = asyncio.run(plan_redrive(bootstrap, dlq, selection, all_again))
    _print_plan(plan, dry_run)
    if dry_run:
        click.echo(f"dry run: {len(plan.send)} dead letter(s) would be re-sent to "
                   f"{dlq.removesuffix('.dlq')}; nothing sent")
        return
    sent = asyncio.run(send_plan(bootstrap, plan))
    click.echo(f"redriven {sent} dead letter(s) to {dlq.removesuffix('.dlq')}"
               + (f" (recorded in {ledger_topic(dlq)})" if sent else ""))


def _print_plan(plan: Plan, dry_run: bool) -> None:
    per = Counter((letter.dead.consumer, letter.reason) for letter in plan.send)
    if per:
        click.echo(f"{'count':>6}  {'consumer':<26} reason")
        for (consumer, reason), count in sorted(per.items()):
            click.echo(f"{count:>6}  {consumer:<26} {reason}")
    if dry_run:
        for letter in plan.send[:SHOWN]:
            dead = letter.dead
            click.echo(f"  {letter.where} {dead.topic}[{dead.partition}]@{dead.offset} "
                       f"attempt {dead.attempts + 1} failed {dead.failed_at:%Y-%m-%d %H:%M:%S} "
                       f"{dead.error[:120]}")
        if len(plan.send) > SHOWN:
            click.echo(f"  ... and {len(plan.send) - SHOWN} more")
    for letter, why in plan.unrepeatable:
        click.echo(f"skipped {letter.where} ({letter.dead.consumer}, {letter.reason}): cannot "
                   f"be redriven: {why}", err=True)
    if plan.already:
        click.echo(f"skipped {len(plan.already)} dead letter(s) redriven before "
                   "(--all-again to re-send them)")
    if plan.unreadable:
        click.echo(f"skipped {plan.unreadable} record(s) of {plan.dlq} that are not dead "
                   "letters", err=True)
