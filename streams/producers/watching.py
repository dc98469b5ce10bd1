"""Watching a producer's roots: scan on file-system events and on a timer, retrying failures.

:func:`watch` is the loop behind :meth:`FileProducer.run
<streams.producers.base.FileProducer.run>`: it schedules a watchdog observer on every root that
exists (and drops roots that disappeared), wakes the scan when a matching path changes (a burst
of writes settles into one scan), rescans every ``rescan_interval`` regardless, and retries a
failed scan with backoff, logging once per streak of the same failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from streams.errors import SourceError
from streams.producers.records import SIDECARS

__all__ = ["DEBOUNCE_S", "FailureStreak", "Watched", "watch"]

logger = logging.getLogger(__name__)

DEBOUNCE_S = 0.01  # a burst of writes settles into one scan (one write is one event)
_WAKE_EVENTS = frozenset({"created", "modified", "moved", "deleted"})


class Watched(Protocol):
    """What :func:`watch` needs of a producer."""

    @property
    def source(self) -> str: ...

    @property
    def roots(self) -> list[Path]: ...

    @property
    def rescan_interval(self) -> float: ...

    @property
    def next_rescan(self) -> float:
        """Seconds until the next scan when nothing wakes it (at most ``rescan_interval``)."""
        ...

    def matches(self, path: Path) -> bool: ...

    def scan_once(self) -> Awaitable[int]: ...


async def watch(producer: Watched, stop: asyncio.Event) -> None:
    """Scan ``producer`` on file-system events (debounced) and every ``rescan_interval`` until
    ``stop``; see :meth:`FileProducer.run <streams.producers.base.FileProducer.run>`.

    A :class:`~streams.errors.SourceError` (an unreadable checkpoint) propagates; any other
    failure of a scan is retried with backoff. The observer is stopped and joined on return.
    """
    wake = asyncio.Event()
    handler = _Wakeup(producer.matches, asyncio.get_running_loop(), wake)
    observer = Observer()
    watches: dict[Path, ObservedWatch] = {}
    observer.start()
    failing = FailureStreak(f"producer={producer.source}")
    try:
        while not stop.is_set():
            _watch_roots(producer.roots, observer, handler, watches)
            # A failed scan is retried from its checkpoint: whatever goes wrong (a broker
            # outage, a refused record, a bug on one file), the others must go on.
            try:
                await producer.scan_once()
                failing.ended()
            except SourceError:
                raise  # an unreadable checkpoint: the user must act, retrying cannot help
            except Exception as exc:  # noqa: BLE001
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), failing.backoff(exc))
                continue
            await _wait(stop, wake, producer.next_rescan)
    finally:
        observer.stop()
        await asyncio.to_thread(observer.join, 5.0)


def _watch_roots(roots: list[Path], observer: BaseObserver, handler: _Wakeup,
                 watches: dict[Path, ObservedWatch]) -> None:
    """Watch roots that appeared; drop watches of roots that disappeared."""
    for root in roots:
        exists = root.is_dir()
        if exists and root not in watches:
            try:
                watches[root] = observer.schedule(handler, str(root), recursive=True)
            except OSError as exc:  # e.g. inotify watch limit: the rescan still covers it
                logger.warning("cannot watch root=%s error=%s", root, exc)
        elif not exists and root in watches:
            observer.unschedule(watches.pop(root))


async def _wait(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    waiters = {asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    if wake.is_set() and not stop.is_set():
        await asyncio.sleep(DEBOUNCE_S)
        wake.clear()  # cleared before the scan, so writes during it wake the next one


class FailureStreak:
    """Backoff and logging for a loop that retries: the first failure of a streak is a
    warning, repeats of the same error are debug, the end of the streak is one info line."""

    def __init__(self, what: str, first: float = 1.0, cap: float = 30.0) -> None:
        self.what, self.first, self.cap = what, first, cap
        self.delay = 0.0
        self.last: str | None = None

    def backoff(self, exc: Exception) -> float:
        """Log ``exc`` (once per kind of error) and return the seconds to wait."""
        reason = f"{type(exc).__name__}: {exc}"
        if reason != self.last:
            logger.warning("%s failed, retrying with backoff: %s", self.what, reason,
                           exc_info=self.last is None)
        else:
            logger.debug("%s still failing: %s", self.what, reason)
        self.last = reason
        self.delay = min(self.cap, self.delay * 2 if self.delay else self.first)
        return self.delay

    def ended(self) -> None:
        """Log the end of a streak (nothing when there was none) and reset the backoff."""
        if self.last is not None:
            logger.info("%s recovered", self.what)
        self.delay, self.last = 0.0, None


class _Wakeup(FileSystemEventHandler):
    """Runs in the observer thread: wakes the scan loop when a relevant path changed."""

    def __init__(
        self,
        matches: Callable[[Path], bool],
        loop: asyncio.AbstractEventLoop,
        wake: asyncio.Event,
    ) -> None:
        self._matches = matches
        self._loop = loop
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _WAKE_EVENTS:
            return
        if event.is_directory:
            relevant = event.event_type != "modified"  # new dirs may hold files already
        else:
            paths = (p for p in (event.src_path, event.dest_path) if p)
            relevant = any(self._matches(_database_of(os.fsdecode(p))) for p in paths)
        if relevant:
            with contextlib.suppress(RuntimeError):  # loop already closed: nobody to wake
                self._loop.call_soon_threadsafe(self._wake.set)


def _database_of(path: str) -> Path:
    """``path``, or the SQLite database it is a sidecar of (a write lands in its log first)."""
    for suffix in SIDECARS:
        if path.endswith(suffix):
            return Path(path.removesuffix(suffix))
    return Path(path)
