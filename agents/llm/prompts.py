"""The prompts of the LLM summarizer: a system prompt and a user prompt template.

Both are text files; the shipped defaults are package data (``agents/llm/prompts/``), and
``SESSIONSTREAM_LLM_PROMPT_FILE_SYSTEM`` / ``..._USER`` replace them. The user template is a
:class:`string.Template`: ``$name`` (or ``${name}``) is replaced by a field of the deterministic
summary (:data:`FIELDS`); ``$$`` is a dollar sign; an unknown ``$name`` stays as written. The
system prompt is sent as is. Files are read once, when the summarizer is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from schemas.summaries import SessionSummary

__all__ = ["FIELDS", "MAX_FILES", "Prompts"]

MAX_FILES = 30  # files listed in a prompt: a long session touches hundreds
FIELDS = ("session_id", "source", "status", "title", "project", "working_dir", "first_prompt",
          "started_at", "last_activity_at", "ended_at", "duration_min", "prompts",
          "assistant_messages", "tool_calls", "tool_errors", "tools", "files", "file_count",
          "total_tokens", "cost_usd", "summary_json")


def _shipped(name: str) -> str:
    return resources.files("agents.llm").joinpath("prompts", name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Prompts:
    """The system prompt and the user template."""

    system: str
    user: Template

    @classmethod
    def load(cls, system_file: Path | None = None, user_file: Path | None = None) -> Prompts:
        """The files given, else the shipped defaults. Raises ``OSError`` when a file given
        cannot be read (settings check they exist at startup)."""
        system = (system_file.read_text(encoding="utf-8") if system_file
                  else _shipped("system.txt"))
        user = user_file.read_text(encoding="utf-8") if user_file else _shipped("user.txt")
        return cls(system.strip(), Template(user))

    def render(self, summary: SessionSummary) -> tuple[str, str]:
        """``(system, user)`` for ``summary``."""
        return self.system, self.user.safe_substitute(_values(summary))


def _values(s: SessionSummary) -> dict[str, str]:
    none = "unknown"
    files = s.files[:MAX_FILES] + ([f"... {len(s.files) - MAX_FILES} more"]
                                   if len(s.files) > MAX_FILES else [])
    return {
        "session_id": s.session_id, "source": s.source, "status": s.status,
        "title": s.title or none, "project": s.project or none,
        "working_dir": s.working_dir or none, "first_prompt": s.first_prompt or none,
        "started_at": s.started_at.isoformat() if s.started_at else none,
        "last_activity_at": s.last_activity_at.isoformat() if s.last_activity_at else none,
        "ended_at": s.ended_at.isoformat() if s.ended_at else none,
        "duration_min": f"{s.duration_s / 60:.0f}", "prompts": str(s.prompts),
        "assistant_messages": str(s.assistant_messages), "tool_calls": str(s.tool_calls),
        "tool_errors": str(s.tool_errors),
        "tools": ", ".join(f"{name} x{n}" for name, n in s.tools.items()) or "none",
        "files": ", ".join(files) or "none", "file_count": str(len(s.files)),
        "total_tokens": str(s.tokens.total), "cost_usd": f"{s.cost_usd:.4f}",
        "summary_json": s.model_dump_json(exclude={"llm"}),
    }
