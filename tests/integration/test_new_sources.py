"""Each hand-written source sample through the whole pipeline on real Kafka, Postgres, Neo4j.

One test per ``tests/samples/<source>/expected.json``. The selected samples are written into
fresh roots (``*.sql`` scripts become the SQLite databases they describe; every id a sample
lists gets fresh last digits, so records earlier runs left on the broker cannot meet this
run's), one ``sessionstream backfill --source <source>=<root> ...`` reads them all, and then per
sample

* every listed column of each session's Postgres row equals the hand-computed value (the
  arithmetic is in the sample's README);
* the graph holds the same sessions with the same tokens and tool calls (its aggregates, which
  leave out what a session copied from its origin, as the Postgres row does);
* the metrics (:func:`projections.otel.metrics.read_snapshot`, what the exporter reports)
  count the sessions under the source and the same tokens.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import neo4j
import pytest

from app.demo_commands import build_databases
from projections.otel.metrics import provider_of, read_snapshot
from projections.postgres.session_schema import owned
from tests.conftest import fresh_database
from tests.integration.pipeline_helpers import CLI, backfill_cli, cli_env

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
EXPECTED = sorted(SAMPLES.glob("*/expected.json"))


def test_each_expectation_names_a_registered_source() -> None:
    """The parametrized test below runs once per sample (none would test nothing), and a
    sample of a source nobody registered could only fail there with a confusing error."""
    from app.sources import PRODUCERS

    assert EXPECTED
    named = {json.loads(p.read_text())["source"] for p in EXPECTED}
    assert named <= set(PRODUCERS), named - set(PRODUCERS)


def _write_sample(sample: Path, target: Path, ids: dict[str, str]) -> None:
    """Copy ``sample`` into ``target`` with ``ids`` replaced in names and contents; run each
    ``X.sql`` into the SQLite database ``X``."""
    for path in sorted(sample.rglob("*")):
        if not path.is_file() or path.name in ("README.md", "expected.json"):
            continue
        relative = str(path.relative_to(sample))
        data = path.read_bytes()
        for old, new in ids.items():
            relative = relative.replace(old, new)
            data = data.replace(old.encode(), new.encode())
        out = target / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    build_databases(target)


def _fresh(ids: list[str]) -> dict[str, str]:
    fresh = {}
    for old in ids:
        assert len(old) >= 8 and all(c in "0123456789abcdefABCDEF" for c in old[-8:]), old
        fresh[old] = old[:-8] + secrets.token_hex(4)
    return fresh


def _renamed(text: str, ids: dict[str, str]) -> str:
    for old, new in ids.items():
        text = text.replace(old, new)
    return text


@dataclass
class Landed:
    """What one backfill of every selected sample left: its database, graph and output."""

    dsn: str
    driver: neo4j.AsyncDriver
    ids: dict[Path, dict[str, str]]  # per expected.json: {sample id: this run's id}
    output: str
    env: dict[str, str]


@pytest.fixture(scope="module")
async def landed(stack: dict[str, str], request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Landed]:
    """One ``backfill`` of the samples the selected tests check, into a fresh database and an
    emptied graph (one run for all: each backfill re-projects the whole shared topic)."""
    selected = sorted({Path(str(item.callspec.params["expected_path"]))
                       for item in request.session.items
                       if isinstance(item, pytest.Function) and item.module is request.module
                       and hasattr(item, "callspec")})
    home = tmp_path_factory.mktemp("samples")
    ids: dict[Path, dict[str, str]] = {}
    specs = []
    for expected_path in selected:
        expected = json.loads(expected_path.read_text())
        ids[expected_path] = fresh = _fresh(expected.get("ids", []))
        target = home / expected_path.parent.name
        _write_sample(expected_path.parent, target, fresh)
        specs.append(Path(f"{expected['source']}={target / _renamed(expected['root'], fresh)}"))
    driver = neo4j.AsyncGraphDatabase.driver(stack["neo4j"], auth=None)
    await driver.execute_query("MATCH (n) DETACH DELETE n")
    try:
        async with fresh_database(stack["postgres"]) as dsn:
            env = cli_env(SESSIONSTREAM_BROKER_URL=stack["kafka"],
                          SESSIONSTREAM_POSTGRES_DSN=dsn, SESSIONSTREAM_NEO4J_URI=stack["neo4j"],
                          SESSIONSTREAM_STATE_DIR=str(home / ".state"),
                          SESSIONSTREAM_METRICS_PORT="0")
            result = await asyncio.to_thread(backfill_cli, env, *specs)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            yield Landed(dsn, driver, ids, result.stderr[-3000:], env)
    finally:
        await driver.close()


@pytest.mark.parametrize("expected_path", EXPECTED, ids=[p.parent.name for p in EXPECTED])
async def test_a_sample_lands_in_postgres_the_graph_and_the_metrics(
    expected_path: Path, landed: Landed,
) -> None:
    expected: dict[str, Any] = json.loads(expected_path.read_text())
    source, ids, pg_dsn = expected["source"], landed.ids[expected_path], landed.dsn
    neo4j_driver, output = landed.driver, landed.output
    sessions = {_renamed(sid, ids): want for sid, want in expected["sessions"].items()}
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = {r["id"]: dict(r) for r in await conn.fetch(
            "SELECT * FROM sessions WHERE id = any($1::text[])", list(sessions))}
        snapshot = await read_snapshot(conn)
    finally:
        await conn.close()

    for sid, want in sessions.items():
        assert sid in rows, f"{source}: no session {sid}; log:\n{output}"
        row = rows[sid]
        assert row["source"] == source
        got = {column: row[column] for column in want}
        if "unpriced_models" in got:
            got["unpriced_models"] = sorted(got["unpriced_models"])
            want = {**want, "unpriced_models": sorted(want["unpriced_models"])}
        assert got == want, f"{source} session {sid}"

    for sid, row in rows.items():
        graph, _, _ = await neo4j_driver.execute_query(
            "MATCH (s:Session) WHERE s.id = $id OR s.id STARTS WITH $id + ':' "
            "OPTIONAL MATCH (s)-[m:USED_MODEL]->() WITH s, sum(m.tokens) AS tokens "
            "OPTIONAL MATCH (s)-[u:USED_TOOL]->() "
            "RETURN s.source AS source, tokens, coalesce(sum(u.count), 0) AS tools", id=sid)
        assert graph, f"{source}: session {sid} is not in the graph"
        assert {r["source"] for r in graph} == {source}
        assert [sum(r["tokens"] for r in graph), sum(r["tools"] for r in graph)] == [
            row["total_tokens"], row["tool_calls"]], f"{source} session {sid} in the graph"

    # The database holds every session on the broker's topic (a fresh store re-projects it
    # all), so the metrics are checked for this sample's share: its sessions under its source,
    # its tokens under the provider its source and models name.
    counted = sum(n for (src, _), n in snapshot.sessions.items() if src == source)
    assert counted >= len(rows), snapshot.sessions
    for model, kind, tokens in await _usage_of(pg_dsn, list(rows)):
        series = (provider_of(source, model), model, kind)
        assert snapshot.tokens.get(series, 0) >= tokens, (series, snapshot.tokens)

    # `usage --by source` lists the source with at least this sample's tokens.
    usage = subprocess.run([*CLI, "usage", "--by", "source", "--json"], env=landed.env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert usage.returncode == 0, usage.stderr[-2000:]
    by_source = {r["key"]: r for r in map(json.loads, usage.stdout.splitlines())}
    mine = sum(r["total_tokens"] for r in rows.values())
    if mine:
        assert source in by_source, usage.stdout
        listed = by_source[source]
        assert sum(listed[k] for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                                       "cache_creation_tokens")) >= mine


async def _usage_of(dsn: str, sessions: list[str]) -> list[tuple[str, str, int]]:
    """``(model, token kind, tokens)`` of ``sessions``, from the usage facts they own (not
    what they copied from an origin)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT f.model, sum(f.input_tokens) AS input, sum(f.output_tokens) AS output, "
            "sum(f.cache_read_tokens) AS cache_read, "
            "sum(f.cache_creation_5m_tokens + f.cache_creation_1h_tokens) AS cache_creation "
            "FROM usage_facts f JOIN sessions s ON s.id = f.session_id "
            f"WHERE f.session_id = any($1::text[]) AND {owned('f')} GROUP BY f.model", sessions)
    finally:
        await conn.close()
    return [(r["model"], kind, int(r[kind])) for r in rows
            for kind in ("input", "output", "cache_read", "cache_creation") if r[kind]]
