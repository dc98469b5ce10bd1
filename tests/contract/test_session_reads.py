"""The read queries, the search, the read API and ``sessionstream search`` on the real Postgres,
fed through the real ``SessionTables`` projection: three sessions of two sources and projects,
plus a resumed pair (B copies A's first two turns) whose copied rows are flagged, never
counted, and never found by a search (the origin holds them)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from app.read_api import read_api
from projections.postgres import session_reads as reads
from projections.postgres.session_search import search
from schemas.events import (
    AssistantMessage,
    FileTouched,
    SessionContext,
    SessionTitled,
    ToolCalled,
    ToolResulted,
    UsageReported,
    UserPrompted,
)
from streams.producers.http_api import create_api
from streams.producers.idempotency import MemoryKeys
from streams.producers.publish_delivery import Publisher
from tests.conftest import ROOT
from tests.contract.test_session_tables_lineage import FILES, project
from tests.factories import at, session_event
from tests.unit.test_publishing import FakeProducer

pytestmark = pytest.mark.contract

MODEL = "claude-sonnet-4-5-20250929"
SKILL = "shop/checkout-flow"  # session-skill ids hold a slash


def _alpha() -> list:
    def ev(payload: Any, seconds: float) -> Any:
        return session_event(payload, seconds, session="alpha", source="claude-code")
    return [
        ev(SessionContext(cwd="/home/dev/shop", project="shop", line_uuid="c1"), 0),
        ev(SessionTitled(title="Flaky checkout"), 1),
        ev(UserPrompted(text="The checkout test is flaky: make the checkout test reliable",
                        line_uuid="u1"), 2),
        ev(AssistantMessage(message_key="m1", model=MODEL, line_uuid="a1",
                            text="The payment mock times out; I will raise its timeout."), 3),
        ev(AssistantMessage(message_key="m1", model=MODEL, line_uuid="a2",
                            block_type="thinking", text="secret musings about zebras"), 3),
        ev(ToolCalled(tool_use_id="t1", name="Bash", line_uuid="a3",
                      input={"command": "pytest tests/test_checkout.py"}), 4),
        ev(ToolResulted(tool_use_id="t1", is_error=True, line_uuid="r1",
                        content="1 failed: GatewayTimeout in payment gateway"), 5),
        ev(ToolCalled(tool_use_id="t2", name="Edit", line_uuid="a4",
                      input={"file_path": "/home/dev/shop/pay.py"}), 6),
        ev(FileTouched(path="/home/dev/shop/pay.py", tool="Edit", access="write",
                       tool_use_id="t2"), 6),
        ev(FileTouched(path="/home/dev/shop/pay.py", tool="Read", access="read",
                       tool_use_id="t0"), 3),
        ev(UsageReported(message_key="m1", model=MODEL, input_tokens=100, output_tokens=50,
                         line_uuid="a1"), 3),
    ]


def _beta() -> list:
    def ev(payload: Any, seconds: float) -> Any:
        return session_event(payload, seconds, session="beta", source="codex")
    return [
        ev(SessionContext(cwd="/home/dev/blog", project="blog", line_uuid="c1"), 100),
        ev(UserPrompted(text="Write a migration for the comments schema", line_uuid="u1"), 101),
        ev(AssistantMessage(message_key="m1", line_uuid="a1",
                            text="Done; the checkout of the branch had one test left."), 102),
        ev(UsageReported(message_key="m1", model="gpt-5-codex", input_tokens=10,
                         output_tokens=5, line_uuid="a1"), 102),
    ]


def _skill() -> list:
    return [session_event(UserPrompted(text="Plan the checkout flow", line_uuid="u1"), 200,
                          session=SKILL, source="session-skill")]


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    await project(pg_dsn, [_alpha(), _beta(), _skill(), FILES["A"], FILES["B"]])
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def test_sessions_are_listed_newest_first_filtered_and_counted(db: asyncpg.Pool) -> None:
    listed = await reads.list_sessions(db)
    assert [s["id"] for s in listed][:3] == [SKILL, "beta", "alpha"]
    assert await reads.count_sessions(db) == len(listed) == 5
    alpha = next(s for s in listed if s["id"] == "alpha")
    assert (alpha["source"], alpha["project"], alpha["title"], alpha["prompts"],
            alpha["tool_calls"], alpha["files_touched"], alpha["total_tokens"]) == (
        "claude-code", "shop", "Flaky checkout", 1, 2, 1, 150)
    assert isinstance(alpha["cost_usd"], float) and alpha["cost_usd"] > 0
    assert [s["id"] for s in await reads.list_sessions(db, source="codex")] == ["beta"]
    assert [s["id"] for s in await reads.list_sessions(db, project="shop")] == ["alpha"]
    assert await reads.count_sessions(db, since=at(100)) == 2
    assert [s["id"] for s in await reads.list_sessions(db, limit=2, offset=1)] == [
        "beta", "alpha"]
    assert await reads.list_sessions(db, status="closed") == []


async def test_one_session_reads_as_its_row_with_summaries_when_they_exist(
        db: asyncpg.Pool) -> None:
    found = await reads.get_session(db, "alpha")
    assert found is not None and found["id"] == "alpha"
    assert found["summary"] is None and found["llm_summary"] is None  # no such table yet
    assert await reads.get_session(db, "nope") is None
    await db.execute("CREATE TABLE session_summaries (session_id text PRIMARY KEY, "
                     "summary jsonb, llm_summary text, llm_model text, "
                     "llm_summarized_at timestamptz)")
    await db.execute("INSERT INTO session_summaries VALUES ('alpha', '{\"prompts\": 1}', "
                     "'Fixed a flaky test', 'm', now())")
    found = await reads.get_session(db, "alpha")
    assert found is not None and found["llm_summary"] == "Fixed a flaky test"
    assert found["summary"] == {"prompts": 1} and isinstance(found["state"], dict)


async def test_messages_tools_and_files_of_a_session(db: asyncpg.Pool) -> None:
    messages = await reads.session_messages(db, "alpha")
    assert [(m["role"], m["text"]) for m in messages] == [
        ("user", "The checkout test is flaky: make the checkout test reliable"),
        ("assistant", "The payment mock times out; I will raise its timeout.")]
    assert not any(m["copied"] for m in messages)
    assert [m["role"] for m in await reads.session_messages(db, "alpha", offset=1)] == [
        "assistant"]
    tools = await reads.session_tools(db, "alpha")
    assert [(t["name"], t["outcome"]) for t in tools] == [("Bash", "error"), ("Edit", "pending")]
    assert "pytest tests/test_checkout.py" in tools[0]["input"]
    assert tools[0]["result_excerpt"].startswith("1 failed")
    files = await reads.session_files(db, "alpha")
    assert [(f["path"], f["reads"], f["writes"], f["first_at"], f["last_at"])
            for f in files] == [("/home/dev/shop/pay.py", 1, 1, at(3), at(6))]


async def test_copied_rows_are_flagged_not_hidden(db: asyncpg.Pool) -> None:
    messages = await reads.session_messages(db, "B")
    prompts = [(m["text"], m["copied"]) for m in messages if m["role"] == "user"]
    assert prompts == [("prompt 1", True), ("prompt 2", True), ("prompt 3", False)]
    assert [t["copied"] for t in await reads.session_tools(db, "B")] == [True, True, False]


async def test_usage_by_each_grouping(db: asyncpg.Pool) -> None:
    by_source = {r["key"]: r for r in await reads.usage(db, by="source")}
    assert by_source["codex"]["total_tokens"] == 15
    assert by_source["claude-code"]["total_tokens"] == 150 + 320 + 310  # alpha, A, B once
    assert {r["key"] for r in await reads.usage(db, by="model")} == {MODEL, "gpt-5-codex"}
    assert [r["key"] for r in await reads.usage(db, by="day")] == ["2026-03-01", "2026-03-02"]
    assert [r["key"] for r in await reads.usage(db, by="day", since=at(0))] == ["2026-03-02"]
    with pytest.raises(ValueError, match="by must be one of"):
        await reads.usage(db, by="week")


async def test_search_ranks_snippets_and_filters(db: asyncpg.Pool) -> None:
    hits = await search(db, "checkout test")
    assert [(h["session_id"], h["kind"]) for h in hits][0] == ("alpha", "prompt")
    assert {(h["session_id"], h["kind"]) for h in hits} == {
        ("alpha", "prompt"), ("alpha", "tool_call"), ("beta", "reply")}  # a path's words too
    assert hits[0]["rank"] > hits[1]["rank"] >= hits[2]["rank"] > 0  # both words, twice
    assert hits[0]["title"] == "Flaky checkout" and hits[0]["source"] == "claude-code"
    assert "**checkout** **test**" in hits[0]["snippet"]
    assert [h["session_id"] for h in await search(db, "checkout test", source="codex")] == [
        "beta"]
    assert [h["session_id"] for h in await search(db, "checkout", project="shop")] == [
        "alpha", "alpha"]
    assert [h["session_id"] for h in await search(db, "checkout", since=at(150))] == [SKILL]
    assert len(await search(db, "checkout", limit=1)) == 1


async def test_search_reads_results_prompts_and_the_web_syntax(db: asyncpg.Pool) -> None:
    result = await search(db, "gatewaytimeout")
    assert [(h["kind"], h["session_id"]) for h in result] == [("tool_result", "alpha")]
    assert "**GatewayTimeout**" in result[0]["snippet"]
    assert await search(db, "zebras") == []  # thinking is not a reply's text
    assert [(h["session_id"], h["kind"]) for h in await search(db, "payment -gateway")] == [
        ("alpha", "reply")]
    assert [h["session_id"] for h in await search(db, '"comments schema"')] == ["beta"]
    assert await search(db, "the") == [] and await search(db, "") == []
    found = sorted(h["session_id"] for h in await search(db, "prompt"))
    assert found == ["A", "A", "B"]  # B's copies of A's prompts are A's


async def test_search_uses_the_indexes(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        await conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN SELECT 1 FROM messages m WHERE session_search_vector("
            "session_message_text(m.role, m.content)) @@ "
            "websearch_to_tsquery('english', 'checkout')"))
    assert "messages_search" in plan


@pytest.fixture
async def api(db: asyncpg.Pool, pg_dsn: str) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_api(Publisher(FakeProducer(), MemoryKeys()), None,
                     extend=read_api(pg_dsn, None))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


async def get(client: TestClient[Any, Any], path: str, **headers: str) -> tuple[int, Any]:
    response = await client.get(path, headers=headers)
    return response.status, await response.json()


async def test_the_api_pages_through_filtered_sessions(api: TestClient[Any, Any]) -> None:
    status, page = await get(api, "/api/v1/sessions?limit=2")
    assert status == 200 and page["total"] == 5 and len(page["sessions"]) == 2
    assert page["sessions"][0]["id"] == SKILL and page["sessions"][0]["started_at"].startswith(
        "2026-03-02T09:03:20")
    seen = [s["id"] for s in page["sessions"]]
    while page["next"]:
        status, page = await get(api, page["next"])
        seen += [s["id"] for s in page["sessions"]]
    assert len(seen) == len(set(seen)) == 5 and page["offset"] == 4
    status, page = await get(api, "/api/v1/sessions?source=codex&since=2026-03-02T09:01:00Z")
    assert [s["id"] for s in page["sessions"]] == ["beta"] and page["next"] is None
    status, page = await get(api, "/api/v1/sessions?project=shop&status=active")
    assert [s["id"] for s in page["sessions"]] == ["alpha"] and page["total"] == 1


async def test_the_api_reads_one_session(api: TestClient[Any, Any]) -> None:
    status, session = await get(api, "/api/v1/sessions/alpha")
    assert status == 200 and session["title"] == "Flaky checkout"
    assert session["summary"] is None and session["cost_usd"] > 0
    for path in (f"/api/v1/sessions/{SKILL}", "/api/v1/sessions/shop%2Fcheckout-flow"):
        status, session = await get(api, path)
        assert (status, session["id"]) == (200, SKILL)
    status, messages = await get(api, f"/api/v1/sessions/{SKILL}/messages")
    assert [m["text"] for m in messages["messages"]] == ["Plan the checkout flow"]
    status, page = await get(api, "/api/v1/sessions/B/messages?limit=2")
    assert [m["copied"] for m in page["messages"]] == [True, True]
    assert page["next"] == "/api/v1/sessions/B/messages?limit=2&offset=2"
    status, files = await get(api, "/api/v1/sessions/alpha/files")
    assert [(f["path"], f["writes"]) for f in files["files"]] == [("/home/dev/shop/pay.py", 1)]
    status, tools = await get(api, "/api/v1/sessions/alpha/tools")
    assert [t["outcome"] for t in tools["tool_calls"]] == ["error", "pending"]


@pytest.mark.parametrize("tail", ["", "/messages", "/tools", "/files"])
async def test_an_unknown_session_is_404(api: TestClient[Any, Any], tail: str) -> None:
    status, body = await get(api, f"/api/v1/sessions/nope{tail}")
    assert status == 404 and body == {"error": "no session 'nope'", "problems": []}


async def test_the_api_reads_usage_and_search(api: TestClient[Any, Any]) -> None:
    status, usage = await get(api, "/api/v1/usage?by=source")
    assert status == 200 and {r["key"]: r["total_tokens"] for r in usage["rows"]} == {
        "claude-code": 780, "codex": 15}
    status, usage = await get(api, "/api/v1/usage?by=day&since=2026-03-02")
    assert [r["key"] for r in usage["rows"]] == ["2026-03-02"]
    status, found = await get(api, "/api/v1/search?q=gatewaytimeout")
    assert [h["kind"] for h in found["hits"]] == ["tool_result"]


async def test_the_api_refuses_web_pages_and_wrong_tokens(pg_dsn: str,
                                                          api: TestClient[Any, Any]) -> None:
    status, _ = await get(api, "/api/v1/sessions", Origin="https://example.com")
    assert status == 403
    app = create_api(Publisher(FakeProducer(), MemoryKeys()), "tok",
                     extend=read_api(pg_dsn, "tok"))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        assert (await get(client, "/api/v1/sessions/alpha"))[0] == 401
        status, session = await get(client, "/api/v1/sessions/alpha",
                                    Authorization="Bearer tok", Origin="https://example.com")
        assert status == 200 and session["id"] == "alpha"
    finally:
        await client.close()


async def cli(dsn: str, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONSTREAM_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "search", *args,
        env={**env, "SESSIONSTREAM_POSTGRES_DSN": dsn}, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_search_command_prints_hits_and_exits_by_what_it_found(
        db: asyncpg.Pool, pg_dsn: str) -> None:
    code, out, _ = await cli(pg_dsn, "checkout test")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 6  # a heading line and a snippet line per hit
    rank, session, kind, day, time = lines[0].split()[:5]
    assert (session, kind, day, time) == ("alpha", "prompt", "2026-03-02", "09:00")
    assert float(rank) > 0 and lines[0].endswith("Flaky checkout")
    assert "**checkout** **test**" in lines[1]
    code, out, _ = await cli(pg_dsn, "checkout", "--source", "codex", "--json")
    hits = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(h["session_id"], h["kind"]) for h in hits] == [("beta", "reply")]
    code, out, err = await cli(pg_dsn, "xylophone")
    assert (code, out) == (1, "") and "no hits" in err
    code, _, err = await cli(pg_dsn, "checkout", "--since", "last week")
    assert code == 2 and "--since" in err
