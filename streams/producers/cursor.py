"""Cursor agent CLI (``cursor-agent`` / ``agent``): its chat stores and its agent transcripts.

Layout (docs/sources/cursor.md), under ``${CURSOR_CONFIG_DIR or ~/.cursor}`` on every OS
(``%USERPROFILE%\\.cursor`` on Windows):

- ``chats/<md5 of the workspace path>/<agent-id>/store.db``: one SQLite database per chat,
  tables ``meta(key, value)`` (row ``0``: hex-encoded JSON ``agentId``, ``latestRootBlobId``,
  ``name``, ``mode``, ``createdAt``, ``lastUsedModel``) and ``blobs(id, data)`` (content
  addressed: ``id`` = SHA-256 of ``data``). Message blobs are JSON (``role`` user / assistant /
  tool / system, AI-SDK content parts); tree blobs are protobuf whose field 1 repeats the raw
  32-byte ids of their children. Read as records (:meth:`CursorProducer.records`): the meta,
  and every JSON blob reachable from ``latestRootBlobId`` in tree order, keyed by blob id.
- ``projects/<workspace path, dashed>/agent-transcripts/<id>.jsonl`` or ``<id>/<id>.jsonl``:
  the same chat as Claude-style ``{role, message: {content}}`` lines, appended; tailed. A
  sub-agent's transcript is ``<id>/subagents/<sub-id>.jsonl``, filed under ``<id>``.

Not read, on purpose: tree (protobuf) blobs beyond their child ids (one holds a snapshot of the
current context's composition, not usage), blobs unreachable from the latest root (a rewound
branch), blobs that are not JSON (protobuf or encrypted payloads), ``agent-transcripts/*.txt``
(the older plain-text transcript: role markers, no ids, the same chat again),
``ai-tracking/ai-code-tracking.db`` (code attribution), ``prompt_history.json`` (prompts again),
``extensions/`` and the IDE's ``state.vscdb`` (a different product's store). Cursor keeps token
usage server side: nothing on disk counts tokens.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from schemas.file_changes import FileKind
from streams.producers.base import FileProducer
from streams.producers.homes import home_of
from streams.producers.records import Record, changed, digest, sqlite_rows

__all__ = ["CursorProducer", "cursor_home", "tree_children"]

CHATS, PROJECTS = "chats", "projects"
TRANSCRIPTS, SUBAGENTS = "agent-transcripts", "subagents"
STORE = "store.db"
META_KEY = "meta"
BLOB_ID_BYTES = 32


def cursor_home(env: Mapping[str, str], platform: str = sys.platform) -> Path:
    """``$CURSOR_CONFIG_DIR`` when set, else ``<home>/.cursor`` (home: ``USERPROFILE`` on
    Windows, else ``HOME``)."""
    configured = env.get("CURSOR_CONFIG_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    return home_of(env, platform) / ".cursor"


class CursorProducer(FileProducer):
    """Publishes Cursor CLI chats (SQLite records) and agent transcripts (appended lines)."""

    source: ClassVar[str] = "cursor"
    provider: ClassVar[str | None] = None  # Cursor routes to several providers' models
    help_text: ClassVar[str] = (
        "Cursor agent CLI chats and transcripts in ~/.cursor ($CURSOR_CONFIG_DIR)")
    example_root: ClassVar[str] = "~/.cursor"
    rank: ClassVar[int] = 66

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """``chats`` and ``projects`` of :func:`cursor_home`, and of
        ``$XDG_CONFIG_HOME/cursor`` when that is set without ``CURSOR_CONFIG_DIR``."""
        homes = [cursor_home(env)]
        xdg = env.get("XDG_CONFIG_HOME", "").strip()
        if xdg and not env.get("CURSOR_CONFIG_DIR", "").strip():
            homes.append(Path(xdg).expanduser() / "cursor")
        return [home / name for home in homes for name in (CHATS, PROJECTS)]

    @classmethod
    def claims(cls, root: Path) -> bool:
        """A bare ``--source`` path is Cursor's when a ``store.db`` sits two folders below a
        ``chats`` folder in it, or an ``agent-transcripts`` folder is two levels below."""
        root = Path(root)
        chats = root if root.name == CHATS else root / CHATS
        if next(chats.glob(f"*/*/{STORE}"), None) is not None:
            return True
        projects = root if root.name == PROJECTS else root / PROJECTS
        return next(projects.glob(f"*/{TRANSCRIPTS}"), None) is not None

    def matches(self, path: Path) -> bool:
        """``chats/<hash>/<id>/store.db`` and the ``.jsonl`` transcripts (flat, nested,
        sub-agent) of an ``agent-transcripts`` folder; never ``.txt``."""
        if path.name == STORE:
            return path.parent.parent.parent.name == CHATS
        return path.suffix == ".jsonl" and _transcript(path) is not None

    def prune(self, dirpath: Path, dirnames: list[str]) -> None:
        """At a ``.cursor`` home walk only ``chats`` and ``projects``; inside a project only
        its ``agent-transcripts`` (the rest are terminals, logs and caches)."""
        if dirpath.parent.name == PROJECTS:
            dirnames[:] = [n for n in dirnames if n == TRANSCRIPTS]
        elif CHATS in dirnames or PROJECTS in dirnames:
            dirnames[:] = [n for n in dirnames if n in (CHATS, PROJECTS)]

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        """``(chat id, "main", None)``; a sub-agent transcript is ``(parent id, "subagent",
        its own id)``. The chat id is a store's folder name or a transcript's id."""
        if path.name == STORE:
            return path.parent.name, "main", None
        found = _transcript(path)
        if found is None:
            return path.stem, "main", None
        return found

    def records(self, path: Path, cursor: str | None) -> tuple[list[Record], str | None] | None:
        """A ``store.db``'s meta row and its JSON message blobs reachable from the latest
        root, those not read before (``changed``); None for transcripts (read as lines).

        Raises:
            OSError: the database cannot be read (the scan retries it later).
        """
        if path.name != STORE:
            return None
        session_id = path.parent.name
        meta = _meta(path)
        found: list[Record] = []
        if meta is not None:
            text = json.dumps({"cursorMeta": meta}, ensure_ascii=False, sort_keys=True)
            found.append(Record(session_id, META_KEY, digest(text), text))
            root = meta.get("latestRootBlobId")
            if isinstance(root, str):
                found.extend(_messages(path, session_id, root))
        return changed(found, cursor)


def _transcript(path: Path) -> tuple[str, FileKind, str | None] | None:
    """Where a ``.jsonl`` sits in an ``agent-transcripts`` folder, as ``describe`` answers."""
    parent = path.parent
    if parent.name == TRANSCRIPTS:
        return path.stem, "main", None
    if parent.parent.name == TRANSCRIPTS and path.stem == parent.name:
        return path.stem, "main", None
    if parent.name == SUBAGENTS and parent.parent.parent.name == TRANSCRIPTS:
        return parent.parent.name, "subagent", path.stem
    return None


def _meta(path: Path) -> dict[str, Any] | None:
    """The decoded JSON of meta row ``0`` (hex text; plain JSON accepted too), or None."""
    for row in sqlite_rows(path, "SELECT key, value FROM meta"):
        if str(row["key"]) != "0":
            continue
        value = row["value"]
        raw = bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else str(value)
        try:
            text = bytes.fromhex(raw).decode() if isinstance(raw, str) else raw.decode()
        except (ValueError, UnicodeDecodeError):
            text = raw if isinstance(raw, str) else ""
        try:
            decoded = json.loads(text)
        except ValueError:
            return None
        return decoded if isinstance(decoded, dict) else None
    return None


def _messages(path: Path, session_id: str, root: str) -> list[Record]:
    """Every JSON blob reachable from ``root``, depth first in child order, as a record
    ``{"blobId", "message"}`` keyed by blob id (content addressed: the id is the version)."""
    blobs = {str(row["id"]).lower(): bytes(row["data"] or b"")
             for row in sqlite_rows(path, "SELECT id, data FROM blobs")}
    found: list[Record] = []
    seen: set[str] = set()
    stack = [root.lower()]
    while stack:
        blob_id = stack.pop()
        if blob_id in seen or blob_id not in blobs:
            continue
        seen.add(blob_id)
        data = blobs[blob_id]
        message = _json_object(data)
        if message is not None:
            text = json.dumps({"blobId": blob_id, "message": message}, ensure_ascii=False)
            found.append(Record(session_id, blob_id, blob_id, text))
        else:
            stack.extend(reversed(tree_children(data)))
    return found


def _json_object(data: bytes) -> dict[str, Any] | None:
    if not data.startswith(b"{"):
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def tree_children(data: bytes) -> list[str]:
    """The child blob ids of a protobuf tree blob: every length-delimited field 1 of exactly
    32 bytes, as hex, in order. Stops at the first malformed field (what was read stands)."""
    children: list[str] = []
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        if key is None:
            break
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, at = _varint(data, at)
        elif wire == 2:
            size, at = _varint(data, at)
            if size is None or at + size > len(data):
                break
            if field == 1 and size == BLOB_ID_BYTES:
                children.append(data[at:at + size].hex())
            at += size
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            break
    return children


def _varint(data: bytes, at: int) -> tuple[int | None, int]:
    value = shift = 0
    while at < len(data) and shift < 64:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
    return None, len(data)
