"""``telemetry.polled.v1``: one call of one tool of a polled MCP server, and what it returned.

Telemetry has no session: the envelope's ``session_id`` carries the polled stream instead
(``<server>#<tool>``), so generic consumers (``tail``) still group it. ``values`` holds the
numeric leaves of the result flattened to dotted names (``sessions.total``, ``latency.0.p95``),
so projections need no per-tool code. ``event_id`` derives from server, tool and poll time: a
re-published poll is the same event.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from schemas.envelope import Envelope, derive_event_id

__all__ = [
    "MAX_VALUES", "TelemetryKey", "TelemetryPolledEvent", "ToolPolled", "flatten_numbers",
    "tool_polled_event",
]

MAX_VALUES = 200  # numeric leaves kept per result: bounds table rows and metric cardinality


class TelemetryKey(BaseModel):
    """Key of ``telemetry.polled.v1``: one (server, tool) stays on one partition, in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server: str = Field(description="The MCP server's URL, as configured.")
    tool: str


class ToolPolled(BaseModel):
    """One ``tools/call``: its outcome, timing, size and result."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["telemetry.polled"] = "telemetry.polled"
    server: str
    tool: str
    ok: bool
    duration_ms: float = Field(ge=0, description="Wall time of the call, retries included.")
    size_bytes: int = Field(default=0, ge=0, description="Bytes of the tools/call response.")
    result: JsonValue = Field(default=None, description="structuredContent, else the text "
                                                        "content parsed as JSON, else the text.")
    error: str | None = None
    values: dict[str, float] = Field(default_factory=dict,
                                     description="Numeric leaves of result, by dotted path.")


TelemetryPolledEvent = Envelope[ToolPolled]


def flatten_numbers(result: JsonValue, limit: int = MAX_VALUES) -> dict[str, float]:
    """The numeric leaves of ``result`` by dotted path; a bare number is ``value``.

    Booleans, strings and non-finite numbers are left out; list items are named by index.
    At most ``limit`` leaves, in document order.
    """
    flat: dict[str, float] = {}

    def walk(node: JsonValue, path: str) -> None:
        if len(flat) >= limit:
            return
        if isinstance(node, dict):
            for key, child in node.items():
                walk(child, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{path}.{index}" if path else str(index))
        elif isinstance(node, int | float) and not isinstance(node, bool) and math.isfinite(node):
            flat[path or "value"] = float(node)

    walk(result, "")
    return flat


def tool_polled_event(payload: ToolPolled, polled_at: datetime) -> TelemetryPolledEvent:
    """The envelope of ``payload``, its id derived from server, tool and poll time."""
    return TelemetryPolledEvent(
        event_id=derive_event_id("telemetry.polled", payload.server, payload.tool,
                                 polled_at.isoformat()),
        source="mcp", type=payload.kind, occurred_at=polled_at,
        session_id=f"{payload.server}#{payload.tool}", payload=payload,
    )
