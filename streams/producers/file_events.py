"""The ``sessions.file-changes.v1`` events a file producer publishes, built from what it read.

One event per complete line (``file.line``, clipped to fit one record), per record of a
database or document (a ``file.line`` too, see :mod:`~streams.producers.records`), per whole
rewritten file (``file.snapshot``) and per file that vanished (``file.removed``); each carries
the path, byte offset, line number, mtime and the file's kind and agent from its
:class:`~streams.producers.checkpoints.Position`, so its event id is stable across re-reads.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from schemas.envelope import derive_event_id
from schemas.file_changes import (
    FileChanged,
    FileLine,
    file_line_event,
    file_removed_event,
    file_snapshot_event,
)
from streams.producers.checkpoints import Position
from streams.producers.clipping import fit_line
from streams.producers.records import Record

__all__ = ["line_event", "record_event", "removed_event", "snapshot_event"]

logger = logging.getLogger(__name__)


def line_event(source: str, key: str, pos: Position, line: tuple[int, int, str]) -> FileChanged:
    """The event of one ``(offset, line_no, text)`` line of the file ``key``; a line too big
    for one record is clipped (logged, and its ``original_bytes`` kept)."""
    offset, line_no, text = line
    clipped = fit_line(text)
    payload = _payload(key, pos, offset, line_no, text if clipped is None else clipped)
    if clipped is not None:
        size = len(text.encode("utf-8", "surrogatepass"))
        logger.warning("line too big for one record, clipped path=%s line=%d bytes=%d",
                       key, line_no, size)
        payload = payload.model_copy(update={"original_bytes": size})
    return file_line_event(source, pos.session_id or "", payload, validate=False)


def record_event(source: str, key: str, mtime: float, record: Record,
                 line_no: int) -> FileChanged:
    """The event of one record of the file ``key`` (a row, a document's element).

    Its id derives from (source, path, record key, record version), so reading the record
    again gives the same event and a new version a new one; it is filed under the record's
    session and dated by ``record.at`` (else the file's ``mtime``). Clipped like a line."""
    pos = Position(line_no=line_no, mtime=mtime, session_id=record.session_id,
                   file_kind=record.file_kind, agent_id=record.agent_id)
    event = line_event(source, key, pos, (0, line_no, record.text))
    update: dict[str, object] = {
        "event_id": derive_event_id(source, key, "record", record.key, record.version)}
    if record.at is not None:
        update["occurred_at"] = record.at
    return event.model_copy(update=update)


def snapshot_event(source: str, key: str, pos: Position, text: str,
                   truncated: bool) -> FileChanged:
    """The event of the whole text of the rewritten file ``key``."""
    payload = _payload(key, pos, 0, 1, text).model_copy(update={"truncated": truncated})
    return file_snapshot_event(source, pos.session_id or "", payload)


def removed_event(source: str, key: str, pos: Position) -> FileChanged:
    """The event of the file ``key`` having vanished, at its last published position."""
    payload = _payload(key, pos, pos.offset, max(pos.line_no, 1))
    return file_removed_event(source, pos.session_id or "", payload)


def _payload(key: str, pos: Position, offset: int, line_no: int, line: str = "") -> FileLine:
    # Built from values the producer produced (a path, offsets, decoded text), so validating
    # each line again would only cost time: construct without validation.
    return FileLine.model_construct(
        path=key,
        offset=offset,
        line_no=line_no,
        line=line,
        mtime=datetime.fromtimestamp(pos.mtime, UTC),
        file_kind=pos.file_kind,
        agent_id=pos.agent_id,
    )
