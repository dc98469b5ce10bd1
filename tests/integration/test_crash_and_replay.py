"""Nothing lost, nothing doubled: SIGKILL mid-ingest, restart, and replay, on real Kafka 4.1,
Postgres and Neo4j.

1. ``sessionstream run`` is killed with SIGKILL while it ingests the Claude Code fixtures, then
   started again; once caught up, its Postgres tables, graph and metric totals must equal those
   of an uninterrupted ``backfill`` into a second database and a fresh graph.
2. ``sessionstream replay postgres`` and ``replay neo4j`` rebuild tables and a graph equal to
   the live ones.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import neo4j
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import fresh_database
from tests.fixtures_path import claude_fixtures
from tests.integration import snapshots
from tests.integration.pipeline_helpers import (
    CLI,
    assert_running,
    backfill_cli,
    cli_env,
    log_tail,
    start_cli,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def second_dsn(stack: dict[str, str]) -> AsyncIterator[str]:
    async with fresh_database(stack["postgres"]) as dsn:
        yield dsn


def _env(stack: dict[str, str], dsn: str, state: Path, metrics_port: int = 0) -> dict[str, str]:
    return cli_env(SESSIONSTREAM_BROKER_URL=stack["kafka"], SESSIONSTREAM_POSTGRES_DSN=dsn,
                   SESSIONSTREAM_NEO4J_URI=stack["neo4j"], SESSIONSTREAM_STATE_DIR=str(state),
                   SESSIONSTREAM_METRICS_PORT=str(metrics_port),
                   SESSIONSTREAM_INACTIVITY_TIMEOUT_S="5", SESSIONSTREAM_SUMMARY_INTERVAL_S="1")


async def _count(dsn: str, query: str) -> int:
    try:
        conn = await asyncpg.connect(dsn)
    except OSError:
        return 0
    try:
        return int(await conn.fetchval(query))
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


def _status(env: dict[str, str]) -> list[dict[str, object]]:
    out = subprocess.run([*CLI, "status", "--json"], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


async def _wait_caught_up(env: dict[str, str], timeout: float = 300) -> None:
    """Until every agent and projection has lag 0 on two checks in a row, 2 s apart."""
    rows: list[dict[str, object]] = []
    quiet = 0

    async def caught_up_twice() -> bool:
        nonlocal rows, quiet
        rows = await asyncio.to_thread(_status, env)
        done = rows and all(r["lag"] == 0 and r["end"] for r in rows)
        quiet = quiet + 1 if done else 0
        return quiet >= 2

    await eventually(caught_up_twice, "lag 0 everywhere, twice in a row", timeout=timeout,
                     interval=2, detail=lambda: f"status: {rows}")


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    process.send_signal(sig)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _processed(text: str) -> dict[str, float]:
    """Events processed per projection, as a /metrics page reports them."""
    totals: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sessionstream_events_processed_total":
                totals[sample.labels["sessionstream_projection"]] += sample.value
    return dict(totals)


async def _current_metrics(env: dict[str, str], port: int, log: Path) -> str:
    """The worker's /metrics page once its totals were read after the last write: the events
    it reports processed per projection reach the positions the stores hold now (``status``).
    """
    positions = {str(r["consumer"]): r["position"] for r in await asyncio.to_thread(_status, env)
                 if isinstance(r["position"], int)}
    seen: dict[str, float] = {}

    async def current() -> str | None:
        nonlocal seen
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        seen = _processed(text)
        both = seen.keys() & positions.keys()
        fresh = "postgres.session_tables" in both and all(seen[p] >= positions[p] for p in both)
        return text if fresh else None

    return await eventually(current, "metrics refreshed after the last write", timeout=60,
                            interval=0.5, ignoring=(httpx.TransportError,),
                            detail=lambda: f"positions {positions}, metrics {seen}\n"
                                           + log_tail(log))


def _metric_totals(text: str) -> dict[str, float]:
    """The restart-sensitive series of a /metrics page (tokens, cost, sessions, tool calls)."""
    wanted = ("gen_ai_client_token_usage", "sessionstream_cost_usage", "sessionstream_sessions",
              "sessionstream_tool_calls")
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(wanted) and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            totals[series] = float(value)
    return totals


async def test_sigkill_mid_ingest_then_restart_equals_an_uninterrupted_run(
    stack: dict[str, str], pg_dsn: str, second_dsn: str, neo4j_driver: neo4j.AsyncDriver,
    tmp_path: Path,
) -> None:
    source = claude_fixtures()
    port = _free_port()
    crashed = _env(stack, pg_dsn, tmp_path / "crashed", port)
    log = tmp_path / "run.log"

    worker = start_cli(crashed, "run", "--source", str(source), log=log)

    async def ingesting() -> bool:
        assert_running(worker, log)
        return await _count(pg_dsn, "SELECT count(*) FROM messages") >= 300

    try:
        await eventually(ingesting, "300 messages in Postgres", timeout=180,
                         detail=lambda: log_tail(log))
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    at_kill = await _count(pg_dsn, "SELECT count(*) FROM messages")

    worker = start_cli(crashed, "run", "--source", str(source), log=log)
    try:
        await _wait_caught_up(crashed)
        # The fixtures are long idle: the live worker closes them once caught up (as the
        # backfill below does before it exits); its metrics are compared once they show it.
        async def all_closed() -> bool:
            return await _count(pg_dsn, "SELECT count(*) FROM sessions "
                                        "WHERE ended_at IS NULL") == 0

        await eventually(all_closed, "the idle sessions closed", timeout=60, interval=0.5,
                         detail=lambda: log_tail(log))
        live_tables = await snapshots.postgres_tables(pg_dsn)
        live_graph = await snapshots.graph(neo4j_driver)

        async def after_the_closes() -> dict[str, float] | None:
            totals = _metric_totals(await _current_metrics(crashed, port, log))
            active = sum(v for k, v in totals.items()
                         if k.startswith("sessionstream_sessions_active"))
            now_active = await _count(pg_dsn, "SELECT count(*) FROM sessions "
                                              "WHERE status = 'active'")
            return totals if active == now_active else None

        scraped = await eventually(after_the_closes, "metrics read after the idle closes",
                                   timeout=60, interval=1.0, detail=lambda: log_tail(log))
    finally:
        _stop(worker)
    assert 0 < at_kill < len(live_tables["messages"]), "the kill did not land mid-ingest"
    assert scraped, "no metrics were served"

    await neo4j_driver.execute_query("MATCH (n) DETACH DELETE n")
    straight = _env(stack, second_dsn, tmp_path / "straight")
    result = backfill_cli(straight, source)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    assert await snapshots.postgres_tables(second_dsn) == live_tables
    assert await snapshots.graph(neo4j_driver) == live_graph

    # The metrics of the restarted worker equal those served from the uninterrupted state.
    port2 = _free_port()
    again_env = _env(stack, second_dsn, tmp_path / "straight", port2)
    again = start_cli(again_env, "run", "--source", str(tmp_path / "nothing"),
                      log=tmp_path / "again.log")
    try:
        text = await _current_metrics(again_env, port2, tmp_path / "again.log")
    finally:
        _stop(again)
    assert _metric_totals(text) == scraped


async def test_replay_rebuilds_tables_and_graph_equal_to_the_live_ones(
    stack: dict[str, str], pg_dsn: str, neo4j_driver: neo4j.AsyncDriver, tmp_path: Path,
) -> None:
    source = claude_fixtures()
    env = _env(stack, pg_dsn, tmp_path / "state")
    result = backfill_cli(env, source)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    live_tables = await snapshots.postgres_tables(pg_dsn)
    live_graph = await snapshots.graph(neo4j_driver)
    assert live_tables["usage_facts"] and live_graph["relationships"]

    for projection in ("postgres", "neo4j"):
        replayed = subprocess.run([*CLI, "replay", projection], env=env, capture_output=True,
                                  text=True, timeout=600, check=False)
        assert replayed.returncode == 0, replayed.stdout[-3000:] + replayed.stderr[-3000:]
        assert "replayed" in replayed.stdout

    assert await snapshots.postgres_tables(pg_dsn) == live_tables
    assert await snapshots.graph(neo4j_driver) == live_graph


def test_replay_of_an_unknown_projection_names_the_known_ones(tmp_path: Path) -> None:
    env = cli_env(SESSIONSTREAM_STATE_DIR=str(tmp_path),
                  SESSIONSTREAM_BROKER_URL="kafka://127.0.0.1:1",
                  SESSIONSTREAM_POSTGRES_DSN="postgresql://u@127.0.0.1:1/db")
    result = subprocess.run([*CLI, "replay", "elastic"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert "unknown projection 'elastic'" in result.stderr
    assert "postgres (postgres.session_tables)" in result.stderr
