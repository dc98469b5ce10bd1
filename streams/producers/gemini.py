"""Gemini CLI: tail the chat recordings under ``${GEMINI_CLI_HOME or ~/.gemini}/tmp``.

Layout (session-formats.md section 3.2; gemini-cli ``chatRecordingService.ts``): one folder per
project, ``tmp/<project_hash>/chats/``, holding

- ``session-<YYYY-MM-DDTHH-MM>-<id8>.jsonl`` (current): appended records, line 1 the metadata
  (``sessionId`` = the full session uuid; the name only carries its first 8 characters). Tailed.
- ``session-*.json`` (legacy, before ~Feb 2026): one pretty-printed JSON object rewritten in
  place on every message. Not appendable, so :meth:`GeminiProducer.snapshot` names it and the
  base publishes the whole text as ``file.snapshot`` each time it changes. Resuming such a
  session makes gemini-cli copy it into ``session-*.jsonl`` beside it with the same session id
  and message ids; both files must therefore land in one session (see :meth:`describe`), where
  the copied messages hit the keys the legacy file already wrote.
- ``<parent_session_id>/<session_id>.jsonl``: a sub-agent's recording (metadata
  ``kind: "subagent"``), nested under the full id of the session that spawned it. Published
  under that parent session as a ``subagent`` file whose ``agent_id`` is its own session id,
  the way Claude's and Codex's sub-agent files are.

Not read, on purpose: ``chats/checkpoint-<tag>.json`` (``/chat save``) holds the model's
``Content[]`` history again, without ids or tokens, so it would only duplicate messages;
``tmp/<hash>/logs.json`` repeats the user prompts of the chats (no replies, no tokens);
``tool-outputs/`` holds raw tool output the chat's tool results already summarize. Temporary
and backup files (``*.jsonl.tmp-<pid>``, ``*.jsonl.unreadable-<ms>``) do not end in ``.json[l]``.
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

__all__ = ["GeminiProducer"]

logger = logging.getLogger(__name__)

CHATS = "chats"
SESSION_NAME = re.compile(r"^session-(?:\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-)?(?P<id>.+)$")
# A pretty-printed legacy chat starts with "{" alone; its first key is sessionId.
SESSION_ID_KEY = re.compile(r'"sessionId"\s*:\s*"(?P<id>[^"\\]+)"')
HEAD_BYTES = 4096


class GeminiProducer(FileProducer):
    """Publishes every Gemini CLI chat recording: appended ``.jsonl`` lines, whole legacy
    ``.json`` chats, and sub-agent recordings under their parent's session."""

    source: ClassVar[str] = "gemini-cli"
    provider: ClassVar[str | None] = "gcp.gemini"
    help_text: ClassVar[str] = "Gemini CLI chats in ~/.gemini/tmp ($GEMINI_CLI_HOME)"
    example_root: ClassVar[str] = "~/.gemini/tmp"
    rank: ClassVar[int] = 30

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """``$GEMINI_CLI_HOME/tmp`` when set (gemini-cli keeps ``.gemini`` inside it), else
        ``~/.gemini/tmp``; returned even when it does not exist (the base tolerates that)."""
        configured = env.get("GEMINI_CLI_HOME", "").strip()
        if configured:
            return [Path(configured).expanduser() / ".gemini" / "tmp"]
        home = home_of(env)
        return [home / ".gemini" / "tmp"]

    @classmethod
    def claims(cls, root: Path) -> bool:
        """A bare ``--source`` path is Gemini's when a ``chats/session-*.json[l]`` is below it
        (or it is a ``chats`` folder holding one)."""
        root = Path(root)
        pattern = "session-*.json*" if root.name == CHATS else f"{CHATS}/session-*.json*"
        return any(p.suffix in (".json", ".jsonl") for p in root.rglob(pattern))

    def matches(self, path: Path) -> bool:
        """``chats/session-*.jsonl``, legacy ``chats/session-*.json``, and sub-agent
        ``chats/<parent>/<id>.jsonl``; never ``checkpoint-*.json`` or ``logs.json``."""
        if path.parent.name == CHATS:
            return path.name.startswith("session-") and path.suffix in (".jsonl", ".json")
        return path.parent.parent.name == CHATS and path.suffix == ".jsonl"

    def snapshot(self, path: Path) -> bool:
        """Legacy ``session-*.json`` chats are rewritten whole: published as snapshots."""
        return path.suffix == ".json"

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        """``(sessionId, "main", None)``, or ``(parent id, "subagent", own id)`` for a file
        nested under ``chats/<parent>/``.

        The session id is the first line's ``sessionId`` (the jsonl metadata record, or a
        legacy chat written on one line). A pretty-printed legacy chat's first line is ``{``,
        so its first few KB are read to find ``sessionId`` (the key gemini-cli writes first);
        failing that the id part of the name (``session-<time>-<id8>``), then the stem. The
        full id matters: a legacy chat and its ``.jsonl`` continuation must share a session.
        """
        own = _session_id(first_line) or (
            _head_session_id(path) if self.snapshot(path) else None)
        if path.parent.name != CHATS and path.parent.parent.name == CHATS:
            return path.parent.name, "subagent", own or path.stem
        if own is None:
            named = SESSION_NAME.match(path.stem)
            own = named["id"] if named else path.stem
        return own, "main", None


def _session_id(first_line: str | None) -> str | None:
    if not first_line:
        return None
    try:
        record: Any = json.loads(first_line)
    except ValueError:
        return None
    value = record.get("sessionId") if isinstance(record, dict) else None
    return value if isinstance(value, str) and value else None


def _head_session_id(path: Path) -> str | None:
    """``sessionId`` from the first bytes of a pretty-printed legacy chat, if readable."""
    try:
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES).decode("utf-8", errors="replace")
    except OSError as exc:
        logger.debug("cannot read head of path=%s error=%s", path, exc)
        return None
    found = SESSION_ID_KEY.search(head)
    return found["id"] if found else None
