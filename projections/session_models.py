"""Which model a usage report is billed under when its line names none.

Some agents write the model on another line than the usage (Codex: ``turn_context`` names it,
``token_count`` does not). Such a ``UsageReported`` has ``model=None`` and is billed under the
latest model its session (or sub-agent) named in a ``SessionContext``, in topic order, which is
the same on every replay; a sub-agent without a context of its own inherits its session's; with
none at all it is ``<source>-unknown``, which pricing reports as unpriced (never as free).
Consumers keep one :class:`SessionModels` per batch and persist :meth:`SessionModels.changed`
with their data, so the latest model survives restarts and rebalances.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from schemas.events import SessionContext, UsageReported

__all__ = ["SessionModels"]

Key = tuple[str, str]  # (session_id, agent_id or "")


class SessionModels:
    """The latest context model per (session, agent); ``resolve`` a usage report's model."""

    def __init__(self, known: Iterable[tuple[str, str, str]] = ()) -> None:
        self._latest: dict[Key, str] = {(s, a): m for s, a, m in known}
        self._changed: dict[Key, str] = {}

    def observe(self, env: Any) -> None:
        """Remember the model a ``SessionContext`` names (others are ignored)."""
        p = env.payload
        if isinstance(p, SessionContext) and p.model:
            key = (env.session_id, p.agent_id or "")
            if self._latest.get(key) != p.model:
                self._latest[key] = self._changed[key] = p.model

    def resolve(self, env: Any) -> str:
        """The model ``env`` (a ``UsageReported``) is billed under."""
        p: UsageReported = env.payload
        if p.model:
            return p.model
        return (self._latest.get((env.session_id, p.agent_id or ""))
                or self._latest.get((env.session_id, "")) or f"{env.source}-unknown")

    def changed(self) -> list[tuple[str, str, str]]:
        """``(session_id, agent_id or "", model)`` learned since construction."""
        return [(s, a, m) for (s, a), m in self._changed.items()]
