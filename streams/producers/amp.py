"""Amp (Sourcegraph's coding agent, CLI and editor extension): its thread documents.

Layout (read from the public parsers that know it: ccusage's Amp adapter, agentsview's
``amp.go``, tokscale's ``sessions/amp.rs``; Amp itself is closed source): one JSON document per
thread, ``${XDG_DATA_HOME:-~/.local/share}/amp/threads/T-<uuid>.json``, the same
home-relative path on macOS and on Windows (under ``%USERPROFILE%``), as Amp keeps
``~/.config/amp`` on every platform. The document holds the thread's ``id``, ``created``
(epoch ms), ``title``, ``env.initial.trees[]`` (the workspace roots), ``messages[]`` and, in
older threads, ``usageLedger.events[]``; Amp rewrites it whole on every change.

So the file is read as records (:meth:`AmpProducer.records`): one per ``messages[]`` element
(keyed by its ``messageId``), one per ledger event, and one for the thread's own fields; each
record is wrapped as ``{"kind": "thread" | "message" | "ledger", "index": i, "value": ...}``.
The :func:`~streams.producers.records.changed` cursor republishes only the records a rewrite
changed, so a thread of a thousand messages that gains one costs one event.

Not read: anything else under the Amp data directory (logs, caches, the settings in
``~/.config/amp``), which hold no conversation. A thread caught mid-write (invalid JSON) is
skipped this scan and read again at the next.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from schemas.file_changes import FileKind
from streams.producers.base import FileProducer
from streams.producers.homes import data_home
from streams.producers.records import Record, changed, digest, epoch_ms

__all__ = ["AmpProducer", "amp_records"]

THREADS = "threads"
THREAD_NAME = re.compile(r"^T-[0-9A-Za-z][0-9A-Za-z_-]*\.json$")
SPLIT_OUT = ("messages", "usageLedger")  # published as records of their own


class AmpProducer(FileProducer):
    """Publishes each Amp thread document as records: its messages, its usage ledger
    events and its own fields, republishing only what a rewrite changed."""

    source: ClassVar[str] = "amp"  # no provider: Amp routes to Anthropic, OpenAI and Google
    help_text: ClassVar[str] = "Amp threads in ~/.local/share/amp/threads ($XDG_DATA_HOME)"
    example_root: ClassVar[str] = "~/.local/share/amp/threads"
    rank: ClassVar[int] = 72

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """``$XDG_DATA_HOME/amp/threads`` when set, else ``<home>/.local/share/amp/threads``
        with home = ``HOME`` (``USERPROFILE`` on Windows, where HOME is usually unset); the
        root is returned even when it does not exist (the base tolerates that)."""
        return [data_home(env) / "amp" / THREADS]

    @classmethod
    def claims(cls, root: Path) -> bool:
        """A bare ``--source`` path is Amp's when it (or its ``threads`` folder) holds a
        ``T-*.json`` thread."""
        root = Path(root)
        for folder in (root, root / THREADS):
            try:
                if any(THREAD_NAME.match(p.name) for p in folder.iterdir()):
                    return True
            except OSError:  # missing or unreadable: not ours to claim
                continue
        return False

    def matches(self, path: Path) -> bool:
        """``T-<id>.json`` thread documents; never temporary or backup copies."""
        return THREAD_NAME.match(path.name) is not None

    def prune(self, dirpath: Path, dirnames: list[str]) -> None:
        """Threads lie flat in ``threads/``: only that folder is worth entering."""
        dirnames[:] = [name for name in dirnames if name == THREADS]

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        """``(T-<id>, "main", None)``: the file's name is the thread id."""
        return path.stem, "main", None

    def records(self, path: Path, cursor: str | None) -> tuple[list[Record], str | None]:
        """The thread's records changed since ``cursor``, and the new cursor.

        Raises:
            ValueError: the document is not (yet) whole JSON, e.g. caught mid-write.
            OSError: the file cannot be read.
        """
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            raise ValueError(f"{path}: an Amp thread is a JSON object")
        return changed(amp_records(document, path.stem), cursor)


def amp_records(document: dict[str, Any], fallback_id: str) -> list[Record]:
    """The records of one thread document: its own fields, each message, each ledger event.

    The session is the document's ``id`` (the name's stem when absent). Message keys are
    ``message:<messageId>`` (``message@<index>`` without one), ledger keys ``ledger:<id>``.
    """
    own_id = document.get("id")
    thread_id = own_id if isinstance(own_id, str) and own_id else fallback_id
    own = {k: v for k, v in document.items() if k not in SPLIT_OUT}
    records = [_record(thread_id, "thread", "thread", 0, own, epoch_ms(document.get("created")))]
    messages = document.get("messages")
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        mid = message.get("messageId") if isinstance(message, dict) else None
        key = f"message:{mid}" if isinstance(mid, (int, str)) else f"message@{index}"
        records.append(_record(thread_id, key, "message", index, message, _message_time(message)))
    ledger = document.get("usageLedger")
    events = ledger.get("events") if isinstance(ledger, dict) else None
    for index, event in enumerate(events if isinstance(events, list) else []):
        eid = event.get("id") if isinstance(event, dict) else None
        key = f"ledger:{eid}" if isinstance(eid, (int, str)) else f"ledger@{index}"
        records.append(_record(thread_id, key, "ledger", index, event, None))
    return records


def _record(session: str, key: str, kind: str, index: int, value: object,
            at: datetime | None) -> Record:
    text = json.dumps({"kind": kind, "index": index, "value": value}, ensure_ascii=False)
    return Record(session_id=session, key=key, version=digest(text), text=text, at=at)


def _message_time(message: object) -> datetime | None:
    usage = message.get("usage") if isinstance(message, dict) else None
    stamp = usage.get("timestamp") if isinstance(usage, dict) else None
    if not isinstance(stamp, str):
        return None
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

