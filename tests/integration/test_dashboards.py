"""Every query of the Grafana dashboards answers with data from a real worker, through a real
Prometheus.

``sessionstream run`` ingests the sample sessions of every source (plus a file with bad lines, so
a dead-letter topic fills) on real Kafka 4.1 and Postgres, polls the local MCP test server, and
serves its metrics on the port the test stack's Prometheus scrapes every second. Each ``expr``
of every dashboard under ``deploy/grafana/dashboards`` is then sent to Prometheus'
``/api/v1/query``: it must parse and return a non-empty result. Grafana's interval variables
(``$__interval``, ``$__rate_interval``, ``$__range``) become a window no longer than this run,
and every metric an expression names must be on the worker's own page, so series left in
Prometheus by earlier runs cannot answer for a broken panel.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.demo_commands import SAMPLES
from streams.settings import Settings
from tests.integration.pipeline_helpers import assert_running, cli_env, log_tail, start_cli
from tests.waiting import eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
MCP_SERVER = Path(__file__).with_name("mcp_telemetry_server.py")
BAD_LINES = ROOT / "tests" / "samples" / "claude" / "projects" / "-home-dev-demo" / \
    "malformed.jsonl"
GRAFANA_INTERVALS = ("$__rate_interval", "$__interval", "$__range")
METRIC_NAME = re.compile(r"\b(?:sessionstream|gen_ai)_[A-Za-z0-9_]+")
LABELS = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)|\{[^}]*\}")


def metric_names(expr: str) -> set[str]:
    """The metrics ``expr`` selects (label names in groupings and matchers left out)."""
    return set(METRIC_NAME.findall(LABELS.sub(" ", expr)))


def dashboard_queries() -> list[tuple[str, str]]:
    """``(where, expr)`` of every target of every dashboard file."""
    queries = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                queries.append((f"{path.name}: {panel['title']} [{target['refId']}]",
                                target["expr"]))
    return queries


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _sources(root: Path) -> list[str]:
    """``--source`` arguments: a copy of every sample folder, and a Claude file of bad lines
    (named uniquely: the test broker's topics outlive the run)."""
    arguments = []
    for folder in sorted(p for p in SAMPLES.iterdir() if p.is_dir()):
        shutil.copytree(folder, root / folder.name)
        arguments += ["--source", f"{folder.name}={root / folder.name}"]
    bad = root / "claude-code" / "-home-dev-dashboards" / f"bad-{uuid.uuid4().hex[:8]}.jsonl"
    bad.parent.mkdir(parents=True)
    shutil.copy(BAD_LINES, bad)
    return arguments


async def _scrape(port: int) -> dict[str, float]:
    """``{sample name: sum of its values}`` of the worker's /metrics (empty if not up yet)."""
    try:
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
    except httpx.HTTPError:
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def _window(started: float) -> str:
    """A Grafana interval covering this run only (Prometheus keeps earlier runs' samples)."""
    return f"{int(time.time() - started) + 30}s"


async def _query(client: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    answer = await client.get("/api/v1/query", params={"query": expr})
    body = answer.json()
    assert answer.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    return list(body["data"]["result"])


async def test_every_dashboard_query_returns_data_from_a_running_worker(
    stack: dict[str, str], pg_dsn: str, test_settings: Settings, tmp_path: Path,
) -> None:
    queries = dashboard_queries()
    assert queries, f"no dashboard queries under {DASHBOARDS}"
    port = test_settings.metrics_port  # the port the test stack's Prometheus scrapes
    mcp_port = _free_port()
    env = cli_env(SESSIONSTREAM_BROKER_URL=stack["kafka"], SESSIONSTREAM_POSTGRES_DSN=pg_dsn,
                  SESSIONSTREAM_STATE_DIR=str(tmp_path / "state"),
                  SESSIONSTREAM_METRICS_PORT=str(port),
                  SESSIONSTREAM_MCP_URL=f"http://127.0.0.1:{mcp_port}/mcp",
                  SESSIONSTREAM_MCP_TOOLS="get_activity_summary,get_broken_metrics",
                  SESSIONSTREAM_MCP_INTERVAL_S="1", SESSIONSTREAM_MCP_TIMEOUT_S="5",
                  SESSIONSTREAM_MCP_RETRIES="0")
    sources = _sources(tmp_path / "sources")
    log, mcp_log = tmp_path / "run.log", tmp_path / "mcp.log"
    with mcp_log.open("ab") as handle:
        server = subprocess.Popen([sys.executable, str(MCP_SERVER), str(mcp_port)],
                                  stdout=handle, stderr=subprocess.STDOUT)
    started = time.time()
    worker = start_cli(env, "run", *sources, log=log)
    try:
        page: dict[str, float] = {}

        async def worker_reports_everything() -> bool:
            nonlocal page
            assert_running(worker, log)
            page = await _scrape(port)
            wanted = ("sessionstream_dead_letters_total", "sessionstream_telemetry_polls_total",
                      "sessionstream_files_touched_total", "gen_ai_client_token_usage_total",
                      "sessionstream_tool_calls_total")
            return all(page.get(name, 0) > 0 for name in wanted) and \
                "sessionstream_postgres_database_size_bytes" in page

        await eventually(worker_reports_everything, "the worker's metrics to show the samples, "
                         "a dead letter and MCP polls", timeout=300, interval=1,
                         detail=lambda: f"page: {sorted(page)}\n{log_tail(log)}")
        for where, expr in queries:
            names = metric_names(expr)
            missing = {n for n in names if n not in page}
            assert names and not missing, f"{where}: not exported by the worker: {missing}"

        async with httpx.AsyncClient(base_url=stack["prometheus"], timeout=10) as client:
            for where, expr in queries:
                async def answers(expr: str = expr) -> list[dict[str, Any]]:
                    assert_running(worker, log)
                    concrete = expr
                    for variable in GRAFANA_INTERVALS:
                        concrete = concrete.replace(variable, _window(started))
                    return await _query(client, concrete)

                await eventually(answers, f"data for {where}: {expr}", timeout=120, interval=1)
    finally:
        _stop(worker)
        _stop(server)
