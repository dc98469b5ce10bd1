"""``sessionstream demo``: the sample sessions shipped with the package reach Postgres, every
source of them, through the real CLI on the real servers.

The samples are the package's own (``app/samples``), not the shared fixtures, so a user with
nothing but a clone gets rows. Every folder there is named by a registered source.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import asyncpg
import pytest

from app.demo_commands import SAMPLES, sample_sources
from tests.integration.pipeline_helpers import CLI, cli_env

pytestmark = pytest.mark.integration


def test_every_sample_folder_is_a_registered_source() -> None:
    from app.sources import PRODUCERS

    folders = {path.name for path in SAMPLES.iterdir() if path.is_dir()}
    assert folders == set(PRODUCERS), "a source without samples, or samples of no source"


async def test_demo_fills_postgres_with_every_source(stack: dict[str, str], pg_dsn: str,
                                                     tmp_path: Path) -> None:
    env = cli_env(SESSIONSTREAM_BROKER_URL=stack["kafka"], SESSIONSTREAM_POSTGRES_DSN=pg_dsn,
                  SESSIONSTREAM_STATE_DIR=str(tmp_path / "state"),
                  SESSIONSTREAM_METRICS_PORT="0")
    done = subprocess.run([*CLI, "demo"], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "caught up" in done.stdout
    for source in sample_sources():
        assert source in done.stdout  # the folders it read are named to the user
    claude = sorted(p.stem for p in (SAMPLES / "claude-code").rglob("*.jsonl")
                    if "subagents" not in p.parts)
    conn = await asyncpg.connect(pg_dsn)
    try:
        # The test broker is shared by the whole run: a backfill with a fresh store applies
        # what earlier tests published too, so this asks for at least the samples' rows.
        sources = {r["source"] for r in await conn.fetch("SELECT DISTINCT source FROM sessions")}
        found = {r["id"] for r in await conn.fetch(
            "SELECT id FROM sessions WHERE id = ANY($1::text[])", claude)}
        priced = await conn.fetchval(
            "SELECT count(*) FROM usage WHERE priced AND session_id = ANY($1::text[])", claude)
    finally:
        await conn.close()
    assert {path.name for path in SAMPLES.iterdir() if path.is_dir()} <= sources
    assert found == set(claude) and priced > 0
    usage = subprocess.run([*CLI, "usage", "--by", "model"], env=env, capture_output=True,
                           text=True, timeout=120, check=False)
    assert usage.returncode == 0 and "claude" in usage.stdout and "gpt" in usage.stdout
