"""Tailing one file: read what was appended since its checkpoint, up to the last newline.

:func:`read_chunk` reads the complete lines of an append-only file after a
:class:`~streams.producers.checkpoints.Position` and notices when the file is no longer the one
published (replaced, truncated or rewritten in place), in which case it starts again from byte
0. :func:`read_snapshot` reads a file that is rewritten whole. Both run in a worker thread, open
only regular files (a FIFO named like a session file cannot hang them) and never publish: they
return what was read and the position after it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from schemas.file_changes import MAX_SNAPSHOT_BYTES
from streams.producers.checkpoints import Position
from streams.producers.clipping import fit_text

__all__ = ["CHUNK_BYTES", "HEAD_BYTES", "Chunk", "read_chunk", "read_snapshot"]

CHUNK_BYTES = 8 * 1024 * 1024  # bounds memory per read when a file holds huge lines
HEAD_BYTES = 4096  # the published head whose digest tells an append from a rewrite


@dataclass(frozen=True)
class Chunk:
    """What one :func:`read_chunk` call read."""

    position: Position  # after the lines read; identity reset when the file was restarted
    lines: list[tuple[int, int, str]]  # (offset, line_no, text) of non-empty complete lines
    first_line: str | None  # the file's first line, given while its session is not known
    restarted: bool
    more: bool  # stopped at a limit, not at the end of complete lines


def read_chunk(path: Path, pos: Position | None, max_lines: int) -> Chunk:
    """Read up to ``max_lines`` complete non-empty lines of ``path`` after ``pos``.

    ``first_line`` is set when lines were read and ``pos`` knows no session yet; it is the
    first line already read when reading started at byte 0, so it is read from disk once.
    Raises ``OSError`` (``FileNotFoundError`` included) when the file cannot be read.
    """
    with _open_regular(path) as f:
        st = os.fstat(f.fileno())
        restarted = pos is not None and _rewritten(f, st, pos)
        start = Position() if pos is None or restarted else pos
        f.seek(start.offset)
        offset, line_no, more = start.offset, start.line_no, False
        lines: list[tuple[int, int, str]] = []
        while not (more := len(lines) >= max_lines or offset - start.offset >= CHUNK_BYTES):
            raw = f.readline()
            if not raw.endswith(b"\n"):  # end of file, or a partial line still being written
                break
            line_no += 1
            text = _decode(raw)
            if text.strip():
                lines.append((offset, line_no, text))
            offset += len(raw)
        first_line = None
        if lines and start.session_id is None:
            first_line = lines[0][2] if lines[0][0] == 0 else _first_line(f)
        head = start.head
        if offset != start.offset and (not head or start.offset < HEAD_BYTES):
            head = _head_digest(f, offset)
    position = replace(start, offset=offset, line_no=line_no, inode=st.st_ino, size=st.st_size,
                       mtime=st.st_mtime, head=head)
    return Chunk(position, lines, first_line, restarted, more)


def read_snapshot(path: Path, pos: Position | None) -> tuple[Position, str, bool] | None:
    """``(position, text, truncated)`` of a whole file, or None when unchanged since ``pos``.

    The text is cut at :data:`~schemas.file_changes.MAX_SNAPSHOT_BYTES` (``truncated`` then
    says so). Raises ``OSError`` when the file cannot be read.
    """
    with _open_regular(path) as f:
        st = os.fstat(f.fileno())
        if pos is not None and (st.st_ino, st.st_size, st.st_mtime) == (
                pos.inode, pos.size, pos.mtime):
            return None
        raw = f.read(MAX_SNAPSHOT_BYTES + 1)
    text, cut = fit_text(raw[:MAX_SNAPSHOT_BYTES].decode("utf-8", errors="replace"))
    truncated = cut or len(raw) > MAX_SNAPSHOT_BYTES
    start = pos or Position()
    position = replace(start, offset=st.st_size, line_no=1, inode=st.st_ino, size=st.st_size,
                       mtime=st.st_mtime)
    return position, text, truncated


def _decode(raw: bytes) -> str:
    return raw.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8", errors="replace")


def _first_line(f: BinaryIO) -> str:
    f.seek(0)
    return _decode(f.readline())


def _open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading; ``OSError`` unless it is a regular file. Opened without
    blocking, so a FIFO or a device named like a session file cannot hang the scan."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _head_digest(f: BinaryIO, offset: int) -> str:
    f.seek(0)
    return hashlib.sha256(f.read(min(offset, HEAD_BYTES))).hexdigest()[:32]


def _rewritten(f: BinaryIO, st: os.stat_result, pos: Position) -> bool:
    """True when the file at ``pos`` is no longer the one published: replaced, truncated, or
    rewritten in place (its published head differs, or it changed without growing)."""
    if st.st_ino != pos.inode or st.st_size < pos.offset:
        return True
    if (st.st_size, st.st_mtime) == (pos.size, pos.mtime) or pos.offset == 0:
        return False  # untouched since the last read (the common case: no extra read)
    if st.st_size == pos.size:
        return True  # modified without growing: an append-only file was rewritten
    return bool(pos.head) and _head_digest(f, pos.offset) != pos.head
