"""``SessionMetrics``: OTel instruments whose totals are *derived* from the stores, never counted.

Nothing here increments a counter as events pass. Every monotonic total (sessions started and
closed at least once, files touched, tool calls, tokens, cost, events processed) is re-read by
:meth:`SessionMetrics.refresh` from the tables the projections keep exactly-once (``sessions``,
``tool_calls``, ``usage_facts`` without the prefixes sessions copied from their origin, see
:mod:`projections.lineage`; ``projection_offsets``): a handful of ``GROUP BY`` queries in one
read-only snapshot, which also reads the active sessions and the database's size (gauges). The
observable instruments report the last snapshot. A worker restarted after a crash (``SIGKILL``
mid-ingest included) therefore exports the same totals as one that never stopped: what is
exported is a function of committed state, not of how often an event was seen. Until the first
refresh succeeds nothing is reported (rather than zeros), so a restart never shows a drop to 0
that Prometheus would read as a counter reset. A projection ``reset()`` (replay) does lower the
totals, which consumers see as an ordinary counter reset.

Tokens are exported as ``gen_ai.client.token.usage`` with the GenAI semantic-convention
attributes (the points of every instrument are built in
:mod:`projections.otel.session_observations`). The semconv instrument is a per-request
histogram, which cannot be rebuilt from stored totals idempotently; this is a cumulative
*counter* under that name (``gen_ai_client_token_usage_total`` in Prometheus). Tool calls are
counted once they have a result (outcome ok|error); calls still waiting for theirs are a gauge,
because a pending call later becomes ok and a counter must not go down. Events processed per
(projection, topic) is the sum of the next offsets the projection has committed, dead-lettered
records included.

Dead letters per topic (``sessionstream.dead_letters``) are derived too, from the broker: the
end offsets of each ``<topic>.dlq``, which only grow, so a restart reports the same totals; the
worker passes their reader to :meth:`SessionMetrics.run` (nothing is reported before the first
read). Process-local instruments (they restart with the process, as latencies do): the
write-duration histogram fed by the runner's ``on_applied`` callback, and the lag gauge set by
the worker.
Callbacks never do I/O and may run on the exporter's threads; they read the snapshot, which
:meth:`refresh` replaces in a single assignment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Protocol

import asyncpg
from aiokafka.errors import KafkaError
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from projections.base import Position
from projections.otel import session_observations as points
from projections.otel.session_observations import (
    EMPTY,
    PROJECTION,
    TOKEN_KINDS,
    MetricsSnapshot,
)
from projections.postgres.session_schema import owned
from projections.pricing import normalize_model
from streams.errors import ProjectionError
from streams.sources import provider_of as declared_provider

__all__ = [
    "MetricsSnapshot", "PositionSource", "SessionMetrics", "provider_of", "read_snapshot",
]

logger = logging.getLogger(__name__)

_PROVIDER_BY_MODEL = (("claude", "anthropic"), ("gpt", "openai"), ("codex", "openai"),
                      ("o1", "openai"), ("o3", "openai"), ("o4", "openai"),
                      ("chatgpt", "openai"), ("gemini", "gcp.gemini"), ("grok", "x_ai"),
                      ("deepseek", "deepseek"), ("mistral", "mistral_ai"),
                      ("magistral", "mistral_ai"), ("devstral", "mistral_ai"),
                      ("codestral", "mistral_ai"))
_WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ProjectionError)
_LAG_ERRORS = (OSError, KafkaError)

LagReader = Callable[[], Awaitable[Mapping[str, int]]]
DeadLetterReader = Callable[[], Awaitable[Mapping[str, int]]]  # {dead-letter topic: records}
Points = Callable[[MetricsSnapshot], list[Observation]]

# A session closed now has closed at least once; one active again counts by first_closed_at.
SESSIONS_SQL = """
SELECT source, status, count(*) AS n,
       count(*) FILTER (WHERE status <> 'closed' AND first_closed_at IS NOT NULL) AS reopened,
       coalesce(sum(files_touched), 0) AS files
FROM sessions GROUP BY source, status"""
DATABASE_SIZE_SQL = "SELECT pg_database_size(current_database())"
TOOL_CALLS_SQL = """
SELECT name, CASE WHEN is_error IS NULL THEN 'pending' WHEN is_error THEN 'error' ELSE 'ok' END
       AS outcome, count(*) AS n
FROM tool_calls WHERE name IS NOT NULL GROUP BY 1, 2"""
USAGE_SQL = f"""
SELECT coalesce(s.source, '') AS source, f.model, sum(f.input_tokens) AS input,
       sum(f.output_tokens) AS output, sum(f.cache_read_tokens) AS cache_read,
       sum(f.cache_creation_5m_tokens + f.cache_creation_1h_tokens) AS cache_creation,
       sum(f.cost_usd) AS cost
FROM usage_facts f LEFT JOIN sessions s ON s.id = f.session_id
WHERE {owned("f")}
GROUP BY 1, 2"""
OFFSETS_SQL = """
SELECT projection, topic, sum(next_offset) AS n FROM projection_offsets GROUP BY 1, 2"""


class PositionSource(Protocol):
    """What the metrics need of a projection: its name and committed positions (asked only
    while its ``started`` attribute, when it has one, is true)."""

    @property
    def name(self) -> str: ...

    async def positions(self) -> list[Position]: ...


def provider_of(source: str, model: str) -> str:
    """The ``gen_ai.provider.name`` of a model: by its name (without a router's ``vendor/``
    or a cloud's ``region.vendor.`` prefix: ``x-ai/grok-code-fast-1`` is ``x_ai``), else the
    one the agent's source declares (:func:`streams.sources.provider_of`), else the source's
    name. Agents that call any provider (OpenCode, goose, the Cline family) declare none."""
    lowered = normalize_model(model)
    for prefix, provider in _PROVIDER_BY_MODEL:
        if lowered.startswith(prefix):
            return provider
    return declared_provider(source) or source or "unknown"


async def read_snapshot(conn: asyncpg.Connection,
                        projections: Sequence[PositionSource] = ()) -> MetricsSnapshot:
    """Run the queries in one read-only repeatable-read transaction (a consistent picture).

    Positions of ``projections`` (any store) replace the ``projection_offsets`` rows of the same
    projection name. Raises the driver's errors untranslated.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        sessions = await conn.fetch(SESSIONS_SQL)
        tools = await conn.fetch(TOOL_CALLS_SQL)
        usage = await conn.fetch(USAGE_SQL)
        offsets = await conn.fetch(OFFSETS_SQL)
        database_bytes = await conn.fetchval(DATABASE_SIZE_SQL)
    reopened: dict[str, int] = defaultdict(int)
    files: dict[str, int] = defaultdict(int)
    for row in sessions:
        reopened[row["source"]] += int(row["reopened"])
        files[row["source"]] += int(row["files"])
    tokens: dict[tuple[str, str, str], int] = defaultdict(int)
    cost: dict[tuple[str, str], float] = defaultdict(float)
    for row in usage:
        provider = provider_of(row["source"], row["model"])
        for kind in TOKEN_KINDS:
            tokens[provider, row["model"], kind] += int(row[kind])
        cost[provider, row["model"]] += float(row["cost"])
    processed = {(r["projection"], r["topic"]): int(r["n"]) for r in offsets}
    for projection in projections:
        if not getattr(projection, "started", True):
            continue  # not started yet (or stopping): its last committed rows stand
        processed = {k: v for k, v in processed.items() if k[0] != projection.name}
        for position in await projection.positions():
            key = (projection.name, position.topic)
            processed[key] = processed.get(key, 0) + position.next_offset
    return MetricsSnapshot(
        sessions={(r["source"], r["status"]): r["n"] for r in sessions},
        tool_calls={(r["name"], r["outcome"]): r["n"] for r in tools},
        tokens=dict(tokens), cost_usd=dict(cost), events_processed=processed,
        reopened=dict(reopened), files_touched=dict(files), database_bytes=int(database_bytes),
    )


class SessionMetrics:
    """The instruments, created once on ``meter_provider``; totals come from :meth:`refresh`.

    ``projections``: stores whose positions are not in Postgres' ``projection_offsets`` (e.g. the
    Neo4j graph); they must be started before :meth:`refresh` runs.
    """

    def __init__(self, meter_provider: MeterProvider,
                 projections: Sequence[PositionSource] = ()) -> None:
        self.projections = list(projections)
        self.snapshot: MetricsSnapshot | None = None
        self._lag: dict[str, int] = {}
        self._dead_letters: dict[str, int] | None = None  # None until the first read
        meter = meter_provider.get_meter("sessionstream")
        counter = meter.create_observable_counter
        counter("sessionstream.sessions.started", [self._observe(points.started)], "{session}",
                "Sessions seen, by source.")
        counter("sessionstream.sessions.closed", [self._observe(points.closed)], "{session}",
                "Sessions that closed at least once (a reopened one stays counted), by source.")
        counter("sessionstream.files.touched", [self._observe(points.files_touched)], "{file}",
                "Distinct files touched per session, summed by source.")
        counter("sessionstream.dead_letters", [self._dead_letter_points], "{record}",
                "Records on each dead-letter topic (its end offsets).")
        counter("sessionstream.events.processed", [self._observe(points.processed)], "{event}",
                "Records a projection has committed, by projection and topic.")
        counter("sessionstream.tool.calls", [self._observe(points.tool_calls)], "{call}",
                "Tool calls that have a result, by tool and outcome (ok|error).")
        counter("gen_ai.client.token.usage", [self._observe(points.tokens)], "{token}",
                "Tokens used, cumulative (GenAI semconv attributes; not a per-request "
                "histogram).")
        counter("sessionstream.cost.usage", [self._observe(points.cost)], "USD",
                "Estimated cost in USD, by provider and model.")
        gauge = meter.create_observable_gauge
        gauge("sessionstream.tool.calls.pending", [self._observe(points.pending)], "{call}",
              "Tool calls still waiting for their result, by tool.")
        gauge("sessionstream.projection.lag", [self._lag_points], "{record}",
              "Records of its topic a projection has not applied yet.")
        gauge("sessionstream.sessions.active", [self._observe(points.active)], "{session}",
              "Sessions whose status is active now, by source.")
        gauge("sessionstream.postgres.database.size", [self._observe(points.database_size)],
              "By", "Size of the Postgres database the projections write (pg_database_size).")
        self._write = meter.create_histogram(
            "sessionstream.projection.write.duration", "s",
            "Time to apply one batch and store its position.",
            explicit_bucket_boundaries_advisory=_WRITE_BUCKETS)

    # -- feeding ---------------------------------------------------------------------------

    async def refresh(self, pool_or_dsn: asyncpg.Pool | str) -> MetricsSnapshot:
        """Read the totals and make them the reported ones; returns the new snapshot.

        On any error (raised as is: asyncpg's, ``OSError``, ``ProjectionError``) the previous
        snapshot stays in place.
        """
        if isinstance(pool_or_dsn, str):
            conn = await asyncpg.connect(pool_or_dsn)
            try:
                snapshot = await read_snapshot(conn, self.projections)
            finally:
                await conn.close()
        else:
            async with pool_or_dsn.acquire() as conn:
                snapshot = await read_snapshot(conn, self.projections)
        self.snapshot = snapshot
        return snapshot

    async def run(self, stop: asyncio.Event, dsn: str, interval: float = 5.0, *,
                  lags: LagReader | None = None,
                  dead_letters: DeadLetterReader | None = None) -> None:
        """Refresh every ``interval`` seconds until ``stop`` is set; never raises for a store.

        Database errors are logged and retried at the next interval (the last totals stay).
        ``lags``, when given, is awaited each round too: ``{projection: records behind}`` goes
        to :meth:`set_lag`; ``dead_letters`` likewise, ``{dead-letter topic: records}`` to
        :meth:`set_dead_letters`. Their broker errors (``KafkaError``, ``OSError``) are logged
        alike and the last values stay.
        """
        pool: asyncpg.Pool | None = None
        try:
            while not stop.is_set():
                try:
                    if pool is None:
                        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
                    await self.refresh(pool)
                except asyncpg.UndefinedTableError:
                    # A first start: the projection creates its tables in a moment.
                    logger.debug("metrics: tables not created yet")
                except _DB_ERRORS as exc:
                    logger.warning("metrics refresh failed, keeping the last totals: %s", exc)
                if lags is not None:
                    await self._read_lags(lags)
                if dead_letters is not None:
                    await self._read_dead_letters(dead_letters)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
        finally:
            if pool is not None:
                await pool.close()

    async def _read_lags(self, lags: LagReader) -> None:
        try:
            for projection, lag in (await lags()).items():
                self.set_lag(projection, lag)
        except _LAG_ERRORS as exc:
            logger.warning("metrics lag read failed, keeping the last lags: %s", exc)

    async def _read_dead_letters(self, dead_letters: DeadLetterReader) -> None:
        try:
            self.set_dead_letters(await dead_letters())
        except _LAG_ERRORS as exc:
            logger.warning("metrics dead-letter read failed, keeping the last counts: %s", exc)

    def record_write(self, projection: str, applied: int, seconds: float) -> None:
        """Record one batch write; the signature of ``ProjectionRunner(on_applied=...)``.

        Batches that applied nothing (all already applied) are recorded too: the time was spent.
        """
        self._write.record(seconds, {PROJECTION: projection})

    def set_lag(self, projection: str, lag: int) -> None:
        """Set the number of records ``projection`` is behind its topic's end."""
        self._lag = {**self._lag, projection: lag}  # copy: callbacks iterate on other threads

    def set_dead_letters(self, counts: Mapping[str, int]) -> None:
        """Set the records on each dead-letter topic (end offsets summed over partitions)."""
        self._dead_letters = dict(counts)  # a new dict: callbacks iterate on other threads

    # -- callbacks: read the snapshot, no I/O ---------------------------------------------------

    def _observe(self, points_of: Points) -> Callable[[CallbackOptions], Iterable[Observation]]:
        """The callback reporting ``points_of`` the last snapshot (nothing before the first)."""
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            snapshot = self.snapshot  # read once: a refresh may swap it meanwhile
            return points_of(EMPTY if snapshot is None else snapshot)

        return callback

    def _lag_points(self, options: CallbackOptions) -> Iterable[Observation]:
        return points.lags(self._lag)

    def _dead_letter_points(self, options: CallbackOptions) -> Iterable[Observation]:
        counts = self._dead_letters
        return [] if counts is None else points.dead_letters(counts)
