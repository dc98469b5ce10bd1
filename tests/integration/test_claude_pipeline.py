"""The whole pipeline on real Kafka 4.1 and Postgres: Claude Code fixtures in, trusted totals out.

``sessionstream backfill`` runs as a user would run it (a subprocess, settings from the
environment); the per-session tokens, prompts, tool calls and files in Postgres must equal the
independent oracle's deduplicated figures (largest usage per message.id + requestId, sub-agent
files counted once, ``agent_progress`` mirrors never counted).
"""

from __future__ import annotations

import asyncpg
import pytest

from tests.fixtures_path import claude_fixtures
from tests.integration.pipeline_helpers import backfill_cli
from tests.oracle import claude_session_totals

pytestmark = pytest.mark.integration


async def test_backfill_of_the_fixtures_matches_the_deduplicated_totals(
    pipeline_env: dict[str, str], pg_dsn: str
) -> None:
    source = claude_fixtures()
    # Sessions are identified by their files (three fixture files were renamed upstream, so
    # their stems differ from the sessionId inside): group the oracle the same way.
    expected = claude_session_totals(sorted(source.rglob("*.jsonl")), by_path=True)
    result = backfill_cli(pipeline_env, source)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "caught up" in result.stdout + result.stderr

    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT id, input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens,"
            " prompts, tool_calls, files_touched FROM sessions WHERE id = ANY($1::text[])",
            list(expected))
    finally:
        await conn.close()
    actual = {r["id"]: {"input": r["input_tokens"], "output": r["output_tokens"],
                        "cache_creation": r["cache_creation_tokens"],
                        "cache_read": r["cache_read_tokens"], "prompts": r["prompts"],
                        "tool_calls": r["tool_calls"], "files": r["files_touched"]}
              for r in rows}
    wanted = {sid: {k: totals[k] for k in ("input", "output", "cache_creation", "cache_read",
                                            "prompts", "tool_calls", "files")}
              for sid, totals in expected.items()}
    assert actual == wanted


async def test_a_second_backfill_changes_nothing(
    pipeline_env: dict[str, str], pg_dsn: str
) -> None:
    source = claude_fixtures()
    first = backfill_cli(pipeline_env, source)
    assert first.returncode == 0, first.stderr[-3000:]
    conn = await asyncpg.connect(pg_dsn)
    query = ("SELECT id, total_tokens, prompts, tool_calls, cost_usd FROM sessions ORDER BY id")
    try:
        before = [tuple(r) for r in await conn.fetch(query)]
        second = backfill_cli(pipeline_env, source)  # re-publishes every line: same event ids
        assert second.returncode == 0, second.stderr[-3000:]
        after = [tuple(r) for r in await conn.fetch(query)]
    finally:
        await conn.close()
    assert before and after == before
