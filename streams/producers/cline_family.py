"""Cline, Roo Code and Kilo Code (legacy): the task folders these VS Code extensions keep.

All three descend from Cline and store each task the same way (Cline ``core/storage/disk.ts``;
Roo Code ``src/utils/storage.ts``; splitrail's ``cline.rs`` / ``roo_code.rs`` /
``kilo_code.rs``; agentsview's ``roocode.go`` / ``kilo_legacy.go``): in the editor's global
storage, ``<user dir>/globalStorage/<extension id>/tasks/<task id>/``, where the user dir is
``~/.config/<app>/User`` on Linux, ``~/Library/Application Support/<app>/User`` on macOS and
``%APPDATA%\\<app>\\User`` on Windows, for VS Code and its forks (``<app>`` = ``Code``,
``Code - Insiders``, ``VSCodium``, ``Cursor``, ``Windsurf``, ``Positron``), plus
``~/.vscode-server/data/User`` on remote hosts and ``$VSCODE_PORTABLE/user-data/User`` for a
portable VS Code. Extension ids (the lower-case folder names VS Code writes):
``saoudrizwan.claude-dev`` (Cline), ``rooveterinaryinc.roo-cline`` (Roo Code),
``kilocode.kilo-code`` (Kilo Code before its 2026 rebuild on OpenCode, whose new sessions live
in a SQLite database this source does not read). The Cline CLI's standalone host keeps the
same folders in ``${CLINE_DIR:-~/.cline}/data/tasks``.

Read, as records (:meth:`ClineFamilyProducer.records`), because each is one JSON document
rewritten whole: ``ui_messages.json`` (what the chat shows, one record per row keyed by its
``ts``), ``api_conversation_history.json`` (the model's messages, one record per element keyed
by index) and ``task_metadata.json`` (one record). Each record is wrapped as
``{"kind": "ui" | "api" | "metadata", "index": i, "value": ...}``; the session is the task id.

Not read: ``context_history.json`` (context-window edits, no conversation), ``settings.json``,
``history_item.json`` (a summary of the totals ``ui_messages.json`` already gives), the
extension's ``settings/``, ``cache/`` and ``checkpoints/`` folders (no conversation).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from schemas.file_changes import FileKind
from streams.producers.base import FileProducer
from streams.producers.homes import home_of
from streams.producers.records import Record, changed, digest, epoch_ms

__all__ = [
    "EDITOR_APPS", "ClineFamilyProducer", "ClineProducer", "KiloCodeProducer",
    "RooCodeProducer", "editor_user_dirs", "task_records",
]

TASKS = "tasks"
UI, API, METADATA = "ui_messages.json", "api_conversation_history.json", "task_metadata.json"
KINDS = {UI: "ui", API: "api", METADATA: "metadata"}
EDITOR_APPS = ("Code", "Code - Insiders", "VSCodium", "Cursor", "Windsurf", "Positron")
REMOTE_SERVERS = (".vscode-server", ".vscode-server-insiders")


def editor_user_dirs(env: Mapping[str, str], platform: str = sys.platform) -> list[Path]:
    """The ``User`` folders of VS Code and its forks for ``platform`` (``sys.platform``
    values); Windows is also assumed whenever ``env`` holds ``APPDATA``."""
    home = home_of(env, platform)
    portable = env.get("VSCODE_PORTABLE", "").strip()
    dirs = [Path(portable) / "user-data" / "User"] if portable else []
    appdata = env.get("APPDATA", "").strip()
    if platform == "win32" or appdata:
        base = Path(appdata) if appdata else home / "AppData" / "Roaming"
    elif platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        config = env.get("XDG_CONFIG_HOME", "").strip()
        base = Path(config) if config else home / ".config"
    dirs.extend(base / app / "User" for app in EDITOR_APPS)
    dirs.extend(home / server / "data" / "User" for server in REMOTE_SERVERS)
    return dirs


class ClineFamilyProducer(FileProducer):
    """The shared reading of a Cline-family task folder; a subclass names the extension and
    declares the source."""

    extension_id: ClassVar[str]

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """``<user dir>/globalStorage/<extension id>/tasks`` for every editor user dir
        (:func:`editor_user_dirs`); roots that do not exist are returned too."""
        return [user / "globalStorage" / cls.extension_id / TASKS
                for user in editor_user_dirs(env)]

    @classmethod
    def claims(cls, root: Path) -> bool:
        """A bare ``--source`` path is this extension's when its path names the extension
        and a ``tasks/<id>/ui_messages.json`` lies below it."""
        root = Path(root)
        if cls.extension_id not in str(root):
            return False
        return next(root.rglob(UI), None) is not None

    def matches(self, path: Path) -> bool:
        """The three task documents, directly in a task folder: ``tasks/<task id>/``, or a
        folder directly in a root (a copy of the task folders kept elsewhere)."""
        return path.name in KINDS and (path.parent.parent.name == TASKS
                                       or path.parent.parent in self.roots)

    def prune(self, dirpath: Path, dirnames: list[str]) -> None:
        """Only ``tasks`` below the extension's folder; nothing below a task folder."""
        if dirpath.parent.name == TASKS:
            dirnames.clear()
        elif dirpath.name != TASKS and TASKS in dirnames:
            dirnames[:] = [TASKS]

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        """``(task id, "main", None)``: the task folder's name."""
        return path.parent.name, "main", None

    def records(self, path: Path, cursor: str | None) -> tuple[list[Record], str | None]:
        """The document's records changed since ``cursor``, and the new cursor.

        Raises:
            ValueError: the document is not (yet) whole JSON, e.g. caught mid-write.
            OSError: the file cannot be read.
        """
        document = json.loads(path.read_text(encoding="utf-8"))
        return changed(task_records(path.name, path.parent.name, document), cursor)


def task_records(name: str, task_id: str, document: Any) -> list[Record]:
    """The records of one task document: ``ui_messages.json`` rows keyed ``ui:<ts>`` (a
    repeated ts gets ``#<n>``), ``api_conversation_history.json`` elements keyed
    ``api:<index>``, the whole ``task_metadata.json`` as ``metadata``.

    Raises:
        ValueError: the document's top level is not what the file holds (array / object).
    """
    kind = KINDS[name]
    if kind == "metadata":
        if not isinstance(document, dict):
            raise ValueError(f"{name} of task {task_id} is not a JSON object")
        return [_record(task_id, "metadata", kind, 0, document, None)]
    if not isinstance(document, list):
        raise ValueError(f"{name} of task {task_id} is not a JSON array")
    records, seen = [], dict[str, int]()
    for index, element in enumerate(document):
        ts = element.get("ts") if isinstance(element, dict) else None
        key = f"{kind}:{ts}" if kind == "ui" and type(ts) is int else f"{kind}:{index}"
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            key = f"{key}#{seen[key]}"
        records.append(_record(task_id, key, kind, index, element, epoch_ms(ts)))
    return records


def _record(session: str, key: str, kind: str, index: int, value: object,
            at: datetime | None) -> Record:
    text = json.dumps({"kind": kind, "index": index, "value": value}, ensure_ascii=False)
    return Record(session_id=session, key=key, version=digest(text), text=text, at=at)



class ClineProducer(ClineFamilyProducer):
    """Cline's tasks (VS Code extension ``saoudrizwan.claude-dev`` and the Cline CLI)."""

    source: ClassVar[str] = "cline"
    extension_id: ClassVar[str] = "saoudrizwan.claude-dev"
    help_text: ClassVar[str] = (
        "Cline tasks in VS Code's globalStorage/saoudrizwan.claude-dev and ~/.cline/data")
    example_root: ClassVar[str] = "~/.config/Code/User/globalStorage/saoudrizwan.claude-dev/tasks"
    rank: ClassVar[int] = 74

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """The editors' task folders, then the CLI's ``${CLINE_DIR:-~/.cline}/data/tasks``."""
        configured = env.get("CLINE_DIR", "").strip()
        cli = Path(configured).expanduser() if configured else home_of(env) / ".cline"
        return [*super().default_roots(env), cli / "data" / TASKS]

    @classmethod
    def claims(cls, root: Path) -> bool:
        """Also a Cline CLI data folder (a path through ``.cline``) holding task folders."""
        root = Path(root)
        if ".cline" in root.parts and next(root.rglob(UI), None) is not None:
            return True
        return super().claims(root)


class RooCodeProducer(ClineFamilyProducer):
    """Roo Code's tasks (VS Code extension ``rooveterinaryinc.roo-cline``)."""

    source: ClassVar[str] = "roo-code"
    extension_id: ClassVar[str] = "rooveterinaryinc.roo-cline"
    help_text: ClassVar[str] = (
        "Roo Code tasks in VS Code's globalStorage/rooveterinaryinc.roo-cline")
    example_root: ClassVar[str] = (
        "~/.config/Code/User/globalStorage/rooveterinaryinc.roo-cline/tasks")
    rank: ClassVar[int] = 75


class KiloCodeProducer(ClineFamilyProducer):
    """Kilo Code's legacy tasks (VS Code extension ``kilocode.kilo-code``)."""

    source: ClassVar[str] = "kilo-code"
    extension_id: ClassVar[str] = "kilocode.kilo-code"
    help_text: ClassVar[str] = (
        "Kilo Code (legacy) tasks in VS Code's globalStorage/kilocode.kilo-code")
    example_root: ClassVar[str] = "~/.config/Code/User/globalStorage/kilocode.kilo-code/tasks"
    rank: ClassVar[int] = 76
