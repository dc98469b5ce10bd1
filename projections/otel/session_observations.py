"""What the session metrics report: a :class:`MetricsSnapshot` of totals as OTel observations.

One pure function per instrument of :class:`~projections.otel.metrics.SessionMetrics` turns
the last snapshot into its points, with the attributes every point carries. Tokens use the
GenAI semantic-convention attributes: ``gen_ai.operation.name=chat``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.token.type`` (input|output) and, on input,
``gen_ai.token.cache`` (none|read|creation), so the sum over ``type=input`` is the semconv
input count with cached tokens included. Tool calls with a result are points per outcome
(ok|error, zeros included, so a counter never disappears); calls still waiting for theirs are
the pending gauge's. Sessions reopen (a closed session that gets new events is active again), so
the closed counter counts sessions that closed at least once: those closed now plus those
reopened since, which keeps it monotonic; the active gauge counts status ``active``. Dead letters
per topic are the end offsets of the dead-letter topics, read from the broker beside the lags.
No I/O: the callbacks may run on the exporter's threads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from opentelemetry.metrics import Observation

__all__ = [
    "EMPTY", "MODEL", "OUTCOME", "PROJECTION", "PROVIDER", "SOURCE", "TOKEN_KINDS", "TOOL", "TOPIC",
    "MetricsSnapshot", "active", "closed", "cost", "database_size", "dead_letters",
    "files_touched", "lags", "pending", "processed", "started", "tokens", "tool_calls",
]

PROJECTION = "sessionstream.projection"
SOURCE = "sessionstream.source"
OUTCOME = "sessionstream.tool.outcome"
TOPIC = "messaging.destination.name"
TOOL = "gen_ai.tool.name"
PROVIDER = "gen_ai.provider.name"
MODEL = "gen_ai.request.model"

TOKEN_KINDS = ("input", "output", "cache_read", "cache_creation")
# kind of usage_facts column -> (gen_ai.token.type, gen_ai.token.cache or None)
_TOKEN_ATTRIBUTES = {"input": ("input", "none"), "output": ("output", None),
                     "cache_read": ("input", "read"), "cache_creation": ("input", "creation")}


@dataclass(frozen=True)
class MetricsSnapshot:
    """Totals read from the stores at one instant; every value is a count since the beginning."""

    sessions: Mapping[tuple[str, str], int]  # (source, status) -> sessions
    tool_calls: Mapping[tuple[str, str], int]  # (tool, ok|error|pending) -> calls
    tokens: Mapping[tuple[str, str, str], int]  # (provider, model, TOKEN_KINDS item) -> tokens
    cost_usd: Mapping[tuple[str, str], float]  # (provider, model) -> USD
    events_processed: Mapping[tuple[str, str], int]  # (projection, topic) -> records
    # source -> sessions not closed now that closed before (a reopened session stays counted)
    reopened: Mapping[str, int] = field(default_factory=dict)
    files_touched: Mapping[str, int] = field(default_factory=dict)  # source -> distinct files
    database_bytes: int | None = None  # size of the Postgres database; None when not read


EMPTY = MetricsSnapshot(sessions={}, tool_calls={}, tokens={}, cost_usd={}, events_processed={})


def started(snapshot: MetricsSnapshot) -> list[Observation]:
    totals: dict[str, int] = defaultdict(int)
    for (source, _status), n in snapshot.sessions.items():
        totals[source] += n
    return [Observation(n, {SOURCE: s}) for s, n in sorted(totals.items())]


def closed(snapshot: MetricsSnapshot) -> list[Observation]:
    """Sessions that closed at least once: closed now, or reopened since."""
    totals: dict[str, int] = defaultdict(int)
    for (source, status), n in snapshot.sessions.items():
        totals[source] += (n if status == "closed" else 0)
    for source, n in snapshot.reopened.items():
        totals[source] += n
    return [Observation(n, {SOURCE: s}) for s, n in sorted(totals.items())]


def active(snapshot: MetricsSnapshot) -> list[Observation]:
    """Sessions whose status is ``active`` now, by source (zeros included)."""
    totals: dict[str, int] = defaultdict(int)
    for (source, status), n in snapshot.sessions.items():
        totals[source] += (n if status == "active" else 0)
    return [Observation(n, {SOURCE: s}) for s, n in sorted(totals.items())]


def files_touched(snapshot: MetricsSnapshot) -> list[Observation]:
    """Distinct files touched, summed over the sessions of each source."""
    return [Observation(n, {SOURCE: s}) for s, n in sorted(snapshot.files_touched.items())]


def database_size(snapshot: MetricsSnapshot) -> list[Observation]:
    """The Postgres database's size in bytes (nothing when it was not read)."""
    return [] if snapshot.database_bytes is None else [Observation(snapshot.database_bytes)]


def processed(snapshot: MetricsSnapshot) -> list[Observation]:
    return [Observation(n, {PROJECTION: p, TOPIC: t})
            for (p, t), n in sorted(snapshot.events_processed.items())]


def tool_calls(snapshot: MetricsSnapshot) -> list[Observation]:
    calls = snapshot.tool_calls
    return [Observation(calls.get((tool, outcome), 0), {TOOL: tool, OUTCOME: outcome})
            for tool in sorted({t for t, _ in calls}) for outcome in ("ok", "error")]


def pending(snapshot: MetricsSnapshot) -> list[Observation]:
    calls = snapshot.tool_calls
    return [Observation(calls.get((tool, "pending"), 0), {TOOL: tool})
            for tool in sorted({t for t, _ in calls})]


def tokens(snapshot: MetricsSnapshot) -> list[Observation]:
    points = []
    for (provider, model, kind), n in sorted(snapshot.tokens.items()):
        token_type, cache = _TOKEN_ATTRIBUTES[kind]
        attributes = {"gen_ai.operation.name": "chat", PROVIDER: provider, MODEL: model,
                      "gen_ai.token.type": token_type}
        if cache is not None:
            attributes["gen_ai.token.cache"] = cache
        points.append(Observation(n, attributes))
    return points


def cost(snapshot: MetricsSnapshot) -> list[Observation]:
    return [Observation(usd, {PROVIDER: p, MODEL: m})
            for (p, m), usd in sorted(snapshot.cost_usd.items())]


def lags(lag: Mapping[str, int]) -> list[Observation]:
    """The lag gauge's points: records each projection has not applied yet."""
    return [Observation(n, {PROJECTION: p}) for p, n in sorted(lag.items())]


def dead_letters(counts: Mapping[str, int]) -> list[Observation]:
    """The dead-letter counter's points: records on each ``<topic>.dlq`` (its end offsets)."""
    return [Observation(n, {TOPIC: t}) for t, n in sorted(counts.items())]
