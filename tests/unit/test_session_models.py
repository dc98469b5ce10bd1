"""``SessionModels``: which model a usage report without one is billed under."""

from __future__ import annotations

import pytest

from projections.session_models import SessionModels
from schemas.events import EventPayload, SessionContext, SessionEvent, UsageReported
from tests.factories import session_event

pytestmark = pytest.mark.unit


def env(payload: EventPayload, session: str = "s1") -> SessionEvent:
    """An event of a Codex session (a source whose usage lines may name no model)."""
    return session_event(payload, session=session, source="codex")


def usage(model: str | None = None, agent: str | None = None) -> SessionEvent:
    return env(UsageReported(message_key="k", model=model, agent_id=agent, output_tokens=1))


def test_latest_context_model_per_session_and_agent_with_fallbacks() -> None:
    models = SessionModels()
    assert models.resolve(usage()) == "codex-unknown"  # nothing named yet: unpriced, not free
    models.observe(env(SessionContext(model="gpt-5.3-codex")))
    assert models.resolve(usage()) == "gpt-5.3-codex"
    assert models.resolve(usage(agent="a1")) == "gpt-5.3-codex"  # inherits its session's
    models.observe(env(SessionContext(model="gpt-5-mini", agent_id="a1")))
    models.observe(env(SessionContext(cwd="/x")))  # no model: changes nothing
    assert models.resolve(usage(agent="a1")) == "gpt-5-mini"
    assert models.resolve(usage()) == "gpt-5.3-codex"
    assert models.resolve(usage(model="o3")) == "o3"  # a model on the line wins
    assert models.resolve(env(UsageReported(message_key="k"), session="s2")) == "codex-unknown"
    assert sorted(models.changed()) == [("s1", "", "gpt-5.3-codex"), ("s1", "a1", "gpt-5-mini")]


def test_known_models_are_loaded_and_only_changes_reported() -> None:
    models = SessionModels([("s1", "", "gpt-5.1")])
    assert models.resolve(usage()) == "gpt-5.1"
    models.observe(env(SessionContext(model="gpt-5.1")))
    assert models.changed() == []
    models.observe(env(SessionContext(model="gpt-5.3-codex")))
    assert models.changed() == [("s1", "", "gpt-5.3-codex")]
