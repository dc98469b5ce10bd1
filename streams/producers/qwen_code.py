"""Qwen Code: tail the chat recordings under ``<runtime dir>/projects/<project>/chats/``.

Layout (qwen-code ``Storage.getProjectDir`` and ``ChatRecordingService.ensureConversationFile``):
the runtime dir is ``$QWEN_RUNTIME_DIR``, else ``$QWEN_HOME`` (the ``.qwen`` folder itself),
else ``~/.qwen`` (``os.homedir()``: ``$HOME``, ``%USERPROFILE%`` on Windows; Qwen Code uses no
XDG or AppData folder). Each project (the working directory with every non-alphanumeric
character turned into ``-``) has ``chats/<sessionId>.jsonl``: one append-only JSON record per
line (``uuid``, ``parentUuid``, ``sessionId``, ``type`` user / assistant / tool_result / system).
Resuming a session appends to the same file; ``/branch`` writes a new file whose copied records
keep their ``uuid`` and name the parent in ``forkedFrom``.

Sub-agents: records a sub-agent produced carry ``agentId`` / ``isSidechain`` and are read
wherever they are. A recording nested as ``chats/<parent session>/<name>.jsonl`` is filed under
that parent as a ``subagent`` file (the shape Gemini CLI, which Qwen Code forked, uses).

Not read, on purpose: ``tmp/<hash>/`` (shell history, checkpoints, and the legacy single-JSON
``session-*.json`` chats of pre-JSONL Qwen Code versions, a Gemini-style format), ``debug/``
logs, ``settings.json`` and credentials. Gemini CLI's chats are always named ``session-*``;
Qwen Code's never are, so the two sources never claim each other's folders.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from schemas.file_changes import FileKind
from streams.producers.base import FileProducer
from streams.producers.homes import home_of

__all__ = ["QwenCodeProducer"]

CHATS = "chats"
GEMINI_PREFIX = "session-"  # Gemini CLI's chat names; Qwen Code names a chat by its session id
SKIPPED_DIRS = frozenset({"tool-outputs", "node_modules", ".git"})


class QwenCodeProducer(FileProducer):
    """Publishes every line of every Qwen Code chat recording."""

    source: ClassVar[str] = "qwen-code"
    provider: ClassVar[str | None] = None  # Qwen OAuth, DashScope, OpenAI, Anthropic, Gemini...
    help_text: ClassVar[str] = (
        "Qwen Code chats in ~/.qwen/projects ($QWEN_RUNTIME_DIR, $QWEN_HOME)")
    example_root: ClassVar[str] = "~/.qwen/projects"
    rank: ClassVar[int] = 68

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """``<runtime dir>/projects``: ``$QWEN_RUNTIME_DIR``, else ``$QWEN_HOME``, else
        ``~/.qwen`` (the same on Linux, macOS and Windows); returned even when missing."""
        for name in ("QWEN_RUNTIME_DIR", "QWEN_HOME"):
            configured = env.get(name, "").strip()
            if configured:
                return [_expand(configured, env) / "projects"]
        return [home_of(env) / ".qwen" / "projects"]

    @classmethod
    def claims(cls, root: Path) -> bool:
        """A bare ``--source`` path is Qwen Code's when a ``chats/<id>.jsonl`` not named
        ``session-*`` (Gemini CLI's) is below it, or it is such a ``chats`` folder."""
        root = Path(root)
        pattern = "*.jsonl" if root.name == CHATS else f"**/{CHATS}/*.jsonl"
        return any(_is_chat(p) for p in root.glob(pattern))

    def matches(self, path: Path) -> bool:
        """``chats/<id>.jsonl`` and nested ``chats/<parent>/<id>.jsonl``; never Gemini's
        ``session-*`` chats nor files outside a ``chats`` folder."""
        if path.suffix != ".jsonl" or path.name.startswith(GEMINI_PREFIX):
            return False
        return path.parent.name == CHATS or path.parent.parent.name == CHATS

    def prune(self, dirpath: Path, dirnames: list[str]) -> None:
        """Skip tool-output dumps and checkouts some installs keep under a project folder."""
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        """``(stem, "main", None)``: the file is named by its ``sessionId``; a recording
        nested under ``chats/<parent>/`` is ``(parent, "subagent", stem)``."""
        if path.parent.name != CHATS and path.parent.parent.name == CHATS:
            return path.parent.name, "subagent", path.stem
        return path.stem, "main", None


def _is_chat(path: Path) -> bool:
    return path.parent.name == CHATS and not path.name.startswith(GEMINI_PREFIX)


def _expand(value: str, env: Mapping[str, str]) -> Path:
    """``~`` and ``~/…`` against the env's home, as Qwen Code expands its overrides."""
    if value == "~" or value.startswith(("~/", "~\\")):
        return home_of(env) / value[2:]
    return Path(value)
