"""Session-skill events for the frontend tables, built from the ``schemas`` models.

:func:`frontend_batches` gives the projection contract (``test_projection_contract.py``) two
batches over two partitions that the frontend tables keep (events of the ``session-skill``
source) and one it ignores (a Claude Code event, which only moves the position); batch 2 needs
batch 1's state: a newer report of a facet, a facet's older report arriving late, a session
whose working directory moves (its former project then names no session and goes).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.envelope import derive_event_id
from schemas.events import (
    ArtifactRevised,
    EventPayload,
    SessionEvent,
    SessionStateReported,
    SystemEvent,
    UserPrompted,
)

__all__ = ["T0", "at", "frontend_batches", "frontend_poison", "skill_event", "state"]

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
Values = dict[int, list[Any]]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def skill_event(payload: EventPayload, minute: float, session: str,
                source: str = "session-skill") -> SessionEvent:
    """An event of ``session`` at ``minute``; the id derives from what it is."""
    return SessionEvent(event_id=derive_event_id(session, minute, payload.model_dump_json()),
                        source=source, type=payload.kind, occurred_at=at(minute),
                        session_id=session, payload=payload)


def state(project_dir: str, slug: str, facet: str, minute: float, layout: str = "agents",
          **fields: Any) -> SessionStateReported:
    """A state report of the folder ``<project_dir>/<layout>/sessions/<slug>``, with what the
    path says (as the session-skill parser reports it) and ``fields``."""
    return SessionStateReported(
        facet=facet, updated_at=at(minute), slug=slug, project=project_dir.rsplit("/", 1)[-1],
        working_dir=project_dir, session_dir=f"{project_dir}/{layout}/sessions/{slug}",
        **fields)


def frontend_batches() -> tuple[Values, Values]:
    def shop(payload: EventPayload, minute: float) -> SessionEvent:
        return skill_event(payload, minute, "shop/checkout-flow")

    def ledger(payload: EventPayload, minute: float) -> SessionEvent:
        return skill_event(payload, minute, "ledger/audit")

    first: Values = {0: [
        shop(state("/code/shop", "checkout-flow", "layout", 0, session_type="skill"), 0),
        shop(state("/code/shop", "checkout-flow", "state.json", 1, status="executing",
                   title="Checkout flow", session_type="feature"), 1),
        shop(ArtifactRevised(path="/code/shop/agents/sessions/checkout-flow/spec.md",
                             name="spec.md", content="# Checkout", content_sha256="cd" * 32,
                             size=10), 1),
        skill_event(UserPrompted(text="not a folder", line_uuid="u1"), 1, "claude-1",
                    source="claude-code"),
    ], 1: [
        ledger(state("/code/ledger/", "audit", "STATE.json", 2, layout=".agents",
                     status="planning"), 2),
        ledger(SystemEvent(subtype="note", content="started", line_uuid="e1"), 2),
    ]}
    second: Values = {0: [
        shop(state("/code/shop", "checkout-flow", "state.json", 5, status="completed",
                   title="Checkout flow", session_type="feature"), 5),
        shop(state("/code/shop", "checkout-flow", "state.json", 3, status="reviewing"), 6),
        shop(state("/code/shop", "checkout-flow", "spec.md", 4, title="Checkout flow v2"), 6),
        None,
    ], 1: [
        ledger(state("/srv/ledger", "audit", "STATE.json", 7, layout=".agents",
                     status="executing", title="Audit"), 7),
    ]}
    return first, second


def frontend_poison() -> SessionEvent:
    """A state report Postgres cannot store (U+0000 in a jsonb and a text value)."""
    return skill_event(state("/code/shop", "checkout-flow", "state.json", 9,
                             title="Check\x00out"), 9, "shop/checkout-flow")
