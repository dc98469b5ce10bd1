"""Rebuild one projection from its topic: reset its data and position, consume from offset 0.

The topics are the source of truth, so a projection can always be thrown away and rebuilt.
``replay`` resets the store (data and positions in one go), then feeds it every record of its
topic through the ordinary :class:`ProjectionRunner` (same batching, dead-lettering and
same-transaction positions), reporting progress, until the runner has passed the end offsets
read at the start *and* a fetch came back empty (the embedded broker under-reports end offsets
after multi-record batches, so "reached the reported end" alone is not enough).

Stop the live worker's copy of the projection first (``sessionstream run``): two writers of one
store would fight over its positions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.lifecycle import close_idle_sessions, closers_of
from projections.base import Projection
from projections.runner import ProjectionRunner
from streams.errors import LogBehindStore
from streams.lag import end_offsets

__all__ = ["ReplayResult", "replay"]


@dataclass(frozen=True)
class ReplayResult:
    projection: str
    records: int
    applied: int
    dead_letters: int
    seconds: float


async def replay(projection: Projection, bootstrap: str,
                 report: Callable[[str], None] = print, every: float = 1.0,
                 force: bool = False, inactivity_timeout_s: float | None = None) -> ReplayResult:
    """Reset ``projection`` and rebuild it from the beginning of its topic.

    Refuses (:class:`LogBehindStore`, nothing reset) when a partition of the topic ends before
    the position the store applied up to, unless ``force``: that log cannot rebuild the rows.
    With ``inactivity_timeout_s``, a projection that keeps sessions closes the idle ones at the
    end, as the live worker would (:mod:`app.lifecycle`)."""
    started = time.monotonic()
    await projection.start()
    try:
        ends = await end_offsets(bootstrap, projection.source.name)
        if not force:
            await _refuse_short_log(projection, ends)
        await projection.reset()
        total = sum(ends.values())
        report(f"replaying {projection.name} from {projection.source.name} "
               f"(about {total} records)")
        runner = ProjectionRunner(projection, bootstrap,
                                  group_id=f"sessionstream.{projection.name}.replay")
        task = asyncio.create_task(runner.run())
        try:
            last_report = time.monotonic()
            while True:
                await asyncio.sleep(0.2)
                if task.done():
                    task.result()  # the runner died: raise its error
                done = sum(min(runner.next_offsets.get(p, 0), end) for p, end in ends.items())
                reached = all(runner.next_offsets.get(p, 0) >= end
                              for p, end in ends.items() if end > 0)
                if reached and runner.idle:
                    break
                if time.monotonic() - last_report >= every:
                    last_report = time.monotonic()
                    rate = done / max(last_report - started, 1e-9)
                    report(f"  {done}/{total} records ({100 * done / max(total, 1):.0f}%), "
                           f"{rate:,.0f}/s")
        finally:
            runner.stop()
            await task
        if inactivity_timeout_s is not None:
            closed = await close_idle_sessions(closers_of([projection]), inactivity_timeout_s)
            if closed.get(projection.name):
                report(f"closed {closed[projection.name]} idle session(s)")
        records = sum(runner.next_offsets.values())
        result = ReplayResult(projection.name, records, runner.applied, runner.dead_letters,
                              time.monotonic() - started)
        report(f"replayed {projection.name}: {result.records} records, {result.applied} applied, "
               f"{result.dead_letters} dead-lettered, in {result.seconds:.1f} s")
        return result
    finally:
        await projection.stop()


async def _refuse_short_log(projection: Projection, ends: dict[int, int]) -> None:
    topic = projection.source.name
    short = sorted((p.partition, p.next_offset, ends.get(p.partition, 0))
                   for p in await projection.positions()
                   if p.topic == topic and p.next_offset > ends.get(p.partition, 0))
    if short:
        where = ", ".join(f"partition {p}: applied {n}, log ends at {e}" for p, n, e in short)
        raise LogBehindStore(
            f"refusing to replay {projection.name}: {topic} holds less than it applied "
            f"({where}). The broker's log was lost or replaced, so a replay would delete rows "
            "it cannot rebuild; `run` or `backfill` re-publish the sources instead. Use "
            "--force to replay anyway.")
