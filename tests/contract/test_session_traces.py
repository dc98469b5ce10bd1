"""Session traces against real stores: rows written by the session-tables projection in
Postgres, exported over OTLP/HTTP to a real Jaeger, read back through Jaeger's query API by the
trace id derived from the session id; a reset and re-export, and a reopened session, keep one
trace and the same span ids."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import httpx
import pytest

from projections.otel.session_spans import trace_id_hex
from projections.otel.session_traces import SessionTraces, span_exporter
from projections.postgres.session_tables import SessionTables
from schemas.events import (
    AssistantMessage,
    EventPayload,
    SessionContext,
    SessionFileRemoved,
    ToolCalled,
    ToolResulted,
    UsageReported,
    UserPrompted,
)
from streams.settings import Settings
from streams.stack.jaeger import JaegerServer
from tests.factories import records, session_event

pytestmark = pytest.mark.contract

OPUS = "claude-opus-4-5-20251101"
PATH = "/home/u/.claude/projects/app/s.jsonl"


def _first_part(session: str) -> list[Any]:
    events: list[tuple[EventPayload, float]] = [
        (SessionContext(cwd="/src/app", slug="brave-otter"), 0),
        (UserPrompted(text="fix the build", line_uuid="u1"), 1),
        (AssistantMessage(message_key="m1:r1", model=OPUS, text="looking"), 4),
        (UsageReported(message_key="m1:r1", model=OPUS, input_tokens=10, output_tokens=20,
                       cache_read_tokens=1000, cache_creation_5m_tokens=300), 4),
        (ToolCalled(tool_use_id="t1", name="Bash", input={"command": "make"}), 5),
        (ToolResulted(tool_use_id="t1", content="ok"), 7),
        (UsageReported(message_key="m2:r2", model=OPUS, input_tokens=5, output_tokens=40), 9),
        (UserPrompted(text="and the tests", line_uuid="u2"), 20),
        (UsageReported(message_key="m3:r3", model=OPUS, input_tokens=1, output_tokens=2), 25),
        (SessionFileRemoved(path=PATH), 30),
    ]
    return [session_event(p, s, session=session) for p, s in events]


def _second_part(session: str) -> list[Any]:
    events: list[tuple[EventPayload, float]] = [
        (UserPrompted(text="one more thing", line_uuid="u3"), 100),
        (UsageReported(message_key="m4:r4", model=OPUS, input_tokens=2, output_tokens=3), 104),
        (SessionFileRemoved(path=PATH), 110),
    ]
    return [session_event(p, s, session=session) for p, s in events]


async def _project(dsn: str, events: list[Any], first_offset: int) -> None:
    tables = SessionTables(dsn)
    await tables.start()
    try:
        await tables.apply_batch(records(events, first_offset=first_offset))
    finally:
        await tables.stop()


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


async def _trace(query: str, trace_id: str, spans: int, timeout: float = 30) -> list[Any]:
    """Jaeger's answer for ``trace_id`` (its ``data``), once it holds ``spans`` distinct ids."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=query) as client:
        while time.monotonic() < deadline:
            response = await client.get(f"/api/traces/{trace_id}")
            body = response.json()
            data = body.get("data") or []
            if response.status_code == 200 and data and \
                    len({s["spanID"] for t in data for s in t["spans"]}) >= spans:
                return list(data)
            await asyncio.sleep(0.2)
    raise AssertionError(f"Jaeger has no trace {trace_id} with {spans} spans: {body}")


@pytest.fixture
def jaeger_query(stack: dict[str, str], test_settings: Settings) -> str:
    url = JaegerServer(test_settings).query_url()
    assert url is not None, "the test stack's Jaeger is not running"
    return url


async def test_an_ended_session_is_one_trace_in_jaeger_and_a_reexport_adds_no_span(
        pg_dsn: str, stack: dict[str, str], jaeger_query: str) -> None:
    session = f"traces-{time.time_ns()}"  # Jaeger's memory outlives the test database
    trace_id = trace_id_hex(session)
    await _project(pg_dsn, _first_part(session), 0)
    traces = SessionTraces(span_exporter(stack["jaeger"]))
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await traces.export_ended(conn) == 7  # root, 2 turns, 3 responses, 1 tool
        assert await traces.export_ended(conn) == 0  # exported through its last activity

        [trace] = await _trace(jaeger_query, trace_id, 7)
        assert trace["traceID"] == trace_id
        spans = {s["operationName"]: s for s in trace["spans"]}
        by_id = {s["spanID"]: s for s in trace["spans"]}
        assert sorted(s["operationName"] for s in trace["spans"]) == sorted(
            ["session claude-code", "invoke_agent claude-code", "invoke_agent claude-code",
             f"chat {OPUS}", f"chat {OPUS}", f"chat {OPUS}", "execute_tool Bash"])
        for span in trace["spans"]:
            assert _tags(span)["gen_ai.conversation.id"] == session
        first = next(s for s in trace["spans"]
                     if _tags(s).get("sessionstream.message_key") == "m1:r1")
        assert {k: v for k, v in _tags(first).items() if k.startswith("gen_ai.usage")} == {
            "gen_ai.usage.input_tokens": 1310, "gen_ai.usage.output_tokens": 20,
            "gen_ai.usage.cache_read.input_tokens": 1000,
            "gen_ai.usage.cache_creation.input_tokens": 300}
        assert _tags(first)["gen_ai.operation.name"] == "chat"
        assert _tags(first)["gen_ai.provider.name"] == "anthropic"
        turn = by_id[first["references"][0]["spanID"]]
        assert _tags(turn)["sessionstream.message_key"] == "user:u1"
        assert _tags(turn)["gen_ai.usage.output_tokens"] == 60
        root = spans["session claude-code"]
        assert by_id[turn["references"][0]["spanID"]] is root
        assert _tags(root)["gen_ai.usage.output_tokens"] == 62
        assert _tags(spans["execute_tool Bash"])["gen_ai.tool.name"] == "Bash"
        ids = set(by_id)

        # A replay: the export table is reset; everything is sent again under the same ids.
        await conn.execute("DELETE FROM trace_exports")
        assert await traces.export_ended(conn) == 7
        await asyncio.sleep(1)  # let Jaeger store what it accepted
        again = await _trace(jaeger_query, trace_id, 7)
        assert len(again) == 1
        assert {s["spanID"] for s in again[0]["spans"]} == ids

        # The session goes on and ends again: only its new turn is sent, into the same trace.
        await _project(pg_dsn, _second_part(session), 100)
        assert await traces.export_ended(conn) == 3  # the root again, a turn, a response
        [grown] = await _trace(jaeger_query, trace_id, 9)
        new = {s["spanID"] for s in grown["spans"]} - ids
        assert sorted(by_id_name(grown, new)) == [f"chat {OPUS}", "invoke_agent claude-code"]
        row = await conn.fetchrow("SELECT * FROM trace_exports")
        assert row["session_id"] == session and row["trace_id"] == trace_id
    finally:
        await conn.close()
        traces.exporter.shutdown()


def by_id_name(trace: dict[str, Any], ids: set[str]) -> list[str]:
    return [s["operationName"] for s in trace["spans"] if s["spanID"] in ids]
