"""Session events -> ``sessions.summaries.v1``: the pure, deterministic half of the summarizer.

:class:`SessionState` folds one session's events into what its summary needs and nothing more
(sets of natural keys for distinct counts, the largest usage per response, the title and first
prompt); :class:`Summarizer` holds the states and decides *when* a summary is emitted: on open
(a session's first event, or its first event after a close), on update at most once per
``update_interval``, and on close (the main file removed, or no event for ``inactivity_timeout``
of event time before the caller's ``now``). The rules match the Postgres session tables: title
custom > ai > summary, prompts that are neither meta nor compaction summaries, usage keyed by
``message_key`` keeping the largest report (the first on ties). A summary's ``event_id`` is
derived from its content, so re-emitting an identical summary (after a restart) repeats its id.
No I/O and no clock of its own: time comes in as ``now``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from projections.pricing import PricingTable
from projections.session_models import SessionModels
from schemas.envelope import derive_event_id
from schemas.events import (
    AssistantMessage,
    FileTouched,
    SessionContext,
    SessionEvent,
    SessionFileRemoved,
    SessionTitled,
    ToolCalled,
    ToolResulted,
    UsageReported,
    UserPrompted,
)
from schemas.summaries import SessionSummary, SessionSummaryEvent, TokenCounts

__all__ = ["SUMMARY_TYPE", "SessionState", "Summarizer"]

SUMMARY_TYPE = "session.summary"
FIRST_PROMPT_CHARS = 1_000
_TITLE_RANK = {"summary": 1, "ai": 2, "custom": 3}


@dataclass(frozen=True, slots=True)
class _Usage:
    """The largest usage report of one response, with its cost worked out once."""

    model: str
    counts: tuple[int, int, int, int, int]  # input, output, cache 5m, cache 1h, cache read
    total: int
    usd: Decimal
    priced: bool


@dataclass
class SessionState:
    """Everything one session's summary is computed from; :meth:`apply` folds one event."""

    source: str
    session_id: str
    pricing: PricingTable
    first_prompt_chars: int = FIRST_PROMPT_CHARS
    title: str | None = None
    title_rank: int = 0
    first_prompt: tuple[datetime, str, str] | None = None  # (at, line key, text) of the earliest
    project: str | None = None
    working_dir: str | None = None
    started_at: datetime | None = None
    last_activity_at: datetime | None = None
    ended_at: datetime | None = None
    prompts: set[str] = field(default_factory=set)
    messages: set[str] = field(default_factory=set)
    tool_names: dict[str, str] = field(default_factory=dict)  # tool_use_id -> name
    tool_errors: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)
    usage: dict[str, _Usage] = field(default_factory=dict)  # message_key -> largest report
    models: SessionModels = field(default_factory=SessionModels)  # for usage without a model

    @property
    def closed(self) -> bool:
        return self.ended_at is not None

    def apply(self, event: SessionEvent) -> None:
        """Fold ``event`` in. Idempotent: applying an event twice changes nothing."""
        at = event.occurred_at
        self.started_at = at if self.started_at is None else min(self.started_at, at)
        self.last_activity_at = at if self.last_activity_at is None else max(
            self.last_activity_at, at)
        p = event.payload
        self.models.observe(event)
        match p:
            case SessionContext() if p.agent_id is None:
                self.project = self.project or p.project
                self.working_dir = self.working_dir or p.cwd
            case SessionTitled() if _TITLE_RANK[p.title_source] >= self.title_rank:
                self.title, self.title_rank = p.title, _TITLE_RANK[p.title_source]
            case UserPrompted() if not (p.is_meta or p.is_compact_summary):
                self._prompt(p, event)
            case AssistantMessage():
                self.messages.add(p.message_key)
            case ToolCalled():
                self.tool_names[p.tool_use_id] = p.name
            case ToolResulted() if p.is_error:
                self.tool_errors.add(p.tool_use_id)
            case ToolResulted():
                self.tool_errors.discard(p.tool_use_id)  # the latest result decides
            case FileTouched():
                self.files.add(p.path)
            case UsageReported():
                self._usage(p, self.models.resolve(event))
            case _:
                pass

    def _prompt(self, p: UserPrompted, event: SessionEvent) -> None:
        if p.agent_id is not None:  # a sub-agent's task prompt: no person typed it
            return
        key = f"user:{p.line_uuid or event.event_id}"
        self.prompts.add(key)
        at = p.timestamp or event.occurred_at
        if self.first_prompt is None or (at, key) < self.first_prompt[:2]:
            text = p.text
            if len(text) > self.first_prompt_chars:
                text = text[:self.first_prompt_chars] + "…"
            self.first_prompt = (at, key, text)

    def _usage(self, p: UsageReported, model: str) -> None:
        current = self.usage.get(p.message_key)
        if current is not None and p.total <= current.total:
            return
        cost = self.pricing.cost(p, model)
        self.usage[p.message_key] = _Usage(
            model, (p.input_tokens, p.output_tokens, p.cache_creation_5m_tokens,
                      p.cache_creation_1h_tokens, p.cache_read_tokens),
            p.total, cost.usd, cost.priced)

    def close(self, at: datetime) -> None:
        self.ended_at = at

    def reopen(self) -> None:
        self.ended_at = None

    def summary(self) -> SessionSummary:
        """The summary of everything folded so far."""
        by_model: dict[str, list[int]] = {}
        for usage in self.usage.values():
            sums = by_model.setdefault(usage.model, [0] * 5)
            for i, n in enumerate(usage.counts):
                sums[i] += n
        tokens_by_model = {model: _tokens(sums) for model, sums in sorted(by_model.items())}
        end = self.ended_at or self.last_activity_at
        duration = (end - self.started_at).total_seconds() if end and self.started_at else 0.0
        return SessionSummary(
            session_id=self.session_id, source=self.source,
            status="closed" if self.closed else "active", title=self.title,
            first_prompt=self.first_prompt[2] if self.first_prompt else None,
            project=self.project, working_dir=self.working_dir, started_at=self.started_at,
            last_activity_at=self.last_activity_at, ended_at=self.ended_at, duration_s=duration,
            prompts=len(self.prompts), assistant_messages=len(self.messages),
            tool_calls=len(self.tool_names),
            tool_errors=len(self.tool_errors),
            tools=dict(sorted(Counter(self.tool_names.values()).items())),
            files=sorted(self.files),
            tokens=_tokens([sum(col) for col in zip(*by_model.values(), strict=True)]
                           if by_model else [0] * 5),
            tokens_by_model=tokens_by_model,
            cost_usd=sum((u.usd for u in self.usage.values()), Decimal(0)),
            unpriced_models=sorted({u.model for u in self.usage.values() if not u.priced}),
        )

    def envelope(self) -> SessionSummaryEvent:
        """The summary in its envelope; identical content gives an identical envelope."""
        summary = self.summary()
        digest = hashlib.sha256(summary.model_dump_json().encode()).hexdigest()
        at = summary.ended_at or summary.last_activity_at
        assert at is not None  # a state exists only once an event was applied
        return SessionSummaryEvent(
            event_id=derive_event_id(self.source, self.session_id, summary.status, digest),
            source=self.source, type=SUMMARY_TYPE, occurred_at=at,
            session_id=self.session_id, payload=summary,
        )


def _tokens(sums: list[int]) -> TokenCounts:
    return TokenCounts(input=sums[0], output=sums[1], cache_creation_5m=sums[2],
                       cache_creation_1h=sums[3], cache_read=sums[4])


@dataclass
class _Tracked:
    state: SessionState
    last_emit: datetime | None = None  # None: nothing emitted by this instance yet
    last_id: str | None = None  # event_id of the last summary emitted
    pending: bool = False  # changed since the last emit


class Summarizer:
    """The states of the sessions of one partition (or more) and when to emit their summaries.

    ``apply`` and ``tick`` return the summaries to publish, in order; ``fold`` only updates
    state (to rebuild it from a topic's history without re-emitting).
    """

    def __init__(self, pricing: PricingTable | None = None, *,
                 inactivity_timeout: float = 300.0, update_interval: float = 10.0,
                 first_prompt_chars: int = FIRST_PROMPT_CHARS) -> None:
        self.pricing = pricing or PricingTable.load()
        self.inactivity_timeout = timedelta(seconds=inactivity_timeout)
        self.update_interval = timedelta(seconds=update_interval)
        self.first_prompt_chars = first_prompt_chars
        self._sessions: dict[tuple[str, str], _Tracked] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def state(self, source: str, session_id: str) -> SessionState | None:
        tracked = self._sessions.get((source, session_id))
        return tracked.state if tracked else None

    def fold(self, event: SessionEvent) -> None:
        """Apply ``event`` without emitting anything (state rebuild)."""
        tracked = self._tracked(event)
        self._fold(tracked, event)

    def apply(self, event: SessionEvent, now: datetime) -> list[SessionSummaryEvent]:
        """Fold ``event``; return what to publish now.

        The first event of a session (or the first after its close) emits at once, as does
        the removal of the main file (which closes the session). Any other event emits at once
        if the session's last emit is at least ``update_interval`` before ``now``; otherwise
        the update is left pending for :meth:`tick`. A summary identical to the last one this
        instance emitted for the session is never emitted again.
        """
        key = (event.source, event.session_id)
        opened = key not in self._sessions
        tracked = self._tracked(event)
        reopened = tracked.state.closed
        self._fold(tracked, event)
        due = (tracked.last_emit is None or now - tracked.last_emit >= self.update_interval)
        if opened or reopened or tracked.state.closed or due:
            return self._emit(tracked, now)
        tracked.pending = True
        return []

    def tick(self, now: datetime) -> list[SessionSummaryEvent]:
        """Close the sessions idle (in event time) for ``inactivity_timeout`` before ``now``,
        emitting their close summary with ``ended_at = last_activity_at``, then emit the
        pending updates whose ``update_interval`` has passed."""
        out = []
        for tracked in self._sessions.values():
            state = tracked.state
            if state.closed:
                continue
            assert state.last_activity_at is not None
            if now - state.last_activity_at >= self.inactivity_timeout:
                state.close(state.last_activity_at)
                out += self._emit(tracked, now)
            elif tracked.pending and (tracked.last_emit is None
                                      or now - tracked.last_emit >= self.update_interval):
                out += self._emit(tracked, now)
        return out

    def flush(self, now: datetime) -> list[SessionSummaryEvent]:
        """Every pending update, rate limit or not (before giving the sessions up)."""
        return [out for t in self._sessions.values() if t.pending for out in self._emit(t, now)]

    def _tracked(self, event: SessionEvent) -> _Tracked:
        key = (event.source, event.session_id)
        tracked = self._sessions.get(key)
        if tracked is None:
            tracked = self._sessions[key] = _Tracked(SessionState(
                event.source, event.session_id, self.pricing, self.first_prompt_chars))
        return tracked

    @staticmethod
    def _fold(tracked: _Tracked, event: SessionEvent) -> None:
        state = tracked.state
        state.reopen()  # any event after a close makes the session active again...
        state.apply(event)
        p = event.payload
        if isinstance(p, SessionFileRemoved) and p.ends_session:
            assert state.last_activity_at is not None
            state.close(state.last_activity_at)  # ...unless it is the main file's removal

    @staticmethod
    def _emit(tracked: _Tracked, now: datetime) -> list[SessionSummaryEvent]:
        """The session's summary, or nothing when it equals the last one this instance sent."""
        tracked.pending = False
        envelope = tracked.state.envelope()
        if envelope.event_id == tracked.last_id:
            return []
        tracked.last_emit, tracked.last_id = now, envelope.event_id
        return [envelope]
