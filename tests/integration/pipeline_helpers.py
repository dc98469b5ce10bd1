"""Running the CLI as a user would (a subprocess, settings from the environment)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-c", "from app.cli import main; main()"]


def cli_env(**settings: str) -> dict[str, str]:
    """The environment without the developer's SESSIONSTREAM_* settings, plus ``settings``;
    the publish API is off unless a test asks for it (its fixed port would collide)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONSTREAM_")}
    return {**env, "SESSIONSTREAM_API_PORT": "0", **settings}


def backfill_cli(env: dict[str, str], *sources: Path, timeout: float = 600
                 ) -> subprocess.CompletedProcess[str]:
    args = [a for s in sources for a in ("--source", str(s))]
    return subprocess.run([*CLI, "backfill", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def start_cli(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    """Start ``sessionstream ARGS`` in the background, output to ``log``."""
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([*CLI, *args], env=env, stdout=handle, stderr=subprocess.STDOUT)


def stop_cli(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM,
             timeout: float = 60) -> int | None:
    """Stop a CLI started by :func:`start_cli` with ``sig`` (Ctrl-C is SIGINT); kill it if it
    has not exited within ``timeout`` s. Its exit code, or None when it had to be killed."""
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def log_tail(log: Path, chars: int = 3000) -> str:
    """The end of a CLI's log, for failure messages."""
    if not log.exists():
        return f"({log.name} not written)"
    return log.read_text(errors="replace")[-chars:]


def assert_running(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Fail at once, with the end of its log, when ``proc`` has exited: a check passed to
    :func:`tests.waiting.eventually` calls it first, so a dead worker is not waited for."""
    assert proc.poll() is None, f"exited with {proc.returncode}:\n{log_tail(log)}"
