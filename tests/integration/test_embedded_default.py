"""The zero-config default keeps its log: the embedded broker is Apache Kafka with its log on
disk under the state dir (no SESSIONSTREAM_BROKER_URL), and a restart loses and re-reads
nothing.

One story, as a user lives it, with a private state dir (so the CLI starts its own embedded
Kafka) and the suite's Postgres:

1. ``run`` on the samples: plain terminal lines naming the broker and what it keeps, no
   spurious warning on a first start; events published through ``publish`` and ``POST
   /api/v1/events`` reach Postgres; ``status`` is exact (position = end, lag 0);
2. ``run`` stopped, ``stack down``, ``run`` again: the log is not new, nothing is re-read (the
   raw-lines topic does not grow), every published event is still in its topic and Postgres;
3. ``replay postgres`` rebuilds the same rows;
4. the broker's log removed (an upgrade from the in-memory default looks the same): ``replay``
   refuses, naming the cause, and ``run`` starts over from the sources, converging.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from streams.lag import end_offsets
from streams.settings import bootstrap_of
from streams.stack.process import free_port
from streams.tail import tail
from tests.integration.pipeline_helpers import CLI, cli_env, log_tail, start_cli, stop_cli
from tests.waiting import eventually

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "claude" / "projects"
TIMEOUT_S = 180.0


def _event(session: str, text: str) -> dict[str, Any]:
    return {"source": "claude-code", "session_id": session, "type": "user.prompted",
            "occurred_at": "2026-05-01T10:00:00Z",
            "payload": {"kind": "user.prompted", "text": text, "line_uuid": f"{session}-1"}}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)


async def _wait_for(check: Callable[[], Awaitable[bool]], what: str, log: Path) -> None:
    await eventually(check, what, timeout=TIMEOUT_S, interval=0.3, detail=lambda: log_tail(log))


async def _log_has(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text(errors="replace")


async def _prompts(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT to_regclass('messages') IS NOT NULL"):
            return {}
        rows = await conn.fetch("SELECT session_id, message_key, content->>'text' AS text "
                                "FROM messages WHERE role = 'user' ORDER BY 1, 2")
    finally:
        await conn.close()
    return {f"{r['session_id']}/{r['message_key']}": r["text"] for r in rows}


def _stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Ctrl-C, which must end ``run`` cleanly within 30 s."""
    code = stop_cli(proc, signal.SIGINT, timeout=30)
    assert code == 0, f"exit {code}\n" + log.read_text(errors="replace")[-3000:]


async def test_the_default_broker_keeps_its_log_across_restarts(
    pg_dsn: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    api_port = free_port()
    env = cli_env(SESSIONSTREAM_STATE_DIR=str(state), SESSIONSTREAM_POSTGRES_DSN=pg_dsn,
                  SESSIONSTREAM_METRICS_PORT=str(free_port()),
                  SESSIONSTREAM_API_PORT=str(api_port))
    sources = tmp_path / "claude"
    shutil.copytree(SAMPLES, sources)
    run = uuid.uuid4().hex[:8]
    published = {f"cli-{run}": "published with the CLI", f"http-{run}": "published over HTTP"}
    try:
        # 1. First start: plain lines, the broker named with what it keeps.
        log1 = tmp_path / "run1.log"
        proc = start_cli(env, "run", "--source", str(sources), log=log1)
        await _wait_for(lambda: _log_has(log1, "publish:  http://"), "run to start", log1)
        output = log1.read_text(errors="replace")
        assert "(embedded kafka: keeps its log on disk" in output, output
        assert "watching claude-code:" in output and "[WARNING] b'" not in output, output
        batch = tmp_path / "cli.json"
        batch.write_text(json.dumps(_event(f"cli-{run}", published[f"cli-{run}"])))
        result = _cli(env, "publish", "-t", "sessions.events.v1", str(batch))
        assert result.returncode == 0, result.stdout + result.stderr
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"http://127.0.0.1:{api_port}/api/v1/events",
                params={"topic": "sessions.events.v1"},
                json=_event(f"http-{run}", published[f"http-{run}"]))
        assert answer.status_code == 201, answer.text
        await _wait_for(lambda: _has_all(pg_dsn, published), "published events in Postgres",
                        log1)
        await _wait_for(lambda: _status_exact(env), "status to show every lag 0", log1)
        _stop(proc, log1)
        assert "metrics refresh failed" not in log1.read_text(errors="replace")
        before = await _prompts(pg_dsn)
        broker = _broker(state)
        lines_before = await _lines(broker)

        # 2. Everything stopped, then started again: nothing lost, nothing re-read.
        assert _cli(env, "stack", "down").returncode == 0
        log2 = tmp_path / "run2.log"
        proc = start_cli(env, "run", "--source", str(sources), log=log2)
        await _wait_for(lambda: _log_has(log2, "watching claude-code:"), "restart", log2)
        # One new line: the scans that would re-read old lines publish it after them (scans
        # take turns and read files in path order, its own last), so once it is in the topic
        # anything re-read is too.
        _write_last_file(sources)
        broker = _broker(state)
        await _wait_for(lambda: _lines_at_least(broker, lines_before + 1), "the new line", log2)
        _stop(proc, log2)
        assert "reading every source from the start" not in log2.read_text(errors="replace")
        assert await _lines(broker) == lines_before + 1
        assert {e["session_id"] for e in await _events(broker)} >= set(published)
        assert await _prompts(pg_dsn) == before

        # 3. A replay rebuilds the same rows, published events included.
        result = _cli(env, "replay", "postgres")
        assert result.returncode == 0, result.stdout + result.stderr
        assert await _prompts(pg_dsn) == before

        # 4. The broker's log is lost: replay refuses; run starts over and converges.
        assert _cli(env, "stack", "down", "kafka").returncode == 0
        shutil.rmtree(state / "stack" / "kafka" / "data")
        result = _cli(env, "replay", "postgres")
        assert result.returncode == 1 and "refusing to replay" in result.stderr, result.stderr
        assert await _prompts(pg_dsn) == before  # nothing was reset
        log3 = tmp_path / "run3.log"
        proc = start_cli(env, "run", "--source", str(sources), log=log3)
        await _wait_for(lambda: _log_has(log3, "watching claude-code:"), "a new log", log3)
        assert "reading every source from the start" in log3.read_text(errors="replace")
        await _wait_for(lambda: _status_exact(env), "status to show every lag 0", log3)
        _stop(proc, log3)
        assert await _prompts(pg_dsn) == before  # the sources' rows, and the published ones kept
    finally:
        _cli(env, "stack", "down")


def _write_last_file(sources: Path) -> None:
    """A session file with one line the parser keeps silent (no rows), in the project folder
    that sorts after every other."""
    session = str(uuid.uuid4())
    path = sources / "zz-restart" / f"{session}.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps({"type": "last-prompt", "sessionId": session,
                                "lastPrompt": "a line to wait for"}) + "\n")


async def _lines(bootstrap: str) -> int:
    return sum((await end_offsets(bootstrap, "sessions.file-changes.v1")).values())


async def _lines_at_least(bootstrap: str, n: int) -> bool:
    return await _lines(bootstrap) >= n


def _broker(state: Path) -> str:
    ports = json.loads((state / "stack" / "kafka" / "port.json").read_text())
    return bootstrap_of(f"kafka://127.0.0.1:{ports['broker']}")


async def _events(bootstrap: str) -> list[dict[str, Any]]:
    return [r async for r in tail(bootstrap, "sessions.events.v1", from_beginning=True,
                                  follow=False, idle_s=1.0)]


async def _has_all(dsn: str, published: dict[str, str]) -> bool:
    texts = set((await _prompts(dsn)).values())
    return set(published.values()) <= texts


async def _status_exact(env: dict[str, str]) -> bool:
    result = await asyncio.to_thread(_cli, env, "status", "--json")
    if result.returncode != 0:
        return False
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return bool(rows) and all(r["end"] is not None and r["position"] == r["end"]
                              and r["lag"] == 0 for r in rows)


async def test_without_kafka_the_default_is_tansu_and_says_what_it_loses(
    pg_dsn: str, tmp_path: Path
) -> None:
    """The no-Java path (forced here): Tansu in memory, a warning naming the loss, and a
    second start of Tansu is a new log, so the sources are read again and rows converge. Then
    the upgrade: the same state dir on the new default starts over cleanly."""
    env = cli_env(SESSIONSTREAM_STATE_DIR=str(tmp_path / "state"),
                  SESSIONSTREAM_POSTGRES_DSN=pg_dsn, SESSIONSTREAM_METRICS_PORT="0",
                  SESSIONSTREAM_EMBEDDED_BROKER="tansu")
    sources = tmp_path / "claude"
    shutil.copytree(SAMPLES, sources)
    try:
        first = _cli(env, "backfill", "--source", str(sources))
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        assert "warning: the embedded broker is Tansu" in first.stdout + first.stderr
        assert "(embedded tansu: keeps its log in memory only" in first.stdout
        rows = await _prompts(pg_dsn)
        assert rows
        status = _cli(env, "stack", "status")
        assert "broker for run/backfill: embedded tansu" in status.stdout
        assert _cli(env, "stack", "down").returncode == 0
        second = _cli(env, "backfill", "--source", str(sources))
        assert second.returncode == 0, second.stderr[-3000:]
        assert "reading every source from the start" in second.stdout
        assert await _prompts(pg_dsn) == rows

        # An upgrade: the same state dir, now with the default (Kafka on disk).
        upgraded = {k: v for k, v in env.items() if k != "SESSIONSTREAM_EMBEDDED_BROKER"}
        third = _cli(upgraded, "backfill", "--source", str(sources))
        assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
        assert "(embedded kafka: keeps its log on disk" in third.stdout
        assert "reading every source from the start" in third.stdout
        assert "Traceback" not in third.stdout + third.stderr
        assert await _prompts(pg_dsn) == rows
    finally:
        _cli(env, "stack", "down")
