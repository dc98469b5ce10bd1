"""Responses that several session files hold, through the whole pipeline on real Kafka 4.1,
Postgres and Neo4j.

The hand-written samples of tests/samples/claude_cross (a chained resume, a background
hand-off, a fork whose origin went on, sub-agents linked only by their folder) and
tests/samples/codex_cross (a fork, sub-agents replaying or not, a resumed thread in two
segments) must give the hand-computed totals of tests/claude_cross_expected.py and
tests/codex_cross_expected.py: per session in Postgres, in the graph and in what the metrics
read; once by a backfill, once by ``run`` with the files appearing copies first.
"""

from __future__ import annotations

import functools
import json
import subprocess
import uuid
from pathlib import Path

import asyncpg
import neo4j
import pytest

from projections.otel.metrics import USAGE_SQL
from tests import claude_cross_expected as claude
from tests import codex_cross_expected as codex
from tests.integration.pipeline_helpers import (
    assert_running,
    backfill_cli,
    cli_env,
    log_tail,
    start_cli,
    stop_cli,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration

CODEX_ROOT = Path(__file__).resolve().parents[1] / "samples" / "codex_cross"
CODEX_IDS = [codex.P, codex.S1, codex.S2, codex.F, codex.R, codex.SEG]
CLAUDE_COLUMNS = ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens",
                  "total_tokens", "prompts", "subagent_prompts", "tool_calls", "subagents",
                  "resumed_from")


class Run:
    """The samples written under fresh ids (records of earlier runs stay in a long-lived Kafka
    and are re-read into this run's fresh database; they must not meet this run's sessions)."""

    def __init__(self, home: Path) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.ids = {old: str(uuid.uuid4()) for old in (*claude.SESSIONS, *CODEX_IDS)}
        self.claude_root = home / "claude" / "projects"
        self.codex_root = home / "codex" / "sessions"

    def rename(self, text: str) -> str:
        for old, new in self.ids.items():
            text = text.replace(old, new)
        # API response ids name one response across every file: fresh per run as well
        return text.replace('"msg_', f'"msg_{self.tag}').replace('"req_', f'"req_{self.tag}')

    def files(self) -> list[tuple[Path, str]]:
        """(target, text) of every sample file, Claude's in the order of FILES."""
        out = []
        for path in sorted(claude.PROJECT_DIR.rglob("*.jsonl")):
            relative = self.rename(str(path.relative_to(claude.ROOT / "projects")))
            out.append((self.claude_root / relative, self.rename(path.read_text())))
        for path in sorted((CODEX_ROOT / "sessions").rglob("*.jsonl")):
            relative = self.rename(str(path.relative_to(CODEX_ROOT / "sessions")))
            out.append((self.codex_root / relative, self.rename(path.read_text())))
        return out

    def write(self, files: list[tuple[Path, str]]) -> None:
        for target, text in files:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

    def sources(self) -> list[str]:
        return [f"claude-code={self.claude_root}", f"codex={self.codex_root}"]

    def expected(self) -> dict[str, tuple]:
        rows: dict[str, tuple] = {}
        for session, values in claude.EXPECTED.items():
            origin = values["resumed_from"]
            rows[self.ids[session]] = tuple(
                self.ids[origin] if name == "resumed_from" and origin else values[name]
                for name in CLAUDE_COLUMNS)
        for thread, values in codex.EXPECTED.items():
            rows[self.ids[thread]] = (values["input_tokens"], values["cache_read_tokens"],
                                      values["output_tokens"], values["total_tokens"],
                                      values["tool_calls"], values["human_prompts"])
        return rows


async def actual(dsn: str, run: Run) -> dict[str, tuple]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = {r["id"]: r for r in await conn.fetch(
            "SELECT * FROM sessions WHERE id = ANY($1::text[])", list(run.ids.values()))}
    except asyncpg.UndefinedTableError:
        return {}
    finally:
        await conn.close()
    out: dict[str, tuple] = {}
    for session in claude.EXPECTED:
        row = rows.get(run.ids[session])
        if row is not None:
            out[row["id"]] = tuple(row[name] for name in CLAUDE_COLUMNS)
    for thread in codex.EXPECTED:
        row = rows.get(run.ids[thread])
        if row is not None:
            out[row["id"]] = (row["input_tokens"], row["cache_read_tokens"],
                              row["output_tokens"], row["total_tokens"], row["tool_calls"],
                              row["prompts"])
    return out


def _published(state: Path, target: Path) -> bool:
    """Whether a producer has published all of ``target``: its entry in a checkpoint (under
    the state dir, one per source) points past the file's last byte."""
    size = target.stat().st_size
    for checkpoint in (state / "checkpoints").glob("*.json"):
        position = json.loads(checkpoint.read_text()).get(str(target), {})
        if position.get("offset") == size:
            return True
    return False


async def _settled(dsn: str, run: Run, expected: dict[str, tuple],
                   process: subprocess.Popen[bytes], log: Path) -> None:
    """Until the rows of ``run``'s sessions are ``expected``; fails with the ones that differ."""
    wrong: dict[str, tuple] = {}

    async def as_expected() -> bool:
        nonlocal wrong
        assert_running(process, log)
        found = await actual(dsn, run)
        wrong = {s: (found.get(s), want) for s, want in expected.items() if found.get(s) != want}
        return not wrong

    await eventually(as_expected, "the expected rows", timeout=180, interval=1,
                     detail=lambda: f"(found, expected) where they differ: {wrong}\n"
                                    + log_tail(log, 2000))


@pytest.fixture
def graph_env(stack: dict[str, str], pg_dsn: str, tmp_path: Path) -> dict[str, str]:
    return cli_env(SESSIONSTREAM_BROKER_URL=stack["kafka"], SESSIONSTREAM_POSTGRES_DSN=pg_dsn,
                   SESSIONSTREAM_NEO4J_URI=stack["neo4j"],
                   SESSIONSTREAM_STATE_DIR=str(tmp_path / "state"),
                   SESSIONSTREAM_METRICS_PORT="0")


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_backfill_counts_every_response_once_for_its_writer(
    graph_env: dict[str, str], pg_dsn: str, neo4j_driver: neo4j.AsyncDriver, tmp_path: Path,
    workers: int,
) -> None:
    """Also with ``--workers 2``: two processes share the partitions of every stage, the
    summarizer and both projections, and the numbers do not move."""
    run = Run(tmp_path / "home")
    run.write(run.files())
    result = backfill_cli({**graph_env, "SESSIONSTREAM_WORKERS": str(workers)},
                          *map(Path, run.sources()))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ("workers:  2 processes" in result.stdout) == (workers == 2)

    assert await actual(pg_dsn, run) == run.expected()
    conn = await asyncpg.connect(pg_dsn)
    try:
        forked = await conn.fetchval("SELECT forked_from FROM sessions WHERE id = $1",
                                     run.ids[codex.F])
        per_agent = {r["agent_id"]: r["total"] for r in await conn.fetch(
            "SELECT agent_id, sum(total_tokens) AS total FROM usage_facts f"
            " WHERE session_id = $1 GROUP BY agent_id", run.ids[codex.P])}
        metric_total = sum(r["input"] + r["output"] + r["cache_read"] + r["cache_creation"]
                           for r in await conn.fetch(USAGE_SQL))
        table_total = await conn.fetchval("SELECT sum(total_tokens) FROM sessions")
    finally:
        await conn.close()
    assert forked == run.ids[codex.P]
    # sub-agent threads stay filed under their parent, their own usage visible
    assert per_agent == {None: codex.AGENTS[codex.P][None]["total_tokens"],
                         run.ids[codex.S1]: codex.AGENTS[codex.P][codex.S1]["total_tokens"],
                         run.ids[codex.S2]: codex.AGENTS[codex.P][codex.S2]["total_tokens"]}
    assert metric_total == table_total  # the metrics read the same owned usage

    # The graph: the same tokens per session (sub-agents as their own nodes), the links.
    records, _, _ = await neo4j_driver.execute_query(
        "MATCH (s:Session) WHERE s.id IN $ids "
        "OPTIONAL MATCH (s)-[m:USED_MODEL]->() RETURN s.id AS id, sum(m.tokens) AS tokens",
        ids=list(run.ids.values()))
    tokens: dict[str, int] = {}
    for r in records:
        tokens[r["id"]] = tokens.get(r["id"], 0) + r["tokens"]
    k = run.ids[claude.SESSION_K]
    spawned, _, _ = await neo4j_driver.execute_query(
        "MATCH (:Session {id: $k})-[:SPAWNED]->(c:Session) "
        "OPTIONAL MATCH (c)-[m:USED_MODEL]->() RETURN c.id AS id, sum(m.tokens) AS tokens", k=k)
    assert len(spawned) == 2  # linked by where the files are, no agentId in the Task results
    for session, values in claude.EXPECTED.items():
        own = tokens.get(run.ids[session], 0)
        if run.ids[session] == k:
            own += sum(r["tokens"] for r in spawned)
        assert own == values["total_tokens"], claude.LABELS[session]
    # Codex: the parent's tree (its sub-agents' nodes included) counts each call once
    p = run.ids[codex.P]
    tree, _, _ = await neo4j_driver.execute_query(
        "MATCH (:Session {id: $p})-[:SPAWNED*0..]->(s:Session)-[m:USED_MODEL]->() "
        "RETURN sum(m.tokens) AS tokens", p=p)
    assert tree[0]["tokens"] == codex.EXPECTED[codex.P]["total_tokens"]
    assert tokens[run.ids[codex.F]] == codex.EXPECTED[codex.F]["total_tokens"]
    links, _, _ = await neo4j_driver.execute_query(
        "MATCH (s:Session)-[l:RESUMED_FROM|FORKED_FROM]->(o:Session) WHERE s.id IN $ids "
        "RETURN s.id AS s, type(l) AS how, o.id AS o", ids=list(run.ids.values()))
    assert {(r["s"], r["how"], r["o"]) for r in links} == {
        *((run.ids[s], "RESUMED_FROM", run.ids[v["resumed_from"]])
          for s, v in claude.EXPECTED.items() if v["resumed_from"]),
        (run.ids[codex.F], "FORKED_FROM", run.ids[codex.P])}


async def test_files_arriving_copies_first_give_the_same_rows_live(
    pipeline_env: dict[str, str], pg_dsn: str, tmp_path: Path,
) -> None:
    """``run`` watching empty roots; the files appear one by one, copies before their origins
    (the order a backfill of a new machine may read them in), then the rows must settle on the
    same hand-computed values."""
    run = Run(tmp_path / "home")
    run.claude_root.mkdir(parents=True)
    run.codex_root.mkdir(parents=True)
    log = tmp_path / "run.log"
    process = start_cli(pipeline_env, "run", *(a for s in run.sources() for a in ("--source", s)),
                        log=log)
    state = Path(pipeline_env["SESSIONSTREAM_STATE_DIR"])
    try:
        for target, text in reversed(run.files()):
            run.write([(target, text)])
            # The next file appears once this one is published: the pipeline meets them in
            # this order.
            await eventually(functools.partial(_published, state, target),
                             f"{target.name} published", timeout=60,
                             detail=functools.partial(log_tail, log))
        expected = run.expected()
        await _settled(pg_dsn, run, expected, process, log)

        # A rewrite in place (resume, compaction): the origin's file loses its assistant lines
        # and gains a new prompt, its mtime moves. What was counted stays counted.
        origin = run.claude_root / claude.PROJECT / f"{run.ids[claude.SESSION_A]}.jsonl"
        kept = [raw for raw in origin.read_text().splitlines()
                if json.loads(raw).get("type") != "assistant"]
        last = json.loads(kept[-1])
        prompt = {**last, "parentUuid": last["uuid"], "uuid": str(uuid.uuid4()),
                  "timestamp": "2025-10-22T09:00:00.000Z",
                  "message": {"role": "user", "content": "one more thing"}}
        origin.write_text("\n".join([*kept, json.dumps(prompt)]) + "\n")
        a = run.ids[claude.SESSION_A]
        expected[a] = (*expected[a][:5], expected[a][5] + 1, *expected[a][6:])
        await _settled(pg_dsn, run, expected, process, log)
    finally:
        stop_cli(process)
