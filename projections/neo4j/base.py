"""``Neo4jProjection``: the Neo4j store base. Effect and position in one write transaction.

Owns the async driver, the uniqueness constraints a subclass declares (``constraints``, each
a ``CREATE CONSTRAINT ... IF NOT EXISTS`` statement) plus the one of the offset nodes, the
offsets themselves, skipping already-applied records, and translating the driver's errors
once: connection loss, expired sessions, transient server errors and ``OSError`` become
``ProjectionUnavailable`` (retry the same batch), any other ``Neo4jError`` becomes
``ProjectionRejected``.

Positions live in ``(:ProjectionOffset {key, projection, topic, partition, next_offset})``
nodes, unique on ``key = "<projection>|<topic>|<partition>"`` (a single-property constraint
works on every Neo4j edition). ``apply_batch`` locks and reads them, drops records below them,
calls ``apply(tx, records)`` and writes the new offsets, all in one ``execute_write``
transaction. A concrete projection declares ``constraints`` and ``labels`` (every node label it
owns, for ``reset()``) and implements ``apply``, which must be idempotent per fact: the driver
may run the transaction function more than once. It registers itself with
:func:`projections.registry.registered`, and is built (``build``) only where a Neo4j is
configured or running (``enabled``). :func:`run_rows` runs one ``UNWIND $rows`` statement.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Self

import neo4j
from neo4j.exceptions import (
    ConnectionAcquisitionTimeoutError,
    Neo4jError,
    ServiceUnavailable,
    SessionExpired,
    TransientError,
)

from projections.base import Position, Projection, Record
from streams.errors import ProjectionRejected, ProjectionUnavailable

if TYPE_CHECKING:
    from projections.registry import BuildContext

__all__ = ["Neo4jProjection", "run_rows"]

logger = logging.getLogger(__name__)

OFFSET_CONSTRAINT = (
    "CREATE CONSTRAINT projection_offset_key IF NOT EXISTS "
    "FOR (o:ProjectionOffset) REQUIRE o.key IS UNIQUE"
)
# Writing updated_at takes the node's write lock before next_offset is read, so two workers
# applying the same partition serialize here (the FOR UPDATE of the Postgres base).
LOCK_OFFSETS = """
UNWIND $rows AS row
MERGE (o:ProjectionOffset {key: row.key})
ON CREATE SET o.projection = $projection, o.topic = $topic, o.partition = row.partition,
              o.next_offset = 0
SET o.updated_at = datetime()
RETURN o.partition AS partition, o.next_offset AS next_offset
"""
WRITE_OFFSETS = """
UNWIND $rows AS row
MATCH (o:ProjectionOffset {key: row.key})
SET o.next_offset = row.next_offset
"""
DELETE_NODES = """
MATCH (n:`{label}`)
CALL (n) {{ DETACH DELETE n }} IN TRANSACTIONS OF 10000 ROWS
"""

_TRANSIENT = (ServiceUnavailable, SessionExpired, TransientError,
              ConnectionAcquisitionTimeoutError, OSError)


class Neo4jProjection(Projection):
    """Base of every Neo4j projection."""

    constraints: ClassVar[list[str]]
    labels: ClassVar[list[str]]
    # The driver retries transient failures inside execute_write for this long; the runner
    # retries the whole batch after that, so keep it short.
    transaction_retry_time: ClassVar[float] = 5.0
    # What the registry needs (see projections.registry.Buildable).
    store: ClassVar[str] = "neo4j"
    build_order: ClassVar[int] = 1  # optional: built after the Postgres projections
    disabled_hint: ClassVar[str] = ("Neo4j is neither configured nor running: set "
                                    "SESSIONSTREAM_NEO4J_URI or run `sessionstream stack up "
                                    "neo4j`")

    def __init__(self, uri: str, user: str | None = None, password: str | None = None,
                 database: str | None = None) -> None:
        self.uri = uri
        self.auth = (user or "neo4j", password) if password is not None else None
        self.database = database
        self.driver: neo4j.AsyncDriver | None = None

    @property
    def started(self) -> bool:
        return self.driver is not None

    @classmethod
    def build(cls, context: BuildContext) -> Self:
        """A new, unstarted projection on ``context``'s Neo4j (``enabled`` first)."""
        assert context.neo4j_uri is not None, "enabled() first"
        return cls(context.neo4j_uri, context.neo4j_user, context.neo4j_password)

    @classmethod
    def enabled(cls, context: BuildContext) -> bool:
        """Whether a Neo4j is configured or running in the local stack."""
        return bool(context.neo4j_uri)

    @abstractmethod
    async def apply(self, tx: neo4j.AsyncManagedTransaction, records: list[Record]) -> None:
        """Write the effect of ``records`` (never applied before, values not None) in ``tx``."""

    @asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        try:
            yield
        except _TRANSIENT as exc:
            raise ProjectionUnavailable(f"{self.name}: neo4j unavailable: {exc}") from exc
        except Neo4jError as exc:
            raise ProjectionRejected(f"{self.name}: neo4j rejected the batch: {exc}") from exc

    def _offset_key(self, topic: str, partition: int) -> str:
        return f"{self.name}|{topic}|{partition}"

    async def start(self) -> None:
        """Connect, check the server answers, and create the constraints (idempotent)."""
        # Server notifications (hints about a query's plan, a property no node has yet) are
        # for whoever writes the queries; the driver logged one warning per batch for them.
        self.driver = neo4j.AsyncGraphDatabase.driver(
            self.uri, auth=self.auth, max_transaction_retry_time=self.transaction_retry_time,
            notifications_min_severity="OFF",
        )
        try:
            async with self._translated():
                await self.driver.verify_connectivity()
                for statement in [OFFSET_CONSTRAINT, *self.constraints]:
                    await self.driver.execute_query(statement, database_=self.database)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self.driver is not None:
            driver, self.driver = self.driver, None
            await driver.close()

    async def positions(self) -> list[Position]:
        assert self.driver is not None, "start() first"
        async with self._translated():
            records, _, _ = await self.driver.execute_query(
                "MATCH (o:ProjectionOffset {projection: $projection}) "
                "RETURN o.topic AS topic, o.partition AS partition, o.next_offset AS next_offset",
                projection=self.name, database_=self.database,
                routing_=neo4j.RoutingControl.READ,
            )
        return [Position(r["topic"], r["partition"], r["next_offset"]) for r in records]

    async def apply_batch(self, records: list[Record]) -> int:
        assert self.driver is not None, "start() first"
        if not records:
            return 0
        async with self._translated(), self.driver.session(database=self.database) as session:
            return int(await session.execute_write(self._apply_batch, records))

    async def _apply_batch(self, tx: neo4j.AsyncManagedTransaction, records: list[Record]) -> int:
        topic = records[0].topic
        partitions = sorted({r.partition for r in records})
        result = await tx.run(
            LOCK_OFFSETS, projection=self.name, topic=topic,
            rows=[{"key": self._offset_key(topic, p), "partition": p} for p in partitions],
        )
        applied = {row["partition"]: row["next_offset"] async for row in result}
        fresh = [r for r in records if r.offset >= applied.get(r.partition, 0)]
        if not fresh:
            return 0
        await self.apply(tx, [r for r in fresh if r.value is not None])
        ends: dict[int, int] = {}
        for r in fresh:
            ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
        rows: list[dict[str, Any]] = [
            {"key": self._offset_key(topic, p), "next_offset": o} for p, o in ends.items()
        ]
        await (await tx.run(WRITE_OFFSETS, rows=rows)).consume()
        return len(fresh)

    async def reset(self) -> None:
        """Delete every node with one of ``labels`` (in batches) and this projection's offsets."""
        assert self.driver is not None, "start() first"
        async with self._translated(), self.driver.session(database=self.database) as session:
            for label in self.labels:
                # CALL ... IN TRANSACTIONS needs an auto-commit transaction: session.run.
                await (await session.run(DELETE_NODES.format(label=label))).consume()
            await (await session.run(
                "MATCH (o:ProjectionOffset {projection: $projection}) DELETE o",
                projection=self.name,
            )).consume()

    async def forget_positions(self) -> None:
        """Delete this projection's offset nodes and keep its graph (the topic was recreated)."""
        assert self.driver is not None, "start() first"
        async with self._translated():
            await self.driver.execute_query(
                "MATCH (o:ProjectionOffset {projection: $projection}) DELETE o",
                projection=self.name, database_=self.database,
            )


async def run_rows(tx: neo4j.AsyncManagedTransaction, statement: str, rows: list[Any]) -> None:
    """Run ``statement`` (one ``UNWIND $rows AS row ...``) over ``rows``; nothing when empty."""
    if rows:
        await (await tx.run(statement, rows=rows)).consume()
