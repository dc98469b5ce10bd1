"""What the LLM summarizer decides, without I/O: which summaries to summarize, when a failed
one is tried again, and the record that carries the LLM's text.

* :class:`SummaryMemory` remembers, per session, the deterministic summary last summarized and
  when. It wants a summary that is deterministic (not an LLM record), not the one already
  summarized (the summarizer re-emits identical close summaries after a restart: same
  ``event_id``), and either closed, or active for at least ``update_interval`` seconds with
  the last LLM summary of the session at least ``update_interval`` ago (0: closed only).
* :class:`RetrySchedule`: after the n-th failed try, wait ``delays[n-1]`` (or longer, when the
  server asked with ``Retry-After``); after ``len(delays) + 1`` failed tries, give up.
* :func:`with_llm`: the deterministic summary, unchanged, with ``llm`` set; its ``event_id``
  derives from the summary's and the text, its envelope ``type`` is :data:`LLM_SUMMARY_TYPE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas.envelope import derive_event_id
from schemas.summaries import LlmSummary, SessionSummaryEvent

__all__ = ["DEFAULT_DELAYS_S", "LLM_SUMMARY_TYPE", "RetrySchedule", "SummaryMemory", "with_llm"]

LLM_SUMMARY_TYPE = "session.summary.llm"
DEFAULT_DELAYS_S = (300.0, 900.0, 2700.0, 7200.0, 21600.0)  # 5 min, 15 min, 45 min, 2 h, 6 h

SessionRef = tuple[str, str]  # (source, session_id)


@dataclass
class SummaryMemory:
    """Per session: the ``event_id`` of the deterministic summary last summarized, and when."""

    update_interval: float = 1800.0
    done: dict[SessionRef, str] = field(default_factory=dict)
    last_at: dict[SessionRef, datetime] = field(default_factory=dict)

    def wants(self, envelope: SessionSummaryEvent, now: datetime) -> bool:
        """Whether ``envelope`` should get an LLM summary now (see the module's rules)."""
        summary = envelope.payload
        ref = (envelope.source, envelope.session_id)
        if summary.llm is not None or self.done.get(ref) == envelope.event_id:
            return False
        if summary.status == "closed":
            return True
        if not self.update_interval or summary.duration_s < self.update_interval:
            return False
        last = self.last_at.get(ref)
        return last is None or (now - last).total_seconds() >= self.update_interval

    def summarized(self, envelope: SessionSummaryEvent, source_event_id: str) -> bool:
        """Whether the deterministic summary ``source_event_id`` of ``envelope``'s session was
        summarized already (a retry that another copy of it overtook)."""
        return self.done.get((envelope.source, envelope.session_id)) == source_event_id

    def remember(self, llm_record: SessionSummaryEvent) -> None:
        """Record an LLM record (written here, or read back from the topic)."""
        llm = llm_record.payload.llm
        assert llm is not None, "only LLM records are remembered"
        ref = (llm_record.source, llm_record.session_id)
        last = self.last_at.get(ref)
        if last is None or llm.summarized_at >= last:
            self.done[ref] = llm.summary_event_id
            self.last_at[ref] = llm.summarized_at


@dataclass(frozen=True)
class RetrySchedule:
    """Waits before each retry; ``len(delays)`` retries at most."""

    delays: Sequence[float] = DEFAULT_DELAYS_S

    def due(self, failed_tries: int, now: datetime, retry_after: float = 0.0) -> datetime | None:
        """When to try again after ``failed_tries`` tries failed (>= 1), or None: give up."""
        if failed_tries > len(self.delays):
            return None
        wait = max(self.delays[max(failed_tries, 1) - 1], retry_after)
        return now + timedelta(seconds=wait)


def with_llm(envelope: SessionSummaryEvent, text: str, model: str, provider: str,
             now: datetime) -> SessionSummaryEvent:
    """``envelope``'s summary with the LLM's ``text``: the record the summarizer publishes."""
    llm = LlmSummary(text=text, model=model, provider=provider,  # type: ignore[arg-type]
                     summarized_at=now, summary_event_id=envelope.event_id)
    return envelope.model_copy(update={
        "event_id": derive_event_id(envelope.event_id, LLM_SUMMARY_TYPE, model, text),
        "type": LLM_SUMMARY_TYPE,
        "payload": envelope.payload.model_copy(update={"llm": llm}),
    })
