"""The frontend tables without a server: their ids, settings, registration and row derivation.

The ids are a contract a frontend stores, so one is pinned to its value here (a changed
namespace or name format must fail a test), and the one-liner ``docs/frontend-tables.md`` shows
is run and must print the same id. The rows and the SQL are checked on a real Postgres in
``tests/contract/test_frontend_tables.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.endpoints import Endpoints
from app.projection_set import build_projections, resolve_name
from projections.postgres.frontend_ids import (
    PROJECT_NAMESPACE,
    SESSION_NAMESPACE,
    normalize_path,
    project_uuid,
    session_uuid,
)
from projections.postgres.frontend_tables import FrontendRow, FrontendTables
from streams.errors import ConfigError
from streams.settings import Settings, load_settings

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "frontend-tables.md"
ENDPOINTS = Endpoints(broker_url="kafka://127.0.0.1:1",
                      postgres_dsn="postgresql://u@127.0.0.1:1/d")


def test_ids_are_uuid5_of_the_documented_names() -> None:
    sid = session_uuid("session-skill", "shop/checkout-flow")
    assert sid == uuid.uuid5(SESSION_NAMESPACE, "session-skill:shop/checkout-flow")
    assert sid.version == 5
    # pinned: every frontend that stored this id must find it again after an upgrade
    assert str(sid) == "ec936ce3-c883-5c2f-843e-efc9fe86affe"
    assert project_uuid("/code/shop") == uuid.uuid5(PROJECT_NAMESPACE, "/code/shop")
    assert session_uuid("codex", "shop/checkout-flow") != sid
    assert session_uuid("session-skill", "shop/other") != sid


@pytest.mark.parametrize("spelling", ["/code/shop", "/code/shop/", "/code//shop",
                                      "/code/./shop", "/code/x/../shop"])
def test_a_project_is_its_normalized_path(spelling: str) -> None:
    assert normalize_path(spelling) == "/code/shop"
    assert project_uuid(spelling) == project_uuid("/code/shop")


def test_the_documented_one_liner_computes_the_same_id() -> None:
    line = next((m.group(1) for m in re.finditer(r"^\s*(python3? -c .+)$", DOC.read_text(),
                                                  re.MULTILINE) if "uuid5" in m.group(1)), None)
    assert line is not None, "docs/frontend-tables.md shows no uuid5 one-liner"
    code = re.fullmatch(r"python3? -c (['\"])(.*)\1", line.strip())
    assert code is not None, line
    out = subprocess.run([sys.executable, "-c", code.group(2)], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == str(session_uuid("session-skill", "shop/checkout-flow"))


def test_it_is_built_only_when_the_setting_turns_it_on(test_settings: Settings) -> None:
    off = build_projections(test_settings, ENDPOINTS)
    assert FrontendTables.name not in off
    with pytest.raises(ConfigError, match="SESSIONSTREAM_FRONTEND_TABLES=true"):
        resolve_name("frontend", off)
    on = build_projections(test_settings.model_copy(update={
        "frontend_tables": True, "frontend_schema": "seed_ui"}), ENDPOINTS)
    built = on[resolve_name("frontend", on)]
    assert isinstance(built, FrontendTables) and built.schema.name == "seed_ui"
    assert all('"seed_ui".' in t for t in built.schema.tables)


def test_the_settings_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONSTREAM_FRONTEND_TABLES", "true")
    monkeypatch.setenv("SESSIONSTREAM_FRONTEND_SCHEMA", "seed_ui")
    settings = load_settings(_env_file=None)
    assert (settings.frontend_tables, settings.frontend_schema) == (True, "seed_ui")
    monkeypatch.delenv("SESSIONSTREAM_FRONTEND_TABLES")
    monkeypatch.delenv("SESSIONSTREAM_FRONTEND_SCHEMA")
    settings = load_settings(_env_file=None)
    assert (settings.frontend_tables, settings.frontend_schema) == (False, "frontend")


@pytest.mark.parametrize("schema", ["public", "pg_temp", "information_schema", "Front-End",
                                    "a;drop", ""])
def test_a_schema_that_is_not_ours_to_take_fails_naming_the_variable(schema: str) -> None:
    with pytest.raises(ConfigError, match="SESSIONSTREAM_FRONTEND_SCHEMA"):
        load_settings(frontend_schema=schema, _env_file=None)


SID = session_uuid("session-skill", "shop/checkout-flow")
ENDED = datetime(2026, 5, 1, tzinfo=UTC)


def test_a_row_takes_the_agent_kept_state() -> None:
    row = FrontendRow.of(SID, {"slug": "checkout-flow", "title": "Checkout", "status": "done",
                               "session_type": "feature", "working_dir": "/code/shop/",
                               "session_dir": "/code/shop/agents/sessions/checkout-flow",
                               "current_task": "T2"}, ENDED)
    assert row == (SID, "checkout-flow", "Checkout", project_uuid("/code/shop"), "done",
                   "feature", "/code/shop/", "/code/shop/agents/sessions/checkout-flow")
    assert FrontendRow._fields == ("id", "session_slug", "title", "project_id", "status",
                           "session_type", "working_dir", "session_dir")


def test_without_state_a_row_falls_back_as_the_session_tables_do() -> None:
    assert FrontendRow.of(SID, {}, None) == (SID, None, None, None, "active", "main", None,
                                            None)
    assert FrontendRow.of(SID, {}, ENDED).status == "closed"
    assert FrontendRow.of(SID, {"status": "paused"}, ENDED).status == "paused"
