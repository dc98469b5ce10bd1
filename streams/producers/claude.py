"""Claude Code: tail the JSONL transcripts under each config dir's ``projects/``.

Three on-disk eras of sub-agent files are mapped to their parent session here (see
``session-formats.md`` section 1.1): 2.1.x ``<proj>/<session>/subagents/**/agent-<id>.jsonl``
(the session is the folder that holds ``subagents/``), ~2.0.x siblings ``<proj>/agent-<id>.jsonl``
(the session is the ``sessionId`` of the file's first line) and <=1.0.x inline side-chains,
which live in the main ``<proj>/<session-uuid>.jsonl`` and need nothing special. Workflow
``journal.jsonl`` files are run logs, not transcripts, and are not tailed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from schemas.file_changes import FileKind
from streams.producers.base import FileProducer
from streams.producers.homes import home_of

__all__ = ["ClaudeCodeProducer"]

logger = logging.getLogger(__name__)

AGENT_PREFIX = "agent-"


class ClaudeCodeProducer(FileProducer):
    """Publishes every line of every Claude Code transcript, main and sub-agent."""

    source: ClassVar[str] = "claude-code"
    provider: ClassVar[str | None] = "anthropic"
    help_text: ClassVar[str] = "Claude Code transcripts in ~/.claude/projects ($CLAUDE_CONFIG_DIR)"
    example_root: ClassVar[str] = "~/.claude/projects"
    rank: ClassVar[int] = 10
    fallback: ClassVar[bool] = True  # bare paths no other source claims are transcripts

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """``$CLAUDE_CONFIG_DIR`` entries (comma-separated) + ``/projects``, else the two
        usual homes; roots that do not exist are returned too (the base tolerates them)."""
        configured = [p.strip() for p in env.get("CLAUDE_CONFIG_DIR", "").split(",")]
        dirs = [Path(p).expanduser() for p in configured if p]
        if not dirs:
            home = home_of(env)
            dirs = [home / ".claude", home / ".config" / "claude"]
        return [d / "projects" for d in dirs]

    def matches(self, path: Path) -> bool:
        """Every ``*.jsonl`` under a root except workflow ``journal.jsonl`` run logs."""
        if path.suffix != ".jsonl":
            return False
        return not (path.name == "journal.jsonl" and "workflows" in self._relative(path))

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        """Session, kind and agent id of a transcript, by era (see the module docstring).

        Only a sibling agent file (~2.0.x) has its session outside its path, so only its first
        line is parsed; one with no ``sessionId`` there (or not JSON) is its own session,
        ``agent-<id>``, so its lines are still published and traceable.
        """
        parts, stem = self._relative(path), path.stem
        agent_id = stem.removeprefix(AGENT_PREFIX) if stem.startswith(AGENT_PREFIX) else None
        if "subagents" in parts[:-1]:
            anchor = parts.index("subagents")
            # anchor 0: the root itself is a session folder
            session_id = parts[anchor - 1] if anchor else path.parents[len(parts) - 1].name
            return session_id, "subagent", agent_id or stem
        if agent_id is not None:
            return _session_of(first_line) or stem, "subagent", agent_id
        return stem, "main", None

    def _relative(self, path: Path) -> tuple[str, ...]:
        """``path``'s parts below the root holding it, so ancestors of a root never count."""
        for root in self.roots:
            if path.is_relative_to(root):
                return path.relative_to(root).parts
        return path.parts


def _session_of(first_line: str | None) -> str | None:
    """The ``sessionId`` of a JSON line, or None when absent or unparseable."""
    if not first_line:
        return None
    try:
        record = json.loads(first_line)
    except ValueError:
        logger.debug("first line is not JSON; using the file name as session")
        return None
    session_id = record.get("sessionId") if isinstance(record, dict) else None
    return session_id if isinstance(session_id, str) and session_id else None
