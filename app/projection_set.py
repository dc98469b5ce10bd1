"""Which projections a worker runs, by name: whatever is registered and enabled here.

``build_projections`` builds every projection registered in :mod:`projections.registry` whose
store is there: the Postgres session tables always, the telemetry tables when the MCP poller is
configured (``SESSIONSTREAM_MCP_URL``) and the Neo4j graph when a Neo4j is configured or running
in the local stack. Names accept the short aliases a projection registers (``postgres``,
``telemetry``, ``neo4j``), see :func:`resolve_name`. The OTel metrics are wired by the pipeline.
"""

from __future__ import annotations

from app.endpoints import Endpoints
from projections.base import Projection
from projections.pricing import PricingTable
from projections.registry import BuildContext, lookup, registrations
from streams.errors import ConfigError
from streams.settings import Settings

__all__ = ["build_projections", "resolve_name"]


def build_projections(settings: Settings, endpoints: Endpoints,
                      pricing: PricingTable | None = None) -> dict[str, Projection]:
    """``{name: projection}`` for the stores ``endpoints`` point at, in build order."""
    context = BuildContext(
        settings=settings, postgres_dsn=endpoints.postgres_dsn,
        pricing=pricing or PricingTable.load(settings.pricing_file),
        neo4j_uri=endpoints.neo4j_uri, neo4j_user=endpoints.neo4j_user,
        neo4j_password=endpoints.neo4j_password,
    )
    return {r.name: r.cls.build(context) for r in registrations() if r.cls.enabled(context)}


def resolve_name(name: str, available: dict[str, Projection]) -> str:
    """The full projection name for ``name`` (full or alias); ``ConfigError`` if unknown."""
    registration = lookup(name)
    full = registration.name if registration is not None else name
    if full not in available:
        known = ", ".join(f"{alias} ({r.name})" for r in registrations() for alias in r.aliases)
        why = registration.cls.disabled_hint if registration is not None else ""
        hint = f" ({why})" if why else ""
        raise ConfigError(f"unknown projection {name!r}{hint}; known: {known}")
    return full
