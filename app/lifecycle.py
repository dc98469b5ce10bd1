"""Sessions close after inactivity in every store: the loop that closes them.

A session is open while events arrive. Once no event has come for
``SESSIONSTREAM_INACTIVITY_TIMEOUT_S`` (event time: its last event's timestamp, compared with
the clock), each store that keeps sessions closes it: Postgres ``sessions.status`` becomes
``closed`` with ``ended_at`` = its last activity and ``closed_reason = 'inactive'``, the graph's
``Session`` node alike, and the metrics follow from those (they are derived from the tables).
A later event reopens it (``status`` active, ``ended_at`` cleared). The summaries topic closes
sessions on its own (:mod:`agents.summarize_sessions`), as before.

Every store that can close sessions has ``close_idle(before) -> ids`` (the session tables and
the session graph). :func:`run_lifecycle` calls it every ``interval`` seconds, but only while
the worker has caught up (``caught_up()``): closing a session whose newer events are still
on a topic would close and reopen it for nothing. A backfill calls :func:`close_idle_sessions`
once, after it caught up, so the sessions it read come out closed when they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from aiokafka.errors import KafkaError

from streams.errors import SessionStreamError

__all__ = ["ClosesIdleSessions", "close_idle_sessions", "closers_of", "run_lifecycle"]

logger = logging.getLogger(__name__)


class ClosesIdleSessions(Protocol):
    """A store that closes its open sessions whose last event is older than ``before``."""

    @property
    def name(self) -> str: ...

    async def close_idle(self, before: datetime) -> list[str]: ...


def closers_of(projections: Iterable[object]) -> list[ClosesIdleSessions]:
    """The projections among ``projections`` that keep sessions (have ``close_idle``)."""
    return [p for p in projections if callable(getattr(p, "close_idle", None))]  # type: ignore[misc]


async def close_idle_sessions(closers: Iterable[ClosesIdleSessions], timeout_s: float,
                              now: datetime | None = None) -> dict[str, int]:
    """Close, in every store, the sessions quiet for ``timeout_s`` before ``now`` (default:
    the clock); returns ``{projection: sessions closed}``. Store errors are raised as the
    projections translate them (:class:`~streams.errors.SessionStreamError`)."""
    before = (now or datetime.now(UTC)) - timedelta(seconds=timeout_s)
    return {c.name: len(await c.close_idle(before)) for c in closers}


async def run_lifecycle(stop: asyncio.Event, closers: list[ClosesIdleSessions],
                        timeout_s: float, caught_up: Callable[[], Awaitable[bool]], *,
                        interval_s: float = 10.0,
                        clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
    """Until ``stop`` is set: every ``interval_s``, if ``caught_up()``, close idle sessions.

    Never raises for a store or the broker: a failed round is logged and tried again at the
    next one (the sessions stay open meanwhile, nothing is lost)."""
    if not closers:
        return
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        if stop.is_set():
            return
        try:
            if await caught_up():
                closed = await close_idle_sessions(closers, timeout_s, clock())
                if any(closed.values()):
                    logger.info("closed idle sessions: %s", closed)
        except (SessionStreamError, KafkaError, OSError) as exc:
            logger.warning("closing idle sessions failed, trying again in %.0f s: %s",
                           interval_s, exc)
