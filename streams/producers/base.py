"""The file-producer base: tail append-only session files into ``FileChanged`` events.

A :class:`FileProducer` owns everything between bytes on disk and a published batch: it walks
its roots, reads each matching file from a persisted byte checkpoint up to the last complete
newline, publishes the lines in batches through the injected ``publish`` callable, and advances
the checkpoint only after ``publish`` returned. Delivery is at-least-once: a crash or a failed
publish re-publishes the same lines with the same event ids (they derive from path and offset),
which consumers dedupe. A new source is one module that subclasses this and fills in
``source``, :meth:`FileProducer.matches` and :meth:`FileProducer.describe`; files that are
rewritten in place instead of appended to are named by :meth:`FileProducer.snapshot` and
published whole (``file.snapshot``) each time their size, mtime or inode changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, ClassVar

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from schemas.file_changes import (
    MAX_SNAPSHOT_BYTES,
    FileChanged,
    FileKind,
    FileLine,
    file_line_event,
    file_removed_event,
    file_snapshot_event,
)
from streams.errors import SourceError
from streams.producers.clipping import fit_line, fit_text

__all__ = ["BATCH_SIZE", "FileProducer", "Position", "Progress", "Publish"]

logger = logging.getLogger(__name__)

Publish = Callable[[list[FileChanged]], Awaitable[None]]
Progress = Callable[[int, int], None]

BATCH_SIZE = 2000  # events per publish call (and per checkpoint write)
CHUNK_BYTES = 8 * 1024 * 1024  # bounds memory per read when a file holds huge lines
HEAD_BYTES = 4096  # the published head whose digest tells an append from a rewrite
DEBOUNCE_S = 0.01  # a burst of writes settles into one scan (one write is one event)
_WAKE_EVENTS = frozenset({"created", "modified", "moved", "deleted"})


@dataclass(frozen=True)
class Position:
    """How far one file has been published; one entry of the checkpoint file.

    ``offset``/``line_no`` point just past the last complete line; ``inode``/``size`` detect
    truncation or replacement, ``head`` (a digest of the first ``HEAD_BYTES`` published) and an
    mtime change without growth detect a rewrite in place, whatever its size. ``mtime`` and the
    cached ``describe`` result let a file that vanished be reported with a stable event id and
    its session, even though it cannot be read.
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


@dataclass(frozen=True)
class _Chunk:
    position: Position  # after the lines read; identity reset when the file was restarted
    lines: list[tuple[int, int, str]]  # (offset, line_no, text) of non-empty complete lines
    first_line: str | None  # the file's first line, read only when describe() needs it
    restarted: bool
    more: bool  # stopped at a limit, not at the end of complete lines


@dataclass
class _Batch:
    events: list[FileChanged] = field(default_factory=list)
    updates: dict[str, Position | None] = field(default_factory=dict)  # None = drop


def _decode(raw: bytes) -> str:
    return raw.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8", errors="replace")


def _payload(key: str, pos: Position, offset: int, line_no: int, line: str = "") -> FileLine:
    # Built from values this module produced (a path, offsets, decoded text), so validating
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


def _read_chunk(path: Path, pos: Position | None, max_lines: int) -> _Chunk:
    """Read up to ``max_lines`` complete non-empty lines of ``path`` after ``pos``."""
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
            f.seek(0)
            first_line = _decode(f.readline())
        head = start.head
        if offset != start.offset and (not head or start.offset < HEAD_BYTES):
            head = _head_digest(f, offset)
    position = replace(start, offset=offset, line_no=line_no, inode=st.st_ino, size=st.st_size,
                       mtime=st.st_mtime, head=head)
    return _Chunk(position, lines, first_line, restarted, more)


def _read_snapshot(path: Path, pos: Position | None) -> tuple[Position, str, bool] | None:
    """``(position, text, truncated)`` of a whole file, or None when unchanged since ``pos``."""
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


class FileProducer:
    """Tails the matching files under ``roots`` and publishes each complete line once.

    Subclasses set ``source`` and implement :meth:`matches` (called from worker and watchdog
    threads, so it must be a pure function of the path) and :meth:`describe`. ``progress``,
    when set, is called on the event loop with ``(files_done, files_total)`` as a scan goes.
    """

    source: ClassVar[str]

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
        self.progress: Progress | None = None
        self._publish = publish
        self._positions: dict[str, Position] = {}
        self._loaded = False  # positions are read from disk lazily, under the lock
        self._lock = asyncio.Lock()
        self._warned: dict[str, str] = {}  # path -> the read error last logged for it

    @classmethod
    def default_roots(cls, env: Mapping[str, str]) -> list[Path]:
        """Where this source writes by default; used when no roots are configured."""
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

    def prune(self, dirpath: Path, dirnames: list[str]) -> None:
        """Drop from ``dirnames``, in place, the subdirectories of ``dirpath`` not worth walking.

        Called from a worker thread for every directory the discovery walk enters, before it
        descends; the default walks everything. Sources whose roots are whole project trees
        override it to skip ``node_modules``, ``.git`` and the like.
        """

    def describe(self, path: Path, first_line: str | None) -> tuple[str, FileKind, str | None]:
        """``(session_id, file_kind, agent_id)`` of ``path``; computed once per file.

        ``first_line`` is the file's first complete line, or None when it cannot be read
        (a file that vanished before any line was published).
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
                self._positions, self._loaded = self._load(), True
            paths = await asyncio.to_thread(self._discover)
            batch, published = _Batch(), 0
            for done, path in enumerate(paths, 1):
                published += await self._scan_file(path, batch)
                if self.progress is not None:
                    self.progress(done, len(paths))
            await self._collect_removals({str(p) for p in paths}, batch)
            await self._flush(batch)
            return published

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
        nothing is lost and no input stops the producer. The observer is stopped and joined
        before returning.
        """
        wake = asyncio.Event()
        handler = _Wakeup(self.matches, asyncio.get_running_loop(), wake)
        observer = Observer()
        watches: dict[Path, ObservedWatch] = {}
        observer.start()
        failing = _FailureStreak(f"producer={self.source}")
        try:
            while not stop.is_set():
                self._watch_roots(observer, handler, watches)
                # A failed scan is retried from its checkpoint: whatever goes wrong (a broker
                # outage, a refused record, a bug on one file), the others must go on.
                try:
                    await self.scan_once()
                    failing.ended()
                except SourceError:
                    raise  # an unreadable checkpoint: the user must act, retrying cannot help
                except Exception as exc:  # noqa: BLE001
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), failing.backoff(exc))
                    continue
                await self._wait(stop, wake)
        finally:
            observer.stop()
            await asyncio.to_thread(observer.join, 5.0)

    async def _scan_file(self, path: Path, batch: _Batch) -> int:
        if self.snapshot(path):
            return await self._scan_snapshot(path, batch)
        key, published = str(path), 0
        while True:
            pos = batch.updates[key] if key in batch.updates else self._positions.get(key)
            try:
                chunk = await asyncio.to_thread(
                    _read_chunk, path, pos, BATCH_SIZE - len(batch.events)
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
                session_id, kind, agent_id = self.describe(path, chunk.first_line)
                new = replace(new, session_id=session_id, file_kind=kind, agent_id=agent_id)
            batch.events.extend(self._line_event(key, new, line) for line in chunk.lines)
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
            read = await asyncio.to_thread(_read_snapshot, path, pos)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            self._unreadable(key, exc)
            return 0
        if read is None:
            return 0
        new, text, truncated = read
        if new.session_id is None:
            session_id, kind, agent_id = self.describe(path, text.partition("\n")[0])
            new = replace(new, session_id=session_id, file_kind=kind, agent_id=agent_id)
        if truncated:
            logger.warning("snapshot cut at %d bytes path=%s", MAX_SNAPSHOT_BYTES, path)
        payload = _payload(key, new, 0, 1, text).model_copy(update={"truncated": truncated})
        batch.events.append(file_snapshot_event(self.source, new.session_id or "", payload))
        batch.updates[key] = new
        if len(batch.events) >= BATCH_SIZE:
            await self._flush(batch)
        return 1

    def _unreadable(self, key: str, exc: OSError) -> None:
        """Log an unreadable file once per distinct error (a rescan every few seconds would
        otherwise repeat it forever); it is retried at every scan all the same."""
        reason = f"{exc.strerror or exc}"
        if self._warned.get(key) != reason:
            logger.warning("skipping unreadable file path=%s error=%s", key, reason)
            self._warned[key] = reason

    def _line_event(self, key: str, pos: Position, line: tuple[int, int, str]) -> FileChanged:
        offset, line_no, text = line
        clipped = fit_line(text)
        payload = _payload(key, pos, offset, line_no, text if clipped is None else clipped)
        if clipped is not None:
            size = len(text.encode("utf-8", "surrogatepass"))
            logger.warning("line too big for one record, clipped path=%s line=%d bytes=%d",
                           key, line_no, size)
            payload = payload.model_copy(update={"original_bytes": size})
        return file_line_event(self.source, pos.session_id or "", payload, validate=False)

    async def _collect_removals(self, seen: set[str], batch: _Batch) -> None:
        for key, pos in list(self._positions.items()):
            if key in seen or os.path.lexists(key):
                continue  # present but not listed (e.g. unreadable dir): not removed
            if pos.session_id is None:  # never had a line: describe from the path alone
                session_id, kind, agent_id = self.describe(Path(key), None)
                pos = replace(pos, session_id=session_id, file_kind=kind, agent_id=agent_id)
            payload = _payload(key, pos, pos.offset, max(pos.line_no, 1))
            batch.events.append(file_removed_event(self.source, pos.session_id or "", payload))
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
            self._save(self._positions)
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

    def _load(self) -> dict[str, Position]:
        try:
            raw = json.loads(self.checkpoint_path.read_text())
            return {key: Position(**value) for key, value in raw.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise SourceError(
                f"unreadable checkpoint {self.checkpoint_path}: {exc}; "
                "delete it to re-publish every file from the start"
            ) from exc

    def _save(self, positions: dict[str, Position]) -> None:
        """Write the checkpoint atomically: a reader sees the old file or the new one."""
        target = self.checkpoint_path
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({k: asdict(v) for k, v in sorted(positions.items())}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _watch_roots(
        self, observer: BaseObserver, handler: _Wakeup, watches: dict[Path, ObservedWatch]
    ) -> None:
        """Watch roots that appeared; drop watches of roots that disappeared."""
        for root in self.roots:
            exists = root.is_dir()
            if exists and root not in watches:
                try:
                    watches[root] = observer.schedule(handler, str(root), recursive=True)
                except OSError as exc:  # e.g. inotify watch limit: the rescan still covers it
                    logger.warning("cannot watch root=%s error=%s", root, exc)
            elif not exists and root in watches:
                observer.unschedule(watches.pop(root))

    async def _wait(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        waiters = {asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())}
        try:
            await asyncio.wait(
                waiters, timeout=self.rescan_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        if wake.is_set() and not stop.is_set():
            await asyncio.sleep(DEBOUNCE_S)
            wake.clear()  # cleared before the scan, so writes during it wake the next one


class _FailureStreak:
    """Backoff and logging for a loop that retries: the first failure of a streak is a
    warning, repeats of the same error are debug, the end of the streak is one info line."""

    def __init__(self, what: str, first: float = 1.0, cap: float = 30.0) -> None:
        self.what, self.first, self.cap = what, first, cap
        self.delay = 0.0
        self.last: str | None = None

    def backoff(self, exc: Exception) -> float:
        """Log ``exc`` (once per kind of error) and return the seconds to wait."""
        reason = f"{type(exc).__name__}: {exc}"
        if reason != self.last:
            logger.warning("%s failed, retrying with backoff: %s", self.what, reason,
                           exc_info=self.last is None)
        else:
            logger.debug("%s still failing: %s", self.what, reason)
        self.last = reason
        self.delay = min(self.cap, self.delay * 2 if self.delay else self.first)
        return self.delay

    def ended(self) -> None:
        if self.last is not None:
            logger.info("%s recovered", self.what)
        self.delay, self.last = 0.0, None


def _log_walk_error(exc: OSError) -> None:
    logger.warning("cannot list directory path=%s error=%s", exc.filename, exc)


class _Wakeup(FileSystemEventHandler):
    """Runs in the observer thread: wakes the scan loop when a relevant path changed."""

    def __init__(
        self,
        matches: Callable[[Path], bool],
        loop: asyncio.AbstractEventLoop,
        wake: asyncio.Event,
    ) -> None:
        self._matches = matches
        self._loop = loop
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _WAKE_EVENTS:
            return
        if event.is_directory:
            relevant = event.event_type != "modified"  # new dirs may hold files already
        else:
            paths = (p for p in (event.src_path, event.dest_path) if p)
            relevant = any(self._matches(Path(os.fsdecode(p))) for p in paths)
        if relevant:
            with contextlib.suppress(RuntimeError):  # loop already closed: nobody to wake
                self._loop.call_soon_threadsafe(self._wake.set)
