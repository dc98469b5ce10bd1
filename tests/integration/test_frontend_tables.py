"""The frontend tables through the whole pipeline: ``sessionstream run`` on real Kafka 4.1 and
Postgres with ``SESSIONSTREAM_FRONTEND_TABLES=true``, then ``sessionstream replay frontend``.

A session-skill folder created while the worker runs is a row of ``frontend.sessions``, read
with ``search_path=frontend``, within :data:`VISIBLE_WITHIN` seconds of its state file's write
(measured once the worker is watching: a first folder is awaited before the clock starts).
The replay rebuilds the same rows, uuids included.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from projections.postgres.frontend_ids import project_uuid, session_uuid
from tests.integration.pipeline_helpers import CLI, assert_running, log_tail, start_cli, stop_cli
from tests.waiting import eventually

pytestmark = pytest.mark.integration

VISIBLE_WITHIN = 15.0  # seconds from a folder's state file written to its frontend row


async def frontend_rows(dsn: str, project: Path) -> dict[str, list[tuple[object, ...]]]:
    """The rows of ``project`` in both frontend tables, as a frontend reads them
    (``search_path=frontend``); {} while the worker has not created them. (The test stack's
    Kafka keeps earlier runs' folders, which a fresh database projects too.)"""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": "frontend"})
    try:
        return {
            "sessions": [tuple(r) for r in await conn.fetch(
                "SELECT * FROM sessions WHERE working_dir = $1 ORDER BY id", str(project))],
            "projects": [tuple(r) for r in await conn.fetch(
                "SELECT * FROM projects WHERE path = $1", str(project))]}
    except asyncpg.UndefinedTableError:
        return {}
    finally:
        await conn.close()


def write_state(folder: Path, status: str) -> None:
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({
        "slug": folder.name, "title": f"Title of {folder.name}", "status": status,
        "type": "feature"}))


async def test_a_new_folder_is_a_frontend_row_within_seconds_and_a_replay_keeps_it(
        pipeline_env: dict[str, str], pg_dsn: str, tmp_path: Path) -> None:
    env = {**pipeline_env, "SESSIONSTREAM_FRONTEND_TABLES": "true"}
    projects = tmp_path / "projects"
    project = projects / f"app-{uuid.uuid4().hex[:8]}"
    project.mkdir(parents=True)
    log = tmp_path / "run.log"
    process = start_cli(env, "run", "--source", f"session-skill={projects}", log=log)

    async def row_of(slug: str, status: str) -> tuple[object, ...] | None:
        assert_running(process, log)
        sid = session_uuid("session-skill", f"{project.name}/{slug}")
        rows = (await frontend_rows(pg_dsn, project)).get("sessions", [])
        return next((r for r in rows if r[0] == sid and r[4] == status), None)

    try:
        write_state(project / "agents" / "sessions" / "warm-up", "active")
        await eventually(lambda: row_of("warm-up", "active"), "the first folder's row",
                         timeout=180, interval=0.5, detail=lambda: log_tail(log))

        folder = project / "agents" / "sessions" / "new-work"
        written = time.monotonic()
        write_state(folder, "executing")
        row = await eventually(lambda: row_of("new-work", "executing"),
                               "the new folder's row", timeout=60, interval=0.1,
                               detail=lambda: log_tail(log))
        seconds = time.monotonic() - written
        print(f"a new folder was a frontend row after {seconds:.2f} s")
        assert seconds < VISIBLE_WITHIN
        assert row == (session_uuid("session-skill", f"{project.name}/new-work"), "new-work",
                       "Title of new-work", project_uuid(str(project)), "executing",
                       "feature", str(project), str(folder))
    finally:
        stop_cli(process)

    live = await frontend_rows(pg_dsn, project)
    assert len(live["sessions"]) == 2
    assert live["projects"] == [(project_uuid(str(project)), project.name, str(project))]
    conn = await asyncpg.connect(pg_dsn)
    try:  # what the replay must undo: it rebuilds, it does not just keep the rows
        await conn.execute("UPDATE frontend.sessions SET title = 'tampered'")
    finally:
        await conn.close()
    replayed = subprocess.run([*CLI, "replay", "frontend"], env=env, capture_output=True,
                              text=True, timeout=300, check=False)
    assert replayed.returncode == 0, replayed.stdout[-3000:] + replayed.stderr[-3000:]
    assert "replayed" in replayed.stdout
    assert await frontend_rows(pg_dsn, project) == live  # the same rows, the same uuids
