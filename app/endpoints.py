"""Where the stores are: configured endpoints, or the embedded default started on demand.

Endpoints left unset are the embedded default: the local stack's broker (Apache Kafka with its
log on disk when Java 17+ is installed, else Tansu in memory; :mod:`streams.stack.embedded`)
and PostgreSQL, started when a command needs them. Neo4j is used when it is configured or when
the stack's Neo4j is running (``sessionstream stack up neo4j``); OTLP only when configured.

Producer checkpoints and projection positions point into one broker log. The state dir
remembers which (``checkpoints/broker-log.json``: Kafka's cluster id, or the running Tansu
process); when the embedded broker serves another log (a first start, an upgrade from the
in-memory default, a Tansu restart, a Kafka data dir that was removed), ``Endpoints.fresh_log``
says so and the worker starts over: every source re-read, every position forgotten. The
projections are idempotent by natural keys, so re-publishing converges to the same state.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from streams.settings import Settings, bootstrap_of
from streams.stack import Stack
from streams.stack.embedded import choose_embedded_broker

__all__ = ["Endpoints", "inspect_endpoints", "remember_log", "remembered_log",
           "resolve_endpoints"]


@dataclass(frozen=True)
class Endpoints:
    """The stores one worker or command talks to."""

    broker_url: str
    postgres_dsn: str
    neo4j_uri: str | None = None
    neo4j_user: str | None = None
    neo4j_password: str | None = None
    otlp_endpoint: str | None = None
    sources: list[Path] = field(default_factory=list)
    embedded_broker: str | None = None  # the stack's broker in use (kafka, tansu), or None
    log_identity: str | None = None  # which log that broker serves (see the module)
    fresh_log: bool = False  # checkpoints and positions point into another log: start over

    @property
    def bootstrap(self) -> str:
        return bootstrap_of(self.broker_url)


def resolve_endpoints(settings: Settings, sources: tuple[Path, ...] | list[Path] = (),
                      report: Callable[[str], None] = print) -> Endpoints:
    """Configured endpoints, starting the embedded broker and database for those unset."""
    stack = Stack(settings)
    broker = None
    if not settings.broker_url:
        broker, warning = choose_embedded_broker(settings)
        if warning:
            report(warning)
    wanted = ([broker] if broker else []) + ([] if settings.postgres_dsn else ["postgres"])
    started = stack.up(wanted, report=report) if wanted else {}
    dsn = (settings.postgres_dsn.get_secret_value() if settings.postgres_dsn
           else started["postgres"])
    neo4j_uri = settings.neo4j_uri or stack.endpoint("neo4j")
    log = stack.servers[broker].log_identity() if broker else None
    return Endpoints(
        broker_url=settings.broker_url or started[str(broker)],
        postgres_dsn=dsn,
        neo4j_uri=neo4j_uri,
        neo4j_user=settings.neo4j_user if settings.neo4j_password else None,
        neo4j_password=(settings.neo4j_password.get_secret_value()
                        if settings.neo4j_password else None),
        otlp_endpoint=settings.otlp_endpoint,
        sources=list(sources) or settings.sources,
        embedded_broker=broker,
        log_identity=log,
        fresh_log=broker is not None and log != remembered_log(settings),
    )


def inspect_endpoints(settings: Settings) -> tuple[Endpoints, list[str]]:
    """The endpoints a check looks at, starting nothing: the configured ones, else the local
    stack's running servers. Also returns what is neither configured nor running (a broker,
    Postgres), in words; those endpoints are left empty."""
    stack = Stack(settings)
    missing = []
    broker = settings.broker_url or stack.endpoint(choose_embedded_broker(settings)[0])
    if not broker:
        missing.append("broker: not configured (SESSIONSTREAM_BROKER_URL) and the embedded one "
                       "is not running")
    dsn = (settings.postgres_dsn.get_secret_value() if settings.postgres_dsn
           else stack.endpoint("postgres"))
    if not dsn:
        missing.append("postgres: not configured (SESSIONSTREAM_POSTGRES_DSN) and the embedded "
                       "one is not running")
    endpoints = Endpoints(
        broker_url=broker or "", postgres_dsn=dsn or "",
        neo4j_uri=settings.neo4j_uri or stack.endpoint("neo4j"),
        neo4j_user=settings.neo4j_user if settings.neo4j_password else None,
        neo4j_password=(settings.neo4j_password.get_secret_value()
                        if settings.neo4j_password else None),
        otlp_endpoint=settings.otlp_endpoint)
    return endpoints, missing


def _marker(settings: Settings) -> Path:
    return settings.state_dir / "checkpoints" / "broker-log.json"


def remembered_log(settings: Settings) -> str | None:
    """The broker log the state dir's checkpoints and positions were recorded against."""
    try:
        return str(json.loads(_marker(settings).read_text())["log"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember_log(settings: Settings, endpoints: Endpoints) -> None:
    """Record that checkpoints and positions now point into ``endpoints``' log. Call only
    after every checkpoint was reset and every position forgotten (a crash before leaves the
    old record, so the next start starts over again: never a stale position kept)."""
    if endpoints.log_identity is None:
        return
    marker = _marker(settings)
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({"broker": endpoints.embedded_broker,
                               "log": endpoints.log_identity}))
    tmp.replace(marker)
