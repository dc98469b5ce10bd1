"""``sessionstream mcp`` as an agent meets it: a real MCP client session with the real command,
over stdio (the client spawns it) and over streamable HTTP (with a bearer token), on the test
stack's Postgres and Kafka.

Two sessions are written through the real ``SessionTables`` projection into a fresh database,
and a dead letter with a reason of its own is put in ``sessions.events.v1.dlq``. Over each
transport every tool is called: the known session's messages, tool calls and files come back,
the usage totals equal those of the ``usage`` command, a search finds the known prompt, the
status lists the consumers (the projection at the position the store holds), the failed items
list the dead letter and read the LLM retry queue, and an unknown session id is a tool
error.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from aiokafka import AIOKafkaProducer
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from projections.postgres.session_tables import SessionTables
from schemas.events import (
    AssistantMessage,
    FileTouched,
    SessionContext,
    ToolCalled,
    ToolResulted,
    UsageReported,
    UserPrompted,
)
from streams.codecs import dead_letter
from streams.errors import InvalidEvent
from streams.settings import bootstrap_of
from streams.topics import SESSION_EVENTS
from tests.factories import records, session_event
from tests.integration.pipeline_helpers import CLI, cli_env, log_tail, start_cli, stop_cli
from tests.waiting import eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KNOWN = "mcp-known-session"
OTHER = "mcp-other-session"
PROMPT = "please refactor the frobnicator widget"
TOKEN = "mcp-test-token"
TOOLS = {"list_sessions", "search_sessions", "get_session", "get_session_messages",
         "get_session_tools", "get_session_files", "get_usage", "get_tracking_status",
         "get_failed_items"}


def _events() -> list[Any]:
    widget = "/work/proj/widget.py"
    known = [
        SessionContext(cwd="/work/proj", project="mcpproj", model="claude-sonnet-4-5"),
        UserPrompted(text=PROMPT),
        AssistantMessage(message_key="m1", model="claude-sonnet-4-5", text="Reading it first."),
        ToolCalled(tool_use_id="t1", name="Read", input={"file_path": widget},
                   message_key="m1"),
        ToolResulted(tool_use_id="t1", content="def widget(): ..."),
        FileTouched(path=widget, tool="Read", access="read", tool_use_id="t1"),
        ToolCalled(tool_use_id="t2", name="Edit", input={"file_path": widget},
                   message_key="m1"),
        ToolResulted(tool_use_id="t2", is_error=True, content="old_string not found"),
        FileTouched(path=widget, tool="Edit", access="write", tool_use_id="t2"),
        UsageReported(message_key="m1", model="claude-sonnet-4-5", input_tokens=1200,
                      output_tokens=300, cache_read_tokens=5000),
    ]
    other = [UserPrompted(text="add a changelog entry"),
             UsageReported(message_key="r1", model="gpt-5", input_tokens=800,
                           output_tokens=90)]
    return ([session_event(p, i, session=KNOWN) for i, p in enumerate(known)]
            + [session_event(p, 100 + i, session=OTHER, source="codex")
               for i, p in enumerate(other)])


@pytest.fixture
async def mcp_env(stack: dict[str, str], pg_dsn: str, tmp_path: Path) -> dict[str, str]:
    """The CLI's environment on a database holding the two sessions, and the reason of the
    dead letter put in ``sessions.events.v1.dlq`` under ``MCP_TEST_REASON``."""
    tables = SessionTables(pg_dsn)
    await tables.start()
    try:
        await tables.apply_batch(records(_events()))
    finally:
        await tables.stop()
    # letters only: `status` writes the numbers of a reason as N, to group alike failures
    reason = "mcp test " + "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:8])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_of(stack["kafka"]))
    await producer.start()
    try:
        await producer.send_and_wait(SESSION_EVENTS.dlq, dead_letter(
            "mcp-test", InvalidEvent(reason), SESSION_EVENTS.name, 0, 7, b"{}", b"{}"))
    finally:
        await producer.stop()
    return cli_env(SESSIONSTREAM_BROKER_URL=stack["kafka"], SESSIONSTREAM_POSTGRES_DSN=pg_dsn,
                   SESSIONSTREAM_STATE_DIR=str(tmp_path / "state"),
                   SESSIONSTREAM_METRICS_PORT="0", MCP_TEST_REASON=reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _json(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    text = json.loads(result.content[0].text)  # type: ignore[union-attr]
    assert text == result.structured_content
    return text  # type: ignore[no-any-return]


def _usage_command(env: dict[str, str], by: str) -> list[dict[str, Any]]:
    done = subprocess.run([*CLI, "usage", "--by", by, "--json"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


async def _check_every_tool(session: ClientSession, env: dict[str, str]) -> None:
    await session.initialize()
    assert {t.name for t in (await session.list_tools()).tools} == TOOLS

    listed = _json(await session.call_tool("list_sessions", {}))
    assert listed["total"] == 2 and {s["id"] for s in listed["sessions"]} == {KNOWN, OTHER}
    codex = _json(await session.call_tool("list_sessions", {"source": "codex"}))
    assert [s["id"] for s in codex["sessions"]] == [OTHER] and codex["total"] == 1

    found = _json(await session.call_tool("get_session", {"session_id": KNOWN}))
    assert found["project"] == "mcpproj" and found["prompts"] == 1 and found["tool_calls"] == 2
    assert "llm_summary" in found
    messages = _json(await session.call_tool("get_session_messages", {"session_id": KNOWN}))
    assert [(m["role"], m["text"]) for m in messages["messages"]] == [
        ("user", PROMPT), ("assistant", "Reading it first.")]
    tools = _json(await session.call_tool("get_session_tools", {"session_id": KNOWN}))
    assert [(t["name"], t["outcome"]) for t in tools["tool_calls"]] == [("Read", "ok"),
                                                                      ("Edit", "error")]
    files = _json(await session.call_tool("get_session_files", {"session_id": KNOWN}))
    assert [(f["path"], f["reads"], f["writes"]) for f in files["files"]] == [
        ("/work/proj/widget.py", 1, 1)]

    hits = _json(await session.call_tool("search_sessions", {"query": "frobnicator"}))
    assert [(h["session_id"], h["kind"]) for h in hits["hits"]] == [(KNOWN, "prompt")]

    usage = _json(await session.call_tool("get_usage", {"by": "model"}))
    expected = _usage_command(env, "model")
    assert [r["key"] for r in usage["rows"]] == [r["key"] for r in expected]
    for column in ("input_tokens", "output_tokens", "cache_creation_tokens",
                   "cache_read_tokens"):
        assert usage["totals"][column] == sum(r[column] for r in expected)
    assert usage["totals"]["input_tokens"] == 2000
    assert usage["totals"]["cost_usd"] == pytest.approx(sum(float(r["cost_usd"])
                                                            for r in expected))
    assert usage["totals"]["cost_usd"] > 0

    status = _json(await session.call_tool("get_tracking_status", {}))
    consumers = {c["consumer"]: c for c in status["consumers"]}
    assert {"parse_lines", "filter_events", "summarize", "postgres.session_tables"} <= set(
        consumers)
    assert consumers["postgres.session_tables"]["position"] == len(_events())
    assert status["checks"]["broker"]["ok"] and status["checks"]["postgres.session_tables"]["ok"]

    failed = _json(await session.call_tool("get_failed_items", {}))
    mine = [d for d in failed["dead_letters"]
            if d["consumer"] == "mcp-test" and env["MCP_TEST_REASON"] in d["reason"]]
    assert [(d["topic"], d["reason"], d["count"]) for d in mine] == [
        (SESSION_EVENTS.dlq, f"InvalidEvent: {env['MCP_TEST_REASON']}", 1)]
    queue = failed["retry_queue"]  # its records are unit-tested: the broker's topic is shared
    assert queue["topic"] == "sessions.summaries.retry.v1" and isinstance(queue["depth"], int)

    unknown = await session.call_tool("get_session_tools", {"session_id": "no-such-session"})
    assert unknown.is_error
    assert "unknown session id 'no-such-session'" in unknown.content[0].text  # type: ignore[union-attr]


async def test_every_tool_over_stdio(mcp_env: dict[str, str], tmp_path: Path) -> None:
    server = StdioServerParameters(command=sys.executable, args=[*CLI[1:], "mcp"],
                                   env=mcp_env, cwd=ROOT)
    with (tmp_path / "stderr.log").open("w") as errlog:
        async with stdio_client(server, errlog=errlog) as (read, write), \
                ClientSession(read, write) as session:
            await _check_every_tool(session, mcp_env)


@asynccontextmanager
async def _http_server(env: dict[str, str], log: Path) -> AsyncIterator[str]:
    port = _free_port()
    proc = start_cli(env, "mcp", "--transport", "http", "--port", str(port), log=log)
    url = f"http://127.0.0.1:{port}/mcp"

    async def listening() -> bool:
        assert proc.poll() is None, log_tail(log)
        async with httpx.AsyncClient() as client:
            return (await client.post(url, json={})).status_code == 401

    try:
        await eventually(listening, "the MCP server to answer", timeout=60, interval=0.3,
                         ignoring=(httpx.TransportError,), detail=lambda: log_tail(log))
        yield url
    finally:
        stop_cli(proc)


async def test_every_tool_over_streamable_http_with_a_token(mcp_env: dict[str, str],
                                                            tmp_path: Path) -> None:
    env = {**mcp_env, "SESSIONSTREAM_API_TOKEN": TOKEN}
    async with _http_server(env, tmp_path / "mcp.log") as url:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx2.AsyncClient(headers=headers) as http, \
                streamable_http_client(url, http_client=http) as (read, write), \
                ClientSession(read, write) as session:
            await _check_every_tool(session, mcp_env)
