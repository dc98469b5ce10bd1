"""``PostgresProjection``: the Postgres store base. Effect and position in one transaction.

Owns the pool, the DDL, the ``projection_offsets`` table (one row per projection, topic and
partition: the next offset to apply), skipping already-applied records, and translating
asyncpg's errors once: connection-level and serialization failures become
``ProjectionUnavailable`` (retry the same batch), anything else ``ProjectionRejected``.
A concrete projection declares ``ddl`` and ``tables``, implements ``apply(conn, records)`` and
registers itself with :func:`projections.registry.registered`; it is built on the configured
Postgres (``build``) and always enabled, Postgres being the store that is always there.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, ClassVar, Self

import asyncpg

from projections.base import Position, Projection, Record
from streams.errors import ProjectionRejected, ProjectionUnavailable

if TYPE_CHECKING:
    from projections.registry import BuildContext

__all__ = ["PostgresProjection"]

logger = logging.getLogger(__name__)

OFFSETS_DDL = """
CREATE TABLE IF NOT EXISTS projection_offsets (
    projection  text        NOT NULL,
    topic       text        NOT NULL,
    partition   int         NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
)"""

_TRANSIENT = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.InterfaceError,
)


# asyncpg's client-side "invalid query input" (e.g. an int past int64) subclasses its
# InterfaceError, which is otherwise transient; it is only exported from the private module.
_INVALID_INPUT = asyncpg.exceptions._base.DataError


class PostgresProjection(Projection):
    """Base of every Postgres projection."""

    ddl: ClassVar[list[str]]
    tables: ClassVar[list[str]]
    # What the registry needs (see projections.registry.Buildable).
    store: ClassVar[str] = "postgres"
    build_order: ClassVar[int] = 0  # always there: built (and listed by `status`) first
    disabled_hint: ClassVar[str] = ""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pool: asyncpg.Pool | None = None

    @property
    def started(self) -> bool:
        return self.pool is not None

    @classmethod
    def build(cls, context: BuildContext) -> Self:
        """A new, unstarted projection on ``context.postgres_dsn``."""
        return cls(context.postgres_dsn)

    @classmethod
    def enabled(cls, context: BuildContext) -> bool:
        """Postgres is always there (configured, or the embedded one)."""
        return True

    @abstractmethod
    async def apply(self, conn: asyncpg.Connection, records: list[Record]) -> None:
        """Write the effect of ``records`` (never seen before) inside the open transaction."""

    @asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        try:
            yield
        except _INVALID_INPUT as exc:  # an InterfaceError, but retrying cannot fix the input
            raise ProjectionRejected(f"{self.name}: a value cannot be stored: {exc}") from exc
        except _TRANSIENT as exc:
            raise ProjectionUnavailable(f"{self.name}: postgres unavailable: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise ProjectionRejected(f"{self.name}: postgres rejected the batch: {exc}") from exc

    async def start(self) -> None:
        async with self._translated():
            self.pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4)
            async with self.pool.acquire() as conn, conn.transaction():
                # One migrator at a time when several workers start together.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sessionstream-ddl'))")
                await conn.execute(OFFSETS_DDL)
                for statement in self.ddl:
                    await conn.execute(statement)

    async def stop(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()

    async def positions(self) -> list[Position]:
        assert self.pool is not None, "start() first"
        async with self._translated():
            rows = await self.pool.fetch(
                "SELECT topic, partition, next_offset FROM projection_offsets "
                "WHERE projection = $1", self.name,
            )
        return [Position(r["topic"], r["partition"], r["next_offset"]) for r in rows]

    async def apply_batch(self, records: list[Record]) -> int:
        assert self.pool is not None, "start() first"
        if not records:
            return 0
        topic = records[0].topic
        async with self._translated(), self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT partition, next_offset FROM projection_offsets "
                "WHERE projection = $1 AND topic = $2 FOR UPDATE", self.name, topic,
            )
            applied = {r["partition"]: r["next_offset"] for r in rows}
            fresh = [r for r in records if r.offset >= applied.get(r.partition, 0)]
            if not fresh:
                return 0
            await self.apply(conn, [r for r in fresh if r.value is not None])
            ends: dict[int, int] = {}
            for r in fresh:
                ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
            await conn.executemany(
                "INSERT INTO projection_offsets (projection, topic, partition, next_offset) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (projection, topic, partition) DO UPDATE "
                "SET next_offset = EXCLUDED.next_offset, updated_at = now()",
                [(self.name, topic, p, o) for p, o in ends.items()],
            )
        return len(fresh)

    async def reset(self) -> None:
        assert self.pool is not None, "start() first"
        async with self._translated(), self.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"TRUNCATE {', '.join(self.tables)}")
            await conn.execute("DELETE FROM projection_offsets WHERE projection = $1", self.name)

    async def forget_positions(self) -> None:
        assert self.pool is not None, "start() first"
        async with self._translated():
            await self.pool.execute("DELETE FROM projection_offsets WHERE projection = $1",
                                    self.name)
