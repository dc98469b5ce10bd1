"""Bad input end to end on real Kafka 4.1 and Postgres: a truncated last line, a line that is
not JSON and a line of an unknown type each behave as specified, and the rest goes on.

* a line that is not JSON (or not an object) goes to ``sessions.file-changes.v1.dlq`` with
  the file, the line number and the reason; the lines after it are still projected;
* a line of an unknown type becomes a ``line.unknown`` event, never an error;
* a partial last line is not published until it is complete; once completed it is.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import asyncpg
import pytest

from streams.settings import bootstrap_of
from streams.tail import tail
from tests.integration.pipeline_helpers import backfill_cli

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "claude" / "projects" / \
    "-home-dev-demo"


async def _records(bootstrap: str, topic: str) -> list[dict[str, object]]:
    return [r async for r in tail(bootstrap, topic, from_beginning=True, follow=False,
                                  idle_s=1.5)]


async def test_bad_lines_are_dead_lettered_kept_or_held_back(
    pipeline_env: dict[str, str], pg_dsn: str, tmp_path: Path
) -> None:
    project = tmp_path / "claude" / "-home-dev-demo"
    project.mkdir(parents=True)
    # The producer names sessions after their files: unique names keep this run's sessions
    # apart from earlier runs' on the same long-lived topics.
    run = uuid.uuid4().hex[:8]
    malformed_session, truncated_session = f"malformed-{run}", f"truncated-{run}"
    malformed = project / f"{malformed_session}.jsonl"
    truncated = project / f"{truncated_session}.jsonl"
    shutil.copy(SAMPLES / "malformed.jsonl", malformed)
    shutil.copy(SAMPLES / "truncated.jsonl", truncated)

    first = backfill_cli(pipeline_env, tmp_path / "claude")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    bootstrap = bootstrap_of(pipeline_env["SESSIONSTREAM_BROKER_URL"])

    dead = [r for r in await _records(bootstrap, "sessions.file-changes.v1.dlq")
            if str(malformed) in str(r.get("value"))]
    reasons = sorted(str(r["error"]) for r in dead)
    assert any(f"{malformed} line 2: not JSON" in e for e in reasons), reasons
    assert any(f"{malformed} line 3: not a JSON object" in e for e in reasons), reasons
    assert {r["consumer"] for r in dead} == {"parse_lines"}

    events = [r for r in await _records(bootstrap, "sessions.events.v1")
              if r.get("session_id") in {malformed_session, truncated_session}]
    unknown = {e["payload"]["line_type"] for e in events  # type: ignore[index]
               if e["type"] == "line.unknown" and e["session_id"] == malformed_session}
    assert unknown == {"telemetry-beacon", None}

    lines = [r for r in await _records(bootstrap, "sessions.file-changes.v1")
             if r["payload"]["path"] == str(truncated)]  # type: ignore[index]
    assert sorted({r["payload"]["line_no"] for r in lines}) == [1, 2]  # type: ignore[index]

    conn = await asyncpg.connect(pg_dsn)
    try:
        row = await conn.fetchrow("SELECT prompts FROM sessions WHERE id = $1",
                                  malformed_session)
        assert row is not None and row["prompts"] == 1  # the good line before the bad ones
        before = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE session_id = $1", truncated_session)

        # Complete the partial line: now it is published and projected.
        text = truncated.read_text()
        start = text.rindex("\n") + 1
        fixed = text[start:] + (
            'ns with --fix."}],"stop_reason":"end_turn","stop_sequence":null,"usage":'
            '{"input_tokens":2,"cache_creation_input_tokens":0,"cache_read_input_tokens":5000,'
            '"output_tokens":9}},"requestId":"req_011Truncated2","type":"assistant",'
            '"uuid":"e5000000-0000-4000-8000-000000000013",'
            '"timestamp":"2026-03-05T12:00:03.000Z"}\n')
        json.loads(fixed)  # the completed line is valid JSON
        truncated.write_text(text[:start] + fixed)
        second = backfill_cli(pipeline_env, tmp_path / "claude")
        assert second.returncode == 0, second.stderr[-3000:]
        after = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE session_id = $1", truncated_session)
    finally:
        await conn.close()
    assert after == before + 1
