"""Settings: the one place configuration is read.

Every value comes from an environment variable prefixed ``SESSIONSTREAM_`` (nested groups use
``__``, e.g. ``SESSIONSTREAM_STACK__KAFKA_PORT``) or from a ``.env`` file in the working
directory. Settings are read only where the app and the CLI are built; everything else receives
them as arguments. :func:`load_settings` turns validation failures into a :class:`ConfigError`
that names each offending variable.

Endpoints left unset (broker, Postgres, Neo4j) mean "the embedded default": the local stack
under ``state_dir`` provides them (see :mod:`streams.stack`).
"""

from __future__ import annotations

import ipaddress
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from streams.errors import ConfigError
from streams.periods import parse_since

__all__ = [
    "Settings", "StackSettings", "bootstrap_of", "default_state_dir", "is_loopback",
    "load_settings",
]

ENV_PREFIX = "SESSIONSTREAM_"

Port = Annotated[int, Field(ge=1, le=65535)]
DEFAULT_MCP_TOOLS = ("get_activity_summary", "get_workflow_metrics", "get_session_analytics",
                     "get_performance_metrics")


def default_state_dir() -> Path:
    """Where the stack and checkpoints live when ``SESSIONSTREAM_STATE_DIR`` is unset.

    As root this is ``/var/lib/sessionstream``: PostgreSQL refuses to run as root, so it runs as
    an unprivileged account that must be able to reach its data dir, and ``/root`` is private.
    """
    if os.geteuid() == 0:
        return Path("/var/lib/sessionstream")
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "sessionstream"


def default_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "sessionstream"


class StackSettings(BaseSettings):
    """Ports of the local stack (``sessionstream stack``).

    A port left unset means "the usual port if it is free, otherwise any free port"; the port
    chosen is remembered in the state dir so it stays stable across restarts. A port that is
    set is used exactly, and ``stack up`` fails if it is taken.
    """

    model_config = SettingsConfigDict(extra="forbid")

    kafka_port: Port | None = None
    kafka_controller_port: Port | None = None
    tansu_port: Port | None = None
    postgres_port: Port | None = None
    neo4j_bolt_port: Port | None = None
    prometheus_port: Port | None = None
    jaeger_otlp_port: Port | None = None
    jaeger_query_port: Port | None = None
    startup_timeout_s: float = Field(default=180.0, gt=0)
    java: str = "java"
    postgres_os_user: str = Field(
        default="nobody",
        description="Account PostgreSQL runs as when sessionstream runs as root.",
    )


class Settings(BaseSettings):
    """All of sessionstream's configuration. See the README's settings table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    state_dir: Path = Field(default_factory=default_state_dir)
    cache_dir: Path = Field(default_factory=default_cache_dir)
    broker_url: str | None = Field(
        default=None,
        description="Kafka bootstrap, e.g. kafka://127.0.0.1:9092; unset = the embedded broker.",
    )
    embedded_broker: Literal["auto", "kafka", "tansu"] = Field(
        default="auto",
        description="The broker started when broker_url is unset: kafka (Apache Kafka, log kept "
                    "on disk; needs Java 17+), tansu (in memory: lost at every stop), auto = "
                    "kafka when Java 17+ is found, else tansu.",
    )
    postgres_dsn: SecretStr | None = Field(
        default=None, description="postgresql://user:pass@host:port/db; unset = embedded."
    )
    neo4j_uri: str | None = Field(default=None, description="bolt://host:7687; unset = stack's.")
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr | None = None
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP endpoint, e.g. http://127.0.0.1:4318; unset = off."
    )
    otlp_headers: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Headers sent with every OTLP export, comma-separated key=value pairs "
                    "(e.g. 'x-api-key=KEY,Langsmith-Project=agents'), for hosted backends.",
    )
    metrics_port: int = Field(default=9464, ge=0, le=65535,
                              description="Prometheus endpoint port of the worker; 0 = off.")
    metrics_host: str = Field(default="127.0.0.1",
                              description="Interface of the Prometheus endpoint.")
    api_port: int = Field(default=8787, ge=0, le=65535,
                          description="Publish API port of the worker (POST /api/v1/events); "
                                      "0 = off.")
    api_host: str = Field(default="127.0.0.1", description="Interface of the publish API.")
    api_token: SecretStr | None = Field(
        default=None, validate_default=True,
        description="Bearer token the publish API requires; needed off loopback.")
    pricing_file: Path | None = Field(
        default=None, description="JSON file of per-model prices merged over the shipped table."
    )
    content_modes: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Filter: kind=full|summary|omit pairs, comma-separated, e.g. "
                    "'tool.resulted=omit,assistant.message=summary'; unset kinds keep defaults.",
    )
    workers: int = Field(default=1, ge=1, le=64,
                         description="Worker processes sharing the consumer groups (`run` and "
                                     "`backfill --workers`); one of them watches the sources.")
    inactivity_timeout_s: float = Field(default=300.0, gt=0,
                                        description="A session closes after this much quiet.")
    summary_interval_s: float = Field(default=10.0, ge=0,
                                      description="At most one summary update per session per "
                                                  "interval.")
    since: str | None = Field(
        default=None,
        description="Rolling period read on a new install: a duration such as 30d, 12h, 90m "
                    "or a date (2026-11-01); files last modified before it are skipped and "
                    "reported. Unset = everything.")
    health_max_lag: int = Field(default=10_000, ge=0,
                                description="Records a consumer may be behind before health "
                                            "reports it unhealthy.")
    # The frontend tables (projections.postgres.frontend_tables, docs/frontend-tables.md).
    frontend_tables: bool = Field(
        default=False,
        description="Keep the session-skill folders' sessions and projects, shaped for a "
                    "frontend, in their own Postgres schema (frontend_schema).")
    frontend_schema: str = Field(
        default="frontend", pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="Postgres schema of the frontend tables; a frontend reads them with "
                    "search_path=<schema>. Not public (sessionstream's own sessions are there).")

    @field_validator("frontend_schema")
    @classmethod
    def _check_frontend_schema(cls, value: str) -> str:
        if value in ("public", "information_schema") or value.startswith("pg_"):
            raise ValueError(f"{value!r} is reserved: choose a schema of its own, e.g. frontend")
        return value

    sources: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated roots to watch; empty = each source's own default paths.",
    )
    mcp_url: str | None = Field(
        default=None, description="MCP server to poll over streamable HTTP, e.g. "
                                  "http://127.0.0.1:8000/mcp; unset = telemetry poller off.")
    mcp_tools: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_MCP_TOOLS),
        description="Comma-separated tools to call on each poll.")
    mcp_interval_s: float = Field(default=30.0, gt=0, description="Seconds between polls.")
    mcp_timeout_s: float = Field(default=5.0, gt=0,
                                 description="Timeout of one tool call attempt.")
    mcp_retries: int = Field(default=2, ge=0, le=10,
                             description="Retries of a call that failed transiently.")
    mcp_breaker_threshold: int = Field(default=3, ge=1,
                                       description="Consecutive failed calls that open the "
                                                   "circuit breaker.")
    mcp_breaker_reset_s: float = Field(default=30.0, gt=0,
                                       description="Seconds an open breaker waits before a "
                                                   "half-open probe.")
    mcp_token: SecretStr | None = Field(default=None,
                                        description="Bearer token sent to the MCP server.")
    # -- LLM summaries (agents/llm): off unless SESSIONSTREAM_LLM_PROVIDER is set ------------
    llm_provider: Literal["openai", "anthropic"] | None = Field(
        default=None, description="LLM summaries of sessions: openai (any OpenAI-compatible chat "
                                  "completions endpoint) or anthropic (Messages API); unset = "
                                  "off, no calls, no cost.")
    llm_url: str | None = Field(
        default=None, description="Base URL: openai -> <url>/chat/completions (default "
                                  "https://api.openai.com/v1), anthropic -> <url>/v1/messages "
                                  "(default https://api.anthropic.com).")
    llm_model: str | None = Field(default=None, validate_default=True,
                                  description="Model name sent to the endpoint (required).")
    llm_api_key: SecretStr | None = Field(
        default=None, validate_default=True,
        description="API key (Bearer for openai, x-api-key for anthropic); required for "
                    "anthropic and for api.openai.com.")
    llm_timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one LLM call.")
    llm_max_tokens: int = Field(default=400, ge=16, le=8192,
                                description="Longest summary the model may write, in tokens.")
    llm_prompt_file_system: Path | None = Field(
        default=None, description="System prompt template file; unset = the shipped one.")
    llm_prompt_file_user: Path | None = Field(
        default=None, description="User prompt template file ($title, $summary_json, ...); "
                                  "unset = the shipped one.")
    llm_update_interval_s: float = Field(
        default=1800.0, ge=0, description="At most one LLM summary per active session per "
                                          "interval (long sessions); 0 = closed sessions only.")
    llm_breaker_threshold: int = Field(default=5, ge=1,
                                       description="Consecutive failed LLM calls that open the "
                                                   "circuit breaker.")
    llm_breaker_reset_s: float = Field(default=60.0, gt=0,
                                       description="Seconds an open LLM breaker waits before a "
                                                   "half-open probe.")
    llm_retry_delays_s: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [300.0, 900.0, 2700.0, 7200.0, 21600.0],
        description="Comma-separated waits before each retry of a failed LLM summary; after "
                    "the last retry fails, the summary is dead-lettered.")

    @field_validator("llm_url")
    @classmethod
    def _check_llm_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("llm_model")
    @classmethod
    def _check_llm_model(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("llm_provider") and not (value and value.strip()):
            raise ValueError("SESSIONSTREAM_LLM_PROVIDER is set, so the model must be too "
                             "(e.g. SESSIONSTREAM_LLM_MODEL=claude-haiku-4-5)")
        return value.strip() if value else value

    @field_validator("llm_api_key")
    @classmethod
    def _check_llm_key(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        provider, url = info.data.get("llm_provider"), info.data.get("llm_url")
        hosted = provider == "anthropic" or (provider == "openai" and (
            url is None or "api.openai.com" in url))
        if hosted and (value is None or not value.get_secret_value().strip()):
            raise ValueError(f"SESSIONSTREAM_LLM_PROVIDER={provider} at "
                             f"{url or 'its public API'} needs an API key")
        return value

    @field_validator("llm_prompt_file_system", "llm_prompt_file_user")
    @classmethod
    def _check_prompt_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_file():
            raise ValueError(f"{value} is not a readable file")
        return value.expanduser() if value else value

    @field_validator("llm_retry_delays_s", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return [d.strip() for d in value.split(",") if d.strip()]
        return value

    @field_validator("llm_retry_delays_s")
    @classmethod
    def _check_delays(cls, value: list[float]) -> list[float]:
        if not value or any(d < 0 for d in value):
            raise ValueError("expected one or more non-negative seconds, e.g. 300,900,2700")
        return value
    stack: StackSettings = Field(default_factory=StackSettings)

    @field_validator("sources", mode="before")
    @classmethod
    def _split_sources(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(p.strip()).expanduser() for p in value.split(",") if p.strip()]
        return value

    @field_validator("mcp_tools", mode="before")
    @classmethod
    def _split_tools(cls, value: object) -> object:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator("mcp_url")
    @classmethod
    def _check_mcp_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("otlp_headers", mode="before")
    @classmethod
    def _split_headers(cls, value: object) -> object:
        if isinstance(value, str):
            pairs = [p.strip() for p in value.split(",") if p.strip()]
            bad = [p for p in pairs if "=" not in p]
            if bad:
                raise ValueError(f"expected key=value pairs, got {', '.join(bad)}")
            return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}
        return value

    @field_validator("content_modes", mode="before")
    @classmethod
    def _split_modes(cls, value: object) -> object:
        if isinstance(value, str):
            pairs = [p.strip() for p in value.split(",") if p.strip()]
            bad = [p for p in pairs if "=" not in p]
            if bad:
                raise ValueError(f"expected kind=mode pairs, got {', '.join(bad)}")
            return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}
        return value

    @field_validator("since")
    @classmethod
    def _check_since(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_since(value, datetime.now(UTC))  # a ValueError names what is accepted
        return value.strip()

    @field_validator("broker_url")
    @classmethod
    def _check_broker(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("kafka://", "aiokafka://")):
            raise ValueError("must look like kafka://host:port[;kafka://host2:port]")
        return value

    @field_validator("postgres_dsn")
    @classmethod
    def _check_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("api_token")
    @classmethod
    def _check_api_exposure(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        host, port = info.data.get("api_host", "127.0.0.1"), info.data.get("api_port", 0)
        if port and value is None and not is_loopback(host):
            raise ValueError(f"the publish API would listen on {host} without a token: set "
                             "SESSIONSTREAM_API_TOKEN, or SESSIONSTREAM_API_HOST=127.0.0.1, or "
                             "SESSIONSTREAM_API_PORT=0")
        return value

    @field_validator("neo4j_uri")
    @classmethod
    def _check_neo4j(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("bolt://", "neo4j://", "bolt+s://")):
            raise ValueError("must be a bolt:// or neo4j:// URL")
        return value


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bootstrap_of(broker_url: str) -> str:
    """``kafka://a:1;kafka://b:2`` -> ``a:1,b:2``, the bootstrap string aiokafka wants."""
    return ",".join(u.removeprefix("kafka://").removeprefix("aiokafka://")
                    for u in broker_url.split(";"))


def _variable_name(loc: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc if isinstance(part, str))


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment; raise :class:`ConfigError` naming each bad one."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [f"{_variable_name(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems)) from exc
