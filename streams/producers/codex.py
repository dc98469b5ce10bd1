"""Codex CLI / Desktop: tail the rollout files under ``$CODEX_HOME/sessions`` and
``archived_sessions``.

A thread is one ``rollout-<YYYY-MM-DDTHH-MM-SS>-<thread-uuid>.jsonl``, in the dated tree
``sessions/YYYY/MM/DD/`` or flat in ``archived_sessions/`` (session-formats.md section 3.1); its
session is the thread uuid of the file name, which equals the ``session_meta.payload.id`` of its
first line. How each kind of thread is filed (``describe``):

- A resumed thread (0.153+) continues in segment files
  ``rollout-<YYYY-MM-DDTHH-MM-SS>-<thread-uuid>_<segment-uuid>.jsonl``: the thread is the first
  uuid, so every segment is a ``main`` file of the one session ``<thread-uuid>``. (Their
  ``session_meta.payload.id`` is the original thread id and ``history_base.thread_id`` names the
  previous segment.)
- A sub-agent thread, recognised on its first line ``session_meta`` by
  ``source.subagent.thread_spawn.parent_thread_id`` (both spellings ``subagent``/``sub_agent``)
  or, from 0.144, by ``thread_source == "subagent"`` with a top-level ``parent_thread_id``, is a
  ``subagent`` file whose ``agent_id`` is its own thread uuid, mirroring Claude's sub-agent
  files. It is filed under the meta's top-level ``session_id`` when that names another thread
  (the root session, so nested sub-agents stay under the root), otherwise under
  ``parent_thread_id``. The parent history such a thread replays then lands on the keys the
  parent already wrote (same usage keys, same tool call ids), so the projections count it once.
- A user fork (``forked_from_id`` set, not a sub-agent) stays its own session (``main``). Its
  replay of the parent's history is not removed here: the parser reports the declared parent
  (``SessionContext.forked_from``) and the stores exclude the replayed prefix, identified by the
  usage keys it shares with the parent.

Legacy single-JSON ``rollout-*.json`` files are not appendable and are not tailed.
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
from streams.producers.homes import home_of

__all__ = ["CodexProducer"]

logger = logging.getLogger(__name__)

UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# The thread uuid, then, on a resumed thread's later segment, ``_<segment uuid>``.
ROLLOUT_NAME = re.compile(
    r"^rollout-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-"
    rf"(?P<thread>{UUID})(?:_(?P<segment>{UUID}))?\.jsonl$"
)
SUBAGENT_KEYS = ("subagent", "sub_agent")  # both spellings of SessionSource::SubAgent seen


class CodexProducer(FileProducer):
    """Publishes every line of every Codex rollout, live and archived."""

    source: ClassVar[str] = "codex"
    provider: ClassVar[str | None] = "openai"
    help_text: ClassVar[str] = (
        "Codex rollouts in ~/.codex/sessions and archived_sessions ($CODEX_HOME)")
    example_root: ClassVar[str] = "~/.codex/sessions"
    rank: ClassVar[int] = 20

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """``$CODEX_HOME`` (else ``~/.codex``) + ``/sessions`` and ``/archived_sessions``;
        roots that do not exist are returned too (the base tolerates them)."""
        configured = env.get("CODEX_HOME", "").strip()
        home = Path(configured).expanduser() if configured else home_of(env) / ".codex"
        return [home / "sessions", home / "archived_sessions"]

    @classmethod
    def claims(cls, root: Path) -> bool:
        """A bare ``--source`` path is Codex's when it holds a ``rollout-*.jsonl``."""
        return next(Path(root).rglob("rollout-*.jsonl"), None) is not None

    def matches(self, path: Path) -> bool:
        """``rollout-*.jsonl`` at any depth under a root."""
        return path.name.startswith("rollout-") and path.suffix == ".jsonl"

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        """``(thread, "main", None)`` for a thread, any segment of a resumed thread and a user
        fork; ``(root or parent thread, "subagent", own thread)`` for a sub-agent thread (see
        the module docstring).

        The thread is the first uuid of the file name; a name without one falls back to the
        first line's ``session_meta.payload.id``, then to the file stem, so its lines are still
        published and traceable. The first line (a large ``session_meta``, which the parser
        reads again) is parsed only when the name has no thread or the line may declare a
        sub-agent.
        """
        named = ROLLOUT_NAME.match(path.name)
        if named and not _may_declare_subagent(first_line):
            return named["thread"], "main", None
        meta = _session_meta(first_line)
        thread = named["thread"] if named else _str(meta.get("id")) or path.stem
        if meta.get("id") in (None, thread):  # the file's own meta, not a replayed one
            home = _subagent_home(meta, thread)
            if home is not None:
                return home, "subagent", thread
        return thread, "main", None


def _may_declare_subagent(first_line: str | None) -> bool:
    """False when ``first_line`` cannot hold a sub-agent's meta, told without parsing it.

    Every sub-agent marker (``thread_source: "subagent"``, ``source.subagent``,
    ``source.sub_agent``) contains one of :data:`SUBAGENT_KEYS`; JSON can spell those letters
    otherwise only through ``\\u`` escapes, so a line with neither cannot declare one.
    """
    if not first_line:
        return False
    return "\\u" in first_line or any(key in first_line for key in SUBAGENT_KEYS)


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


def _subagent_home(meta: dict[str, Any], thread: str) -> str | None:
    """The session a sub-agent thread is filed under: the meta's top-level ``session_id``
    (the root) when it names another thread, else its parent thread; ``None`` when the meta
    is not a sub-agent's (or names no other thread). A ``thread_source: "subagent"`` meta
    without ``parent_thread_id`` is filed under its ``session_id`` alone."""
    parent = _spawn_parent(meta)
    if parent is None and meta.get("thread_source") != "subagent":
        return None
    for home in (_str(meta.get("session_id")), parent):
        if home is not None and home != thread:
            return home
    return None


def _spawn_parent(meta: dict[str, Any]) -> str | None:
    """The parent thread of a sub-agent: top-level ``parent_thread_id`` with ``thread_source``
    ``"subagent"`` (0.144+), else ``source.subagent.thread_spawn.parent_thread_id``."""
    if meta.get("thread_source") == "subagent":
        parent = _str(meta.get("parent_thread_id"))
        if parent is not None:
            return parent
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
