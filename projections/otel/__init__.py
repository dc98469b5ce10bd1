"""The OTel metrics: totals derived from the stores, exported to Prometheus and OTLP.

``metrics`` (``SessionMetrics``) reads the session totals and feeds its instruments, whose
points ``session_observations`` builds; ``mcp_telemetry_metrics`` does the same for the polled
MCP telemetry; ``export`` is where they go. Not registered projections: they consume no topic.
"""

__all__: list[str] = []
