"""A real MCP server (the ``mcp`` SDK's ``MCPServer``, FastMCP's successor) for the poller tests.

Run as ``python mcp_telemetry_server.py PORT [--json]``: streamable HTTP on
``127.0.0.1:PORT/mcp``, answering with SSE (or plain JSON with ``--json``). Its telemetry tools
return numbers that grow with each call, so a test can tell fresh polls from old ones;
``get_broken_metrics`` always fails (a tool error), which must not stop the other tools.
"""

from __future__ import annotations

import sys
from itertools import count

from mcp.server.mcpserver import MCPServer

server = MCPServer("telemetry-test-server")
_calls = count(1)


@server.tool()
def get_activity_summary() -> dict[str, object]:
    """Sessions and prompts so far."""
    n = next(_calls)
    return {"sessions": {"active": 2, "total": 10 + n}, "prompts": 40 + n, "label": "today"}


@server.tool()
def get_workflow_metrics() -> dict[str, object]:
    """Workflow runs."""
    return {"runs": {"ok": 7, "failed": 1}, "success_rate": 0.875}


@server.tool()
def get_session_analytics() -> str:
    """Plain text content holding JSON (no structured output)."""
    return '{"avg_duration_s": 12.5, "sessions": 3}'


@server.tool()
def get_performance_metrics() -> dict[str, object]:
    """Latencies."""
    return {"latency_ms": {"p50": 120, "p95": 480}, "cpu": 0.25}


@server.tool()
def get_broken_metrics() -> dict[str, object]:
    """Always fails."""
    raise ValueError("backend down")


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]),
               json_response="--json" in sys.argv[2:])
