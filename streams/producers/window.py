"""A producer's reading window: which session files a bounded read (``SESSIONSTREAM_SINCE``,
``run --since``, ``backfill --since/--until``) leaves out, and the report of what it left out.

The unit is the *session*, never a line: half a session would corrupt its totals. Every file a
producer has no checkpoint for is described once (its session, from
:meth:`~streams.producers.base.FileProducer.describe`, as the producer files it: a Claude
``<session>/subagents/agent-*.jsonl`` or sibling ``agent-*.jsonl``, a Codex sub-agent thread
and a Gemini sub-agent recording go with their parent session), and its files are kept or
skipped together:

* a session whose newest file was last modified before ``since`` is skipped;
* a session whose first activity is after ``until`` is skipped; a file's first activity is the
  timestamp its first line names (``timestamp``, ``startTime``, ... at the top or one level
  down, e.g. Codex's ``payload.timestamp``), else its mtime (snapshots, Markdown artifacts);
* a session with any file already checkpointed (read before) is kept whole.

Skipped files are not checkpointed, so nothing is lost: a skipped session that is written to
again (a resumed session) has a new mtime, falls inside the window and is read whole from its
first byte at the next scan. What is skipped is reported once per change through the
producer's ``report`` and counted in :attr:`WindowFilter.skipped`.

Sessions that *copy* another (Claude resumes and forks, Codex forks) are separate sessions in
separate files: each is judged on its own files. A copy kept while its origin is skipped owns
the copied prefix until the origin is read too (the stores decide lineage whatever order the
files arrive in, so a later unbounded ``backfill`` converges).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from streams.periods import format_cutoff
from streams.producers.checkpoints import Position

__all__ = ["FIRST_LINE_BYTES", "Skipped", "Window", "WindowFilter", "first_activity"]

logger = logging.getLogger(__name__)

FIRST_LINE_BYTES = 1024 * 1024  # a Codex session_meta can be large; beyond this, use the mtime
_TIME_KEYS = ("timestamp", "startTime", "start_time", "created_at", "createdAt", "time")

Describe = Callable[[Path, str | None], str]
Report = Callable[[str], None]


@dataclass(frozen=True)
class Window:
    """The bounds of a read. ``since``/``until`` are instants (UTC); the labels say where each
    came from (``SESSIONSTREAM_SINCE=30d``, ``--until 2026-11-30``) for the report."""

    since: datetime | None = None
    until: datetime | None = None
    since_label: str = ""
    until_label: str = ""

    @property
    def bounded(self) -> bool:
        return self.since is not None or self.until is not None


@dataclass(frozen=True)
class _Facts:
    session_id: str
    size: int
    mtime: float
    started: float


@dataclass
class Skipped:
    """Files and bytes left out by the last scan, per reason (``before`` since, ``after``
    until)."""

    files: dict[str, int] = field(default_factory=lambda: {"before": 0, "after": 0})
    bytes: dict[str, int] = field(default_factory=lambda: {"before": 0, "after": 0})


class WindowFilter:
    """Applies a :class:`Window` to the paths of one producer's scan (see the module
    docstring). :meth:`select` runs in a worker thread; :meth:`report_changes` on the loop."""

    def __init__(self, source: str, window: Window, describe: Describe,
                 report: Report | None) -> None:
        self.source = source
        self.window = window
        self.describe = describe
        self.report = report
        self.skipped = Skipped()
        self._facts: dict[str, tuple[tuple[int, int, float], _Facts]] = {}
        self._skipped_now: dict[str, str] = {}  # path -> reason, of the last scan
        self._reported: set[str] = set()

    def select(self, paths: Iterable[Path], positions: dict[str, Position]) -> list[Path]:
        """The paths to read; the others are remembered as skipped for the report."""
        sessions: dict[str, list[tuple[Path, _Facts | None]]] = {}
        kept_sessions = {p.session_id for p in positions.values() if p.session_id}
        for path in paths:
            facts = None if str(path) in positions else self._facts_of(path)
            session = facts.session_id if facts else (positions.get(str(path)) or Position()
                                                      ).session_id or str(path)
            if facts is None:
                kept_sessions.add(session)  # checkpointed or unreadable: the base handles it
            sessions.setdefault(session, []).append((path, facts))
        kept: list[Path] = []
        self._skipped_now = {}
        self.skipped = Skipped()
        for session, files in sessions.items():
            reason = None if session in kept_sessions else self._reason(
                [f for _, f in files if f is not None])
            for path, facts in files:
                if reason is None or facts is None:
                    kept.append(path)
                    continue
                self._skipped_now[str(path)] = reason
                self.skipped.files[reason] += 1
                self.skipped.bytes[reason] += facts.size
        return sorted(kept)

    def report_changes(self) -> None:
        """Report the skipped totals when a file is skipped that the last report did not
        cover (so a rescan every few seconds does not repeat it)."""
        new = set(self._skipped_now) - self._reported
        self._reported = set(self._skipped_now)
        if not new or self.report is None:
            return
        for reason in ("before", "after"):
            files = self.skipped.files[reason]
            if files:
                self.report(self._line(reason, files, self.skipped.bytes[reason]))

    def _line(self, reason: str, files: int, size: int) -> str:
        window = self.window
        if reason == "before":
            assert window.since is not None
            what = f"last modified before {format_cutoff(window.since)} ({window.since_label})"
        else:
            assert window.until is not None
            what = f"first active after {format_cutoff(window.until)} ({window.until_label})"
        return (f"skipped {files:,} file{'s' if files != 1 else ''} ({size / 1e6:,.1f} MB) of "
                f"{self.source} {what}; whole sessions, not checkpointed: read in full once "
                "written to again")

    def _reason(self, files: list[_Facts]) -> str | None:
        if not files:
            return None
        window = self.window
        if window.since is not None and max(f.mtime for f in files) < window.since.timestamp():
            return "before"
        if window.until is not None and min(f.started for f in files) > window.until.timestamp():
            return "after"
        return None

    def _facts_of(self, path: Path) -> _Facts | None:
        """What the window needs of a file, cached by (inode, size, mtime); None when it
        cannot be read (the scan then meets the error and reports it as usual)."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        identity = (st.st_ino, st.st_size, st.st_mtime)
        cached = self._facts.get(str(path))
        if cached is not None and cached[0] == identity:
            return cached[1]
        try:
            first = _first_line(path)
        except OSError:
            return None
        started = first_activity(first)
        facts = _Facts(self.describe(path, first), st.st_size, st.st_mtime,
                       min(st.st_mtime, started) if started is not None else st.st_mtime)
        self._facts[str(path)] = (identity, facts)
        return facts


def first_activity(first_line: str | None) -> float | None:
    """The epoch seconds a session file's first line says it happened, or None: the first ISO
    time under :data:`_TIME_KEYS`, at the top of the JSON object or one level down."""
    if not first_line:
        return None
    try:
        record = json.loads(first_line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    for scope in (record, *(v for v in record.values() if isinstance(v, dict))):
        for key in _TIME_KEYS:
            when = _instant(scope.get(key))
            if when is not None:
                return when
    return None


def _instant(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _first_line(path: Path) -> str | None:
    """The first complete line of a regular file (None without a newline in its first
    :data:`FIRST_LINE_BYTES`); opened without blocking, so a FIFO cannot hang the scan."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.readline(FIRST_LINE_BYTES)
    finally:
        os.close(fd)
    if not raw.endswith(b"\n"):
        return None
    return raw.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8", errors="replace")
