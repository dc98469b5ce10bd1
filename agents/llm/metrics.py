"""The LLM summarizer's OTel instruments, created in one place, on the worker's meter.

All are dimensioned by the endpoint (``sessionstream.llm.endpoint``):

* ``sessionstream.llm.summaries`` (counter): LLM summaries written, by ``session.status``;
* ``sessionstream.llm.failures`` (counter): failed calls, by ``error.type`` (auth, rate_limit,
  quota, network, timeout, server, bad_request) and calls refused by the open breaker
  (``circuit_open``);
* ``sessionstream.llm.dead_letters`` (counter): summaries given up on, by ``error.type``;
* ``sessionstream.llm.retry.depth`` (gauge): retries this worker holds, waiting to be due;
* ``sessionstream.llm.breaker.state`` (gauge): 0 closed, 1 half-open, 2 open;
* ``sessionstream.llm.breaker.transitions`` (counter): state changes, by ``from`` and ``to``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from streams.breaker import BreakerState, CircuitBreaker

__all__ = ["ENDPOINT", "LlmMetrics"]

ENDPOINT = "sessionstream.llm.endpoint"
REASON = "error.type"


class LlmMetrics:
    """The instruments of one endpoint's summarizer. ``breaker`` and ``depth`` are read when
    the gauges are collected (set them once the breaker and the retry runner exist)."""

    def __init__(self, meter: Meter, endpoint: str) -> None:
        self.endpoint = {ENDPOINT: endpoint}
        self.breaker: CircuitBreaker | None = None
        self.depth: Callable[[], int] | None = None
        self.summaries = meter.create_counter(
            "sessionstream.llm.summaries", "{summary}", "LLM summaries written, by status.")
        self.failures = meter.create_counter(
            "sessionstream.llm.failures", "{call}",
            "Failed or refused LLM calls, by error.type.")
        self.dead_letters = meter.create_counter(
            "sessionstream.llm.dead_letters", "{summary}",
            "Summaries the LLM summarizer gave up on, by error.type.")
        self.transitions = meter.create_counter(
            "sessionstream.llm.breaker.transitions", "{transition}",
            "LLM circuit breaker state changes, by from and to state.")
        meter.create_observable_gauge(
            "sessionstream.llm.breaker.state", [self._state], "{state}",
            "LLM circuit breaker state: 0 closed, 1 half-open, 2 open.")
        meter.create_observable_gauge(
            "sessionstream.llm.retry.depth", [self._depth], "{summary}",
            "Summaries waiting in this worker for their next LLM try.")

    def written(self, status: str) -> None:
        self.summaries.add(1, {**self.endpoint, "session.status": status})

    def failed(self, kind: str) -> None:
        self.failures.add(1, {**self.endpoint, REASON: kind})

    def gave_up(self, kind: str) -> None:
        self.dead_letters.add(1, {**self.endpoint, REASON: kind})

    def transition(self, old: BreakerState, new: BreakerState) -> None:
        self.transitions.add(1, {**self.endpoint, "from": old.name.lower(),
                                 "to": new.name.lower()})

    def _state(self, options: CallbackOptions) -> Iterable[Observation]:
        breaker = self.breaker
        return [] if breaker is None else [Observation(int(breaker.state), self.endpoint)]

    def _depth(self, options: CallbackOptions) -> Iterable[Observation]:
        depth = self.depth
        return [] if depth is None else [Observation(depth(), self.endpoint)]
