"""Goose: its SQLite store ``sessions.db`` (records) and the legacy ``*.jsonl`` sessions (tailed).

Layout (goose ``config/paths.rs``, ``session/session_manager.rs``, ``session/storage.rs``): the
session folder is ``<data dir>/sessions``, the data dir being ``$GOOSE_PATH_ROOT/data`` when that
variable holds an absolute path, else the ``etcetera`` app strategy of goose: XDG on Linux and
macOS (``${XDG_DATA_HOME:-~/.local/share}/goose``), ``%APPDATA%\\Block\\goose\\data`` on Windows.
It holds

- ``sessions.db`` (current releases): table ``sessions`` (one row per session: id such as
  ``20251108_1``, name/description, working_dir, session_type, created_at, updated_at, the token
  counters, provider_name and model_config_json in newer schemas) and table ``messages`` (an
  autoincrement id, session_id, role, content_json, created_timestamp in seconds, metadata_json,
  and message_id since schema 7). Session rows are published whole whenever their digest
  changes (their ``updated_at`` is a second-precision text whose format differs between goose's
  own writes and its legacy import, so it is no cursor); message rows after the highest row id
  read (rows are only appended; a conversation replaced after a compaction is deleted and
  inserted again under new ids, which the parser's content keys absorb).
- ``<session id>.jsonl`` (before the database, imported into it when goose first creates it,
  and left in place): line 1 the session metadata, then one message per line. goose rewrites
  the file whole on every save (metadata first, so every offset moves); it is tailed like any
  line file, and the parser's natural keys make the re-read lines land where they were.

Not read, on purpose: the ``threads``/``thread_messages`` tables (a copy of the messages grouped
for the desktop app), ``schema_version``, the provider inventory tables, ``backups/`` (copies of
the database), ``logs/`` and the state folders. Rows goose deletes publish nothing.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from schemas.file_changes import FileKind
from streams.producers.base import FileProducer
from streams.producers.homes import data_home
from streams.producers.records import Record, changed, digest, sqlite_rows

__all__ = ["GooseProducer"]

DB_NAME = "sessions.db"
SESSIONS_SQL = "SELECT * FROM sessions"
MESSAGES_SQL = "SELECT * FROM messages WHERE id > ? ORDER BY id"
JSON_COLUMNS = {"model_config_json": "model_config", "content_json": "content",
                "metadata_json": "metadata"}
SKIPPED_COLUMNS = frozenset({"extension_data", "recipe_json", "user_recipe_values_json"})


class GooseProducer(FileProducer):
    """Publishes goose's sessions and messages from ``sessions.db`` and legacy ``*.jsonl``."""

    source: ClassVar[str] = "goose"  # no provider: goose calls any provider's models
    help_text: ClassVar[str] = "goose sessions in ~/.local/share/goose/sessions ($GOOSE_PATH_ROOT)"
    example_root: ClassVar[str] = "~/.local/share/goose/sessions"
    rank: ClassVar[int] = 62

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """``$GOOSE_PATH_ROOT/data/sessions`` (an absolute path only, as goose checks), else
        ``%APPDATA%\\Block\\goose\\data\\sessions`` on Windows, else
        ``${XDG_DATA_HOME:-$HOME/.local/share}/goose/sessions``."""
        override = env.get("GOOSE_PATH_ROOT", "").strip()
        if override and _absolute(override):
            return [Path(override) / "data" / "sessions"]
        if _windows(env) and env.get("APPDATA"):
            return [Path(env["APPDATA"]) / "Block" / "goose" / "data" / "sessions"]
        return [data_home(env) / "goose" / "sessions"]

    @classmethod
    def claims(cls, root: Path) -> bool:
        """A bare ``--source`` path is goose's when it holds ``sessions.db`` or a ``*.jsonl``
        whose first line is goose session metadata."""
        root = Path(root)
        if (root / DB_NAME).is_file():
            return True
        try:
            return any(_is_metadata(path) for path in root.glob("*.jsonl"))
        except OSError:
            return False

    def matches(self, path: Path) -> bool:
        """``sessions.db`` and the legacy ``<id>.jsonl`` sessions, directly in a root."""
        return path.parent in self.roots and (path.name == DB_NAME or path.suffix == ".jsonl")

    def prune(self, dirpath: Path, dirnames: list[str]) -> None:
        """Nothing below a root is read (``backups/`` holds copies of the database)."""
        dirnames[:] = []

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        """A legacy session's id is its file's stem (goose names the file after it)."""
        return path.stem, "main", None

    def records(self, path: Path, cursor: str | None) -> tuple[list[Record], str | None] | None:
        """The changed sessions and new messages of ``sessions.db``; None for ``*.jsonl``.

        Raises:
            OSError: the database cannot be read (retried at the next scan).
        """
        if path.name != DB_NAME:
            return None
        state = _state(cursor)
        sessions, seen = changed(_session_records(path), state.get("sessions"))
        messages, last = _message_records(path, state.get("row", 0))
        return sessions + messages, json.dumps({"sessions": seen, "row": last}, sort_keys=True)


def _session_records(path: Path) -> list[Record]:
    records = []
    for row in sqlite_rows(path, SESSIONS_SQL):
        obj = {"_table": "sessions", **_columns(row)}
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
        records.append(Record(session_id=str(row["id"]), key=f"session:{row['id']}",
                              version=digest(text), text=text, at=_time(obj.get("updated_at"))))
    return records


def _message_records(path: Path, after: int) -> tuple[list[Record], int]:
    records, last = [], after
    for row in sqlite_rows(path, MESSAGES_SQL, (after,)):
        obj = _columns(row)
        obj = {"_table": "messages", "_row": obj.pop("id", None), "id": obj.pop("message_id", None),
               "created": obj.pop("created_timestamp", None), **obj}
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
        created = obj["created"]
        at = datetime.fromtimestamp(created, UTC) if type(created) is int and created > 0 else None
        records.append(Record(session_id=str(row["session_id"]), key=f"message:{row['id']}",
                              version=digest(text), text=text, at=at))
        last = max(last, int(row["id"]))
    return records, last


def _columns(row: sqlite3.Row) -> dict[str, Any]:
    """The row as a dict: JSON columns parsed (renamed without ``_json``), bulky ones left out."""
    obj: dict[str, Any] = {}
    for column, value in zip(row.keys(), tuple(row), strict=True):
        if column in SKIPPED_COLUMNS:
            continue
        if column in JSON_COLUMNS:
            column, value = JSON_COLUMNS[column], _parsed(value)
        obj[column] = value
    return obj


def _parsed(value: object) -> object:
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return value


def _state(cursor: str | None) -> dict[str, Any]:
    try:
        value = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    row, sessions = value.get("row"), value.get("sessions")
    return {"row": row if type(row) is int else 0,
            "sessions": sessions if isinstance(sessions, str) else None}


def _time(value: object) -> datetime | None:
    """A goose timestamp (``2025-11-08 10:00:00``, RFC 3339 or with an offset) in UTC."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _windows(env: Mapping[str, str]) -> bool:
    """Windows: the platform says so, or the environment is one (APPDATA and no HOME)."""
    return sys.platform == "win32" or ("APPDATA" in env and "HOME" not in env)


def _absolute(value: str) -> bool:
    return Path(value).is_absolute() or (len(value) > 2 and value[1] == ":" and value[2] in "\\/")


def _is_metadata(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as f:
            first = json.loads(f.readline() or "null")
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and "message_count" in first and "description" in first
