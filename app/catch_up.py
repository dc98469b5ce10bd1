"""When a backfill is done: every consumer has caught up with what was published.

Used by :class:`~app.pipeline.Pipeline` in ``backfill`` (and ``demo``), which exit once it
returns.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from streams.lag import end_offsets, lag_to
from streams.topics import FILE_CHANGES, SESSION_EVENTS

if TYPE_CHECKING:
    from app.pipeline import Pipeline

__all__ = ["wait_caught_up"]


async def wait_caught_up(pipeline: Pipeline) -> None:
    """Until the parse agent has committed past every line in its topic, and every consumer
    of the events past every event in theirs, then one more summarizer tick.

    The targets are, per partition, the larger of the end offset read once here and the
    offsets the broker confirmed for what this run published or produced: exact on any
    broker for this run's records (the embedded one under-reports end offsets after
    multi-record batches), and on Kafka also for records of earlier runs, which a
    projection with a fresh store must apply too."""
    bootstrap = pipeline.endpoints.bootstrap
    lines_end = await end_offsets(bootstrap, FILE_CHANGES.name)
    events_end = await end_offsets(bootstrap, SESSION_EVENTS.name)
    reported = time.monotonic()
    while True:
        lags = {"parse": await lag_to(bootstrap, pipeline.parse.group_id, FILE_CHANGES.name,
                                      _merge(lines_end, pipeline.published_ends()))}
        if pipeline.helpers and lags["parse"] == 0:
            # Helpers parsed some of the lines: what they wrote is only known to the
            # broker (exact on Kafka, which `--workers` needs).
            events_end = await end_offsets(bootstrap, SESSION_EVENTS.name)
        events = _merge(events_end, pipeline.parse.produced_ends)
        lags["filter"] = await lag_to(bootstrap, pipeline.filter.group_id, SESSION_EVENTS.name,
                                       events)
        lags["summarize"] = await lag_to(bootstrap, pipeline.summarizer.group_id,
                                         SESSION_EVENTS.name, events)
        for runner in pipeline.projections:
            lags[runner.projection.name] = await lag_to(
                bootstrap, runner.group_id, runner.topic, await pipeline.targets(runner, events))
        if sum(lags.values()) == 0:
            # One summarizer tick after the last event: closes of idle sessions go out.
            await asyncio.sleep(pipeline.summarizer.tick_interval + 0.1)
            return
        if time.monotonic() - reported >= 1.0:  # checked often, reported once a second
            pipeline.report("  remaining: " + ", ".join(f"{k}={v}" for k, v in lags.items()))
            reported = time.monotonic()
        await asyncio.sleep(0.1)


def _merge(*targets: dict[int, int]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for target in targets:
        for partition, offset in target.items():
            merged[partition] = max(merged.get(partition, 0), offset)
    return {p: o for p, o in merged.items() if o > 0}
