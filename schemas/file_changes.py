"""``sessions.file-changes.v1``: one complete line appended to a watched session file.

Producers publish raw lines with the file, the byte offset where the line starts, its line
number and the file's mtime; nothing is parsed yet (parsing is the agents' job). A file that
disappears is published once as ``file.removed`` so sessions can close.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.envelope import Envelope, derive_event_id

__all__ = ["FileChanged", "FileLine", "file_line_event", "file_removed_event"]

FileKind = Literal["main", "subagent"]


class FileLine(BaseModel):
    """The payload: a line and where it came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    offset: int = Field(ge=0, description="Byte offset of the line's first byte.")
    line_no: int = Field(ge=1)
    line: str = Field(default="", description="The line without its newline; empty on removal.")
    mtime: datetime
    file_kind: FileKind = "main"
    agent_id: str | None = None


FileChanged = Envelope[FileLine]


def file_line_event(source: str, session_id: str, line: FileLine) -> FileChanged:
    """The event for one complete line; its id is (source, path, offset)."""
    return FileChanged(
        event_id=derive_event_id(source, line.path, line.offset),
        source=source,
        type="file.line_appended",
        occurred_at=line.mtime,
        session_id=session_id,
        payload=line,
    )


def file_removed_event(source: str, session_id: str, line: FileLine) -> FileChanged:
    return FileChanged(
        event_id=derive_event_id(source, line.path, "removed", line.mtime.isoformat()),
        source=source,
        type="file.removed",
        occurred_at=line.mtime,
        session_id=session_id,
        payload=line,
    )
