"""The Grafana dashboards under ``deploy/grafana/dashboards``, checked without Grafana: each file
is a dashboard with a unique uid; every panel has a unique id, the provisioned Prometheus
datasource and at least one target with a PromQL ``expr`` (unique ``refId``\\ s); the overview
has a panel for each subject the operators asked for. Whether each ``expr`` parses and returns
data is checked against a real Prometheus in ``tests/integration/test_dashboards.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources"
FILES = sorted(DASHBOARDS.glob("*.json"))
# Subject of the overview -> a metric one of its panels must query.
OVERVIEW_SUBJECTS = {
    "sessions per day by source": "sessionstream_sessions_started_total",
    "active sessions": "sessionstream_sessions_active",
    "tokens by model and day": "gen_ai_client_token_usage_total",
    "cost by model and day": "sessionstream_cost_usage_USD_total",
    "tool calls by tool": "sessionstream_tool_calls_total",
    "files per session": "sessionstream_files_touched_total",
    "dead letters per topic": "sessionstream_dead_letters_total",
    "projection lag": "sessionstream_projection_lag",
    "write latency": "sessionstream_projection_write_duration_seconds_bucket",
    "postgres database size": "sessionstream_postgres_database_size_bytes",
    "mcp poll health": "sessionstream_telemetry_polls_total",
}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def prometheus_uids() -> set[str]:
    uids = set()
    for path in DATASOURCES.glob("*.yaml"):
        for source in yaml.safe_load(path.read_text()).get("datasources", []):
            if source.get("type") == "prometheus":
                uids.add(source["uid"])
    return uids


def test_there_is_an_overview_dashboard() -> None:
    assert DASHBOARDS / "overview.json" in FILES


def test_dashboard_uids_are_unique() -> None:
    uids = [load(path).get("uid") for path in FILES]
    assert all(uids) and len(set(uids)) == len(uids), uids


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_panel_queries_the_provisioned_prometheus(path: Path) -> None:
    dashboard = load(path)
    assert dashboard.get("title") and dashboard.get("panels")
    uids = prometheus_uids()
    assert uids, "no Prometheus datasource is provisioned"
    ids = [panel.get("id") for panel in dashboard["panels"]]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids), ids
    for panel in dashboard["panels"]:
        where = f"{path.name}: {panel.get('title')!r}"
        assert panel.get("title") and panel.get("type"), where
        assert panel.get("datasource", {}).get("uid") in uids, f"{where}: datasource"
        targets = panel.get("targets", [])
        assert targets, f"{where}: no target"
        refs = [t.get("refId") for t in targets]
        assert all(refs) and len(set(refs)) == len(refs), f"{where}: refIds {refs}"
        for target in targets:
            expr = target.get("expr", "")
            assert expr.strip(), f"{where}: a target without expr"
            assert expr.count("(") == expr.count(")"), f"{where}: unbalanced {expr}"
            assert target.get("datasource", panel["datasource"]).get("uid") in uids, where


@pytest.mark.parametrize(("subject", "metric"), OVERVIEW_SUBJECTS.items())
def test_the_overview_covers(subject: str, metric: str) -> None:
    exprs = [t["expr"] for p in load(DASHBOARDS / "overview.json")["panels"]
             for t in p["targets"]]
    assert any(re.search(rf"\b{metric}\b", e) for e in exprs), f"no panel shows {subject}"
