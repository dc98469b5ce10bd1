"""Test harness: the real servers, started once per run through the project's own stack.

The stack lives under ``$SESSIONSTREAM_TEST_STATE_DIR`` (default ``.state/test`` in the repo,
see :func:`scratch_root`) so it never touches a developer's own. Servers the run started are
stopped at the end unless ``SESSIONSTREAM_TEST_KEEP_STACK=1``; servers already running there are
reused and left running.
A server that cannot start fails the tests that need it: nothing is skipped silently.
Per-test cleanup: a fresh Postgres database, unique Kafka topics, an emptied Neo4j graph.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import neo4j
import pytest

from streams.settings import Settings
from streams.stack import Stack

ROOT = Path(__file__).resolve().parent.parent
TEST_SERVERS = ["kafka", "tansu", "postgres", "neo4j", "prometheus", "jaeger"]


def scratch_root() -> Path:
    """Where test state goes: ``<repo>/.state``, or ``/var/tmp/sessionstream-<hash>`` when some
    ancestor of the repo is private (PostgreSQL runs as an unprivileged account when the tests
    run as root, and must reach its data dir)."""
    if all(p.stat().st_mode & stat.S_IXOTH for p in [ROOT, *ROOT.parents]):
        return ROOT / ".state"
    return Path("/var/tmp") / f"sessionstream-{hashlib.sha256(bytes(ROOT)).hexdigest()[:10]}"


def _clean_env() -> None:
    for key in list(os.environ):
        if key.startswith("SESSIONSTREAM_") and not key.startswith("SESSIONSTREAM_TEST_"):
            del os.environ[key]


@pytest.fixture(scope="session")
def test_settings() -> Settings:
    """Settings of the test stack (independent of the developer's environment)."""
    _clean_env()
    state = Path(os.environ.get("SESSIONSTREAM_TEST_STATE_DIR", scratch_root() / "test"))
    return Settings(
        state_dir=state,
        metrics_port=int(os.environ.get("SESSIONSTREAM_TEST_METRICS_PORT", "19464")),
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture(scope="session")
def stack(test_settings: Settings) -> Iterator[dict[str, str]]:
    """``{server: endpoint}`` for every test server, started (or found running) once."""
    the_stack = Stack(test_settings)
    already = {s.name for s in the_stack.status() if s.running}
    endpoints = the_stack.up(TEST_SERVERS, report=print)
    yield endpoints
    started_here = [n for n in TEST_SERVERS if n not in already]
    if started_here and os.environ.get("SESSIONSTREAM_TEST_KEEP_STACK") != "1":
        the_stack.down(started_here, report=print)


@pytest.fixture(params=["kafka", "tansu"])
def broker_url(request: pytest.FixtureRequest, stack: dict[str, str]) -> str:
    """Each test using this runs once on Apache Kafka 4.1 and once on Tansu."""
    return stack[request.param]


@pytest.fixture
def topic_name() -> str:
    return f"test.{uuid.uuid4().hex[:12]}.v1"


@asynccontextmanager
async def fresh_database(admin_dsn: str) -> AsyncIterator[str]:
    """DSN of a new, empty database on the server of ``admin_dsn``, dropped on exit."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield admin_dsn.rsplit("/", 1)[0] + "/" + name
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pg_dsn(stack: dict[str, str]) -> AsyncIterator[str]:
    """DSN of a fresh database, dropped after the test."""
    async with fresh_database(stack["postgres"]) as dsn:
        yield dsn


@pytest.fixture
async def neo4j_driver(stack: dict[str, str]) -> AsyncIterator[neo4j.AsyncDriver]:
    """A driver on an emptied graph."""
    driver = neo4j.AsyncGraphDatabase.driver(stack["neo4j"], auth=None)
    await driver.execute_query("MATCH (n) DETACH DELETE n")
    yield driver
    await driver.close()
