"""``sessions.file-changes.v1``: one complete line appended to a watched session file.

Producers publish raw lines with the file, the byte offset where the line starts, its line
number and the file's mtime; nothing is parsed yet (parsing is the agents' job). A file that
disappears is published once as ``file.removed`` so sessions can close.

Files that are rewritten in place rather than appended to (a ``state.json``, a ``plan.md``, a
legacy single-JSON chat) are published whole, once per change, as ``file.snapshot``: ``line``
holds the file's text (cut at ``MAX_SNAPSHOT_BYTES``, flagged ``truncated``), ``offset`` is 0
and ``line_no`` 1. A snapshot's id derives from the path, the mtime and the content hash, so a
re-published snapshot is the same event and a new revision is a new one.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.envelope import Envelope, derive_event_id
from schemas.limits import MAX_SAFE_INT

__all__ = [
    "MAX_SNAPSHOT_BYTES", "FileChanged", "FileLine", "file_line_event", "file_removed_event",
    "file_snapshot_event",
]

MAX_SNAPSHOT_BYTES = 512 * 1024  # a snapshot event stays well under Kafka's 1 MiB default

FileKind = Literal["main", "subagent", "artifact"]
"""``main``: the session's own transcript; ``subagent``: a sub-agent's transcript filed under the
session; ``artifact``: a file the agent keeps beside the session (a plan, a state file) whose
removal does not end the session."""


class FileLine(BaseModel):
    """The payload: a line and where it came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    offset: int = Field(ge=0, le=MAX_SAFE_INT, description="Byte offset of the line's first byte.")
    line_no: int = Field(ge=1, le=MAX_SAFE_INT)
    line: str = Field(default="", description="The line without its newline; empty on removal.")
    mtime: datetime
    file_kind: FileKind = "main"
    agent_id: str | None = None
    truncated: bool = Field(default=False, description="A snapshot cut at MAX_SNAPSHOT_BYTES.")
    original_bytes: int | None = Field(
        default=None, ge=0, le=MAX_SAFE_INT,
        description="Set when the line was too big for one record and was clipped: its size in "
                    "bytes on disk. Long strings end in '… [clipped N chars]'; numbers, ids and "
                    "the JSON shape are kept.")


FileChanged = Envelope[FileLine]


def file_line_event(source: str, session_id: str, line: FileLine, *,
                    validate: bool = True) -> FileChanged:
    """The event for one complete line; its id is (source, path, offset). ``validate=False``
    skips validation, for a producer whose values are valid by construction (it costs more
    than building the event)."""
    build = FileChanged if validate else FileChanged.model_construct
    return build(
        event_id=derive_event_id(source, line.path, line.offset),
        source=source,
        type="file.line_appended",
        occurred_at=line.mtime,
        session_id=session_id,
        payload=line,
        schema_version=1,
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


def file_snapshot_event(source: str, session_id: str, snapshot: FileLine) -> FileChanged:
    """The event for the whole current text of a rewritten-in-place file."""
    digest = hashlib.sha256(snapshot.line.encode("utf-8", "surrogatepass")).hexdigest()
    return FileChanged(
        event_id=derive_event_id(source, snapshot.path, "snapshot", snapshot.mtime.isoformat(),
                                 digest),
        source=source,
        type="file.snapshot",
        occurred_at=snapshot.mtime,
        session_id=session_id,
        payload=snapshot,
    )
