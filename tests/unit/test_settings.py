"""Settings: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import ConfigError
from streams.settings import Settings, load_settings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("SESSIONSTREAM_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env file


def test_defaults_mean_the_embedded_stack() -> None:
    settings = load_settings()
    assert settings.broker_url is None
    assert settings.postgres_dsn is None
    assert settings.neo4j_uri is None
    assert settings.metrics_port == 9464
    assert settings.sources == []


def test_values_come_from_prefixed_and_nested_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONSTREAM_BROKER_URL", "kafka://10.0.0.1:9092")
    monkeypatch.setenv("SESSIONSTREAM_SOURCES", "/a, /b")
    monkeypatch.setenv("SESSIONSTREAM_STACK__KAFKA_PORT", "19092")
    monkeypatch.setenv("SESSIONSTREAM_POSTGRES_DSN", "postgresql://u:secret@h/db")
    settings = load_settings()
    assert settings.broker_url == "kafka://10.0.0.1:9092"
    assert settings.sources == [Path("/a"), Path("/b")]
    assert settings.stack.kafka_port == 19092
    assert "secret" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SESSIONSTREAM_METRICS_PORT", "not-a-port"),
        ("SESSIONSTREAM_METRICS_PORT", "70000"),
        ("SESSIONSTREAM_BROKER_URL", "localhost:9092"),
        ("SESSIONSTREAM_POSTGRES_DSN", "mysql://x"),
        ("SESSIONSTREAM_NEO4J_URI", "http://x"),
        ("SESSIONSTREAM_STACK__POSTGRES_PORT", "0"),
    ],
)
def test_a_wrong_value_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_settings_class_is_the_one_source() -> None:
    assert Settings.model_config["env_prefix"] == "SESSIONSTREAM_"


def test_the_mcp_poller_is_off_by_default_and_tools_are_a_comma_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings()
    assert settings.mcp_url is None
    assert settings.mcp_tools == ["get_activity_summary", "get_workflow_metrics",
                                  "get_session_analytics", "get_performance_metrics"]
    monkeypatch.setenv("SESSIONSTREAM_MCP_URL", "http://127.0.0.1:8000/mcp")
    monkeypatch.setenv("SESSIONSTREAM_MCP_TOOLS", "a, b,")
    monkeypatch.setenv("SESSIONSTREAM_MCP_TOKEN", "s3cret")
    settings = load_settings()
    assert settings.mcp_tools == ["a", "b"]
    assert "s3cret" not in repr(settings)
    monkeypatch.setenv("SESSIONSTREAM_MCP_URL", "127.0.0.1:8000")
    with pytest.raises(ConfigError, match="SESSIONSTREAM_MCP_URL"):
        load_settings()
