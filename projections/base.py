"""What every projection is: a named read model fed by one topic, applied in batches.

A projection receives a batch of decoded records of one topic-partition run, and must apply
their effect *and* the new position atomically (the store bases do this): after a crash, a
rebalance or a replay, records at or below the stored position are skipped, so nothing is lost
and nothing is applied twice. ``reset()`` forgets both the data and the position (replay).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from streams.topics import TopicSpec

__all__ = ["Position", "Projection", "Record"]


@dataclass(frozen=True)
class Record:
    """A decoded record and where it came from."""

    topic: str
    partition: int
    offset: int
    value: Any  # None: a record that was dead-lettered; it only moves the position
    key: bytes | None = None  # the record's key as sent, kept for its dead letter

    def without_value(self) -> Record:
        return Record(self.topic, self.partition, self.offset, None, self.key)


@dataclass(frozen=True)
class Position:
    topic: str
    partition: int
    next_offset: int


class Projection(ABC):
    """A read model. Subclass a store base (``PostgresProjection``, ...), not this."""

    name: ClassVar[str]
    source: ClassVar[TopicSpec]

    @abstractmethod
    async def start(self) -> None:
        """Connect and create or migrate the schema. Called once before anything else."""

    @abstractmethod
    async def stop(self) -> None:
        """Release connections. Safe to call twice."""

    @property
    def started(self) -> bool:
        """Whether :meth:`start` ran (and :meth:`stop` not since): only then may the other
        methods be called."""
        return True

    @abstractmethod
    async def positions(self) -> list[Position]:
        """Where to resume: the next offset per partition this projection has applied."""

    @abstractmethod
    async def apply_batch(self, records: list[Record]) -> int:
        """Apply ``records`` (one topic, any partitions, in offset order per partition) and
        store the new positions in the same transaction; skip records already applied.

        Returns the number of records applied (not skipped). Raises ``ProjectionUnavailable``
        when the store is temporarily unreachable (retry the same batch after ``retry_after``)
        and ``ProjectionRejected`` when the batch can never apply.
        """

    @abstractmethod
    async def reset(self) -> None:
        """Forget this projection's data and positions, so a replay rebuilds it from offset 0."""

    @abstractmethod
    async def forget_positions(self) -> None:
        """Forget the positions but keep the data: the topic was recreated (a new, empty log)
        and its events will be published again; natural keys make re-applying them converge."""
