"""Where the stores are: configured endpoints, or the embedded default started on demand.

Endpoints left unset are the embedded default: the local stack's Tansu and PostgreSQL, started
when a command needs them. Neo4j is used when it is configured or when the stack's Neo4j is
running (``sessionstream stack up neo4j``); OTLP only when configured.

Tansu keeps its log in memory. When a command has to *start* it, the log is new and every
position recorded against the old one (producer checkpoints, projection positions) is stale:
``Endpoints.fresh_log`` says so, and the worker then re-reads its sources from the start. The
projections are idempotent by natural keys, so re-publishing converges to the same state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from streams.settings import Settings, bootstrap_of
from streams.stack import Stack

__all__ = ["Endpoints", "resolve_endpoints"]


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
    fresh_log: bool = False  # the embedded broker was started empty just now

    @property
    def bootstrap(self) -> str:
        return bootstrap_of(self.broker_url)


def resolve_endpoints(settings: Settings, sources: tuple[Path, ...] | list[Path] = (),
                      report: Callable[[str], None] = print) -> Endpoints:
    """Configured endpoints, starting the embedded broker and database for those unset."""
    stack = Stack(settings)
    wanted = [name for name, configured in (("tansu", settings.broker_url),
                                            ("postgres", settings.postgres_dsn)) if not configured]
    tansu_was_running = stack.servers["tansu"].running()
    started = stack.up(wanted, report=report) if wanted else {}
    dsn = (settings.postgres_dsn.get_secret_value() if settings.postgres_dsn
           else started["postgres"])
    neo4j_uri = settings.neo4j_uri or stack.endpoint("neo4j")
    return Endpoints(
        broker_url=settings.broker_url or started["tansu"],
        postgres_dsn=dsn,
        neo4j_uri=neo4j_uri,
        neo4j_user=settings.neo4j_user if settings.neo4j_password else None,
        neo4j_password=(settings.neo4j_password.get_secret_value()
                        if settings.neo4j_password else None),
        otlp_endpoint=settings.otlp_endpoint,
        sources=list(sources) or settings.sources,
        fresh_log=not settings.broker_url and not tansu_was_running,
    )
