"""Kimi CLI (Kimi Code CLI): tail the wire logs under ``${KIMI_SHARE_DIR or ~/.kimi}/sessions``.

Layout (kimi-cli ``share.get_share_dir``, ``metadata.WorkDirMeta.sessions_dir``, ``session.py``,
``subagents/store.py``): ``$KIMI_SHARE_DIR``, else ``Path.home() / ".kimi"`` on every OS (no XDG
or AppData folder), holds ``sessions/<md5 of the work dir>/<session uuid>/`` (a remote KAOS
prefixes the hash: ``<kaos>_<md5>``) with

- ``wire.jsonl``: append-only, line 1 ``{"type": "metadata", "protocol_version": ...}``, then
  ``{"timestamp": <epoch seconds>, "message": {"type": ..., "payload": ...}}`` records: every
  turn's prompt, the merged reply and thinking parts, tool calls and results, and one
  ``StatusUpdate`` per model step with that step's ``token_usage``. Tailed: it is the source.
- ``subagents/<agent id>/wire.jsonl`` (kimi-cli 1.x since March 2026): a sub-agent's own wire
  log, published under the parent session as a ``subagent`` file whose ``agent_id`` is the
  folder name. A foreground sub-agent's events are also echoed into the parent's log as
  ``SubagentEvent`` records; the parser keys both copies alike (see its docstring).

Not read, on purpose: ``context.jsonl`` (the model's context: the same messages again, a
``_usage`` record holding the context size, not billing, and rewritten whole on compaction,
``/clear`` or a D-Mail revert, which rotates the old one to ``context_<n>.jsonl``);
``state.json`` (approval and plan-mode state, custom title); a sub-agent's ``meta.json``,
``prompt.txt`` and ``output`` (its launch spec, its prompt and a text rendering of the wire log
it already has). ``~/.kimi/kimi.json`` maps each md5 back to its work dir but is not a session
file; ``config.toml`` names models but not which one served a session.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from schemas.file_changes import FileKind
from streams.producers.base import FileProducer
from streams.producers.homes import home_of

__all__ = ["KimiCliProducer"]

WIRE = "wire.jsonl"
SUBAGENTS = "subagents"
SKIPPED_DIRS = frozenset({"node_modules", ".git"})


class KimiCliProducer(FileProducer):
    """Publishes every line of every Kimi CLI wire log, sub-agents' under their session."""

    source: ClassVar[str] = "kimi-cli"
    provider: ClassVar[str | None] = None  # Moonshot by default; any configured provider
    help_text: ClassVar[str] = "Kimi CLI wire logs in ~/.kimi/sessions ($KIMI_SHARE_DIR)"
    example_root: ClassVar[str] = "~/.kimi/sessions"
    rank: ClassVar[int] = 70

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """``$KIMI_SHARE_DIR/sessions`` when set, else ``~/.kimi/sessions`` (``~`` being
        ``$HOME``, or ``%USERPROFILE%`` on Windows); returned even when missing."""
        configured = env.get("KIMI_SHARE_DIR", "").strip()
        share = Path(configured).expanduser() if configured else home_of(env) / ".kimi"
        return [share / "sessions"]

    @classmethod
    def claims(cls, root: Path) -> bool:
        """A bare ``--source`` path is Kimi's when a ``<session>/wire.jsonl`` is below it."""
        root = Path(root)
        return (root / WIRE).is_file() or next(root.rglob(WIRE), None) is not None

    def matches(self, path: Path) -> bool:
        """Every ``wire.jsonl``; never ``context*.jsonl`` nor the other session files."""
        return path.name == WIRE

    def prune(self, dirpath: Path, dirnames: list[str]) -> None:
        """Skip checkouts a session folder may hold; sub-agent folders are walked."""
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        """``(session uuid, "main", None)`` from the folder holding ``wire.jsonl``;
        ``(session uuid, "subagent", agent id)`` for ``<session>/subagents/<agent>/``."""
        folder = path.parent
        if folder.parent.name == SUBAGENTS:
            return folder.parent.parent.name, "subagent", folder.name
        return folder.name, "main", None

