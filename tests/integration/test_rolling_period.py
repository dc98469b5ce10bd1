"""``backfill --since/--until`` on real Kafka 4.1 and Postgres: whole sessions outside the
window are skipped and reported, the others are read and projected."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.integration.pipeline_helpers import CLI

pytestmark = pytest.mark.integration

DAY = 86_400


def _session(path: Path, session: str, started: datetime, age_days: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "type": "user", "sessionId": session, "uuid": str(uuid.uuid4()),
        "timestamp": started.isoformat(), "cwd": "/home/dev/demo",
        "message": {"role": "user", "content": f"prompt of {session}"}}) + "\n")
    stamp = time.time() - age_days * DAY
    os.utime(path, (stamp, stamp))


async def test_backfill_since_and_until_bound_what_is_published(
        pipeline_env: dict[str, str], pg_dsn: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    project = tmp_path / "claude" / "-home-dev-demo"
    old, mid, late = f"old-{run}", f"mid-{run}", f"late-{run}"
    _session(project / f"{old}.jsonl", old, now - timedelta(days=60), age_days=60)
    _session(project / f"{mid}.jsonl", mid, now - timedelta(days=10), age_days=1)
    _session(project / f"{late}.jsonl", late, now - timedelta(days=1), age_days=0)
    until = (now - timedelta(days=5)).date().isoformat()

    done = subprocess.run([*CLI, "backfill", "--source", str(tmp_path / "claude"),
                           "--since", "30d", "--until", until], env=pipeline_env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "skipped 1 file (0.0 MB) of claude-code last modified before" in done.stdout
    assert "(--since 30d)" in done.stdout
    assert "skipped 1 file (0.0 MB) of claude-code first active after" in done.stdout
    assert f"(--until {until})" in done.stdout

    conn = await asyncpg.connect(pg_dsn)
    try:
        ids = {r["id"] for r in await conn.fetch("SELECT id FROM sessions WHERE id = ANY($1)",
                                                 [old, mid, late])}
    finally:
        await conn.close()
    assert ids == {mid}
