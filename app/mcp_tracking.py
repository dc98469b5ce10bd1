"""The MCP tools on the pipeline itself: is it keeping up, and what did it give up on?

``get_tracking_status`` is ``sessionstream status`` and ``status --check`` in one answer: per
agent and projection its position, the topic's end, the lag and its dead letters
(:func:`app.status.collect_report`), and whether the broker and every store answered
(:func:`app.health.check_health`). ``get_failed_items`` lists the dead letters per topic,
consumer and reason, and the LLM summary retry queue (``sessions.summaries.retry.v1``): how
many records wait for the retry runner, and the latest per session. Both read the stores the
settings name, or the local stack's running servers; a store or broker that cannot be read is
reported in the answer, never raised.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiokafka.errors import KafkaError
from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from agents.llm.retry_runner import GROUP_ID as RETRY_GROUP
from app.endpoints import inspect_endpoints
from app.health import check_health
from app.status import collect_report
from streams.errors import SessionStreamError
from streams.lag import committed_offsets, topic_ends
from streams.settings import Settings
from streams.tail import tail
from streams.topics import SUMMARY_RETRIES

__all__ = ["TrackingTools"]

_UNREACHABLE = (SessionStreamError, KafkaError, OSError, TimeoutError)


class TrackingTools:
    """``get_tracking_status`` and ``get_failed_items`` on the stores ``settings`` name."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def register(self, server: MCPServer, *, annotations: ToolAnnotations) -> None:
        for tool in (self.get_tracking_status, self.get_failed_items):
            server.add_tool(tool, annotations=annotations)

    async def get_tracking_status(self) -> dict[str, Any]:
        """Is the pipeline keeping up? `healthy` and its `problems`; per agent and projection
        (`consumers`) its position, the topic's end, the lag and its dead letters; `checks`:
        whether the broker and each store answered, and how fast; `dead_letters` per
        dead-letter topic. A store or broker that is down is reported here, not raised."""
        try:
            report = await collect_report(self.settings)
        except _UNREACHABLE as exc:
            return {"healthy": False, "problems": [f"positions: {exc}"], "consumers": []}
        consumers = [row.as_dict() for row in report.rows]
        endpoints, missing = inspect_endpoints(self.settings)
        if missing:
            return {"healthy": False, "problems": missing, "consumers": consumers}
        health = (await check_health(self.settings, endpoints)).as_dict()
        return {"healthy": health.pop("status") == "ok", **health, "consumers": consumers}

    async def get_failed_items(
            self,
            limit: Annotated[int, Field(ge=0, le=500, description=(
                "Latest records of the retry queue to return."))] = 50,
    ) -> dict[str, Any]:
        """What the pipeline gave up on. `dead_letters`: per dead-letter topic, consumer and
        reason, how many, the last failure and the most attempts (re-send them after a fix
        with `sessionstream redrive TOPIC.dlq`). `retry_queue`: the LLM summaries waiting
        for another attempt: `depth` (records not yet settled) and, per session, the latest
        record (attempt, when due, the error), the soonest due first."""
        try:
            report = await collect_report(self.settings)
        except _UNREACHABLE as exc:
            return {"dead_letters": [], "note": f"could not read the dead letters: {exc}",
                    "retry_queue": None}
        notes = sorted({row.note for row in report.rows if row.note.startswith("broker")})
        return {"dead_letters": [d.as_dict() for d in report.dead_letters],
                "dead_letter_count": sum(d.count for d in report.dead_letters),
                "note": "; ".join(notes),
                "retry_queue": await self._retry_queue(limit)}

    async def _retry_queue(self, limit: int) -> dict[str, Any]:
        """The LLM summaries :data:`SUMMARY_RETRIES` holds past the retry runner's committed
        offsets: ``depth`` (an upper bound: a record settled after one still held counts until
        that one settles) and, per session, its latest record, the soonest due first."""
        queue: dict[str, Any] = {"topic": SUMMARY_RETRIES.name, "consumer_group": RETRY_GROUP}
        endpoints, missing = inspect_endpoints(self.settings)
        if not endpoints.broker_url:
            return {**queue, "depth": None, "items": [], "note": "; ".join(missing)}
        try:
            ends = (await topic_ends(endpoints.bootstrap, [SUMMARY_RETRIES.name]))[
                SUMMARY_RETRIES.name]
            committed = (await committed_offsets(endpoints.bootstrap, RETRY_GROUP,
                                                 SUMMARY_RETRIES.name, sorted(ends))
                         if ends else {})
            starts = {p: max(0, committed.get(p, -1)) for p in ends}
            depth = sum(max(0, end - starts[p]) for p, end in ends.items())
            items = await _pending(endpoints.bootstrap, starts) if depth and limit else []
        except _UNREACHABLE as exc:
            return {**queue, "depth": None, "items": [], "note": f"broker unreachable: {exc}"}
        items.sort(key=lambda item: (str(item["due_at"]), item["session_id"]))
        return {**queue, "depth": depth, "sessions": len(items), "items": items[:limit]}


async def _pending(bootstrap: str, starts: dict[int, int]) -> list[dict[str, Any]]:
    """The latest retry record of each session at or after ``starts`` (per partition)."""
    latest: dict[str, dict[str, Any]] = {}
    async for record in tail(bootstrap, SUMMARY_RETRIES.name, from_beginning=True,
                             follow=False, idle_s=0.5):
        if record["_offset"] < starts.get(record["_partition"], 0):
            continue
        summary = record.get("summary") or {}
        session = str(summary.get("session_id") or (record["_key"] or {}).get("session_id"))
        latest[session] = {"session_id": session, "source": summary.get("source"),
                           "attempt": record.get("attempt"), "due_at": record.get("due_at"),
                           "error_type": record.get("error_type"), "error": record.get("error"),
                           "partition": record["_partition"], "offset": record["_offset"]}
    return list(latest.values())
