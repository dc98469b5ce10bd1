"""Postgres read models: the store base and one module per projection.

``session_tables`` (``SessionTables``) is built from ``session_schema`` (tables, view, derived
totals), ``session_rows`` and ``session_state_rows`` (row types beside their upserts),
``session_batch`` (folding a batch into rows) and ``session_lineage`` (the relink pass);
``mcp_telemetry_tables`` is ``TelemetryTables``; ``usage`` reads the totals users ask for.
"""

__all__: list[str] = []
