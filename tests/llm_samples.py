"""Deterministic summaries for the LLM summarizer's tests, made by the real summarizer."""

from __future__ import annotations

from agents.summarize_sessions import Summarizer
from schemas.events import SessionFileRemoved, SessionTitled, UserPrompted
from schemas.summaries import SessionSummaryEvent
from tests.factories import at, session_event

__all__ = ["active_summary", "closed_summary", "summary_events"]


def summary_events(session: str, title: str = "Fix the parser", *, close: bool = True) -> list:
    """The events of a short session: a title, a prompt and (``close``) its file's removal."""
    events = [session_event(SessionTitled(title=title, title_source="ai"), 0, session=session),
              session_event(UserPrompted(text="fix the parser please", line_uuid="u1"), 1,
                            session=session)]
    if close:
        events.append(session_event(SessionFileRemoved(path=f"/p/{session}.jsonl"), 2,
                                    session=session))
    return events


def closed_summary(session: str = "s1", title: str = "Fix the parser") -> SessionSummaryEvent:
    summarizer = Summarizer(update_interval=0)
    out = [s for e in summary_events(session, title) for s in summarizer.apply(e, at(2))]
    assert out[-1].payload.status == "closed"
    return out[-1]


def active_summary(session: str = "s1", minutes: float = 60) -> SessionSummaryEvent:
    summarizer = Summarizer(update_interval=0)
    events = [*summary_events(session, close=False),
              session_event(UserPrompted(text="and the tests", line_uuid="u2"), minutes * 60,
                            session=session)]
    return [s for e in events for s in summarizer.apply(e, at(minutes * 60))][-1]
