"""The MCP telemetry poller in ``sessionstream run`` against a real MCP server (the ``mcp`` SDK's
``MCPServer`` over streamable HTTP), real Kafka 4.1 and Postgres: polls land in the telemetry
tables; when the server goes away the breaker opens and the worker stays up; when it comes back
on the same port the breaker goes half-open, then closed, and polling resumes. Every transition
is read from the worker's Prometheus endpoint."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.pipeline_helpers import assert_running, cli_env, log_tail, start_cli
from tests.waiting import eventually

pytestmark = pytest.mark.integration

SERVER_SCRIPT = Path(__file__).with_name("mcp_telemetry_server.py")
TOOLS = "get_activity_summary,get_broken_metrics,get_performance_metrics"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen([sys.executable, str(SERVER_SCRIPT), str(port)],
                                stdout=handle, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _until(check: Callable[[], Awaitable[bool]], what: str, worker: subprocess.Popen[bytes],
                 log: Path, timeout: float = 120) -> None:
    """Until ``check`` holds, failing at once if the worker dies."""
    async def worker_alive_and_check() -> bool:
        assert_running(worker, log)
        return await check()

    await eventually(worker_alive_and_check, what, timeout=timeout, interval=0.5,
                     detail=lambda: log_tail(log, 4000))


async def _scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``{(sample name, labels): value}`` of the worker's /metrics (empty if not up yet)."""
    try:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
    except httpx.HTTPError:
        return {}
    return {(s.name, frozenset((k, v) for k, v in s.labels.items()
                               if not k.startswith("otel_scope"))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in scraped.items() if n == name and want <= set(ls))


async def _polls(dsn: str, url: str, since: datetime, ok: bool) -> int:
    try:
        conn = await asyncpg.connect(dsn)
    except OSError:
        return 0
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM telemetry_polls WHERE server = $1 AND polled_at >= $2 "
            "AND ok = $3 AND tool = 'get_activity_summary'", url, since, ok))
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def test_breaker_opens_when_the_server_stops_and_polling_resumes_when_it_returns(
    stack: dict[str, str], pg_dsn: str, tmp_path: Path,
) -> None:
    mcp_port, metrics_port = _free_port(), _free_port()
    url = f"http://127.0.0.1:{mcp_port}/mcp"
    sources = tmp_path / "no-sessions"
    sources.mkdir()
    env = cli_env(SESSIONSTREAM_BROKER_URL=stack["kafka"], SESSIONSTREAM_POSTGRES_DSN=pg_dsn,
                  SESSIONSTREAM_STATE_DIR=str(tmp_path / "state"),
                  SESSIONSTREAM_METRICS_PORT=str(metrics_port), SESSIONSTREAM_API_PORT="0",
                  SESSIONSTREAM_MCP_URL=url, SESSIONSTREAM_MCP_TOOLS=TOOLS,
                  SESSIONSTREAM_MCP_INTERVAL_S="1", SESSIONSTREAM_MCP_TIMEOUT_S="2",
                  SESSIONSTREAM_MCP_RETRIES="1", SESSIONSTREAM_MCP_BREAKER_THRESHOLD="2",
                  SESSIONSTREAM_MCP_BREAKER_RESET_S="3")
    server_log, log = tmp_path / "mcp.log", tmp_path / "run.log"
    started = datetime.now(UTC)
    server = _start_server(mcp_port, server_log)
    worker = start_cli(env, "run", "--source", f"claude-code={sources}", log=log)
    state = "sessionstream_telemetry_breaker_state"
    moves = "sessionstream_telemetry_breaker_transitions_total"
    try:
        # 1. Polls flow to Postgres and to the derived metrics; the breaker is closed.
        await _until(lambda: _has_polls(pg_dsn, url, started, 2), "polls in Postgres",
                     worker, log)
        scraped: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}

        async def metrics_show_polls() -> bool:
            nonlocal scraped
            scraped = await _scrape(metrics_port)
            return _value(scraped, "sessionstream_telemetry_value",
                          gen_ai_tool_name="get_activity_summary",
                          sessionstream_telemetry_metric="prompts") > 0
        await _until(metrics_show_polls, "derived telemetry metrics", worker, log)
        assert _value(scraped, state) == 0
        assert _value(scraped, "sessionstream_telemetry_poll_cycles_total") >= 2
        assert _value(scraped, "sessionstream_telemetry_polls_total",
                      gen_ai_tool_name="get_broken_metrics",
                      sessionstream_telemetry_outcome="error") > 0
        assert _value(scraped, "sessionstream_telemetry_poll_errors_total",
                      gen_ai_tool_name="get_broken_metrics", error_type="rejected") > 0
        assert _value(scraped, "sessionstream_telemetry_tool_duration_seconds_count") > 0

        # 2. The server goes away: the breaker opens, the worker stays up.
        _stop(server)

        async def breaker_open() -> bool:
            nonlocal scraped
            scraped = await _scrape(metrics_port)
            return _value(scraped, state) == 2
        await _until(breaker_open, "the breaker to open", worker, log)
        assert _value(scraped, moves, **{"from": "closed", "to": "open"}) >= 1
        assert _value(scraped, "sessionstream_telemetry_poll_errors_total",
                      error_type="unavailable") >= 2

        async def reopened_after_a_failed_probe() -> bool:
            nonlocal scraped
            scraped = await _scrape(metrics_port)
            return _value(scraped, moves, **{"from": "half_open", "to": "open"}) >= 1
        await _until(reopened_after_a_failed_probe, "a half-open probe to fail", worker, log)
        assert _value(scraped, "sessionstream_telemetry_poll_errors_total",
                      error_type="circuit_open") >= 1

        # 3. The server comes back on the same port: half-open, closed, polls again.
        returned = datetime.now(UTC)
        server = _start_server(mcp_port, server_log)

        async def breaker_closed() -> bool:
            nonlocal scraped
            scraped = await _scrape(metrics_port)
            return _value(scraped, moves, **{"from": "half_open", "to": "closed"}) >= 1
        await _until(breaker_closed, "the breaker to close", worker, log)
        assert _value(scraped, state) == 0
        assert _value(scraped, moves, **{"from": "open", "to": "half_open"}) >= 2
        await _until(lambda: _has_polls(pg_dsn, url, returned, 2), "polls after the return",
                     worker, log)
        assert worker.poll() is None
    finally:
        _stop(worker)
        _stop(server)
    text = log.read_text()
    # Faust's own shutdown may log tracebacks; none may come from the poller or its client.
    assert "the next cycle goes on" not in text and "telemetry_poller.py" not in text \
        and "mcp_telemetry_client.py" not in text, text[-4000:]


async def _has_polls(dsn: str, url: str, since: datetime, n: int) -> bool:
    return await _polls(dsn, url, since, ok=True) >= n
