"""A background server process owned by the local stack: spawn, find again, stop.

Each server has a directory under the state dir holding ``pid`` (the process id), ``port.json``
(the ports it was given, reused on the next start) and ``server.log`` (its output). Processes are
started in their own session so that stopping the process group leaves nothing behind, and a
pid is trusted only while the process still has the start time recorded with it (pids get
reused).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from streams.errors import StackError

__all__ = ["ManagedProcess", "free_port", "port_is_free", "wait_for"]

logger = logging.getLogger(__name__)

# Servers outlive the Popen objects that started them; holding the objects here keeps Python
# from warning that a child "is still running" when they would be garbage-collected.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` and we may bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tcp_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(check: Callable[[], bool], timeout: float, what: str, log: Path | None) -> None:
    """Poll ``check`` until it is true; raise :class:`StackError` naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    tail = ""
    if log is not None and log.exists():
        tail = "\n  last lines of " + str(log) + ":\n    " + "\n    ".join(
            log.read_text(errors="replace").splitlines()[-15:]
        )
    raise StackError(f"{what} was not ready after {timeout:.0f} s{tail}")


class ManagedProcess:
    """One server process tracked through its directory; safe to use from several CLI runs."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pid_file = directory / "pid"
        self.log_file = directory / "server.log"
        self.port_file = directory / "port.json"

    # -- ports ---------------------------------------------------------------------------------

    def choose_ports(self, wanted: dict[str, tuple[int | None, int, str]]) -> dict[str, int]:
        """Pick each port: ``{key: (configured, usual, variable)}`` -> ``{key: port}``.

        A configured port is used as is (an error naming ``variable`` if taken); otherwise the
        port remembered from the last start, then the usual port, then any free port.
        """
        remembered = self.remembered_ports()
        chosen: dict[str, int] = {}
        for key, (configured, usual, variable) in wanted.items():
            if configured is not None:
                if not port_is_free(configured):
                    raise StackError(
                        f"port {configured} ({variable}) is already in use; "
                        f"free it or set {variable} to another port"
                    )
                chosen[key] = configured
                continue
            taken = set(chosen.values())
            for candidate in (remembered.get(key), usual):
                if candidate and candidate not in taken and port_is_free(candidate):
                    chosen[key] = candidate
                    break
            else:
                chosen[key] = free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port_file.write_text(json.dumps(chosen))
        return chosen

    def remembered_ports(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads(self.port_file.read_text()).items()}
        except (OSError, ValueError):
            return {}

    # -- lifecycle -----------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The live server's pid, or None when it is not running (stale pid files are removed).

        The pid file holds "<pid> <start time>"; a pid counts only while the process with that
        pid still has that start time, so a reused pid is never mistaken for the server.
        """
        try:
            pid_text, started = self.pid_file.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        if _start_time(pid) != started or not _alive(pid):
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def spawn(
        self,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
    ) -> int:
        """Start ``argv`` detached, output appended to the log; returns the pid."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                user=user,
            )
        _CHILDREN[proc.pid] = proc
        self.pid_file.write_text(f"{proc.pid} {_start_time(proc.pid)}")
        logger.debug("spawned pid=%s argv=%s", proc.pid, argv)
        return proc.pid

    def exited_early(self) -> bool:
        return self.pid() is None

    def stop(self, timeout: float = 30.0, sig: signal.Signals = signal.SIGTERM) -> bool:
        """Send ``sig`` to the process group, SIGKILL it after ``timeout``; True if it ran."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            logger.warning("pid=%s ignored SIGTERM for %.0f s; killing it", pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            child.wait()
        return True


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (reaping it when it is our child)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
