"""Record files: sources kept in a database or in a JSON document rewritten whole.

Some agents do not append lines: OpenCode and Goose keep their sessions in SQLite, Amp and
the Cline family rewrite one JSON document per conversation on every change. A producer for
such a format overrides :meth:`~streams.producers.base.FileProducer.records`, which turns one
file into :class:`Record` objects (a row, a message of the document), each published as one
``file.line_appended`` event whose line is the record's JSON text. The parsers read a record
exactly as they read a JSONL line.

What is new is decided by the producer, with a *cursor* the base keeps in the checkpoint and
gives back on the next read: a database with an update time uses the highest time read
(:func:`sqlite_rows` with ``WHERE time_updated >= ?``), a document uses :func:`changed`, whose
cursor remembers a short digest of every (key, version) published. A record's event id derives
from (source, path, key, version), so a record read twice is the same event and a record that
changed is a new one; its parser keys what it derives by the record's natural key, so the new
version replaces the old.

The database is read with the standard library's :mod:`sqlite3` only, opened read-only through
a ``file:`` URI (a reader never blocks the agent's writes and sees what its write-ahead log
holds).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from schemas.file_changes import FileKind

__all__ = ["SIDECARS", "Record", "changed", "digest", "epoch_ms", "sqlite_rows"]

SIDECARS = ("-wal", "-journal")
"""Files beside a SQLite database that change when it does (its write-ahead log, its rollback
journal): a change of either is a change of the database."""

_TOKEN_CHARS = 12  # 48 bits per (key, version): a false "unchanged" is ~1e-7 at 10k records
_TIMEOUT_S = 5.0  # how long a read waits for a writer's lock before giving up this scan


@dataclass(frozen=True)
class Record:
    """One row of a database or one element of a document, published as one line.

    ``key`` is unique within the file and stable across reads; ``version`` changes whenever the
    content does (an update time, or :func:`digest` of ``text``). ``text`` is the JSON object
    the parser reads; ``at`` when it happened (None: the file's mtime).
    """

    session_id: str
    key: str
    version: str
    text: str
    at: datetime | None = None
    file_kind: FileKind = "main"
    agent_id: str | None = None


def digest(text: str) -> str:
    """A short stable digest of ``text``, for a record's ``version``."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def changed(records: Iterable[Record], cursor: str | None) -> tuple[list[Record], str]:
    """``(the records whose (key, version) the cursor does not hold, the cursor of all)``.

    The cursor is a string of fixed-width tokens, one per (key, version) read, so it costs
    about a dozen bytes per record in the checkpoint; records that left the document drop out
    of it. ``None`` means nothing was read yet: every record is changed.
    """
    seen = _tokens(cursor or "")
    fresh: list[Record] = []
    tokens: list[str] = []
    for record in records:
        token = _token(record)
        tokens.append(token)
        if token not in seen:
            fresh.append(record)
    return fresh, "".join(sorted(set(tokens)))


def epoch_ms(value: object) -> datetime | None:
    """Epoch milliseconds (an int above 0), as the agents date their rows and messages, as an
    aware UTC time for :attr:`Record.at`; None for anything else or out of range."""
    if type(value) is not int or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def sqlite_rows(path: Path, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
    """The rows of ``sql`` on the database at ``path``, opened read-only.

    Raises:
        OSError: the database cannot be opened or read (missing, locked past the timeout, not
            a database, a table or column the query names is absent); the message names the
            file and SQLite's reason, and the scan logs it and retries later.
    """
    uri = f"file:{quote(str(path))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise OSError(f"cannot open SQLite database {path}: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        raise OSError(f"cannot read SQLite database {path}: {exc}") from exc
    finally:
        conn.close()


def _token(record: Record) -> str:
    joined = f"{record.key}\x1f{record.version}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(joined, digest_size=8).hexdigest()[:_TOKEN_CHARS]


def _tokens(cursor: str) -> set[str]:
    return {cursor[at:at + _TOKEN_CHARS] for at in range(0, len(cursor), _TOKEN_CHARS)}
