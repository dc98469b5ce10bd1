"""``sessionstream stack up | status | down`` as a contributor uses it, in its own state dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import scratch_root

pytestmark = pytest.mark.integration

@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not /tmp/pytest-of-root: Postgres runs as an unprivileged account that must reach it.
    path = scratch_root() / f"cli-{uuid.uuid4().hex[:8]}"
    yield path
    subprocess.run(_cli("stack", "down"), env=_env(path), capture_output=True, check=False)
    shutil.rmtree(path, ignore_errors=True)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from app.cli import main; main()", *args]


def _env(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONSTREAM_")}
    return {**env, "SESSIONSTREAM_STATE_DIR": str(state_dir)}


def _run(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cli(*args), env=_env(state_dir), capture_output=True, text=True,
                          timeout=300, check=False)


def _pid(state_dir: Path, server: str) -> int:
    return int((state_dir / "stack" / server / "pid").read_text().split()[0])


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_up_twice_status_then_down_leaves_nothing(state_dir: Path) -> None:
    first = _run(state_dir, "stack", "up", "tansu", "postgres")
    assert first.returncode == 0, first.stderr
    pids = {name: _pid(state_dir, name) for name in ("tansu", "postgres")}

    second = _run(state_dir, "stack", "up", "tansu", "postgres")
    assert second.returncode == 0, second.stderr
    assert {name: _pid(state_dir, name) for name in pids} == pids  # idempotent: same processes

    status = _run(state_dir, "stack", "status")
    table, broker = status.stdout.splitlines()[1:-1], status.stdout.splitlines()[-1]
    rows = {line.split()[0]: line.split()[1] for line in table}
    assert rows == {"kafka": "stopped", "tansu": "ready", "postgres": "ready",
                    "neo4j": "stopped", "prometheus": "stopped", "jaeger": "stopped"}
    assert broker.startswith("broker for run/backfill: embedded ")  # and what it keeps
    assert "keeps its log" in broker
    assert status.returncode == 3  # not everything is ready

    down = _run(state_dir, "stack", "down")
    assert down.returncode == 0, down.stderr
    assert not any(_running(pid) for pid in pids.values())
    after = _run(state_dir, "stack", "status")
    assert all(line.split()[1] == "stopped" for line in after.stdout.splitlines()[1:-1])


def test_a_taken_configured_port_names_the_variable(state_dir: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**_env(state_dir), "SESSIONSTREAM_STACK__TANSU_PORT": str(port)}
        result = subprocess.run(_cli("stack", "up", "tansu"), env=env, capture_output=True,
                                text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert f"port {port} (SESSIONSTREAM_STACK__TANSU_PORT) is already in use" in result.stderr
