"""Deep health: can the worker reach every store, and is it keeping up?

:func:`check_health` asks the broker, each projection's store (Postgres always, Neo4j when
configured) and the consumer positions, within a timeout each, and returns a
:class:`HealthReport`:

* ``broker``: the topics' end offsets and the dead-letter topics' sizes could be read;
* one check per projection (``postgres.session_tables``, ``neo4j.session_graph``, ...): its
  store answered and gave its positions;
* ``lag``: per agent (its consumer group's committed offsets) and per projection (the
  positions its store holds), the records of its topic not yet applied; more than
  ``SESSIONSTREAM_HEALTH_MAX_LAG`` is a problem;
* ``dead_letters``: records per dead-letter topic (reported, not a failure: each is parked
  for a human, see ``sessionstream redrive``).

The report is healthy when every check passed and no lag is over the threshold. It is what
``GET /api/v1/health`` answers (200 healthy, 503 not) and what ``sessionstream status --check``
prints (exit 0 healthy, 1 not); the compose healthcheck calls the former.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka.errors import KafkaError

from app.endpoints import Endpoints
from app.groups import AGENT_GROUPS
from app.projection_set import build_projections
from projections.base import Projection
from streams.errors import SessionStreamError
from streams.lag import committed_offsets, topic_ends
from streams.settings import Settings
from streams.topics import CATALOGUE, FILE_CHANGES, SESSION_EVENTS

__all__ = ["Check", "HealthReport", "check_health", "health_answer"]

T = TypeVar("T")

TIMEOUT_S = 5.0
_FAILURES = (SessionStreamError, KafkaError, OSError, TimeoutError)


@dataclass(frozen=True)
class Check:
    """One dependency: whether it answered, how long it took, and what it said."""

    name: str
    ok: bool
    detail: str
    ms: float

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "ms": round(self.ms, 1)}


@dataclass
class HealthReport:
    """What :func:`check_health` found; ``healthy`` when nothing is down or too far behind."""

    checks: list[Check] = field(default_factory=list)
    lag: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    max_lag: int = 0

    @property
    def problems(self) -> list[str]:
        down = [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]
        behind = [f"{name} is {n} records behind (more than {self.max_lag}, "
                  "SESSIONSTREAM_HEALTH_MAX_LAG)"
                  for name, n in sorted(self.lag.items()) if n > self.max_lag]
        return down + behind

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"status": "ok" if self.healthy else "unhealthy",
                "problems": self.problems,
                "checks": {c.name: c.as_dict() for c in self.checks},
                "lag": dict(sorted(self.lag.items())), "max_lag": self.max_lag,
                "dead_letters": dict(sorted(self.dead_letters.items()))}

    def lines(self) -> list[str]:
        """The report as plain terminal lines."""
        out = [f"{'check':<28} {'state':<6} {'ms':>7}  detail"]
        out += [f"{c.name:<28} {'ok' if c.ok else 'DOWN':<6} {c.ms:>7.1f}  {c.detail}"
                for c in self.checks]
        out += [f"lag {name:<24} {n:>14}" + ("  over the threshold" if n > self.max_lag else "")
                for name, n in sorted(self.lag.items())]
        out += [f"dead letters {topic:<40} {n:>6}"
                for topic, n in sorted(self.dead_letters.items()) if n]
        out.append("healthy" if self.healthy else "UNHEALTHY: " + "; ".join(self.problems))
        return out


async def _timed(name: str, probe: Callable[[], Awaitable[T]],
                 timeout_s: float) -> tuple[Check, T | None]:
    started = time.monotonic()
    try:
        value = await asyncio.wait_for(probe(), timeout_s)
    except TimeoutError:
        return Check(name, False, f"no answer within {timeout_s:.0f} s",
                     (time.monotonic() - started) * 1000), None
    except _FAILURES as exc:
        return Check(name, False, str(exc) or type(exc).__name__,
                     (time.monotonic() - started) * 1000), None
    return Check(name, True, "reachable", (time.monotonic() - started) * 1000), value


async def check_health(settings: Settings, endpoints: Endpoints, *,
                       timeout_s: float = TIMEOUT_S) -> HealthReport:
    """Probe the broker, every enabled projection's store and the positions (see the module).

    Never raises for an unreachable dependency: it becomes a failed check."""
    report = HealthReport(max_lag=settings.health_max_lag)
    bootstrap = endpoints.bootstrap

    projections = build_projections(settings, endpoints)
    topics = sorted({FILE_CHANGES.name, SESSION_EVENTS.name,
                     *(p.source.name for p in projections.values())})

    async def broker() -> dict[str, int]:
        dead = [spec.dlq for spec in CATALOGUE.values()]
        ends = await topic_ends(bootstrap, topics + dead)
        report.dead_letters = {topic: sum(ends[topic].values()) for topic in dead}
        for name, group, topic in AGENT_GROUPS:
            committed = await committed_offsets(bootstrap, group, topic, sorted(ends[topic]))
            report.lag[name] = sum(end - max(0, committed.get(p, -1))
                                   for p, end in ends[topic].items())
        return {topic: sum(e.values()) for topic, e in ends.items()}

    check, totals = await _timed("broker", broker, timeout_s)
    report.checks.append(check)
    for name, projection in projections.items():
        check, positions = await _timed(name, _positions_of(projection), timeout_s)
        report.checks.append(check)
        end = (totals or {}).get(projection.source.name)
        if positions is not None and end is not None:
            report.lag[name] = max(0, end - positions)
    return report


def _positions_of(projection: Projection) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        await projection.start()
        try:
            return sum(p.next_offset for p in await projection.positions())
        finally:
            await projection.stop()

    return probe


def health_answer(settings: Settings, endpoints: Endpoints, *, cache_s: float = 2.0
                  ) -> Callable[[], Awaitable[tuple[int, dict[str, Any]]]]:
    """The worker's ``GET /api/v1/health``: ``(200 or 503, report)``, probing at most once per
    ``cache_s`` (a burst of probes reuses the last answer instead of opening connections)."""
    last: list[tuple[float, tuple[int, dict[str, Any]]]] = []
    lock = asyncio.Lock()

    async def answer() -> tuple[int, dict[str, Any]]:
        async with lock:
            if last and time.monotonic() - last[0][0] < cache_s:
                return last[0][1]
            report = await check_health(settings, endpoints)
            result = (200 if report.healthy else 503, report.as_dict())
            last[:] = [(time.monotonic(), result)]
            return result

    return answer
