"""Checkpoints: how far each file of one producer has been published, kept in one JSON file.

A :class:`Position` per file path records the byte offset and line number just past the last
published line, with what is needed to notice a replaced or rewritten file and to describe a
file that vanished. :func:`load_positions` and :func:`save_positions` read and write the whole
map; the file is replaced atomically, so a crash leaves the old checkpoint or the new one, and a
checkpoint that cannot be read is a :class:`~streams.errors.SourceError` the user must act on.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from schemas.file_changes import FileKind
from streams.errors import SourceError

__all__ = ["Position", "load_positions", "save_positions"]


@dataclass(frozen=True)
class Position:
    """How far one file has been published; one entry of the checkpoint file.

    ``offset``/``line_no`` point just past the last complete line; ``inode``/``size`` detect
    truncation or replacement, ``head`` (a digest of the first bytes published, see
    :data:`streams.producers.tailing.HEAD_BYTES`) and an mtime change without growth detect a
    rewrite in place, whatever its size. ``mtime`` and the cached ``describe`` result let a file
    that vanished be reported with a stable event id and its session, even though it cannot be
    read. A file read as records (:mod:`~streams.producers.records`) sets ``records``; its
    ``cursor`` is what its producer returned to say what was read, and ``size``/``mtime`` sum
    and max the file with its SQLite sidecars, so an unchanged database is not read again.
    """

    offset: int = 0
    line_no: int = 0
    inode: int = 0
    size: int = 0
    mtime: float = 0.0
    session_id: str | None = None
    file_kind: FileKind = "main"
    agent_id: str | None = None
    head: str = ""
    records: bool = False
    cursor: str | None = None


def load_positions(path: Path) -> dict[str, Position]:
    """The positions saved at ``path`` (none when it does not exist).

    Raises:
        SourceError: the file exists but cannot be read as a checkpoint; the message says to
            delete it, which re-publishes every file from the start.
    """
    try:
        raw = json.loads(path.read_text())
        return {key: Position(**value) for key, value in raw.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise SourceError(
            f"unreadable checkpoint {path}: {exc}; "
            "delete it to re-publish every file from the start"
        ) from exc


def save_positions(path: Path, positions: dict[str, Position]) -> None:
    """Write ``positions`` to ``path`` atomically: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({k: asdict(v) for k, v in sorted(positions.items())}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
