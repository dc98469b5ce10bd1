"""The store contract, run against every registered projection on its real store.

Parametrized over :func:`projections.registry.registrations`: the Postgres session tables,
MCP telemetry tables and frontend tables (each test on a new database of the harness's
Postgres; the optional ones too, whether or not a setting turns them on) and the Neo4j
session graph (on the harness's Neo4j, emptied first). For each:

* the same batch applied twice gives the same state, and the second apply applies 0;
* positions advance to the next offset per partition (dead-lettered records included), and a
  redelivery of applied records applies nothing;
* ``reset()`` forgets the data and the positions, and a replay rebuilds the same state;
* a rejected batch (a record the store cannot take) raises ``ProjectionRejected`` naming the
  projection, and nothing of that batch is applied, positions included;
* a crash between batches (batch 1 applied, the projection dropped without ``stop()``, a new one
  built on the same store resuming from its positions) ends in the state that applying both
  batches gives on a fresh store.

Each projection supplies a :class:`Contract` (in :data:`CONTRACTS`): how to get an empty store,
two sample batches over two partitions (built from the ``schemas`` models), a value its store
cannot take, and a snapshot of its state. A registered projection without one fails every case.

Not covered: the OTel metrics of :mod:`projections.otel` are not registered projections. They
consume no topic, apply no batches and hold no positions: they re-read totals from the Postgres
tables, and what they guarantee (the same totals after a restart) is tested in
``test_otel_metrics.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import neo4j
import pytest

from app.endpoints import Endpoints
from app.projection_set import build_projections, resolve_name
from projections.base import Position, Projection, Record
from projections.neo4j.session_graph import SessionGraph
from projections.postgres.frontend_schema import FrontendSchema
from projections.postgres.frontend_tables import FrontendTables
from projections.postgres.mcp_telemetry_tables import TelemetryTables
from projections.postgres.session_summaries import SessionSummariesTable
from projections.postgres.session_tables import SessionTables
from projections.registry import registrations
from schemas.envelope import derive_event_id
from schemas.events import (
    ArtifactRevised,
    AssistantMessage,
    EventPayload,
    FileTouched,
    SessionCompacted,
    SessionContext,
    SessionEvent,
    SessionFileRemoved,
    SessionStateReported,
    SessionTitled,
    SubagentLinked,
    ToolCalled,
    ToolResulted,
    UsageReported,
    UserPrompted,
)
from schemas.telemetry import TelemetryPolledEvent, ToolPolled, flatten_numbers, tool_polled_event
from streams.errors import ConfigError, ProjectionRejected
from streams.settings import Settings
from tests.conftest import fresh_database
from tests.contract.frontend_samples import frontend_batches, frontend_poison
from tests.contract.summary_samples import summaries_batches, summaries_poison

pytestmark = pytest.mark.contract

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
OPUS = "claude-opus-4-5"
Values = dict[int, list[Any]]  # partition -> record values in offset order (None: dead-lettered)


# -- samples, from the schemas' models ---------------------------------------------------------

def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def event(payload: EventPayload, minute: float, session: str) -> SessionEvent:
    """A line of ``session``'s file written at ``minute``; the id derives from what it is."""
    line = payload.model_copy(update={"timestamp": at(minute)})
    return SessionEvent(event_id=derive_event_id(session, minute, line.model_dump_json()),
                        source="claude-code", type=line.kind, occurred_at=at(minute),
                        session_id=session, payload=line)


def usage(key: str, input_tokens: int, output_tokens: int, model: str | None = OPUS,
          **more: int) -> UsageReported:
    return UsageReported(message_key=key, model=model, input_tokens=input_tokens,
                         output_tokens=output_tokens, **more)


def tool(tool_use_id: str, name: str, agent_id: str | None = None) -> ToolCalled:
    return ToolCalled(tool_use_id=tool_use_id, name=name, input={"n": 1}, agent_id=agent_id)


def session_batches() -> tuple[Values, Values]:
    """Session ``origin`` (partition 0) and ``resume`` (partition 2), which copies origin's
    second turn: prompts, messages, two reports of one response, tool calls and results, files,
    a sub-agent, state, an artifact, a compaction, titles and the file's removal. Batch 2 needs
    batch 1's state: its usage without a model, its larger report, resume's lineage."""
    def origin(payload: EventPayload, minute: float) -> SessionEvent:
        return event(payload, minute, "origin")

    def resume(payload: EventPayload, minute: float) -> SessionEvent:
        return event(payload, minute, "resume")

    first = {0: [
        origin(SessionContext(cwd="/work/app", project="-work-app", slug="calm-fox",
                              model=OPUS), 0),
        origin(SessionTitled(title="Fix the parser", title_source="ai"), 0),
        origin(usage("m0:r0", 8, 2), 0),  # the turn resume did not copy
        origin(UserPrompted(text="fix the parser", line_uuid="u1"), 1),
        origin(AssistantMessage(message_key="m1:r1", line_uuid="a1", text="reading"), 1),
        origin(tool("t1", "Read"), 1),
        origin(FileTouched(path="/work/app/p.py", tool="Read", access="read",
                           tool_use_id="t1"), 1),
        origin(ToolResulted(tool_use_id="t1", content="def parse(): ..."), 2),
        origin(usage("m1:r1", 10, 5), 1),
    ], 2: [
        resume(SessionContext(cwd="/work/app", project="-work-app"), 1),
        resume(UserPrompted(text="fix the parser", line_uuid="u1"), 1),
        resume(usage("m1:r1", 10, 5), 1),
        None,
    ]}
    second = {0: [
        origin(usage("m1:r1", 10, 50, cache_read_tokens=100), 1),  # larger: it wins
        origin(tool("t2", "Edit"), 3),
        origin(FileTouched(path="/work/app/p.py", tool="Edit", access="write",
                           tool_use_id="t2"), 3),
        origin(usage("m2:r2", 20, 4, model=None), 3),  # billed under the context's model
        origin(SubagentLinked(child_agent_id="a7", tool_use_id="t2"), 3),
        origin(tool("t5", "Grep", agent_id="a7"), 4),
        origin(SessionStateReported(facet="state.json", updated_at=at(4), status="executing",
                                    current_task="t2"), 4),
        origin(ArtifactRevised(path="/work/app/plan.md", name="plan.md", content="- [x] a",
                               content_sha256="ab" * 32, size=7), 4),
        origin(SessionCompacted(trigger="auto", pre_tokens=1000, line_uuid="c1"), 5),
        origin(SessionTitled(title="Parser fixed", title_source="custom"), 5),
        origin(SessionFileRemoved(path="/home/dev/.claude/projects/-work-app/origin.jsonl"), 6),
    ], 2: [
        resume(UserPrompted(text="and the tests", line_uuid="u9"), 10),
        resume(usage("m9:r9", 20, 7), 10),
        resume(tool("t9", "Bash"), 10),
        None,
    ]}
    return first, second


def poll(tool_name: str, second: int, result: Any, ok: bool = True) -> TelemetryPolledEvent:
    return tool_polled_event(ToolPolled(
        server="http://mcp.test/mcp", tool=tool_name, ok=ok, duration_ms=5.0 + second,
        size_bytes=100, result=result, values=flatten_numbers(result),
        error=None if ok else "boom"), T0 + timedelta(seconds=second))


def telemetry_batches() -> tuple[Values, Values]:
    """Polls of two tools per partition; batch 2 has newer values of batch 1's metrics."""
    first = {0: [poll("get_activity_summary", 0, {"sessions": {"total": 10}, "cpu": 0.5}),
                 poll("get_activity_summary", 1, {"sessions": {"total": 11}})],
             1: [poll("get_broken_metrics", 0, None, ok=False), None]}
    second = {0: [poll("get_activity_summary", 2, {"sessions": {"total": 12}, "cpu": 0.25})],
              1: [poll("get_latency", 1, {"p95": 120})]}
    return first, second


# -- stores and their snapshots ----------------------------------------------------------------

@asynccontextmanager
async def postgres(stack: dict[str, str]) -> AsyncIterator[str]:
    async with fresh_database(stack["postgres"]) as dsn:
        yield dsn


@asynccontextmanager
async def emptied_neo4j(stack: dict[str, str]) -> AsyncIterator[str]:
    async with neo4j.AsyncGraphDatabase.driver(stack["neo4j"], auth=None) as driver:
        await driver.execute_query("MATCH (n) DETACH DELETE n")
    yield stack["neo4j"]


def table_rows(*tables: str) -> Callable[[str], Awaitable[dict[str, list[str]]]]:
    """A snapshot of ``tables``: their rows, sorted."""
    async def snapshot(dsn: str) -> dict[str, list[str]]:
        conn = await asyncpg.connect(dsn)
        try:
            return {t: sorted(repr(tuple(r)) for r in await conn.fetch(f"SELECT * FROM {t}"))
                    for t in tables}
        finally:
            await conn.close()

    return snapshot


async def graph(uri: str) -> tuple[list[str], list[str]]:
    """Nodes and relationships as sorted text, without the bookkeeping nodes (offsets, lock)."""
    def canon(labels: list[str], props: dict[str, Any]) -> str:
        return f"{sorted(labels)}{sorted((k, str(v)) for k, v in props.items())}"

    async with neo4j.AsyncGraphDatabase.driver(uri, auth=None) as driver:
        nodes, _, _ = await driver.execute_query(
            "MATCH (n) WHERE NOT n:ProjectionOffset AND NOT n:LineageLock "
            "RETURN labels(n) AS l, properties(n) AS p")
        edges, _, _ = await driver.execute_query(
            "MATCH (a)-[r]->(b) RETURN labels(a) AS la, properties(a) AS pa, type(r) AS t, "
            "properties(r) AS pr, labels(b) AS lb, properties(b) AS pb")
    return (sorted(canon(n["l"], n["p"]) for n in nodes),
            sorted(f"{canon(e['la'], e['pa'])}-{e['t']}{canon([], e['pr'])}->"
                   f"{canon(e['lb'], e['pb'])}" for e in edges))


# -- the adapters ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Contract:
    """What the suite needs of one projection class (built as ``cls(store address)``)."""

    cls: type[Projection]
    empty_store: Callable[[dict[str, str]], AbstractAsyncContextManager[str]]  # -> address
    batches: Callable[[], tuple[Values, Values]]  # batch 2 continues batch 1's partitions
    poison: Callable[[], Any]  # a value the store cannot take, for partition 0
    snapshot: Callable[[str], Awaitable[Any]]  # the projection's state, comparable with ==

    def build(self, address: str) -> Projection:
        return self.cls(address)  # type: ignore[call-arg]  # every store base takes its address


CONTRACTS = {c.cls.name: c for c in [
    # Postgres cannot store U+0000 in text (schemas.limits: producers strip it before).
    Contract(SessionTables, postgres, session_batches,
             lambda: event(tool("t0", "Re\x00ad"), 9, "origin"),
             table_rows(*SessionTables.tables)),
    Contract(TelemetryTables, postgres, telemetry_batches,
             lambda: poll("get\x00metrics", 9, {"n": 1}), table_rows(*TelemetryTables.tables)),
    Contract(SessionSummariesTable, postgres, summaries_batches, summaries_poison,
             table_rows(*SessionSummariesTable.tables)),
    Contract(FrontendTables, postgres, frontend_batches, frontend_poison,
             table_rows(*FrontendSchema("frontend").tables)),
    # A Tool's name is the key of a unique constraint: this one is past Neo4j's index key size.
    Contract(SessionGraph, emptied_neo4j, session_batches,
             lambda: event(tool("t0", "R" * 40_000), 9, "origin"), graph),
]}


@pytest.fixture(params=[r.name for r in registrations() if r.store])
def contract(request: pytest.FixtureRequest) -> Contract:
    found = CONTRACTS.get(request.param)
    if found is None:
        pytest.fail(f"{request.param} is registered but has no Contract in {__name__}")
    return found


@pytest.fixture
async def store(contract: Contract, stack: dict[str, str]) -> AsyncIterator[str]:
    async with contract.empty_store(stack) as address:
        yield address


@asynccontextmanager
async def started(contract: Contract, address: str) -> AsyncIterator[Projection]:
    projection = contract.build(address)
    await projection.start()
    try:
        yield projection
    finally:
        await projection.stop()


def sample(contract: Contract) -> tuple[list[Record], list[Record]]:
    """The two batches as records of the projection's topic, batch 2's offsets after batch 1's."""
    first, second = contract.batches()
    topic = contract.cls.source.name
    return ([Record(topic, p, i, v) for p, values in first.items() for i, v in enumerate(values)],
            [Record(topic, p, len(first.get(p, [])) + i, v)
             for p, values in second.items() for i, v in enumerate(values)])


def ends(*batches: list[Record]) -> list[Position]:
    """The positions after ``batches``: per partition, the next offset."""
    last: dict[tuple[str, int], int] = {}
    for r in (r for batch in batches for r in batch):
        last[r.topic, r.partition] = max(last.get((r.topic, r.partition), 0), r.offset + 1)
    return [Position(t, p, o) for (t, p), o in sorted(last.items())]


async def positions(projection: Projection) -> list[Position]:
    return sorted(await projection.positions(), key=lambda p: (p.topic, p.partition))


# -- the contract ------------------------------------------------------------------------------

async def test_the_same_batch_twice_gives_the_same_state(contract: Contract, store: str) -> None:
    first, second = sample(contract)
    async with started(contract, store) as projection:
        empty = await contract.snapshot(store)
        assert await projection.apply_batch(first + second) == len(first + second)
        state = await contract.snapshot(store)
        assert state != empty
        assert await projection.apply_batch(first + second) == 0
        assert await contract.snapshot(store) == state


async def test_positions_advance_to_the_next_offset_per_partition(contract: Contract,
                                                                  store: str) -> None:
    first, second = sample(contract)
    async with started(contract, store) as projection:
        assert await positions(projection) == []
        assert await projection.apply_batch(first) == len(first)
        assert await positions(projection) == ends(first)
        assert len(ends(first)) == 2  # the samples span two partitions
        assert await projection.apply_batch(second) == len(second)
        assert await positions(projection) == ends(first, second)
        # A redelivery of what was applied (after a rebalance, say) applies nothing.
        assert await projection.apply_batch(first[1:] + second) == 0
        assert await positions(projection) == ends(first, second)


async def test_reset_forgets_data_and_positions(contract: Contract, store: str) -> None:
    first, second = sample(contract)
    async with started(contract, store) as projection:
        empty = await contract.snapshot(store)
        await projection.apply_batch(first + second)
        state = await contract.snapshot(store)
        await projection.reset()
        assert await positions(projection) == []
        assert await contract.snapshot(store) == empty
        # The replay: every record again, from offset 0, in other batches.
        assert await projection.apply_batch(first) == len(first)
        assert await projection.apply_batch(second) == len(second)
        assert await contract.snapshot(store) == state


async def test_a_rejected_batch_applies_nothing(contract: Contract, store: str) -> None:
    first, second = sample(contract)
    end = ends(first, second)[0]
    poisoned = [*second, Record(end.topic, end.partition, end.next_offset, contract.poison())]
    async with started(contract, store) as projection:
        await projection.apply_batch(first)
        before = (await contract.snapshot(store), await positions(projection))
        with pytest.raises(ProjectionRejected, match=projection.name):
            await projection.apply_batch(poisoned)
        assert (await contract.snapshot(store), await positions(projection)) == before
        # Without the poison the same records apply: the store is still usable.
        assert await projection.apply_batch(second) == len(second)
        assert await contract.snapshot(store) != before[0]


async def test_a_crash_between_batches_resumes_from_the_stored_positions(
        contract: Contract, store: str, stack: dict[str, str]) -> None:
    first, second = sample(contract)
    async with started(contract, store) as projection:
        await projection.apply_batch(first + second)
    expected = await contract.snapshot(store)

    async with contract.empty_store(stack) as crash_store:
        crashed = contract.build(crash_store)
        await crashed.start()
        try:
            assert await crashed.apply_batch(first) == len(first)
            # The worker dies here: `crashed` is not stopped, a new projection takes over.
            async with started(contract, crash_store) as successor:
                resume = {(p.topic, p.partition): p.next_offset
                          for p in await successor.positions()}
                assert [Position(t, p, o) for (t, p), o in sorted(resume.items())] == ends(first)
                log = [r for r in first + second
                       if r.offset >= resume.get((r.topic, r.partition), 0)]
                assert await successor.apply_batch(log) == len(second)
                assert await positions(successor) == ends(first, second)
                assert await contract.snapshot(crash_store) == expected
        finally:
            await crashed.stop()  # only so its connections do not outlive the test


# -- the registry, as the command line uses it -------------------------------------------------

def test_the_command_line_names_find_the_registered_projections(test_settings: Settings) -> None:
    """``sessionstream replay postgres|telemetry|neo4j`` (and status, run) build and find what
    the registry holds, each only where its store or producer is configured."""
    everything = build_projections(
        test_settings.model_copy(update={"mcp_url": "http://mcp.test/mcp",
                                         "frontend_tables": True}),
        Endpoints(broker_url="kafka://127.0.0.1:1", postgres_dsn="postgresql://u@127.0.0.1:1/d",
                  neo4j_uri="bolt://127.0.0.1:1"))
    assert {alias: type(everything[resolve_name(alias, everything)])
            for alias in ("postgres", "telemetry", "neo4j")} == {
        "postgres": SessionTables, "telemetry": TelemetryTables, "neo4j": SessionGraph}
    assert list(everything) == [r.name for r in registrations()]  # in build order:
    assert [n for n in everything if n in {SessionTables.name, TelemetryTables.name,
                                           SessionGraph.name}] == [
        SessionTables.name, TelemetryTables.name, SessionGraph.name]  # as `status` lists them

    postgres_only = build_projections(test_settings, Endpoints(
        broker_url="kafka://127.0.0.1:1", postgres_dsn="postgresql://u@127.0.0.1:1/d"))
    assert list(postgres_only) == [SessionSummariesTable.name, SessionTables.name]
    assert resolve_name(SessionTables.name, postgres_only) == SessionTables.name
    with pytest.raises(ConfigError, match="SESSIONSTREAM_NEO4J_URI"):
        resolve_name("neo4j", postgres_only)
    with pytest.raises(ConfigError, match="SESSIONSTREAM_MCP_URL"):
        resolve_name("telemetry", postgres_only)
    with pytest.raises(ConfigError, match=r"unknown projection 'elastic'; known: "
                                          r".*postgres \(postgres\.session_tables\)"):
        resolve_name("elastic", postgres_only)
