"""``sessionstream mcp``: what it refuses before serving, and the bearer token of its HTTP
transport (through ``httpx``'s ASGI transport: no socket). Serving for real, over both
transports, is in ``tests/integration/test_mcp.py``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from app import cli_base
from app.cli import cli
from app.mcp_commands import BearerToken

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _no_process_wide_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """The group sets up logging, log filters and an aiokafka patch for the whole process."""
    monkeypatch.setattr(cli_base, "install_outage_filter", lambda: None)
    monkeypatch.setattr(cli_base, "install_metadata_backoff", lambda: None)
    monkeypatch.setattr(cli_base.logging, "basicConfig", lambda **_: None)
    for name in ("SESSIONSTREAM_API_TOKEN", "SESSIONSTREAM_POSTGRES_DSN"):
        monkeypatch.delenv(name, raising=False)


def test_http_off_loopback_without_a_token_is_refused(tmp_path: Any) -> None:
    done = CliRunner().invoke(
        cli, ["mcp", "--transport", "http", "--host", "0.0.0.0"], prog_name="sessionstream",
        env={"SESSIONSTREAM_STATE_DIR": str(tmp_path)})
    assert done.exit_code == 2
    assert "SESSIONSTREAM_API_TOKEN" in done.output and "0.0.0.0" in done.output
    assert not (tmp_path / "postgres").exists()  # refused before starting anything


def test_help_teaches_both_transports_and_a_client_config() -> None:
    done = CliRunner().invoke(cli, ["mcp", "--help"], prog_name="sessionstream")
    assert done.exit_code == 0
    for needle in ("--transport", "claude mcp add", '"mcpServers"', "/mcp",
                   "SESSIONSTREAM_API_TOKEN", "get_failed_items"):
        assert needle in done.output


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"served"})


@pytest.mark.parametrize(("header", "status"), [
    (None, 401), ("Bearer wrong", 401), ("Basic s3cret", 401), ("Bearer s3cret", 200),
    ("bearer  s3cret ", 200)])
async def test_the_http_transport_requires_the_token(header: str | None, status: int) -> None:
    transport = httpx.ASGITransport(app=BearerToken(_app, "s3cret"))
    async with httpx.AsyncClient(transport=transport, base_url="http://mcp.test") as client:
        answer = await client.post("/mcp", headers={"Authorization": header} if header else {})
    assert answer.status_code == status
    if status == 401:
        assert "SESSIONSTREAM_API_TOKEN" in answer.json()["error"]
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    else:
        assert answer.text == "served"
