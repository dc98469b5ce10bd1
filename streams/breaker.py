"""A circuit breaker for a remote service: stop calling it while it keeps failing.

Closed -> open after ``threshold`` consecutive failures -> half-open once ``reset_s`` have
passed (calls are let through again) -> closed on a success, open again on a failure. Used per
endpoint by the MCP telemetry poller and by the LLM summarizer.

A small state machine of our own rather than ``aiobreaker`` (unmaintained since 2021) or
``purgatory`` (a good library, but built around decorating calls, with its own state storage
and listeners): this one needs no adapter to drive a state gauge and a transitions counter, and
is tested with an injected clock.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

__all__ = ["BreakerState", "CircuitBreaker", "Clock"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class BreakerState(enum.IntEnum):
    """The gauge value of each state."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Closed -> open after ``threshold`` consecutive failures -> half-open once ``reset_s``
    have passed (one probe call is let through) -> closed on its success, open on its failure.

    ``on_transition(old, new)`` is called on every change of state; ``name`` names the
    service in the log lines of those changes.
    """

    def __init__(self, threshold: int, reset_s: float, *, clock: Clock = time.monotonic,
                 on_transition: Callable[[BreakerState, BreakerState], None] | None = None,
                 name: str = "mcp") -> None:
        self.threshold = threshold
        self.reset_s = reset_s
        self.clock = clock
        self.on_transition = on_transition
        self.name = name
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0

    def allow(self) -> bool:
        """May a call go out now? Moves an open breaker whose time is up to half-open."""
        if self.state is BreakerState.OPEN and self.clock() - self.opened_at >= self.reset_s:
            self._move(BreakerState.HALF_OPEN)
        return self.state is not BreakerState.OPEN

    def reopens_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it is not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.opened_at + self.reset_s - self.clock())

    def succeeded(self) -> None:
        self.failures = 0
        if self.state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED)

    def failed(self) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or (
                self.state is BreakerState.CLOSED and self.failures >= self.threshold):
            self.opened_at = self.clock()
            self._move(BreakerState.OPEN)

    def _move(self, new: BreakerState) -> None:
        old, self.state = self.state, new
        log = logger.warning if new is BreakerState.OPEN else logger.info
        log("%s breaker %s -> %s", self.name, old.name.lower(), new.name.lower())
        if self.on_transition is not None:
            self.on_transition(old, new)
