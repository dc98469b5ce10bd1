"""Dead letters redriven, and counted per reason, end to end on real Kafka 4.1 and Postgres.

A real bad line is dead-lettered by the parse stage; beside it the test writes dead letters
whose original value is now valid (the "fixed" case), one whose value was truncated and one of
another consumer. ``redrive --dry-run`` sends nothing; ``redrive`` re-sends the selected ones
once (a second run sends nothing), skips and reports the truncated one; the fixed record
reaches Postgres, the bad line fails again with ``attempts`` 2; ``status`` counts per reason.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from schemas.dead_letters import DeadLetter
from schemas.file_changes import FileLine, file_line_event
from streams.codecs import encode_file_change, encode_key
from streams.lag import end_offsets
from streams.redrive import ledger_topic
from streams.settings import bootstrap_of
from streams.tail import tail
from tests.integration.pipeline_helpers import CLI, backfill_cli

pytestmark = pytest.mark.integration

LINES = "sessions.file-changes.v1"
DLQ = f"{LINES}.dlq"


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _prompt_line(session: str, path: str, text: str) -> tuple[bytes, bytes]:
    """Key and value of a valid Claude prompt line of ``session`` on the lines topic."""
    when = datetime(2026, 3, 5, 12, tzinfo=UTC)
    raw = json.dumps({"type": "user", "sessionId": session, "uuid": str(uuid.uuid4()),
                      "timestamp": when.isoformat(), "cwd": "/home/dev/demo",
                      "message": {"role": "user", "content": text}})
    line = FileLine(path=path, offset=0, line_no=1, line=raw, mtime=when)
    event = file_line_event("claude-code", session, line)
    return encode_key("claude-code", session), encode_file_change(event)


def _dead(consumer: str, error: str, key: bytes, value: bytes, *,
          truncated: bool = False) -> bytes:
    text = value.decode()
    return DeadLetter(consumer=consumer, error=error, error_type="InvalidEvent", topic=LINES,
                      partition=0, offset=0, key=key.decode(),
                      value=text[:40] if truncated else text, value_bytes=len(value),
                      value_truncated=truncated, failed_at=datetime.now(UTC),
                      ).model_dump_json().encode()


async def _dead_letters(bootstrap: str, topic: str = DLQ) -> list[dict[str, object]]:
    return [r async for r in tail(bootstrap, topic, from_beginning=True, follow=False,
                                  idle_s=1.5)]


async def test_redrive_resends_once_skips_truncated_and_counts_attempts(
        pipeline_env: dict[str, str], pg_dsn: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    project = tmp_path / "claude" / "-home-dev-demo"
    project.mkdir(parents=True)
    bad = project / f"bad-{run}.jsonl"
    good_line = _prompt_line(f"bad-{run}", str(bad), "hello")[1]
    bad.write_text(json.loads(good_line)["payload"]["line"] + "\n{not json " + run + "\n")
    first = backfill_cli(pipeline_env, tmp_path / "claude")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    bootstrap = bootstrap_of(pipeline_env["SESSIONSTREAM_BROKER_URL"])

    fixed, other = f"fixed-{run}", f"other-{run}"
    fixed_key, fixed_value = _prompt_line(fixed, f"/home/dev/{fixed}.jsonl", "now valid")
    other_key, other_value = _prompt_line(other, f"/home/dev/{other}.jsonl", "not mine")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in (
                (fixed_key, _dead("parse_lines", f"{fixed} line 1: redrive test ({run})",
                                  fixed_key, fixed_value)),
                (fixed_key, _dead("parse_lines", f"{fixed} line 1: redrive test ({run}, big)",
                                  fixed_key, fixed_value, truncated=True)),
                (other_key, _dead("other_consumer", f"{other} line 1: redrive test ({run})",
                                  other_key, other_value))):
            await producer.send_and_wait(DLQ, value, key=key)
    finally:
        await producer.stop()

    select = ["redrive", DLQ, "--reason", run, "--consumer", "parse_lines", "--since", "1h"]
    before = sum((await end_offsets(bootstrap, LINES)).values())
    dry = _cli(pipeline_env, *select, "--dry-run")
    assert "dry run: 2 dead letter(s) would be re-sent" in dry.stdout, dry.stdout
    assert "InvalidEvent: not JSON" in dry.stdout and "InvalidEvent: redrive test" in dry.stdout
    assert "value truncated" in dry.stderr, dry.stderr
    assert sum((await end_offsets(bootstrap, LINES)).values()) == before  # nothing sent

    done = _cli(pipeline_env, *select)
    assert "redriven 2 dead letter(s)" in done.stdout, done.stdout + done.stderr
    assert "value truncated" in done.stderr
    after = sum((await end_offsets(bootstrap, LINES)).values())
    assert after == before + 2
    again = _cli(pipeline_env, *select)
    assert "redriven 0 dead letter(s)" in again.stdout
    assert "skipped 2 dead letter(s) redriven before" in again.stdout
    assert sum((await end_offsets(bootstrap, LINES)).values()) == after  # sent once
    assert len(await _dead_letters(bootstrap, ledger_topic(DLQ))) >= 2

    (tmp_path / "empty").mkdir()
    caught_up = backfill_cli(pipeline_env, tmp_path / "empty")  # consume what was re-sent
    assert caught_up.returncode == 0, caught_up.stdout[-3000:] + caught_up.stderr[-3000:]
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = {r["id"]: r["prompts"] for r in await conn.fetch(
            "SELECT id, prompts FROM sessions WHERE id = ANY($1)", [fixed, other])}
    finally:
        await conn.close()
    assert rows == {fixed: 1}  # the fixed record reached Postgres; the other consumer's not

    failed_again = [r for r in await _dead_letters(bootstrap)
                    if f"bad-{run}.jsonl line 2: not JSON" in str(r["error"])]
    assert sorted(r["attempts"] for r in failed_again) == [1, 2], failed_again

    status = _cli(pipeline_env, "status", "--json")
    rows_json = [json.loads(line) for line in status.stdout.splitlines() if line.startswith("{")]
    parse = next(r for r in rows_json if r["consumer"] == "parse_lines")
    reasons = {d["reason"]: d for d in parse["dead_letter_reasons"]}
    assert reasons["InvalidEvent: not JSON"]["count"] >= 2
    assert reasons["InvalidEvent: not JSON"]["max_attempts"] == 2
    assert reasons["InvalidEvent: redrive test"]["count"] >= 2  # the fixed and truncated ones
    table = _cli(pipeline_env, "status").stdout
    assert "dead letters" in table and "other_consumer" in table, table
