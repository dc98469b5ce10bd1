"""Every file source through the whole pipeline on real Kafka 4.1, Postgres and Neo4j.

One ``sessionstream backfill`` with a root per source: the real Codex rollouts of the shared
fixtures, and Gemini CLI, Antigravity and session-skill folders that the test writes itself.
Then per source: the sessions in Postgres, their tool calls and token totals (Codex: equal to
the rollout's final ``total_token_usage``, not the sum of the re-emitted reports), and the same
sessions, tool calls and tokens in the graph.
"""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import neo4j
import pytest

from tests.fixtures_path import codex_fixtures
from tests.integration.pipeline_helpers import (
    assert_running,
    backfill_cli,
    cli_env,
    log_tail,
    start_cli,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _final_codex_totals(path: Path) -> dict[str, int]:
    """The oracle: the last ``token_count`` with info in the rollout, read directly."""
    last: dict[str, int] = {}
    for raw in path.read_text().splitlines():
        line = json.loads(raw) if raw.strip() else {}
        payload = line.get("payload") or {}
        if (line.get("type") == "event_msg" and payload.get("type") == "token_count"
                and payload.get("info")):
            last = payload["info"]["total_token_usage"]
    return last


def _codex_tool_calls(path: Path) -> int:
    ids = set()
    for raw in path.read_text().splitlines():
        payload = (json.loads(raw) if raw.strip() else {}).get("payload") or {}
        if payload.get("type") in ("function_call", "custom_tool_call", "local_shell_call"):
            ids.add(payload["call_id"])
        elif payload.get("type") == "web_search_call":
            ids.add(object())
    return len(ids)


@pytest.fixture
def every_source_env(stack: dict[str, str], pg_dsn: str, tmp_path: Path) -> dict[str, str]:
    return cli_env(SESSIONSTREAM_BROKER_URL=stack["kafka"], SESSIONSTREAM_POSTGRES_DSN=pg_dsn,
                   SESSIONSTREAM_NEO4J_URI=stack["neo4j"],
                   SESSIONSTREAM_STATE_DIR=str(tmp_path / "state"),
                   SESSIONSTREAM_METRICS_PORT="0")


# Ids in the hand-written samples; each run writes them under fresh ids, so the records earlier
# runs left in a long-lived Kafka (which a backfill re-reads) cannot meet this run's sessions.
SAMPLE_IDS = [
    "7f3c2a10-5b6d-4e8f-9a01-23456789abcd", "2b9e4d71-0c3a-4f5e-8d6b-7a8c9e0f1a2b",
    "c41d9e22-8a7b-4c6d-9e0f-112233445566",  # Gemini: main, legacy, sub-agent
    "3f2a9c1e-5b7d-4e8f-9a01-23456789abcd", "0b9e8d7c-6a5f-4e3d-9c2b-1a0f9e8d7c6b",
    "7c1d0e2f-aaaa-4bbb-8ccc-0123456789ef",  # Antigravity conversations
]
PROJECTS = ["shop", "ledger", "infra"]  # session-skill projects


def _write_samples(home: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Write the hand-written samples of each source into fresh roots, as the agents would
    have, under fresh ids; returns the roots and ``{sample id: this run's id}``."""
    ids = {old: str(uuid.uuid4()) for old in SAMPLE_IDS}
    ids.update({name: f"{name}-{uuid.uuid4().hex[:8]}" for name in PROJECTS})
    roots = {"gemini-cli": home / "gemini" / "tmp", "antigravity": home / "antigravity",
             "session-skill": home / "projects"}
    for kind, sample in (("gemini-cli", "gemini/tmp"), ("antigravity", "antigravity"),
                         ("session-skill", "session_skill")):
        for path in sorted((SAMPLES / sample).rglob("*")):
            if not path.is_file():
                continue
            relative = str(path.relative_to(SAMPLES / sample))
            data = path.read_bytes()  # the .pb / .db dummies are not text
            for old, new in ids.items():
                relative = relative.replace(old, new)
                if old not in PROJECTS:
                    data = data.replace(old.encode(), new.encode())
            target = roots[kind] / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return roots, ids


async def test_every_source_lands_in_postgres_and_the_graph(
    every_source_env: dict[str, str], pg_dsn: str, neo4j_driver: neo4j.AsyncDriver,
    tmp_path: Path,
) -> None:
    codex = codex_fixtures()
    rollouts = sorted(codex.glob("rollout-*.jsonl"))
    roots, ids = _write_samples(tmp_path / "homes")
    result = backfill_cli(every_source_env, Path(f"codex={codex}"),
                          *(Path(f"{kind}={root}") for kind, root in roots.items()))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = {r["id"]: r for r in await conn.fetch("SELECT * FROM sessions")}
    finally:
        await conn.close()

    # Codex: one session per top-level thread; tokens equal the final cumulative totals.
    for path in rollouts:
        thread = path.stem[-36:]
        final = _final_codex_totals(path)
        row = rows[thread]
        assert row["source"] == "codex"
        assert (row["input_tokens"] + row["cache_read_tokens"], row["cache_read_tokens"],
                row["output_tokens"], row["total_tokens"]) == (
            final["input_tokens"], final["cached_input_tokens"], final["output_tokens"],
            final["total_tokens"]), path.name
        assert row["tool_calls"] == _codex_tool_calls(path), path.name
        # billed under the model of the turn_context lines (gpt-5.3-codex), not as unknown
        assert row["unpriced_models"] == [] and row["cost_usd"] > 0, path.name
    graph, _, _ = await neo4j_driver.execute_query(
        "MATCH (s:Session {source: 'codex'}) "
        "OPTIONAL MATCH (s)-[m:USED_MODEL]->(:Model {name: 'gpt-5.3-codex'}) "
        "WITH s, sum(m.tokens) AS tokens "
        "OPTIONAL MATCH (s)-[:HAS_TOOL_CALL]->(t:ToolCall) "
        "RETURN s.id AS id, tokens, count(t) AS tools")
    in_graph = {r["id"]: (r["tokens"], r["tools"]) for r in graph}
    for path in rollouts:
        thread = path.stem[-36:]
        assert in_graph[thread] == (rows[thread]["total_tokens"], rows[thread]["tool_calls"])

    # Gemini CLI: last write per message id; tokens.input includes cached (hand-computed in
    # tests/samples/gemini/README.md); a sub-agent recording counts inside its session.
    main = rows[ids["7f3c2a10-5b6d-4e8f-9a01-23456789abcd"]]
    legacy = rows[ids["2b9e4d71-0c3a-4f5e-8d6b-7a8c9e0f1a2b"]]
    assert (main["source"], main["total_tokens"], main["subagents"]) == ("gemini-cli", 47850, 1)
    # the sub-agent recording's task prompt is counted apart: no person typed it
    assert (main["tool_calls"], main["tool_errors"], main["prompts"],
            main["subagent_prompts"]) == (4, 2, 1, 1)
    assert main["title"] == "Fix the divide-by-zero test in calc.py"
    assert (legacy["total_tokens"], legacy["tool_calls"], legacy["prompts"]) == (20260, 1, 2)
    assert main["unpriced_models"] == legacy["unpriced_models"] == []

    # Antigravity: a conversation with its artifacts, checklist progress and transcript.
    conv = rows[ids["3f2a9c1e-5b7d-4e8f-9a01-23456789abcd"]]
    assert (conv["source"], conv["artifacts"], conv["progress_done"], conv["progress_total"]) == (
        "antigravity", 3, 3, 7)
    assert conv["title"] == "Add CSV export to the report page"
    assert (conv["prompts"], conv["tool_calls"], conv["tool_errors"]) == (1, 3, 1)
    assert (conv["working_dir"], conv["total_tokens"]) == ("/home/dev/shop", 0)  # no tokens on disk

    # Session-skill folders: one row per folder, from state, spec and plan files.
    shop = rows[f"{ids['shop']}/checkout-flow"]
    assert {k: shop[k] for k in ("source", "slug", "title", "status", "session_type",
                                 "project", "progress_done", "progress_total")} == {
        "source": "session-skill", "slug": "checkout-flow", "title": "Checkout flow rewrite",
        "status": "executing", "session_type": "feature", "project": ids["shop"],
        "progress_done": 2, "progress_total": 4}
    project_dir = roots["session-skill"] / ids["shop"]
    assert shop["session_dir"] == str(project_dir / "agents" / "sessions" / "checkout-flow")
    assert shop["working_dir"] == str(project_dir)
    ledger = rows[f"{ids['ledger']}/audit-2026-07"]
    assert (ledger["status"], ledger["progress_done"], ledger["progress_total"]) == (
        "reviewing", 2, 6)
    assert f"{ids['infra']}/changes--ci--proposal" in rows
    assert not any("vendored" in sid for sid in rows)  # node_modules is not walked

    # The graph holds the same sessions, tokens and tool calls (sub-agents as their own nodes).
    graph, _, _ = await neo4j_driver.execute_query(
        "MATCH (s:Session) WHERE s.source <> 'codex' "
        "OPTIONAL MATCH (s)-[m:USED_MODEL]->() WITH s, sum(m.tokens) AS tokens "
        "OPTIONAL MATCH (s)-[:HAS_TOOL_CALL]->(t:ToolCall) "
        "RETURN s.id AS id, tokens, count(t) AS tools")
    totals: dict[str, list[int]] = {}
    for r in graph:
        sums = totals.setdefault(r["id"].split(":")[0], [0, 0])
        sums[0] += r["tokens"]
        sums[1] += r["tools"]
    mine = {sid for sid in rows if any(new in sid for new in ids.values())}
    assert len(mine) >= 8
    for sid in mine:
        row = rows[sid]
        assert totals[sid] == [row["total_tokens"], row["tool_calls"]], sid


async def _session_row(dsn: str, session: str, ready: Callable[[asyncpg.Record], bool],
                       process: subprocess.Popen[bytes], log: Path,
                       timeout: float = 120) -> asyncpg.Record:
    """Poll Postgres until ``session``'s row satisfies ``ready``; fail with the worker log."""
    seen: asyncpg.Record | None = None

    async def row_ready() -> asyncpg.Record | None:
        nonlocal seen
        assert_running(process, log)
        conn = await asyncpg.connect(dsn)
        try:
            seen = await conn.fetchrow("SELECT * FROM sessions WHERE id = $1", session)
        except asyncpg.UndefinedTableError:
            seen = None
        finally:
            await conn.close()
        return seen if seen is not None and ready(seen) else None

    return await eventually(row_ready, f"the row of {session} as expected", timeout=timeout,
                            interval=1, detail=lambda: f"row: {seen}\n{log_tail(log)}")


async def test_a_session_skill_folder_syncs_live(
    pipeline_env: dict[str, str], pg_dsn: str, tmp_path: Path
) -> None:
    """``run`` picks up a new folder session and every later change of its state file."""
    project = tmp_path / "projects" / f"app-{uuid.uuid4().hex[:8]}"
    folder = project / "agents" / "sessions" / "live-sync"
    folder.mkdir(parents=True)
    log = tmp_path / "run.log"
    process = start_cli(pipeline_env, "run", "--source", f"session-skill={project.parent}",
                        log=log)
    try:
        state = folder / "state.json"
        state.write_text(json.dumps({"slug": "live-sync", "title": "Live sync",
                                     "status": "active", "updated_at": "2026-11-22T10:00:00Z"}))
        session = f"{project.name}/live-sync"
        row = await _session_row(pg_dsn, session, lambda r: r["status"] == "active", process, log)
        assert (row["title"], row["slug"], row["session_dir"]) == (
            "Live sync", "live-sync", str(folder))
        state.write_text(json.dumps({"slug": "live-sync", "title": "Live sync",
                                     "status": "completed",
                                     "updated_at": "2026-11-22T11:00:00Z"}))
        (folder / "plan.json").write_text(json.dumps(
            {"tasks": [{"title": "a", "status": "done"}, {"title": "b", "status": "todo"}]}))
        row = await _session_row(pg_dsn, session, lambda r: (
            r["status"], r["progress_done"], r["progress_total"]) == ("completed", 1, 2),
            process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
