"""OpenCode: its SQLite store ``opencode.db`` and the legacy JSON storage, read as records.

Layout (OpenCode ``global/index.ts``, ``storage/db.ts``, ``session/session.sql.ts``): one data
directory, ``${XDG_DATA_HOME:-~/.local/share}/opencode`` on every OS (the ``xdg-basedir``
package, which uses the home directory on macOS and Windows too), holding

- ``opencode.db`` (``opencode-<channel>.db`` for channels other than latest/beta/prod;
  ``$OPENCODE_DB`` overrides it, absolute or relative to the data directory): tables
  ``session`` (id, project_id, parent_id, directory, title, version, time_created,
  time_updated, ...), ``message`` and ``part`` (id, session_id, [message_id,] time_created,
  time_updated, ``data`` = the JSON of the message or part without its ids). Every row is
  published as one record, rebuilt as the JSON object the legacy files hold (ids put back),
  read with a cursor of the highest ``time_updated`` seen per table;
- ``storage/session/<projectID>/<sessionID>.json``, ``storage/message/<sessionID>/<msgID>.json``
  and ``storage/part/<msgID>/<partID>.json`` (before the database, and imported into it by
  OpenCode's JSON migration): small JSON files rewritten whole, each published as one record
  whose version is a digest of its text.

A part row or file says nothing of its message, so the record of a part carries ``_role`` and
``_model`` (the message's ``role`` and ``modelID``). Sessions with a ``parentID`` are sub-agent
sessions (the ``task`` tool): their records are filed under the root session as ``subagent``
records whose ``agent_id`` is their own session id.

Not read, on purpose: ``project``, ``todo``, ``permission``, ``session_message`` and the other
tables (no conversation, or a second copy of it), ``storage/session_diff``, ``storage/todo``,
``storage/project`` and ``storage/share`` (state, not conversation), ``snapshot/`` (git
objects), ``log/``, ``bin/`` and ``tool-output/``. Rows deleted by OpenCode (a revert, a
deleted session) publish nothing: what they said stays as it was read.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from schemas.file_changes import FileKind
from streams.producers.base import FileProducer
from streams.producers.homes import data_home
from streams.producers.records import Record, digest, epoch_ms, sqlite_rows

__all__ = ["OpenCodeProducer"]

logger = logging.getLogger(__name__)

STORAGE = "storage"
LEGACY_KINDS = ("session", "message", "part")
DB_NAME = re.compile(r"^opencode(?:-[A-Za-z0-9._-]+)?\.db$")
TABLES = ("session", "message", "part")
SESSION_SQL = ("SELECT id, project_id, parent_id, directory, title, version, time_created, "
               "time_updated FROM session WHERE time_updated >= ?")
MESSAGE_SQL = ("SELECT id, session_id, time_created, time_updated, data FROM message "
               "WHERE time_updated >= ?")
PART_SQL = ("SELECT p.id, p.message_id, p.session_id, p.time_created, p.time_updated, p.data, "
            "m.data AS message_data FROM part p LEFT JOIN message m ON m.id = p.message_id "
            "WHERE p.time_updated >= ?")
PARENTS_SQL = "SELECT id, parent_id FROM session"
MAX_DEPTH = 32  # sub-agent nesting followed up to the root session


class OpenCodeProducer(FileProducer):
    """Publishes OpenCode's sessions, messages and parts, from its database and legacy files."""

    source: ClassVar[str] = "opencode"  # no provider: OpenCode calls any provider's models
    help_text: ClassVar[str] = (
        "OpenCode sessions in ~/.local/share/opencode (opencode.db, legacy storage/)")
    example_root: ClassVar[str] = "~/.local/share/opencode"
    rank: ClassVar[int] = 60

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """``$XDG_DATA_HOME/opencode`` (else ``<home>/.local/share/opencode``, the home being
        ``HOME``, else ``USERPROFILE``), plus the folder of an absolute ``$OPENCODE_DB``."""
        roots = [data_home(env) / "opencode"]
        db = env.get("OPENCODE_DB", "").strip()
        if db and db != ":memory:" and Path(db).is_absolute() and Path(db).parent not in roots:
            roots.append(Path(db).parent)
        return roots

    @classmethod
    def claims(cls, root: Path) -> bool:
        """A bare ``--source`` path is OpenCode's when it holds an ``opencode*.db`` or a
        ``storage/session`` folder."""
        root = Path(root)
        try:
            return (root / STORAGE / "session").is_dir() or any(
                DB_NAME.match(child.name) for child in root.iterdir())
        except OSError:
            return False

    def matches(self, path: Path) -> bool:
        """A ``.db`` directly in a root (``opencode.db``, a channel's, ``$OPENCODE_DB``), or a
        ``.json`` under ``storage/{session,message,part}/<folder>/``."""
        if path.suffix == ".db":
            return path.parent in self.roots or bool(DB_NAME.match(path.name))
        return (path.suffix == ".json" and path.parent.parent.name in LEGACY_KINDS
                and path.parent.parent.parent.name == STORAGE)

    def prune(self, dirpath: Path, dirnames: list[str]) -> None:
        """Only ``storage/{session,message,part}`` is walked below a root."""
        if dirpath in self.roots:
            dirnames[:] = [name for name in dirnames if name == STORAGE]
        elif dirpath.name == STORAGE:
            dirnames[:] = [name for name in dirnames if name in LEGACY_KINDS]

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        """Records name their own sessions; this only names a file as a whole: the folder of
        a legacy message (its session), else the file's stem."""
        if path.parent.parent.name == "message":
            return path.parent.name, "main", None
        return path.stem, "artifact", None

    def records(self, path: Path, cursor: str | None) -> tuple[list[Record], str | None]:
        """Every row changed since ``cursor`` of a database; the one record of a legacy file.

        Raises:
            OSError: the database or file cannot be read (retried at the next scan).
            ValueError: a legacy file caught mid-write (not a JSON object yet).
        """
        if path.suffix == ".db":
            return _database_records(path, cursor)
        return [_legacy_record(path)], None


# -- the database ------------------------------------------------------------------------------


def _database_records(path: Path, cursor: str | None) -> tuple[list[Record], str]:
    since = _since(cursor)
    parents = {row["id"]: row["parent_id"] for row in sqlite_rows(path, PARENTS_SQL)}
    found: list[Record] = []
    for table, sql in zip(TABLES, (SESSION_SQL, MESSAGE_SQL, PART_SQL), strict=True):
        rows = sqlite_rows(path, sql, (since.get(table, 0),))
        for row in rows:
            found.append(_row_record(table, row, parents))
            since[table] = max(since.get(table, 0), int(row["time_updated"] or 0))
    return found, json.dumps(since, sort_keys=True)


def _since(cursor: str | None) -> dict[str, int]:
    try:
        value = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    return {k: v for k, v in value.items() if type(v) is int} if isinstance(value, dict) else {}


def _row_record(table: str, row: Any, parents: Mapping[str, str | None]) -> Record:
    if table == "session":
        obj: dict[str, Any] = {
            "id": row["id"], "projectID": row["project_id"], "parentID": row["parent_id"],
            "directory": row["directory"], "title": row["title"], "version": row["version"],
            "time": {"created": row["time_created"], "updated": row["time_updated"]}}
        own = row["id"]
    else:
        obj = {**_object(row["data"]), "id": row["id"], "sessionID": row["session_id"]}
        own = row["session_id"]
        if table == "part":
            obj["messageID"] = row["message_id"]
            message = _object(row["message_data"])
            obj["_role"], obj["_model"] = message.get("role"), message.get("modelID")
    return _record(f"{table}:{row['id']}", obj, own, parents, row["time_updated"])


def _object(text: object) -> dict[str, Any]:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _record(key: str, obj: dict[str, Any], own: str, parents: Mapping[str, str | None],
            at_ms: object) -> Record:
    """The record of ``obj``, filed under the root of ``own``'s sub-agent chain."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    root = _root(own, parents)
    kind: FileKind = "main" if root == own else "subagent"
    return Record(session_id=root, key=key, version=digest(text), text=text, at=epoch_ms(at_ms),
                  file_kind=kind, agent_id=None if root == own else own)


def _root(session_id: str, parents: Mapping[str, str | None]) -> str:
    current, seen = session_id, {session_id}
    for _ in range(MAX_DEPTH):
        parent = parents.get(current)
        if not parent or parent in seen:
            break
        current = parent
        seen.add(parent)
    return current


# -- the legacy JSON files ---------------------------------------------------------------------


def _legacy_record(path: Path) -> Record:
    """The record of one legacy file (a session's info, a message or a part).

    Raises:
        OSError: unreadable. ValueError: not (yet) a JSON object.
    """
    obj = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a JSON object")
    storage = path.parent.parent.parent
    kind = path.parent.parent.name
    if kind == "session":
        own = str(obj.get("id") or path.stem)
    else:
        own = str(obj.get("sessionID") or (path.parent.name if kind == "message" else ""))
    if kind == "part":
        message = _read_json(storage / "message" / own / f"{obj.get('messageID')}.json")
        obj["_role"], obj["_model"] = message.get("role"), message.get("modelID")
    parents = _LegacyParents(storage)
    time = obj.get("time")
    at = time.get("updated") or time.get("created") if isinstance(time, dict) else None
    return _record(kind, obj, own or path.stem, parents, at)


class _LegacyParents(Mapping[str, "str | None"]):
    """``{session id: parentID}`` read lazily from ``storage/session/*/<id>.json``."""

    def __init__(self, storage: Path) -> None:
        self._dir = storage / "session"

    def __getitem__(self, session_id: str) -> str | None:
        for info in self._dir.glob(f"*/{session_id}.json"):
            parent = _read_json(info).get("parentID")
            return parent if isinstance(parent, str) else None
        return None

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}

