"""The contract of every local server: idempotent ``up``, ``down`` leaving nothing, ``status``.

A server subclass says which ports it wants, how to start, how to tell it is ready and what its
endpoint URL is; this base does the rest (port choice, "already running", waiting with a
timeout and a clear error, log rotation, stopping the whole process group).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from streams.errors import StackError
from streams.settings import Settings
from streams.stack.process import ManagedProcess, wait_for

__all__ = ["Server", "ServerStatus"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerStatus:
    """What ``sessionstream stack status`` prints for one server."""

    name: str
    running: bool
    ready: bool
    pid: int | None
    endpoint: str | None
    data_dir: Path

    def line(self) -> str:
        state = "ready" if self.ready else ("starting" if self.running else "stopped")
        where = self.endpoint if self.running and self.endpoint else "-"
        pid = str(self.pid) if self.pid else "-"
        return f"{self.name:<11} {state:<9} {pid:>8}  {where:<36} {self.data_dir}"


class Server(ABC):
    """One server of the local stack, tracked under ``<state_dir>/stack/<name>``."""

    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.directory = settings.state_dir / "stack" / self.name
        self.process = ManagedProcess(self.directory)

    # -- what subclasses provide ---------------------------------------------------------------

    @abstractmethod
    def wanted_ports(self) -> dict[str, tuple[int | None, int, str]]:
        """``{key: (configured port or None, usual port, settings variable)}``."""

    @abstractmethod
    def endpoint_for(self, ports: dict[str, int]) -> str:
        """The URL clients use, given the chosen ports."""

    @abstractmethod
    def start(self, ports: dict[str, int]) -> None:
        """Launch the server (it is known not to be running)."""

    @abstractmethod
    def is_ready(self, ports: dict[str, int]) -> bool:
        """True once clients can use the server."""

    def prepare(self) -> None:  # noqa: B027 - optional hook, most servers need nothing
        """Fetch or check what the server needs before start (jars, binaries); may be slow."""

    # -- the contract ----------------------------------------------------------------------------

    def up(self) -> str:
        """Start the server unless it already runs, wait until ready, return its endpoint.

        Raises :class:`StackError` with the reason (and the log's tail) when it cannot start or
        is not ready within ``stack.startup_timeout_s``.
        """
        if self.running():
            ports = self.process.remembered_ports()
            self._wait_ready(ports)
            return self.endpoint_for(ports)
        self.prepare()
        ports = self.process.choose_ports(self.wanted_ports())
        self._rotate_log()
        started = time.monotonic()
        self.start(ports)
        self._wait_ready(ports)
        logger.info("%s ready at %s in %.1f s", self.name, self.endpoint_for(ports),
                    time.monotonic() - started)
        return self.endpoint_for(ports)

    def down(self) -> bool:
        """Stop the server and everything it spawned; True if it was running."""
        return self.process.stop()

    def running(self) -> bool:
        return self.process.pid() is not None

    def log_identity(self) -> str | None:
        """For a broker: names the log it serves, so positions recorded against another log
        (a new cluster, a restarted in-memory broker) are known stale. None: not a broker, or
        not running."""
        return None

    def endpoint(self) -> str | None:
        """The endpoint of the running server, or None when it is not running."""
        ports = self.process.remembered_ports()
        return self.endpoint_for(ports) if ports and self.running() else None

    def status(self) -> ServerStatus:
        ports = self.process.remembered_ports()
        running = self.running()
        return ServerStatus(
            name=self.name,
            running=running,
            ready=running and bool(ports) and self.is_ready(ports),
            pid=self.process.pid(),
            endpoint=self.endpoint_for(ports) if ports else None,
            data_dir=self.directory,
        )

    # -- helpers -------------------------------------------------------------------------------

    def _wait_ready(self, ports: dict[str, int]) -> None:
        def check() -> bool:
            if not self.running():
                raise StackError(f"{self.name} exited during start-up{self._log_tail()}")
            return self.is_ready(ports)

        wait_for(check, self.settings.stack.startup_timeout_s, self.name, self.process.log_file)

    def _rotate_log(self) -> None:
        log = self.process.log_file
        if log.exists():
            log.replace(log.with_suffix(".log.1"))

    def _log_tail(self, lines: int = 20) -> str:
        log = self.process.log_file
        if not log.exists():
            return ""
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        return f"\n  last lines of {log}:\n    " + "\n    ".join(tail)
