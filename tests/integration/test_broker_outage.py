"""A broker outage under a running worker: a few log lines, not a flood, and after the broker
returns every line written meanwhile is in Postgres exactly once.

The test runs its own Apache Kafka (a private stack dir, stopped and started by the test) so
the suite's shared broker is never interrupted; Postgres is the suite's.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from streams.settings import Settings
from streams.stack import Stack
from tests.integration.pipeline_helpers import (
    assert_running,
    cli_env,
    log_tail,
    start_cli,
    stop_cli,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration

OUTAGE_S = 10.0
MAX_LINES = 20  # over the outage; the unfixed worker wrote thousands


@pytest.fixture
def own_kafka(test_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    """A Kafka of this test only, up; stopped (data kept until tmp_path goes) at the end."""
    kafka = Stack(test_settings.model_copy(update={"state_dir": tmp_path / "own-kafka"}))
    kafka.up(["kafka"], report=print)
    yield kafka
    kafka.down(["kafka"], report=print)


def _prompt(session: str, n: int) -> str:
    """One Claude Code user prompt line, numbered ``n`` within ``session``."""
    return json.dumps({
        "parentUuid": None, "isSidechain": False, "userType": "external", "cwd": "/tmp/outage",
        "sessionId": session, "version": "2.1.39", "type": "user",
        "message": {"role": "user", "content": f"prompt {n} written around an outage"},
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{session}/{n}")),
        "timestamp": f"2026-03-08T15:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
    }) + "\n"


class Transcript:
    """A session file that grows one prompt at a time."""

    def __init__(self, folder: Path) -> None:
        self.session = str(uuid.uuid4())
        self.path = folder / f"{self.session}.jsonl"
        self.written = 0

    def write(self, count: int = 1) -> None:
        with self.path.open("a") as handle:
            for _ in range(count):
                handle.write(_prompt(self.session, self.written))
                self.written += 1

    async def keep_writing(self, every: float) -> None:
        while True:
            self.write()
            await asyncio.sleep(every)  # the pace of a user typing: the load under test


async def _prompts(dsn: str, session: str) -> tuple[int, int]:
    """(rows, distinct contents) of ``session``'s prompts in ``messages``; (0, 0) before."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT count(*), count(DISTINCT content::text) FROM messages "
                                  "WHERE session_id = $1 AND role = 'user'", session)
    except asyncpg.UndefinedTableError:
        return 0, 0
    finally:
        await conn.close()
    return int(row[0]), int(row[1])


async def _wait_prompts(dsn: str, transcript: Transcript, worker: subprocess.Popen[bytes],
                        log: Path, timeout: float = 180) -> tuple[int, int]:
    """(rows, distinct contents) of the transcript's prompts once every one written is in."""
    async def all_in() -> tuple[int, int] | None:
        assert_running(worker, log)
        found = await _prompts(dsn, transcript.session)
        return found if found[0] >= transcript.written else None

    return await eventually(all_in, f"the {transcript.written} prompts written in Postgres",
                            timeout=timeout, interval=0.5,
                            detail=lambda: log_tail(log))


def _lines_since(log: Path, offset: int) -> list[str]:
    with log.open("rb") as handle:
        handle.seek(offset)
        return [line for line in handle.read().decode(errors="replace").splitlines()
                if line.strip()]


async def test_an_outage_logs_a_few_lines_and_loses_nothing(
        own_kafka: Stack, pg_dsn: str, tmp_path: Path) -> None:
    broker = own_kafka.endpoint("kafka")
    assert broker is not None
    (tmp_path / "src").mkdir()
    transcript = Transcript(tmp_path / "src")
    transcript.write(20)
    log = tmp_path / "run.log"
    env = cli_env(SESSIONSTREAM_BROKER_URL=broker, SESSIONSTREAM_POSTGRES_DSN=pg_dsn,
                  SESSIONSTREAM_STATE_DIR=str(tmp_path / "state"),
                  SESSIONSTREAM_METRICS_PORT="0")
    worker = start_cli(env, "run", "--source", f"claude-code={tmp_path / 'src'}", log=log)
    try:
        await _wait_prompts(pg_dsn, transcript, worker, log)

        # Prompts keep coming while the broker shuts down and stays away.
        writer = asyncio.create_task(transcript.keep_writing(every=0.1))
        await eventually(lambda: transcript.written >= 30, "prompts written before the outage")
        before = log.stat().st_size
        await asyncio.to_thread(own_kafka.down, ["kafka"])
        # The outage itself is the subject: it lasts OUTAGE_S whatever the worker does, and the
        # log must stay short over all of it.
        await asyncio.sleep(OUTAGE_S)
        during = _lines_since(log, before)
        writer.cancel()
        assert worker.poll() is None, log.read_text()[-3000:]

        await asyncio.to_thread(own_kafka.up, ["kafka"])
        rows, distinct = await _wait_prompts(pg_dsn, transcript, worker, log)
    finally:
        stop_cli(worker)
    after = _lines_since(log, before)

    assert len(during) < MAX_LINES, "\n".join(during[:50])
    assert any("unreachable" in line for line in during), "\n".join(during)
    assert any(" is back after " in line for line in after), "\n".join(after)
    assert rows == distinct == transcript.written > 20 + OUTAGE_S * 5
