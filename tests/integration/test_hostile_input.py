"""The hostile corpus end to end, on a private embedded Kafka and Tansu, into a real Postgres.

``backfill`` reads 1,000+ bad lines of every kind (``tests/hostile.py``) beside ordinary
turns, plus file-system traps (a FIFO, a symlink loop, a dangling link) and must:

* exit 0 (no crash of the producer, an agent or a runner);
* put every rejected line in ``sessions.file-changes.v1.dlq`` with a reason naming its file
  and line, and the original key (``{source, session_id}``);
* hold every kept line exactly in Postgres: prompt texts (NUL stripped, invalid text
  replaced, megabyte lines clipped), tool names with quotes and metacharacters verbatim, token
  totals per session;
* stay within a bounded peak memory although lines are megabytes long.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from streams.tail import tail
from tests.hostile import Corpus, write_corpus
from tests.integration.pipeline_helpers import CLI, assert_running, cli_env, log_tail, start_cli
from tests.waiting import eventually

pytestmark = pytest.mark.integration

PEAK_RSS_LIMIT_MB = 1024
STOP_WITHIN_S = 10.0


async def _backfill(env: dict[str, str], source: Path, timeout: float = 900
                    ) -> tuple[int, str, int]:
    """``(exit code, output, peak RSS in MB)`` of ``backfill --source source``."""
    log = source.parent / "backfill.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*CLI, "backfill", "--source", str(source)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        code, peak_mb = await eventually(functools.partial(_reaped, proc.pid),
                                         "backfill to finish", timeout=timeout, interval=0.2,
                                         detail=functools.partial(log_tail, log))
        proc.returncode = code
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    return code, log.read_text(errors="replace"), peak_mb


def _reaped(pid: int) -> tuple[int, int] | None:
    """``(exit code, peak RSS in MB)`` of the child ``pid`` once it has exited, else None (its
    resource usage is only known to the one wait that reaps it)."""
    done, status, usage = os.wait4(pid, os.WNOHANG)
    return (os.waitstatus_to_exitcode(status), usage.ru_maxrss // 1024) if done else None


def _traps(project: Path) -> None:
    os.mkfifo(project / "fifo.jsonl")
    (project / "loop.jsonl").symlink_to(project / "loop.jsonl")
    (project / "dangling.jsonl").symlink_to(project / "gone.jsonl")
    (project / "dir-loop").symlink_to(project)


@pytest.mark.parametrize("broker", ["kafka", "tansu"])
async def test_hostile_corpus_is_dead_lettered_or_kept_exactly(
    broker: str, pg_dsn: str, tmp_path: Path,
) -> None:
    # A private embedded broker: its topics hold this corpus only, so the memory measured is
    # this corpus's (the suite's shared topics hold every earlier test's records too).
    state = tmp_path / "state"
    env = cli_env(SESSIONSTREAM_STATE_DIR=str(state), SESSIONSTREAM_POSTGRES_DSN=pg_dsn,
                  SESSIONSTREAM_METRICS_PORT="0", SESSIONSTREAM_EMBEDDED_BROKER=broker)
    root = tmp_path / "claude"
    corpus = write_corpus(root, prefix=uuid.uuid4().hex[:8])
    assert len(corpus.rejected) >= 1000
    _traps(root / "-home-dev-hostile")
    try:
        code, output, peak_mb = await _backfill(env, root)
        assert code == 0, output[-4000:]
        assert "Traceback" not in output, output[-4000:]
        assert peak_mb < PEAK_RSS_LIMIT_MB, f"peak RSS {peak_mb} MB"
        ports = json.loads((state / "stack" / broker / "port.json").read_text())
        await _check(f"127.0.0.1:{ports['broker']}", corpus, pg_dsn)
    finally:
        subprocess.run([*CLI, "stack", "down"], env=env, capture_output=True, check=False)


async def _check(bootstrap: str, corpus: Corpus, pg_dsn: str) -> None:
    """Every rejected line dead-lettered with its reason and key; every kept line exact."""
    dead = {}
    async for r in tail(bootstrap, "sessions.file-changes.v1.dlq", from_beginning=True,
                        follow=False, idle_s=2.0):
        value = json.loads(str(r["value"]))
        if value.get("session_id") in corpus.sessions:
            dead[(value["payload"]["path"], value["payload"]["line_no"])] = r
    for path, n, reason in corpus.rejected:
        record = dead.get((str(path), n))
        assert record is not None, f"{path} line {n} ({reason}) not dead-lettered"
        assert f"{path} line {n}" in str(record["error"]) and reason in str(record["error"])
        assert record["_key"] == {"source": "claude-code", "session_id": path.stem}
    assert len(dead) == len(corpus.rejected)

    conn = await asyncpg.connect(pg_dsn)
    try:
        for session, want in corpus.sessions.items():
            prompts = await conn.fetch(
                "SELECT content->>'text' AS text FROM messages WHERE session_id = $1 "
                "AND role = 'user'", session)
            assert sorted(p["text"] for p in prompts) == sorted(want.prompts), session
            row = await conn.fetchrow(
                "SELECT prompts, input_tokens, output_tokens FROM sessions WHERE id = $1",
                session)
            assert row is not None, session
            assert (row["prompts"], row["input_tokens"], row["output_tokens"]) == (
                len(want.prompts), want.input_tokens, want.output_tokens), session
            tools = await conn.fetch("SELECT name FROM tool_calls WHERE session_id = $1",
                                     session)
            assert sorted(t["name"] for t in tools) == sorted(want.tools), session
    finally:
        await conn.close()


async def test_ctrl_c_stops_run_within_seconds_mid_ingest(
    pipeline_env: dict[str, str], pg_dsn: str, tmp_path: Path
) -> None:
    """SIGINT while the hostile corpus is being ingested: ``run`` exits promptly and cleanly
    (faust no longer waits for in-flight records; unacked ones are read again next start)."""
    root = tmp_path / "claude"
    write_corpus(root, sessions=12, prefix=uuid.uuid4().hex[:8])
    log = tmp_path / "run.log"
    proc = start_cli(pipeline_env, "run", "--source", str(root), log=log)
    try:
        conn = await asyncpg.connect(pg_dsn)

        async def ingesting() -> bool:
            assert_running(proc, log)
            return await _has_rows(conn)

        try:
            await eventually(ingesting, "rows in Postgres", timeout=120, interval=0.2,
                             detail=functools.partial(log_tail, log))
        finally:
            await conn.close()
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = await asyncio.to_thread(proc.wait, 30)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text(errors="replace")
    assert took < STOP_WITHIN_S, f"took {took:.1f}s to stop:\n{output[-3000:]}"
    assert code == 0, output[-3000:]


async def _has_rows(conn: asyncpg.Connection) -> bool:
    exists = await conn.fetchval("SELECT to_regclass('sessions') IS NOT NULL")
    return bool(exists) and bool(await conn.fetchval("SELECT count(*) FROM sessions"))
