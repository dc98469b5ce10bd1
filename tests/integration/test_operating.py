"""Operating the worker, on real Kafka 4.1, Postgres and Neo4j: the session lifecycle and the
deep health check.

* ``run`` closes a session in Postgres and the graph once no event came for the inactivity
  timeout (``ended_at`` its last event), reopens it when a newer line arrives, and closes it
  again; the sessions a backfill reads come out closed when they are idle.
* ``GET /api/v1/health`` on a running worker reports the broker, Postgres, Neo4j, the lag and
  the dead letters, 200 when healthy (and the read API answers beside it); ``check_health``
  names a store that is down and a lag over ``SESSIONSTREAM_HEALTH_MAX_LAG``, and
  ``sessionstream status --check`` exits non-zero then.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import neo4j
import pytest
from aiokafka import AIOKafkaProducer

from app.endpoints import Endpoints
from app.health import check_health
from streams.settings import Settings, bootstrap_of
from streams.topics import FILE_CHANGES
from tests.integration.pipeline_helpers import (
    CLI,
    assert_running,
    backfill_cli,
    cli_env,
    log_tail,
    start_cli,
    stop_cli,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration

TIMEOUT_S = 3  # the inactivity timeout of these runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prompt(session: str, n: int, at: datetime) -> str:
    """One Claude Code user prompt line of ``session``, written at ``at``."""
    return json.dumps({
        "parentUuid": None, "isSidechain": False, "userType": "external", "cwd": "/tmp/life",
        "sessionId": session, "version": "2.1.39", "type": "user",
        "message": {"role": "user", "content": f"prompt {n}"},
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{session}/{n}")),
        "timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }) + "\n"


async def _pg_session(dsn: str, session: str) -> dict[str, Any] | None:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT status, ended_at, closed_reason, first_closed_at, "
                                  "last_activity_at FROM sessions WHERE id = $1", session)
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()
    return None if row is None else dict(row)


async def _graph_session(uri: str, session: str) -> dict[str, Any] | None:
    async with neo4j.AsyncGraphDatabase.driver(uri, auth=None) as driver:
        found, _, _ = await driver.execute_query(
            "MATCH (s:Session {id: $id}) RETURN s.status AS status, s.ended_at AS ended_at",
            id=session)
    if not found:
        return None
    row = found[0].data()
    ended = row["ended_at"]
    return {"status": row["status"], "ended_at": ended.to_native() if ended else None}


async def test_run_closes_idle_sessions_and_reopens_them_in_every_store(
        stack: dict[str, str], pg_dsn: str, neo4j_driver: neo4j.AsyncDriver,
        tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    session = str(uuid.uuid4())
    transcript = source / f"{session}.jsonl"
    old = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    transcript.write_text(_prompt(session, 0, old) + _prompt(session, 1, old + timedelta(1)))
    log = tmp_path / "run.log"
    env = cli_env(SESSIONSTREAM_BROKER_URL=stack["kafka"], SESSIONSTREAM_POSTGRES_DSN=pg_dsn,
                  SESSIONSTREAM_NEO4J_URI=stack["neo4j"],
                  SESSIONSTREAM_STATE_DIR=str(tmp_path / "state"),
                  SESSIONSTREAM_METRICS_PORT="0",
                  SESSIONSTREAM_INACTIVITY_TIMEOUT_S=str(TIMEOUT_S))
    worker = start_cli(env, "run", "--source", f"claude-code={source}", log=log)

    async def state(status: str, ended: datetime | None) -> bool:
        assert_running(worker, log)
        row = await _pg_session(pg_dsn, session)
        node = await _graph_session(stack["neo4j"], session)
        return (row is not None and node is not None and row["status"] == status == node["status"]
                and row["ended_at"] == ended == node["ended_at"])

    try:
        # Its last line is old: the session closes as soon as the worker caught up.
        last = old + timedelta(1)
        await eventually(lambda: state("closed", last), "the idle session closed everywhere",
                         timeout=180, interval=0.5, detail=lambda: log_tail(log))
        closed = await _pg_session(pg_dsn, session)
        assert closed is not None
        assert closed["closed_reason"] == "inactive" and closed["first_closed_at"] == last

        # A new line now reopens it; quiet again for the timeout, it closes at that line.
        now = datetime.now(UTC).replace(microsecond=0)
        with transcript.open("a") as handle:
            handle.write(_prompt(session, 2, now))
        await eventually(lambda: state("active", None), "the session reopened everywhere",
                         timeout=60, interval=0.2, detail=lambda: log_tail(log))
        await eventually(lambda: state("closed", now), "the session closed again",
                         timeout=60, interval=0.5, detail=lambda: log_tail(log))
        again = await _pg_session(pg_dsn, session)
        assert again is not None and again["first_closed_at"] == last  # kept from the first
    finally:
        stop_cli(worker)


def test_a_backfill_closes_the_idle_sessions_it_read(stack: dict[str, str], pg_dsn: str,
                                                     tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    session = str(uuid.uuid4())
    at = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    (source / f"{session}.jsonl").write_text(_prompt(session, 0, at))
    env = cli_env(SESSIONSTREAM_BROKER_URL=stack["kafka"], SESSIONSTREAM_POSTGRES_DSN=pg_dsn,
                  SESSIONSTREAM_STATE_DIR=str(tmp_path / "state"),
                  SESSIONSTREAM_METRICS_PORT="0")
    done = backfill_cli(env, source)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "idle session(s)" in done.stdout, done.stdout

    row = asyncio.run(_pg_session(pg_dsn, session))
    assert row is not None and row["status"] == "closed" and row["ended_at"] == at


def _settings(tmp_path: Path, **update: Any) -> Settings:
    return Settings(state_dir=tmp_path / "state", _env_file=None,  # type: ignore[call-arg]
                    **update)


async def test_health_names_a_store_that_is_down_and_a_lag_over_the_threshold(
        stack: dict[str, str], pg_dsn: str, tmp_path: Path) -> None:
    endpoints = Endpoints(broker_url=stack["kafka"], postgres_dsn=pg_dsn,
                          neo4j_uri=stack["neo4j"])
    healthy = await check_health(_settings(tmp_path, health_max_lag=10**12), endpoints)
    names = {c.name for c in healthy.checks}
    assert {"broker", "postgres.session_tables", "neo4j.session_graph"} <= names
    assert healthy.healthy, healthy.problems
    body = healthy.as_dict()
    assert body["status"] == "ok" and "parse_lines" in body["lag"]
    assert "sessions.file-changes.v1.dlq" in body["dead_letters"]

    # Postgres gone (nothing listens on that port): the check names it, the rest still runs.
    down = Endpoints(broker_url=stack["kafka"],
                     postgres_dsn=f"postgresql://nobody@127.0.0.1:{_free_port()}/none")
    report = await check_health(_settings(tmp_path, health_max_lag=10**12), down)
    assert not report.healthy
    assert any(p.startswith("postgres.session_tables: ") for p in report.problems), \
        report.problems
    assert next(c for c in report.checks if c.name == "broker").ok

    # One line nobody has parsed yet, with a threshold of 0: behind.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_of(stack["kafka"]), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(FILE_CHANGES.name, b"{}", key=b"health-test")
    finally:
        await producer.stop()
    behind = await check_health(_settings(tmp_path, health_max_lag=0), endpoints)
    assert any("parse_lines is " in p and "SESSIONSTREAM_HEALTH_MAX_LAG" in p
               for p in behind.problems), behind.problems

    # `status --check`: the same report on the terminal, exit 1 when unhealthy.
    env = cli_env(SESSIONSTREAM_BROKER_URL=stack["kafka"],
                  SESSIONSTREAM_POSTGRES_DSN=down.postgres_dsn,
                  SESSIONSTREAM_STATE_DIR=str(tmp_path / "state"))
    done = subprocess.run([*CLI, "status", "--check"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "UNHEALTHY" in done.stdout and "postgres.session_tables" in done.stdout


async def test_the_workers_health_endpoint_reports_every_store(
        stack: dict[str, str], pg_dsn: str, tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "run.log"
    env = cli_env(SESSIONSTREAM_BROKER_URL=stack["kafka"], SESSIONSTREAM_POSTGRES_DSN=pg_dsn,
                  SESSIONSTREAM_NEO4J_URI=stack["neo4j"],
                  SESSIONSTREAM_STATE_DIR=str(tmp_path / "state"),
                  SESSIONSTREAM_METRICS_PORT="0", SESSIONSTREAM_API_PORT=str(port),
                  SESSIONSTREAM_HEALTH_MAX_LAG=str(10**12))
    worker = start_cli(env, "run", "--source", f"claude-code={tmp_path / 'none'}", log=log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            async def answered() -> httpx.Response | None:
                assert_running(worker, log)
                response = await client.get("/api/v1/health", timeout=30)
                return response if "checks" in response.json() else None

            response = await eventually(answered, "the health endpoint", timeout=180,
                                        interval=0.5, ignoring=(httpx.TransportError,),
                                        detail=lambda: log_tail(log))
            # The read API is served beside it, on the worker's own database.
            async def sessions_listed() -> httpx.Response | None:
                got = await client.get("/api/v1/sessions", timeout=30)
                return got if got.status_code == 200 else None

            listed = await eventually(sessions_listed, "the sessions list", timeout=60,
                                      interval=0.5, detail=lambda: log_tail(log))
            # (the shared topics hold earlier tests' sessions, which this worker projects too)
            assert listed.json()["total"] >= len(listed.json()["sessions"])
            document = await client.get("/api/v1/openapi.json", timeout=30)
            assert "/api/v1/sessions" in document.json()["paths"]
        body = response.json()
        assert response.status_code == 200, body
        assert body["status"] == "ok"
        assert {"broker", "postgres.session_tables", "neo4j.session_graph"} <= set(
            body["checks"])
        assert all(check["ok"] for check in body["checks"].values())
        assert "topics" in body and "lag" in body and "dead_letters" in body
    finally:
        stop_cli(worker)
