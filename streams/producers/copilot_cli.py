"""GitHub Copilot CLI: tail the session event logs under ``${COPILOT_HOME or ~/.copilot}``.

Layout (docs/sources/copilot-cli.md; GitHub's "Copilot CLI configuration directory" reference;
github/copilot-sdk ``session-events``): one folder per session,
``session-state/<session-id>/events.jsonl``, one event per appended line
(``{type, id, parentId, timestamp, data, agentId?}``); the folder name is the session id and
equals ``session.start.data.sessionId``. A resumed session appends to the same file. Events of
a sub-agent are written to its parent's log with a top-level ``agentId`` (older versions: a
``data.parentToolCallId``), so there is no sub-agent file. Read as well:

- ``session-state/<session-id>.jsonl`` and ``history-session-state/<session-id>.jsonl``: the
  same events in the flat layout of earlier versions; tailed the same way.
- ``history-session-state/*.json``: the first releases' whole-JSON sessions (``sessionId``,
  ``startTime``, OpenAI-style ``chatMessages``), rewritten in place: published whole as
  snapshots. They hold no token counts.

The root moves with ``COPILOT_HOME``; releases up to 0.0.421 honoured ``XDG_CONFIG_HOME``
(``$XDG_CONFIG_HOME/.copilot``), so that location is read too when the variable is set.

Not read, on purpose: ``session-state/<id>/workspace.yaml`` (id, cwd, title: the log already
has the cwd), ``checkpoints/``, ``plan.md`` and ``files/`` (workspace artifacts, not the
conversation), ``session-store.db`` (a cross-session index of the same sessions), ``logs/``
(process logs), ``otel/`` (an opt-in OpenTelemetry export that repeats the usage). Token usage
is only in the ``session.shutdown`` events of the log (see the parser).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from schemas.file_changes import FileKind
from streams.producers.base import FileProducer
from streams.producers.homes import home_of

__all__ = ["CopilotCliProducer", "copilot_home"]

STATE = "session-state"
HISTORY = "history-session-state"
STATE_DIRS = (STATE, HISTORY)
EVENTS = "events.jsonl"
# Legacy whole-JSON names seen: "<id>.json" and "session_<id>_<epoch-ms>.json".
LEGACY_NAME = re.compile(r"^(?:session_)?(?P<id>.+?)(?:_\d{10,})?$")
SESSION_ID_KEY = re.compile(r'"sessionId"\s*:\s*"(?P<id>[^"\\]+)"')
HEAD_BYTES = 4096


def copilot_home(env: Mapping[str, str], platform: str = sys.platform) -> Path:
    """``$COPILOT_HOME`` when set, else ``<home>/.copilot``; home is ``USERPROFILE`` on
    Windows (``platform`` starting with ``win``), else ``HOME``."""
    configured = env.get("COPILOT_HOME", "").strip()
    if configured:
        return Path(configured).expanduser()
    return home_of(env, platform) / ".copilot"


class CopilotCliProducer(FileProducer):
    """Publishes every event of every Copilot CLI session log, and legacy JSON sessions."""

    source: ClassVar[str] = "copilot-cli"
    provider: ClassVar[str | None] = None  # Copilot serves Anthropic, OpenAI and Google models
    help_text: ClassVar[str] = (
        "GitHub Copilot CLI sessions in ~/.copilot/session-state ($COPILOT_HOME)")
    example_root: ClassVar[str] = "~/.copilot"
    rank: ClassVar[int] = 64

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """``session-state`` and ``history-session-state`` of :func:`copilot_home`, plus those
        of ``$XDG_CONFIG_HOME/.copilot`` when that variable is set and no ``COPILOT_HOME``
        overrides it; roots that do not exist are returned too."""
        homes = [copilot_home(env)]
        xdg = env.get("XDG_CONFIG_HOME", "").strip()
        if xdg and not env.get("COPILOT_HOME", "").strip():
            homes.append(Path(xdg).expanduser() / ".copilot")
        return [home / name for home in homes for name in STATE_DIRS]

    @classmethod
    def claims(cls, root: Path) -> bool:
        """A bare ``--source`` path is Copilot's when it is (or holds) a ``session-state``
        folder with a ``<id>/events.jsonl``, or a ``history-session-state`` folder."""
        root = Path(root)
        for state in (root, *(root / name for name in STATE_DIRS)):
            if state.name == HISTORY and state.is_dir():
                return True
            if state.name == STATE and next(state.glob(f"*/{EVENTS}"), None) is not None:
                return True
        return False

    def matches(self, path: Path) -> bool:
        """``session-state/<id>/events.jsonl``; ``*.jsonl`` directly in either state folder;
        legacy ``history-session-state/*.json``."""
        if path.name == EVENTS:
            return path.parent.parent.name in STATE_DIRS
        if path.parent.name not in STATE_DIRS:
            return False
        return path.suffix == ".jsonl" or (path.suffix == ".json" and path.parent.name == HISTORY)

    def snapshot(self, path: Path) -> bool:
        """Legacy ``history-session-state/*.json`` sessions are rewritten whole."""
        return path.suffix == ".json"

    def prune(self, dirpath: Path, dirnames: list[str]) -> None:
        """At a ``.copilot`` home keep only the two state folders; inside a session folder
        nothing below is read (checkpoints, files)."""
        if dirpath.parent.name in STATE_DIRS:
            dirnames[:] = []
        elif dirpath.name not in STATE_DIRS and any(n in STATE_DIRS for n in dirnames):
            dirnames[:] = [n for n in dirnames if n in STATE_DIRS]

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        """``(session id, "main", None)``: the folder name of an ``events.jsonl``, else the
        ``sessionId`` of the first line (or of a legacy JSON's head), else the file's stem."""
        if path.name == EVENTS:
            return path.parent.name, "main", None
        own = _session_id(first_line)
        if own is None and self.snapshot(path):
            own = _head_session_id(path)
        if own is None:
            named = LEGACY_NAME.match(path.stem)
            own = named["id"] if named else path.stem
        return own, "main", None


def _session_id(first_line: str | None) -> str | None:
    """``data.sessionId`` of a ``session.start`` line, or a top-level ``sessionId``."""
    if not first_line:
        return None
    try:
        record: Any = json.loads(first_line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    data = record.get("data")
    value = data.get("sessionId") if isinstance(data, dict) else record.get("sessionId")
    return value if isinstance(value, str) and value else None


def _head_session_id(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None
    found = SESSION_ID_KEY.search(head)
    return found["id"] if found else None
