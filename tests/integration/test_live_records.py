"""``run`` follows the sources kept as records, live, on real Kafka and Postgres.

OpenCode writes to a SQLite database in write-ahead-log mode: a prompt committed while ``run``
watches must reach Postgres, and so must the next ones (a commit lands in the log before a
reader sees it). Amp rewrites a whole thread document on every change: a new message must reach
Postgres, and the messages already read must not count twice.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from tests.integration.pipeline_helpers import assert_running, log_tail, start_cli
from tests.waiting import eventually

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
AMP_THREADS = SAMPLES / "amp" / ".local" / "share" / "amp" / "threads"
AMP_THREAD = "T-7c1e5a90-3b2d-4f6e-8a1c-0d9e8f7a6b5c"


async def _row(dsn: str, session: str, ready: Callable[[asyncpg.Record], bool],
               process: subprocess.Popen[bytes], log: Path) -> asyncpg.Record:
    """Poll the session's Postgres row until ``ready``; fail with the worker's log."""
    seen: asyncpg.Record | None = None

    async def row_ready() -> asyncpg.Record | None:
        nonlocal seen
        assert_running(process, log)
        conn = await asyncpg.connect(dsn)
        try:
            seen = await conn.fetchrow("SELECT * FROM sessions WHERE id = $1", session)
        except asyncpg.UndefinedTableError:
            seen = None
        finally:
            await conn.close()
        return seen if seen is not None and ready(seen) else None

    return await eventually(row_ready, f"the row of {session} as expected", timeout=90,
                            interval=0.5, detail=lambda: f"row: {seen}\n{log_tail(log)}")


def _prompts(n: int) -> Callable[[asyncpg.Record], bool]:
    return lambda row: bool(row["prompts"] == n)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _opencode(path: Path, session: str) -> sqlite3.Connection:
    """An OpenCode database (WAL, as OpenCode keeps it) with one session and no messages."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(
        "CREATE TABLE session (id TEXT PRIMARY KEY, project_id TEXT, parent_id TEXT, "
        "directory TEXT, title TEXT, version TEXT, time_created INTEGER, time_updated INTEGER);"
        "CREATE TABLE message (id TEXT PRIMARY KEY, session_id TEXT, time_created INTEGER, "
        "time_updated INTEGER, data TEXT);"
        "CREATE TABLE part (id TEXT PRIMARY KEY, message_id TEXT, session_id TEXT, "
        "time_created INTEGER, time_updated INTEGER, data TEXT);")
    now = int(time.time() * 1000)
    conn.execute("INSERT INTO session VALUES (?, 'prj', NULL, '/home/dev/app', 'Live', '1.2.10', "
                 "?, ?)", (session, now, now))
    conn.commit()
    return conn


def _prompt(conn: sqlite3.Connection, session: str, n: int) -> None:
    """Commit one user message and its text part, as OpenCode does for a prompt."""
    now = int(time.time() * 1000)
    message = f"msg_{session}_{n}"
    conn.execute("INSERT INTO message VALUES (?, ?, ?, ?, ?)", (
        message, session, now, now, json.dumps({"role": "user", "time": {"created": now}})))
    conn.execute("INSERT INTO part VALUES (?, ?, ?, ?, ?, ?)", (
        f"prt_{session}_{n}", message, session, now, now,
        json.dumps({"type": "text", "text": f"prompt {n}"})))
    conn.commit()


async def test_prompts_committed_to_an_opencode_database_reach_postgres_live(
    pipeline_env: dict[str, str], pg_dsn: str, tmp_path: Path
) -> None:
    root = tmp_path / "opencode"
    root.mkdir()
    session = f"ses_live_{uuid.uuid4().hex[:12]}"
    conn = _opencode(root / "opencode.db", session)
    log = tmp_path / "run.log"
    process = start_cli(pipeline_env, "run", "--source", f"opencode={root}", log=log)
    try:
        await _row(pg_dsn, session, lambda r: r["working_dir"] == "/home/dev/app", process, log)
        for n in range(1, 11):  # one by one, each while the worker watches
            _prompt(conn, session, n)
            await _row(pg_dsn, session, _prompts(n), process, log)
    finally:
        conn.close()
        _stop(process)


async def test_an_amp_thread_rewritten_whole_adds_only_its_new_messages(
    pipeline_env: dict[str, str], pg_dsn: str, tmp_path: Path
) -> None:
    """The thread grows one message per rewrite, as Amp writes it; the end state equals the
    hand-computed totals of the whole thread (tests/samples/amp/README.md)."""
    threads = tmp_path / "threads"
    threads.mkdir()
    thread = f"T-{uuid.uuid4()}"
    source = json.loads((AMP_THREADS / f"{AMP_THREAD}.json").read_text()
                        .replace(AMP_THREAD, thread))
    want = json.loads((SAMPLES / "amp" / "expected.json").read_text())["sessions"][AMP_THREAD]
    document = {**source, "messages": source["messages"][:1]}
    path = threads / f"{thread}.json"
    path.write_text(json.dumps(document))
    log = tmp_path / "run.log"
    process = start_cli(pipeline_env, "run", "--source", f"amp={threads}", log=log)
    try:
        await _row(pg_dsn, thread, lambda r: r["prompts"] == 1, process, log)
        for count in range(2, len(source["messages"]) + 1):  # Amp rewrites the whole file
            document["messages"] = source["messages"][:count]
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(document))
            tmp.replace(path)
            await asyncio.sleep(0.2)
        columns = ("total_tokens", "tool_calls", "tool_errors", "prompts", "files_touched")
        whole = await _row(pg_dsn, thread, lambda r: r["prompts"] == want["prompts"]
                           and r["tool_calls"] == want["tool_calls"]
                           and r["total_tokens"] >= want["total_tokens"], process, log)
        assert {c: whole[c] for c in columns} == {c: want[c] for c in columns}
    finally:
        _stop(process)
