"""One attempt at an LLM summary: ask the breaker, call the endpoint, say what comes next.

:meth:`LlmSummarizer.attempt` never raises for the LLM's sake; it returns an :class:`Outcome`
that is exactly one of: ``summary`` (the LLM record to publish), ``retry`` (the retry record to
queue: a transient failure, or the breaker refused the call) or ``dead`` (give up: a permanent
failure, or the last retry failed). Which is which:

* breaker open -> ``retry`` due when the breaker lets a probe through; the try is not counted;
* :class:`~agents.llm.errors.LlmRejected` (auth, bad_request) -> ``dead`` at once;
* :class:`~agents.llm.errors.LlmUnavailable` -> ``retry`` per the
  :class:`~agents.llm.policy.RetrySchedule`, honouring ``Retry-After``, or ``dead`` when the
  schedule is used up.

Every failure but ``bad_request`` counts against the endpoint's circuit breaker; a success
closes it. Time: ``clock`` gives the wall clock of due times and ``summarized_at`` (due times
outlive the process); the breaker keeps its own monotonic clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from agents.llm.client import LlmClient
from agents.llm.errors import LlmError, LlmRejected, LlmUnavailable
from agents.llm.metrics import LlmMetrics
from agents.llm.policy import RetrySchedule, SummaryMemory, with_llm
from agents.llm.prompts import Prompts
from schemas.summaries import LlmSummaryRetry, SessionSummaryEvent
from streams.breaker import CircuitBreaker

__all__ = ["GaveUp", "LlmSummarizer", "Outcome"]

logger = logging.getLogger(__name__)

MIN_DEFER_S = 1.0  # a summary deferred by the open breaker waits at least this long


class GaveUp(LlmError):
    """The last retry of a transient failure failed too."""


@dataclass(frozen=True)
class Outcome:
    """Exactly one of the three is set."""

    summary: SessionSummaryEvent | None = None
    retry: LlmSummaryRetry | None = None
    dead: LlmError | None = None


class LlmSummarizer:
    """Summarizes deterministic summaries with ``client``; shared by the summaries runner and
    the retry runner of one worker (one breaker, one memory per endpoint)."""

    def __init__(self, client: LlmClient, prompts: Prompts, metrics: LlmMetrics, *,
                 memory: SummaryMemory | None = None, schedule: RetrySchedule | None = None,
                 breaker: CircuitBreaker | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.client = client
        self.prompts = prompts
        self.metrics = metrics
        self.memory = memory or SummaryMemory()
        self.schedule = schedule or RetrySchedule()
        self.breaker = breaker or CircuitBreaker(5, 60.0, name="llm")
        self.breaker.on_transition = metrics.transition
        metrics.breaker = self.breaker
        self.clock = clock

    async def attempt(self, envelope: SessionSummaryEvent, failed_tries: int = 0) -> Outcome:
        """Try to summarize ``envelope``, whose earlier tries failed ``failed_tries`` times."""
        now = self.clock()
        if not self.breaker.allow():
            self.metrics.failed("circuit_open")
            wait = max(self.breaker.reopens_in(), MIN_DEFER_S)
            return Outcome(retry=LlmSummaryRetry(
                attempt=failed_tries, due_at=now + timedelta(seconds=wait),
                error_type="circuit_open", error="the LLM circuit breaker is open",
                summary=envelope))
        system, user = self.prompts.render(envelope.payload)
        try:
            reply = await self.client.complete(system, user)
        except LlmError as exc:
            # Retry-After counts from when the answer came (RFC 9110 10.2.3), not from the
            # request: a slow 429 must not shorten the wait the server asked for.
            return self._failed(envelope, failed_tries + 1, exc, self.clock())
        self.breaker.succeeded()
        record = with_llm(envelope, reply.text, reply.model, self.client.provider, self.clock())
        self.memory.remember(record)
        self.metrics.written(envelope.payload.status)
        return Outcome(summary=record)

    def _failed(self, envelope: SessionSummaryEvent, tries: int, exc: LlmError,
                now: datetime) -> Outcome:
        self.metrics.failed(exc.kind)
        if exc.trips_breaker:
            self.breaker.failed()
        else:
            self.breaker.succeeded()  # the endpoint answered: it is up
        logger.warning("llm summary of %s/%s failed (try %s, %s): %s", envelope.source,
                       envelope.session_id, tries, exc.kind, exc)
        if isinstance(exc, LlmRejected):
            return self._dead(exc)
        assert isinstance(exc, LlmUnavailable)
        due = self.schedule.due(tries, now, exc.retry_after)
        if due is None:
            return self._dead(GaveUp(exc.kind, f"gave up after {tries} tries; last: {exc}"))
        return Outcome(retry=LlmSummaryRetry(attempt=tries, due_at=due, error_type=exc.kind,
                                             error=str(exc)[:1000], summary=envelope))

    def _dead(self, exc: LlmRejected | GaveUp) -> Outcome:
        """Give up; the reason (the dead letter's ``error``) starts with the failure's class."""
        self.metrics.gave_up(exc.kind)
        return Outcome(dead=type(exc)(exc.kind, f"[{exc.kind}] {exc}"))
