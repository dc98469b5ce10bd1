"""The MCP server's tools, through a real MCP client connected in-process, on fake reads.

The read functions of the session tables and the pipeline's status are replaced by fakes that
record what they were asked: these tests check what an agent sees (the tools, their argument
descriptions, JSON results, tool errors) and what reaches the read functions. The same tools on
the real stores, over both transports, are in ``tests/integration/test_mcp.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from mcp import Client
from mcp_types import CallToolResult

from app import mcp_server, mcp_tracking
from app.endpoints import Endpoints
from app.health import Check, HealthReport
from app.status import DeadLetterRow, StatusReport, StatusRow
from streams.errors import ProjectionUnavailable
from streams.settings import Settings

pytestmark = pytest.mark.unit

SESSION = {"id": "s-1", "source": "claude-code", "title": "Fix the parser",
           "started_at": datetime(2026, 3, 2, 9, 0, tzinfo=UTC), "cost_usd": 0.25,
           "summary": "fixed it", "llm_summary": None}
EXPECTED_TOOLS = {"list_sessions", "search_sessions", "get_session", "get_session_messages",
                  "get_session_tools", "get_session_files", "get_usage", "get_tracking_status",
                  "get_failed_items"}


class FakeReads:
    """Stands in for session_reads and session_search: one known session, calls recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("list_sessions", "count_sessions", "get_session", "session_messages",
                     "session_tools", "session_files", "usage"):
            monkeypatch.setattr(mcp_server.session_reads, name, self._recorder(name))
        monkeypatch.setattr(mcp_server.session_search, "search", self._recorder("search"))

    def _recorder(self, name: str) -> Any:
        async def call(db: Any, *args: Any, **kwargs: Any) -> Any:
            assert db == "the-pool"
            self.calls.append((name, args, kwargs))
            return getattr(self, name)(*args, **kwargs)
        return call

    def named(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(args, kwargs) for n, args, kwargs in self.calls if n == name]

    def list_sessions(self, **_: Any) -> list[dict[str, Any]]:
        return [SESSION]

    def count_sessions(self, **_: Any) -> int:
        return 7

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        return SESSION if session_id == "s-1" else None

    def session_messages(self, session_id: str, **_: Any) -> list[dict[str, Any]]:
        return [{"role": "user", "text": "hello", "at": datetime(2026, 3, 2, tzinfo=UTC)}]

    def session_tools(self, session_id: str) -> list[dict[str, Any]]:
        return [{"name": "Read", "outcome": "ok"}]

    def session_files(self, session_id: str) -> list[dict[str, Any]]:
        return [{"path": "/p/a.py", "reads": 2, "writes": 1}]

    def usage(self, **_: Any) -> list[dict[str, Any]]:
        return [{"key": "2026-03-01", "input_tokens": 10, "cost_usd": 0.5,
                 "unpriced_models": []},
                {"key": "2026-03-02", "input_tokens": 5, "cost_usd": Decimal("0.25"),
                 "unpriced_models": ["x"]}]

    def search(self, query: str, **_: Any) -> list[dict[str, Any]]:
        return [{"session_id": "s-1", "kind": "prompt", "snippet": f"**{query}**"}]


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> FakeReads:
    fake = FakeReads()
    fake.install(monkeypatch)
    return fake


async def call(name: str, arguments: dict[str, Any] | None = None) -> CallToolResult:
    server = mcp_server.build_server(Settings(_env_file=None), "the-pool")  # type: ignore[call-arg]
    async with Client(server) as client:
        return await client.call_tool(name, arguments or {})


def answer(result: CallToolResult) -> dict[str, Any]:
    """The structured result, after checking the text content says the same."""
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    assert result.is_error
    return result.content[0].text  # type: ignore[union-attr]


async def test_every_tool_is_listed_read_only_with_described_arguments() -> None:
    server = mcp_server.build_server(Settings(_env_file=None), "the-pool")  # type: ignore[call-arg]
    async with Client(server) as client:
        tools = (await client.list_tools()).tools
    assert {t.name for t in tools} == EXPECTED_TOOLS
    for tool in tools:
        assert tool.description and tool.annotations and tool.annotations.read_only_hint
        for name, schema in tool.input_schema["properties"].items():
            assert schema.get("description"), f"{tool.name}.{name} has no description"


async def test_list_sessions_passes_the_filters_and_answers_json(reads: FakeReads) -> None:
    found = answer(await call("list_sessions", {"source": "codex", "since": "2d", "limit": 5,
                                                "offset": 10}))
    assert found["total"] == 7 and found["offset"] == 10
    assert found["sessions"][0]["started_at"] == "2026-03-02T09:00:00+00:00"
    (_, listed), = reads.named("list_sessions")
    assert listed["source"] == "codex" and listed["limit"] == 5 and listed["offset"] == 10
    assert listed["project"] is None and listed["status"] is None
    ago = datetime.now(UTC) - listed["since"]
    assert timedelta(days=2) <= ago < timedelta(days=2, minutes=1)
    (_, counted), = reads.named("count_sessions")
    assert counted == {k: v for k, v in listed.items() if k not in ("limit", "offset")}


async def test_a_session_and_its_messages_tools_and_files(reads: FakeReads) -> None:
    assert answer(await call("get_session", {"session_id": "s-1"}))["summary"] == "fixed it"
    messages = answer(await call("get_session_messages",
                                 {"session_id": "s-1", "limit": 3, "offset": 1}))
    assert messages["messages"][0]["text"] == "hello"
    assert reads.named("session_messages") == [(("s-1",), {"limit": 3, "offset": 1})]
    assert answer(await call("get_session_tools", {"session_id": "s-1"}))["tool_calls"] == [
        {"name": "Read", "outcome": "ok"}]
    files = answer(await call("get_session_files", {"session_id": "s-1"}))["files"]
    assert files == [{"path": "/p/a.py", "reads": 2, "writes": 1}]


@pytest.mark.parametrize("tool", ["get_session", "get_session_messages", "get_session_tools",
                                  "get_session_files"])
async def test_an_unknown_session_is_a_tool_error(reads: FakeReads, tool: str) -> None:
    text = error_text(await call(tool, {"session_id": "nope"}))
    assert "unknown session id 'nope'" in text and "list_sessions" in text
    assert not reads.named("session_messages") + reads.named("session_tools")


async def test_usage_rows_and_their_totals(reads: FakeReads) -> None:
    found = answer(await call("get_usage", {"by": "model", "since": "2026-03-01"}))
    assert found["by"] == "model" and len(found["rows"]) == 2
    assert found["totals"] == {"input_tokens": 15, "cost_usd": 0.75}
    (_, asked), = reads.named("usage")
    assert asked == {"by": "model", "since": datetime(2026, 3, 1, tzinfo=UTC)}


async def test_search_finds_through_the_search_function(reads: FakeReads) -> None:
    found = answer(await call("search_sessions", {"query": "parser", "project": "p"}))
    assert found["hits"][0]["snippet"] == "**parser**"
    assert reads.named("search") == [(("parser",), {"source": None, "project": "p",
                                                    "since": None, "limit": 20})]


async def test_bad_arguments_and_unreadable_stores_are_tool_errors(
        reads: FakeReads, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "since" in error_text(await call("list_sessions", {"since": "last tuesday"}))
    assert error_text(await call("get_usage", {"by": "week"}))

    async def down(*_: Any, **__: Any) -> None:
        raise ProjectionUnavailable("postgres cannot be read: connection refused")

    monkeypatch.setattr(mcp_server.session_reads, "usage", down)
    text = error_text(await call("get_usage"))
    assert "could not read usage" in text and "connection refused" in text


async def test_tracking_status_joins_positions_and_health(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def report(_: Settings) -> StatusReport:
        return StatusReport([StatusRow("parse_lines", "sessions.file-changes.v1", 5, 9, 1)])

    async def health(_: Settings, __: Any) -> HealthReport:
        return HealthReport([Check("broker", True, "reachable", 1.0)], lag={"parse_lines": 4},
                            max_lag=2)

    monkeypatch.setattr(mcp_tracking, "collect_report", report)
    monkeypatch.setattr(mcp_tracking, "check_health", health)
    monkeypatch.setattr(mcp_tracking, "inspect_endpoints", lambda _: (object(), []))
    found = answer(await call("get_tracking_status"))
    assert found["healthy"] is False and "parse_lines is 4 records behind" in found["problems"][0]
    assert found["consumers"][0] | {"lag": 4} == found["consumers"][0]
    assert found["checks"]["broker"]["ok"] is True


async def test_failed_items_lists_dead_letters_per_reason_and_the_retry_queue(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def report(_: Settings) -> StatusReport:
        dead = DeadLetterRow("sessions.events.v1.dlq", "postgres.session_tables",
                             "ProjectionRejected: bad row", count=2, max_attempts=3)
        return StatusReport([StatusRow("parse_lines", "t", 1, 1, 0)], [dead])

    async def ends(_: str, topics: list[str]) -> dict[str, dict[int, int]]:
        return {topics[0]: {0: 4, 1: 1}}

    async def committed(_: str, group: str, topic: str, partitions: list[int]) -> dict[int, int]:
        assert group == mcp_tracking.RETRY_GROUP and partitions == [0, 1]
        return {0: 1, 1: -1}  # partition 0: offset 0 settled; partition 1: nothing committed

    def retry(session: str, attempt: int, due: str, partition: int, offset: int) -> dict[str, Any]:
        return {"attempt": attempt, "due_at": due, "error_type": "rate_limit", "error": "429",
                "summary": {"session_id": session, "source": "codex"},
                "_key": {"session_id": session}, "_partition": partition, "_offset": offset}

    async def tail(_: str, topic: str, **__: Any) -> Any:
        assert topic == "sessions.summaries.retry.v1"
        for record in (retry("a", 1, "2026-03-01T00:00:00Z", 0, 0),  # settled
                       retry("a", 2, "2026-03-03T00:00:00Z", 0, 1),
                       retry("b", 1, "2026-03-02T00:00:00Z", 0, 2),
                       retry("a", 3, "2026-03-05T00:00:00Z", 0, 3),
                       retry("c", 1, "2026-03-04T00:00:00Z", 1, 0)):
            yield record

    endpoints = Endpoints(broker_url="kafka://broker:9092", postgres_dsn="")
    monkeypatch.setattr(mcp_tracking, "collect_report", report)
    monkeypatch.setattr(mcp_tracking, "inspect_endpoints", lambda _: (endpoints, []))
    monkeypatch.setattr(mcp_tracking, "topic_ends", ends)
    monkeypatch.setattr(mcp_tracking, "committed_offsets", committed)
    monkeypatch.setattr(mcp_tracking, "tail", tail)
    found = answer(await call("get_failed_items", {"limit": 2}))
    assert found["dead_letter_count"] == 2
    assert found["dead_letters"][0]["reason"] == "ProjectionRejected: bad row"
    queue = found["retry_queue"]
    assert queue["topic"] == "sessions.summaries.retry.v1" and queue["depth"] == 4
    assert queue["sessions"] == 3
    assert [(i["session_id"], i["attempt"]) for i in queue["items"]] == [("b", 1), ("c", 1)]


async def test_failed_items_without_a_broker_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    async def report(_: Settings) -> StatusReport:
        return StatusReport([StatusRow("parse_lines", "t", None, None, None,
                                       "broker not running")])

    missing = ["broker: not configured (SESSIONSTREAM_BROKER_URL) and the embedded one is "
               "not running"]
    monkeypatch.setattr(mcp_tracking, "collect_report", report)
    monkeypatch.setattr(mcp_tracking, "inspect_endpoints",
                        lambda _: (Endpoints(broker_url="", postgres_dsn=""), missing))
    found = answer(await call("get_failed_items"))
    assert found["note"] == "broker not running" and found["dead_letters"] == []
    assert found["retry_queue"]["depth"] is None
    assert "SESSIONSTREAM_BROKER_URL" in found["retry_queue"]["note"]
