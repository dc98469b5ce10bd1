"""Measures what a broker outage costs a running worker: log lines per second and CPU.

Against a private stack (``SESSIONSTREAM_STATE_DIR``, Kafka and Postgres started with
``sessionstream stack up kafka postgres``), it starts ``sessionstream run`` on a copy of a few
Claude Code sample transcripts and a fresh database, waits until they are in Postgres, then:

1. ``up (idle)``: 10 s with the broker up and nothing to do (the baseline);
2. ``down (idle)``: stops the stack's Kafka (``stack down kafka``, a clean shutdown) and
   measures WINDOW seconds, the stop included, with nothing to ingest; ``back (idle)``: starts
   Kafka again and measures until the worker caught up;
3. ``down (ingesting)``: a new transcript grows by RATE prompts per second; 3 s later Kafka
   stops, and WINDOW seconds are measured while the prompts keep coming; ``back
   (ingesting)``: Kafka starts again, and the phase ends when every prompt is in Postgres
   (rows and distinct contents are reported: exactly once means both equal ``expected``).

For each phase: log lines, lines per second, CPU% of the worker process (from /proc, all
threads), and the messages that repeat most (digits as N). The worker's log stays in WORKDIR.

Usage: ``SESSIONSTREAM_STATE_DIR=/tmp/outage-state .venv/bin/python scripts/measure_outage.py
[--window 20] [--rate 20] [--workdir /tmp/outage-run]``; ``MEASURE_BROKER=tansu`` measures the
embedded broker instead of Kafka.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import asyncpg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streams.settings import load_settings  # noqa: E402
from streams.stack import Stack  # noqa: E402

__all__ = ["main"]

SAMPLES = REPO / "tests" / "samples" / "claude" / "projects" / "-home-dev-demo"
SESSION = str(uuid.uuid4())  # new per run: the topics keep the prompts of earlier runs
TICKS = os.sysconf("SC_CLK_TCK")
SERVER = os.environ.get("MEASURE_BROKER", "kafka")  # or "tansu" (in memory: a restart empties it)
PREFIX = re.compile(r"^.*?\[\d+\] \[[A-Z]+\] ")  # faust's "[time] [pid] [LEVEL] "


def prompt_line(n: int) -> str:
    """One Claude Code user prompt, numbered ``n`` (unique uuid and text)."""
    return json.dumps({
        "parentUuid": None, "isSidechain": False, "userType": "external", "cwd": "/tmp/outage",
        "sessionId": SESSION, "version": "2.1.39", "type": "user",
        "message": {"role": "user", "content": f"outage prompt {n}"},
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{SESSION}/{n}")),
        "timestamp": f"2026-03-08T15:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
    }) + "\n"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (every thread) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Phase:
    """Log lines and CPU of one measured window."""

    def __init__(self, name: str, pid: int, log: Path) -> None:
        self.name, self.pid, self.log = name, pid, log
        self.offset = log.stat().st_size
        self.cpu = cpu_seconds(pid)
        self.started = time.monotonic()

    def result(self) -> dict[str, object]:
        elapsed = time.monotonic() - self.started
        with self.log.open("rb") as handle:
            handle.seek(self.offset)
            text = handle.read().decode(errors="replace")
        lines = text.splitlines()
        messages = Counter(re.sub(r"\d+", "N", PREFIX.sub("", line))[:60] for line in lines)
        return {"phase": self.name, "seconds": round(elapsed, 1), "lines": len(lines),
                "lines_per_s": round(len(lines) / elapsed, 1), "bytes": len(text.encode()),
                "cpu_percent": round(100 * (cpu_seconds(self.pid) - self.cpu) / elapsed, 1),
                "top_messages": messages.most_common(5)}


async def count_prompts(dsn: str) -> tuple[int, int]:
    """(rows, distinct texts) of our outage prompts in ``messages``; (0, 0) before the table."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT content::text) FROM messages "
            "WHERE session_id = $1 AND role = 'user'", SESSION)
    except asyncpg.UndefinedTableError:
        return 0, 0
    finally:
        await conn.close()
    return int(row[0]), int(row[1])


async def wait_prompts(dsn: str, expected: int, timeout: float) -> float:
    """Seconds until ``expected`` outage prompts are in Postgres; raises after ``timeout``."""
    started = time.monotonic()
    while (await count_prompts(dsn))[0] < expected:
        if time.monotonic() - started > timeout:
            raise SystemExit(f"only {await count_prompts(dsn)} of {expected} prompts arrived")
        await asyncio.sleep(0.5)
    return time.monotonic() - started


async def feed(path: Path, first: int, rate: float, seconds: float) -> int:
    """Append ``rate`` prompts per second to ``path`` for ``seconds``; the next number."""
    n = first
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with path.open("a") as handle:
            handle.write(prompt_line(n))
        n += 1
        await asyncio.sleep(1 / rate)
    return n


async def fresh_database(admin_dsn: str) -> str:
    name = f"outage_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_dsn.rsplit("/", 1)[0] + "/" + name


def start_worker(workdir: Path, broker: str, dsn: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONSTREAM_")}
    env.update(SESSIONSTREAM_BROKER_URL=broker, SESSIONSTREAM_POSTGRES_DSN=dsn,
               SESSIONSTREAM_STATE_DIR=str(workdir / "state"), SESSIONSTREAM_METRICS_PORT="0",
               SESSIONSTREAM_API_PORT="0")
    env["PYTHONPATH"] = str(REPO)  # the tree this script is in (a copy measures the copy)
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-c", "from app.cli import main; main()", "run",
             "--source", f"claude-code={workdir / 'src'}"],
            env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)


Feeding = Callable[[float], Coroutine[Any, Any, int]]


async def outage(stack: Stack, worker: subprocess.Popen[bytes], log: Path, dsn: str,
                 name: str, window: float, feeding: Feeding | None,
                 ) -> list[dict[str, object]]:
    """Stop Kafka for ``window`` s (while ``feeding``, if given), start it again, wait until
    every prompt written so far is in Postgres; the measured phases."""
    down = Phase(f"down ({name})", worker.pid, log)
    feeder = asyncio.create_task(feeding(window + 3)) if feeding else None
    if feeder:
        await asyncio.sleep(3)  # the broker goes away in the middle of the ingest
    stack.down([SERVER], report=lambda _: None)
    await asyncio.sleep(max(0.0, window - (time.monotonic() - down.started)))
    results = [shown(down.result())]
    back = Phase(f"back ({name})", worker.pid, log)
    stack.up([SERVER], report=lambda _: None)
    kafka_start = time.monotonic() - back.started
    written = await feeder if feeder else await count_lines(log.parent / "src")
    await wait_prompts(dsn, written, 300)
    results.append(shown({**back.result(), "broker_start_s": round(kafka_start, 1),
                          "prompts (rows, distinct)": await count_prompts(dsn),
                          "expected": written}))
    assert worker.poll() is None, "the worker exited"
    return results


def shown(result: dict[str, object]) -> dict[str, object]:
    """``result``, printed as one JSON line as soon as it is measured."""
    print(json.dumps(result), flush=True)
    return result


async def count_lines(src: Path) -> int:
    return len((src / f"{SESSION}.jsonl").read_text().splitlines())


async def measure(workdir: Path, window: float, rate: float) -> list[dict[str, object]]:
    stack = Stack(load_settings())
    endpoints = stack.up([SERVER, "postgres"], report=lambda _: None)
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "src").mkdir(parents=True)
    for name in ("synthetic", "compaction", "streaming", "titles"):
        shutil.copy(SAMPLES / f"{name}.jsonl", workdir / "src")
    growing = workdir / "src" / f"{SESSION}.jsonl"
    growing.write_text(prompt_line(0))
    dsn = await fresh_database(endpoints["postgres"])
    log = workdir / "worker.log"
    log.touch()
    worker = start_worker(workdir, endpoints[SERVER], dsn, log)
    results: list[dict[str, object]] = []
    try:
        await wait_prompts(dsn, 1, 180)
        await asyncio.sleep(5)
        up = Phase("up (idle)", worker.pid, log)
        await asyncio.sleep(10)
        results.append(shown(up.result()))
        results += await outage(stack, worker, log, dsn, "idle", window, None)
        await asyncio.sleep(5)
        results += await outage(stack, worker, log, dsn, "ingesting", window,
                                lambda seconds: feed(growing, 1, rate, seconds))
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
        stack.up([SERVER], report=lambda _: None)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--window", type=float, default=20.0, help="seconds per outage phase")
    parser.add_argument("--rate", type=float, default=20.0, help="prompts/s while ingesting")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/outage-run"))
    args = parser.parse_args()
    asyncio.run(measure(args.workdir, args.window, args.rate))


if __name__ == "__main__":
    main()
