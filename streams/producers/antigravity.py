"""Google Antigravity (IDE and CLI ``agy``): publish the readable files under ``~/.gemini``.

Both apps keep one folder per conversation, ``brain/<conversation-uuid>/`` (session-formats.md
section 3.3), under ``~/.gemini/antigravity`` (IDE) and ``~/.gemini/antigravity-cli`` (CLI);
the session is that uuid. Read from it:

* the artifacts the agent keeps, directly in the conversation folder: ``<name>.md``
  (``task.md``, ``implementation_plan.md``, ``walkthrough.md``, ...), their snapshots
  ``<name>.md.resolved`` and ``<name>.md.resolved.<N>``, and ``<name>.md.metadata.json``
  (type, summary, version). They are rewritten in place, so each is published whole
  (``file.snapshot``) on change, as an ``artifact`` file: its removal ends nothing;
* the CLI's readable transcript ``.system_generated/logs/transcript.jsonl``, one step per
  appended line, the conversation's ``main`` file. Its sibling ``transcript_full.jsonl``
  repeats the same steps (untruncated) and is not read, so no step is counted twice;
* the CLI's prompt log ``history.jsonl`` at the ``antigravity-cli`` root (any root of this
  producer), appended lines published under the one session ``antigravity-cli-history`` as
  an ``artifact`` file; the parser re-files each line that names its ``conversationId``.

Out of reach, and never read: ``conversations/*.pb`` and ``implicit/*.pb`` (encrypted or
custom-encoded: high-entropy bytes with no protobuf framing), the CLI's ``conversations/*.db``
(SQLite whose ``step_payload`` is an unpublished protobuf, not a text log; the transcript above
holds the same steps readably), ``user_settings.pb``, ``knowledge/`` and ``browser_recordings/``.
No token counts exist on disk for either app (quota lives in the local language server only).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from schemas.file_changes import FileKind
from streams.producers.base import FileProducer
from streams.producers.homes import home_of

__all__ = ["HISTORY_SESSION", "AntigravityProducer"]

BRAIN = "brain"
HISTORY = "history.jsonl"
HISTORY_SESSION = "antigravity-cli-history"
CLI_HOME = "antigravity-cli"
RECORDINGS = "browser_recordings"
TRANSCRIPT_DIRS = (".system_generated", "logs", "transcript.jsonl")
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
ARTIFACT_NAME = re.compile(r"^.+\.md(?:\.resolved(?:\.\d+)?|\.metadata\.json)?$")


class AntigravityProducer(FileProducer):
    """Publishes Antigravity's brain artifacts (whole), CLI transcripts and prompt history."""

    source: ClassVar[str] = "antigravity"  # no provider: it writes no token counts to disk
    help_text: ClassVar[str] = (
        "Antigravity conversations in ~/.gemini/antigravity and ~/.gemini/antigravity-cli")
    example_root: ClassVar[str] = "~/.gemini/antigravity"
    rank: ClassVar[int] = 40

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """``~/.gemini/antigravity`` (IDE) and ``~/.gemini/antigravity-cli`` (CLI), from
        ``HOME``; roots that do not exist are returned too (the base tolerates them)."""
        home = home_of(env)
        return [home / ".gemini" / "antigravity", home / ".gemini" / CLI_HOME]

    @classmethod
    def claims(cls, root: Path) -> bool:
        """A bare ``--source`` path is Antigravity's when it is a CLI home (its
        ``history.jsonl`` lines name a ``workspace``; Claude and Codex keep a
        ``history.jsonl`` too) or holds a ``brain/`` folder (or is one) with a
        conversation-uuid subfolder."""
        root = Path(root)
        if _is_cli_history(root / HISTORY):
            return True
        brain = root if root.name == BRAIN else root / BRAIN
        try:
            return any(UUID.match(child.name) and child.is_dir() for child in brain.iterdir())
        except OSError:  # missing or unreadable: not ours to claim
            return False

    def matches(self, path: Path) -> bool:
        """Brain artifacts and CLI transcripts of a conversation folder, and the CLI history."""
        if path.name == HISTORY:
            return path.parent.name == CLI_HOME or path.parent in self.roots
        return _conversation(path) is not None

    def snapshot(self, path: Path) -> bool:
        """Artifacts and their metadata are rewritten in place; the two logs are appended."""
        found = _conversation(path)
        return found is not None and not found[1]

    def prune(self, dirpath: Path, dirnames: list[str]) -> None:
        """Inside a conversation folder only ``.system_generated/logs`` can hold a match (the
        rest are screenshots, recordings and scratch files); elsewhere skip the recordings."""
        if dirpath.parent.name == BRAIN and UUID.match(dirpath.name):
            keep = {TRANSCRIPT_DIRS[0]}
        elif dirpath.name == TRANSCRIPT_DIRS[0] and dirpath.parent.parent.name == BRAIN:
            keep = {TRANSCRIPT_DIRS[1]}
        else:
            keep = {name for name in dirnames if name != RECORDINGS}
        dirnames[:] = [name for name in dirnames if name in keep]

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        """``(conversation uuid, "main" | "artifact", None)``; the history file is
        ``(HISTORY_SESSION, "artifact", None)`` so its removal closes no session. A path
        outside a conversation folder falls back to its stem, so it stays traceable."""
        found = _conversation(path)
        if found is None:
            return (HISTORY_SESSION if path.name == HISTORY else path.stem), "artifact", None
        conversation, is_transcript = found
        return conversation, "main" if is_transcript else "artifact", None


def _is_cli_history(path: Path) -> bool:
    """True when the first line of ``path`` is an ``agy`` prompt (it names a workspace)."""
    try:
        with path.open("rb") as f:
            first = json.loads(f.readline() or b"null")
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and "workspace" in first and "display" in first


def _conversation(path: Path) -> tuple[str, bool] | None:
    """``(conversation uuid, is the transcript)`` for a readable file of a ``brain/<uuid>/``
    folder, else None. Artifacts count only directly in the folder, not in subfolders."""
    parts = path.parts
    for at in range(len(parts) - 2, 0, -1):
        if parts[at - 1] != BRAIN or not UUID.match(parts[at]):
            continue
        rest = parts[at + 1:]
        if rest == TRANSCRIPT_DIRS:
            return parts[at], True
        if len(rest) == 1 and ARTIFACT_NAME.match(rest[0]):
            return parts[at], False
        return None
    return None
