"""Which projections a worker runs, by name: the one place that knows them all.

``build_projections`` returns the Postgres session tables always, the telemetry tables when the
MCP poller is configured (``SESSIONSTREAM_MCP_URL``) and the Neo4j graph when a Neo4j is
configured or running in the local stack. Names accept short aliases on the command line
(``postgres``, ``telemetry``, ``neo4j``), see :func:`resolve_name`.
"""

from __future__ import annotations

from app.endpoints import Endpoints
from projections.base import Projection
from projections.neo4j.session_graph import SessionGraph
from projections.postgres.mcp_telemetry_tables import TelemetryTables
from projections.postgres.session_tables import SessionTables
from projections.pricing import PricingTable
from streams.errors import ConfigError
from streams.settings import Settings

__all__ = ["ALIASES", "build_projections", "resolve_name"]

ALIASES = {"postgres": SessionTables.name, "neo4j": SessionGraph.name,
           "telemetry": TelemetryTables.name}


def build_projections(settings: Settings, endpoints: Endpoints,
                      pricing: PricingTable | None = None) -> dict[str, Projection]:
    """``{name: projection}`` for the stores ``endpoints`` point at."""
    pricing = pricing or PricingTable.load(settings.pricing_file)
    built: dict[str, Projection] = {
        SessionTables.name: SessionTables(endpoints.postgres_dsn, pricing),
    }
    if settings.mcp_url:  # the telemetry poller is on: project what it publishes
        built[TelemetryTables.name] = TelemetryTables(endpoints.postgres_dsn)
    if endpoints.neo4j_uri:
        built[SessionGraph.name] = SessionGraph(endpoints.neo4j_uri, endpoints.neo4j_user,
                                                endpoints.neo4j_password)
    return built


def resolve_name(name: str, available: dict[str, Projection]) -> str:
    """The full projection name for ``name`` (full or alias); ``ConfigError`` if unknown."""
    full = ALIASES.get(name, name)
    if full not in available:
        known = ", ".join(f"{alias} ({n})" for alias, n in ALIASES.items())
        hint = (" (Neo4j is neither configured nor running: set SESSIONSTREAM_NEO4J_URI or "
                "run `sessionstream stack up neo4j`)" if full == SessionGraph.name else
                " (the MCP poller is off: set SESSIONSTREAM_MCP_URL)"
                if full == TelemetryTables.name else "")
        raise ConfigError(f"unknown projection {name!r}{hint}; known: {known}")
    return full
