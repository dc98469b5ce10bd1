"""Codex CLI / Desktop: tail the rollout files under ``$CODEX_HOME/sessions`` and
``archived_sessions``.

A thread is one ``rollout-<YYYY-MM-DDTHH-MM-SS>-<thread-uuid>.jsonl``, in the dated tree
``sessions/YYYY/MM/DD/`` or flat in ``archived_sessions/`` (session-formats.md section 3.1); its
session is the thread uuid of the file name, which equals the ``session_meta.payload.id`` of its
first line. One exception, mirroring Claude's sub-agent files: a thread spawned by another
(first line ``session_meta`` with ``source.subagent.thread_spawn.parent_thread_id``) is published
under the parent's session as a ``subagent`` file whose ``agent_id`` is its own thread uuid. A
forked sub-agent's rollout replays the parent's history, and only inside the parent's session do
the replayed usage reports and tool calls land on the keys the parent already wrote, so the
projections count them once. Legacy single-JSON ``rollout-*.json`` files are not appendable and
are not tailed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from schemas.file_changes import FileKind
from streams.producers.base import FileProducer

__all__ = ["CodexProducer"]

logger = logging.getLogger(__name__)

ROLLOUT_NAME = re.compile(
    r"^rollout-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-"
    r"(?P<thread>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"\.jsonl$"
)
SUBAGENT_KEYS = ("subagent", "sub_agent")  # both spellings of SessionSource::SubAgent seen


class CodexProducer(FileProducer):
    """Publishes every line of every Codex rollout, live and archived."""

    source: ClassVar[str] = "codex"

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """``$CODEX_HOME`` (else ``~/.codex``) + ``/sessions`` and ``/archived_sessions``;
        roots that do not exist are returned too (the base tolerates them)."""
        configured = env.get("CODEX_HOME", "").strip()
        if configured:
            home = Path(configured).expanduser()
        else:
            home = (Path(env["HOME"]) if env.get("HOME") else Path.home()) / ".codex"
        return [home / "sessions", home / "archived_sessions"]

    @classmethod
    def claims(cls, root: Path) -> bool:
        """A bare ``--source`` path is Codex's when it holds a ``rollout-*.jsonl``."""
        return next(Path(root).rglob("rollout-*.jsonl"), None) is not None

    def matches(self, path: Path) -> bool:
        """``rollout-*.jsonl`` at any depth under a root."""
        return path.name.startswith("rollout-") and path.suffix == ".jsonl"

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        """The thread uuid of the file name as ``(session, "main", None)``, or for a spawned
        sub-agent thread ``(parent thread, "subagent", own thread)``.

        A name without a uuid falls back to the first line's ``session_meta.payload.id``, then
        to the file stem, so its lines are still published and traceable.
        """
        meta = _session_meta(first_line)
        named = ROLLOUT_NAME.match(path.name)
        thread = named["thread"] if named else _str(meta.get("id")) or path.stem
        parent = _spawn_parent(meta) if meta.get("id") in (None, thread) else None
        if parent and parent != thread:
            return parent, "subagent", thread
        return thread, "main", None


def _session_meta(first_line: str | None) -> dict[str, Any]:
    """The payload of a ``session_meta`` line, or ``{}`` for anything else."""
    if not first_line:
        return {}
    try:
        record = json.loads(first_line)
    except ValueError:
        logger.debug("first line is not JSON; using the file name as session")
        return {}
    if not isinstance(record, dict) or record.get("type") != "session_meta":
        return {}
    payload = record.get("payload")
    return payload if isinstance(payload, dict) else {}


def _spawn_parent(meta: dict[str, Any]) -> str | None:
    """``source.subagent.thread_spawn.parent_thread_id`` when present."""
    source = meta.get("source")
    if not isinstance(source, dict):
        return None
    for key in SUBAGENT_KEYS:
        sub = source.get(key)
        spawn = sub.get("thread_spawn") if isinstance(sub, dict) else None
        if isinstance(spawn, dict):
            return _str(spawn.get("parent_thread_id"))
    return None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
