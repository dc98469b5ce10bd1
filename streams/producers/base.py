"""The file-producer base: a source's declaration, and tailing its files into ``FileChanged``.

A :class:`FileProducer` subclass *is* a source. Its class attributes declare it once (name,
default roots, GenAI provider, help text, example root), and :mod:`streams.sources` finds every
subclass in :mod:`streams.producers` by import, so the CLI, the parse step and the metrics read
the declaration instead of keeping lists. A new source is one module here that subclasses this
and fills in the declaration, :meth:`FileProducer.matches` and :meth:`FileProducer.describe`
(plus one parser module in :mod:`agents.parsers`). Files rewritten in place instead of appended
to are named by :meth:`FileProducer.snapshot` and published whole (``file.snapshot``) each time
their size, mtime or inode changes. Databases and big documents rewritten whole are read as
records by :meth:`FileProducer.records` (:mod:`~streams.producers.records`): each changed
record is published as one line.

The base owns everything between bytes on disk and a published batch: it walks its roots,
reads each matching file from a persisted byte checkpoint up to the last complete newline
(:mod:`~streams.producers.tailing`, :mod:`~streams.producers.checkpoints`), publishes the lines
in batches through the injected ``publish`` callable, and advances the checkpoint only after
``publish`` returned. Delivery is at-least-once: a crash or a failed publish re-publishes the
same lines with the same event ids (they derive from path and offset), which consumers dedupe.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from schemas.file_changes import MAX_SNAPSHOT_BYTES, FileChanged, FileKind
from streams.producers import tailing
from streams.producers.checkpoints import Position, load_positions, save_positions
from streams.producers.file_events import (
    line_event,
    record_event,
    removed_event,
    snapshot_event,
)
from streams.producers.records import SIDECARS, Record
from streams.producers.watching import watch
from streams.producers.window import Window, WindowFilter

__all__ = ["BATCH_SIZE", "FileProducer", "Position", "Progress", "Publish"]

logger = logging.getLogger(__name__)

Publish = Callable[[list[FileChanged]], Awaitable[None]]
Progress = Callable[[int, int], None]

BATCH_SIZE = 2000  # events per publish call (and per checkpoint write)
SETTLE_S = 1.0  # a record file changed less than this before a read is read again next scan


@dataclass
class _Batch:
    events: list[FileChanged] = field(default_factory=list)
    updates: dict[str, Position | None] = field(default_factory=dict)  # None = drop


class FileProducer:
    """Tails the matching files under ``roots`` and publishes each complete line once.

    Subclasses declare the source (the class attributes below and :meth:`default_roots`) and
    implement :meth:`matches` (called from worker and watchdog threads, so it must be a pure
    function of the path) and :meth:`describe`. ``progress``, when set, is called on the event
    loop with ``(files_done, files_total)`` as a scan goes.
    """

    source: ClassVar[str]
    """The source's name, written only here: ``KIND`` in ``--source KIND=PATH``, every event's
    ``source``, the key its parser registers under and its checkpoint file's name."""
    provider: ClassVar[str | None] = None
    """``gen_ai.provider.name`` of the models the agent calls (``anthropic``, ``openai``,
    ``gcp.gemini``), used when a model's own name does not tell; None when no one provider
    applies (the metrics then use the source's name)."""
    help_text: ClassVar[str] = ""
    """One line for ``--help``: what the source reads, and where by default."""
    example_root: ClassVar[str] = ""
    """A root to show in ``backfill --help`` as ``--source KIND=<example_root>``."""
    rank: ClassVar[int] = 100
    """Where the source is listed, and when a bare ``--source`` path is offered to its
    :meth:`claims` (lower first, then by name)."""
    fallback: ClassVar[bool] = False
    """True for the one source a bare ``--source`` path goes to when no other claims it."""

    def __init__(
        self,
        roots: list[Path],
        checkpoint_path: Path,
        publish: Publish,
        rescan_interval: float = 5.0,
    ) -> None:
        self.roots = [Path(os.path.abspath(Path(root).expanduser())) for root in roots]
        self.checkpoint_path = checkpoint_path
        self.rescan_interval = rescan_interval
        self._unsettled = False  # the last scan read a record file changed just before
        self.progress: Progress | None = None
        self._publish = publish
        self._positions: dict[str, Position] = {}
        self._loaded = False  # positions are read from disk lazily, under the lock
        self._lock = asyncio.Lock()
        self._warned: dict[str, str] = {}  # path -> the read error last logged for it
        self.window: WindowFilter | None = None  # see limit_to

    def limit_to(self, window: Window, report: Callable[[str], None] | None = None) -> None:
        """Read only the sessions inside ``window`` from now on; what is left out is reported
        through ``report`` and counted in ``self.window.skipped``
        (:mod:`~streams.producers.window`). Files already checkpointed are always read on.
        An unbounded window removes the limit."""
        self.window = (WindowFilter(self.source, window,
                                    lambda path, first: self.describe(path, first)[0], report)
                       if window.bounded else None)

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """Where this source writes by default (the agent's own variables in ``env`` win);
        used when no roots are configured."""
        return []

    @classmethod
    def claims(cls, root: Path) -> bool:
        """True when ``root``, given as a bare ``--source`` path, holds this source's files."""
        return False

    def matches(self, path: Path) -> bool:
        """True for the files under a root that this source tails."""
        raise NotImplementedError

    def snapshot(self, path: Path) -> bool:
        """True for matching files that are rewritten in place: published whole on change."""
        return False

    def records(self, path: Path, cursor: str | None
                ) -> tuple[list[Record], str | None] | None:
        """The records of ``path`` changed since ``cursor``, and the cursor after them; None
        (the default) for a file read as appended lines or a snapshot.

        For a file kept as a database or a document rewritten whole. Called in a worker thread
        when the file (or a SQLite sidecar, :data:`~streams.producers.records.SIDECARS`) changed
        size or mtime, or had changed less than :data:`SETTLE_S` before the last read (a commit
        can reach the file before a reader sees it), with the cursor this method returned last
        time for it (None the first time, or after a reset: then every record). Each record is
        published as one line, and the cursor is saved only once they all were. Raising
        ``OSError`` or ``ValueError`` (a database locked or half-written, a document caught
        mid-write) skips the file this scan; it is read again at the next. Any other exception
        (a shape the producer did not expect) is logged once, naming the file, and skips it
        the same way: the source's other files go on. Files of a source
        that overrides this are not limited by ``--since`` / ``--until``, which judge whole
        session files.
        """
        return None

    def prune(self, dirpath: Path, dirnames: list[str]) -> None:
        """Drop from ``dirnames``, in place, the subdirectories of ``dirpath`` not worth walking.

        Called from a worker thread for every directory the discovery walk enters, before it
        descends; the default walks everything. Sources whose roots are whole project trees
        override it to skip ``node_modules``, ``.git`` and the like.
        """

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        """``(session_id, file_kind, agent_id)`` of ``path``; computed once per file.

        ``first_line`` is the file's first complete line (already read: the base reads it once),
        or None when it cannot be read (a file that vanished before any line was published).
        Prefer what the path says; parse ``first_line`` only when the format keeps the session
        there, since the parser reads every line again.
        """
        raise NotImplementedError

    async def scan_once(self) -> int:
        """Publish every complete line not yet published; return how many were published.

        Never runs concurrently with another scan. Unreadable files are logged and skipped;
        files that were checkpointed and are gone are published once as ``file.removed``.
        If ``publish`` raises, the exception propagates and the checkpoint keeps the position
        of the last batch that was published, so the next scan re-publishes the same events.
        """
        async with self._lock:
            if not self._loaded:
                self._positions, self._loaded = load_positions(self.checkpoint_path), True
            paths = await asyncio.to_thread(self._discover)
            if self.window is not None and not self._reads_records:
                # sessions outside it stay unread, uncheckpointed
                paths = await asyncio.to_thread(self.window.select, paths, self._positions)
                self.window.report_changes()
            batch, published = _Batch(), 0
            self._unsettled = False
            for done, path in enumerate(paths, 1):
                published += await self._scan_file(path, batch)
                if self.progress is not None:
                    self.progress(done, len(paths))
            await self._collect_removals({str(p) for p in paths}, batch)
            await self._flush(batch)
            return published

    @property
    def next_rescan(self) -> float:
        """Seconds until the next scan when no file event wakes it: ``rescan_interval``, or
        just past :data:`SETTLE_S` when the last scan read a record file that had changed just
        before (so a commit it could not see yet is read within about a second)."""
        if self._unsettled:
            return min(self.rescan_interval, SETTLE_S * 1.1)
        return self.rescan_interval

    async def backfill(self) -> int:
        """Re-read the checkpoint from disk and scan; call :meth:`reset` first to start over."""
        async with self._lock:
            self._loaded = False
        return await self.scan_once()

    def reset(self) -> None:
        """Forget every position (the checkpoint file is deleted). Not while a scan runs."""
        self.checkpoint_path.unlink(missing_ok=True)
        self._positions, self._loaded = {}, False

    async def run(self, stop: asyncio.Event) -> None:
        """Scan on file-system events (debounced) and every ``rescan_interval`` until ``stop``.

        Roots that do not exist yet are watched once they appear; meanwhile the periodic
        rescan covers them. A scan that fails (the broker is away, a publish is refused) is
        logged once per failure streak and retried with backoff from the last checkpoint, so
        nothing is lost and no input stops the producer; an unreadable checkpoint
        (:class:`~streams.errors.SourceError`) propagates. The observer is stopped and joined
        before returning.
        """
        await watch(self, stop)

    @property
    def _reads_records(self) -> bool:
        return type(self).records is not FileProducer.records

    async def _scan_file(self, path: Path, batch: _Batch) -> int:
        if self._reads_records:
            published = await self._scan_records(path, batch)
            if published is not None:
                return published
        if self.snapshot(path):
            return await self._scan_snapshot(path, batch)
        key, published = str(path), 0
        while True:
            pos = batch.updates[key] if key in batch.updates else self._positions.get(key)
            try:
                chunk = await asyncio.to_thread(
                    tailing.read_chunk, path, pos, BATCH_SIZE - len(batch.events)
                )
            except FileNotFoundError:
                return published  # vanished since the walk; the next scan reports it
            except OSError as exc:
                self._unreadable(key, exc)
                return published
            if chunk.restarted:
                logger.info("file truncated or replaced, reading from 0 path=%s", path)
            new = chunk.position
            if chunk.lines and new.session_id is None:
                new = self._described(path, new, chunk.first_line)
            batch.events.extend(line_event(self.source, key, new, line) for line in chunk.lines)
            published += len(chunk.lines)
            if new != pos:
                batch.updates[key] = new
            if not chunk.more:
                return published
            if len(batch.events) >= BATCH_SIZE:
                await self._flush(batch)

    async def _scan_snapshot(self, path: Path, batch: _Batch) -> int:
        key = str(path)
        pos = batch.updates[key] if key in batch.updates else self._positions.get(key)
        try:
            read = await asyncio.to_thread(tailing.read_snapshot, path, pos)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            self._unreadable(key, exc)
            return 0
        if read is None:
            return 0
        new, text, truncated = read
        if new.session_id is None:
            new = self._described(path, new, text.partition("\n")[0])
        if truncated:
            logger.warning("snapshot cut at %d bytes path=%s", MAX_SNAPSHOT_BYTES, path)
        batch.events.append(snapshot_event(self.source, key, new, text, truncated))
        batch.updates[key] = new
        if len(batch.events) >= BATCH_SIZE:
            await self._flush(batch)
        return 1

    async def _scan_records(self, path: Path, batch: _Batch) -> int | None:
        """Publish the records of ``path`` changed since its cursor; None when it is not read
        as records (the caller reads it as lines or a snapshot)."""
        key = str(path)
        pos = batch.updates[key] if key in batch.updates else self._positions.get(key)
        began = time.time()
        try:
            inode, size, mtime = await asyncio.to_thread(_identity, path)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            self._unreadable(key, exc)
            return 0
        if pos is not None and pos.records and (pos.inode, pos.size, pos.mtime) == (
                inode, size, mtime):
            return 0
        try:
            read = await asyncio.to_thread(self.records, path, pos.cursor if pos else None)
        except (OSError, ValueError) as exc:
            self._unreadable(key, OSError(str(exc)))
            return 0
        except Exception as exc:  # noqa: BLE001 - one file's unexpected shape stops no other
            self._unreadable(key, OSError(f"cannot read its records ({type(exc).__name__}: "
                                          f"{exc}); its other scans retry it"))
            return 0
        if read is None:
            return None
        records, cursor = read
        for start in range(0, len(records), BATCH_SIZE):
            batch.events.extend(record_event(self.source, key, mtime, record, start + n)
                                for n, record in enumerate(records[start:start + BATCH_SIZE], 1))
            if len(batch.events) >= BATCH_SIZE:
                await self._flush(batch)
        # A write can reach the file (its size and mtime) a moment before a reader sees it (a
        # SQLite commit lands in the write-ahead log before its index): a file changed just
        # before this read keeps no identity, so the next scan reads it again.
        settled = mtime < began - SETTLE_S
        self._unsettled |= not settled
        batch.updates[key] = Position(offset=size, line_no=(pos.line_no if pos else 0)
                                      + len(records), inode=inode, size=size,
                                      mtime=mtime if settled else 0.0, file_kind="artifact",
                                      records=True, cursor=cursor)
        self._warned.pop(key, None)
        return len(records)

    def _described(self, path: Path, pos: Position, first_line: str | None) -> Position:
        session_id, kind, agent_id = self.describe(path, first_line)
        return replace(pos, session_id=session_id, file_kind=kind, agent_id=agent_id)

    def _unreadable(self, key: str, exc: OSError) -> None:
        """Log an unreadable file once per distinct error (a rescan every few seconds would
        otherwise repeat it forever); it is retried at every scan all the same."""
        reason = f"{exc.strerror or exc}"
        if self._warned.get(key) != reason:
            logger.warning("skipping unreadable file path=%s error=%s", key, reason)
            self._warned[key] = reason

    async def _collect_removals(self, seen: set[str], batch: _Batch) -> None:
        for key, pos in list(self._positions.items()):
            if key in seen or os.path.lexists(key):
                continue  # present but not listed (e.g. unreadable dir): not removed
            if pos.records:  # a database or document: its sessions do not end with it
                batch.updates[key] = None
                continue
            if pos.session_id is None:  # never had a line: describe from the path alone
                pos = self._described(Path(key), pos, None)
            batch.events.append(removed_event(self.source, key, pos))
            batch.updates[key] = None
            if len(batch.events) >= BATCH_SIZE:
                await self._flush(batch)

    async def _flush(self, batch: _Batch) -> None:
        """Publish the batch, then (only then) commit and persist its positions."""
        if batch.events:
            await self._publish(list(batch.events))
        if batch.updates:
            for key, pos in batch.updates.items():
                if pos is None:
                    self._positions.pop(key, None)
                else:
                    self._positions[key] = pos
            save_positions(self.checkpoint_path, self._positions)
        batch.events.clear()
        batch.updates.clear()

    def _discover(self) -> list[Path]:
        found: set[Path] = set()
        for root in self.roots:
            if not root.is_dir():
                logger.debug("root does not exist (yet) root=%s", root)
                continue
            for dirpath, dirs, names in os.walk(root, onerror=_log_walk_error):
                self.prune(Path(dirpath), dirs)
                found.update(p for name in names if self.matches(p := Path(dirpath, name)))
        return sorted(found)


def _identity(path: Path) -> tuple[int, int, float]:
    """``(inode, size, mtime)`` of ``path`` with its SQLite sidecars: sizes summed, the latest
    mtime, so a write the database keeps in its write-ahead log still counts as a change."""
    st = os.stat(path)
    size, mtime = st.st_size, st.st_mtime
    for suffix in SIDECARS:
        try:
            side = os.stat(f"{path}{suffix}")
        except OSError:
            continue
        size, mtime = size + side.st_size, max(mtime, side.st_mtime)
    return st.st_ino, size, mtime


def _log_walk_error(exc: OSError) -> None:
    logger.warning("cannot list directory path=%s error=%s", exc.filename, exc)
