"""The spans of a session's trace: their ids, derived from the session, and the span tree.

**Ids.** A session's trace id is the first 16 bytes of SHA-256 of
``sessionstream:trace:<session id>`` (UTF-8), as 32 lower-case hex digits::

    printf 'sessionstream:trace:%s' "$SESSION_ID" | sha256sum | cut -c1-32

A span's id is the first 8 bytes of SHA-256 of ``<trace id hex>:<kind>:<natural key>``, where
``kind`` is ``session`` (key: the session id), ``turn`` (the prompt's ``messages.message_key``),
``response`` (the ``usage_facts.message_key``) or ``tool`` (the ``tool_calls.tool_use_id``).
The same rows therefore always give the same ids: re-exporting a session (after a crash, or
after a reset for a replay) never starts a second trace or mints new span ids. An all-zero id
(invalid in OTel; one chance in 2**64) becomes 1.

**Tree.** :func:`build_spans` turns a session's rows into ``ReadableSpan`` objects with explicit
span contexts (no tracer, no clock: times are the rows' own):

* ``session <source>``: the root (``invoke_agent``), from the session's start to its end;
* ``invoke_agent <source>``: one per turn (a prompt typed by a person, and what follows until
  the next one), child of the root;
* ``chat <model>``: one per ``usage_facts`` row (an API response and its usage), child of its
  turn (of the root before the first prompt); it starts at the previous event of its agent
  thread in the turn (the prompt, a response, a tool result) and ends when it was written;
* ``execute_tool <name>``: one per tool call, child of its turn, from call to result.

Every span carries ``gen_ai.conversation.id`` and ``session.id`` (the session id); usage
attributes follow the GenAI conventions (``gen_ai.usage.input_tokens`` includes the cached
input, which is also given apart as ``gen_ai.usage.cache_read.input_tokens`` and
``gen_ai.usage.cache_creation.input_tokens``).
"""

from __future__ import annotations

import bisect
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Literal

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from projections.otel.metrics import provider_of

__all__ = ["Prompt", "Response", "SessionInfo", "ToolCall", "build_spans", "default_resource",
           "span_id_of", "trace_id_hex", "trace_id_of"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SpanKindName = Literal["session", "turn", "response", "tool"]
TRACE_PREFIX = "sessionstream:trace:"

IsNew = Callable[[datetime], bool]


def trace_id_of(session_id: str) -> int:
    """The trace id of ``session_id`` as an int (what ``SpanContext`` takes)."""
    digest = hashlib.sha256((TRACE_PREFIX + session_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:16], "big") or 1


def trace_id_hex(session_id: str) -> str:
    """The trace id of ``session_id`` as backends show it: 32 lower-case hex digits."""
    return f"{trace_id_of(session_id):032x}"


def span_id_of(trace_id: int, kind: SpanKindName, key: str) -> int:
    """The id of the span of ``kind`` with natural ``key`` in trace ``trace_id``."""
    digest = hashlib.sha256(f"{trace_id:032x}:{kind}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


@dataclass(frozen=True)
class SessionInfo:
    """The ``sessions`` columns the root span needs."""

    id: str
    source: str
    started_at: datetime | None = None
    last_activity_at: datetime | None = None
    ended_at: datetime | None = None
    title: str | None = None
    project: str | None = None
    working_dir: str | None = None


@dataclass(frozen=True)
class Prompt:
    """A prompt typed by a person (``messages``, role user, not meta, main thread)."""

    key: str
    at: datetime


@dataclass(frozen=True)
class Response:
    """One ``usage_facts`` row: an API response and its usage (token buckets disjoint)."""

    key: str
    model: str
    at: datetime
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True
    agent_id: str | None = None


@dataclass(frozen=True)
class ToolCall:
    """One ``tool_calls`` row; ``is_error`` None while its result is pending."""

    tool_use_id: str
    name: str
    called_at: datetime
    resulted_at: datetime | None = None
    is_error: bool | None = None
    agent_id: str | None = None

    @property
    def end(self) -> datetime:
        return max(self.called_at, self.resulted_at or self.called_at)


def build_spans(session: SessionInfo, prompts: Iterable[Prompt], responses: Iterable[Response],
                tools: Iterable[ToolCall], *, since: datetime | None = None,
                resource: Resource | None = None) -> list[ReadableSpan]:
    """The spans of ``session``'s trace for the rows timed after ``since`` (all when None).

    Rows before ``since`` are still read to place the new ones (their turn, their start); a turn
    is included when its prompt or one of its included rows is new, the root whenever anything
    is. Nothing new: an empty list. Pure: the same arguments give equal spans, ordered by start.
    """
    tree = _Tree(session, sorted(prompts, key=lambda p: (p.at, p.key)),
                 resource or default_resource())
    rows: list[Response | ToolCall] = [*sorted(responses, key=lambda r: (r.at, r.key)),
                                       *sorted(tools, key=lambda t: (t.called_at, t.tool_use_id))]
    for row in rows:
        tree.place(row)
    return tree.spans(since)


class _Tree:
    """Rows grouped by turn (``None``: before the first prompt), then turned into spans."""

    def __init__(self, session: SessionInfo, prompts: list[Prompt], resource: Resource) -> None:
        self.session, self.prompts, self.resource = session, prompts, resource
        self.trace = trace_id_of(session.id)
        self.starts = [p.at for p in prompts]
        self.members: dict[int | None, list[Response | ToolCall]] = defaultdict(list)

    def place(self, row: Response | ToolCall) -> None:
        at = row.at if isinstance(row, Response) else row.called_at
        index = bisect.bisect_right(self.starts, at) - 1
        self.members[index if index >= 0 else None].append(row)

    def spans(self, since: datetime | None) -> list[ReadableSpan]:
        def new(at: datetime) -> bool:
            return since is None or at > since

        root = self._context("session", self.session.id)
        out: list[ReadableSpan] = []
        every_response: list[Response] = []
        for index in [None, *range(len(self.prompts))]:
            rows = self.members.get(index, [])
            every_response += [r for r in rows if isinstance(r, Response)]
            prompt = self.prompts[index] if index is not None else None
            parent = root if prompt is None else self._context("turn", prompt.key)
            children = self._children(parent, prompt, rows, new)
            out += children
            if prompt is not None and (children or new(prompt.at)):
                out.append(self._turn(parent, root, prompt, rows))
        if out:
            out.append(self._root(root, every_response))
        return sorted(out, key=lambda s: (s.start_time or 0, s.context.span_id))

    def _children(self, parent: SpanContext, prompt: Prompt | None,
                  rows: list[Response | ToolCall], new: IsNew) -> list[ReadableSpan]:
        # Per agent thread, the times a response may have been requested after.
        marks: dict[str | None, list[datetime]] = defaultdict(list)
        for row in rows:
            marks[row.agent_id].append(row.at if isinstance(row, Response) else row.end)
        for times in marks.values():
            times.sort()
        out = []
        for row in rows:
            if isinstance(row, ToolCall):
                if new(row.called_at) or new(row.end):
                    out.append(self._tool(parent, row))
                continue
            if not new(row.at):
                continue
            times = marks[row.agent_id]
            after = [*times[:bisect.bisect_left(times, row.at)], *([prompt.at] if prompt else [])]
            out.append(self._response(parent, row, max(after) if after else row.at))
        return out

    # -- one builder per span ----------------------------------------------------------------

    def _root(self, context: SpanContext, responses: list[Response]) -> ReadableSpan:
        s = self.session
        times = [t for t in (s.started_at, s.ended_at, s.last_activity_at) if t is not None]
        times += [p.at for p in self.prompts] + [r.at for r in responses]
        times += [t.end for rows in self.members.values() for t in rows if isinstance(t, ToolCall)]
        extra = {"sessionstream.session.title": s.title, "sessionstream.project": s.project,
                 "sessionstream.working_dir": s.working_dir,
                 "sessionstream.turns": len(self.prompts)}
        return self._span(f"session {s.source}", context, None, min(times), max(times),
                          {**self._agent(responses), **_usage(responses), **extra})

    def _turn(self, context: SpanContext, root: SpanContext, prompt: Prompt,
              rows: list[Response | ToolCall]) -> ReadableSpan:
        responses = [r for r in rows if isinstance(r, Response)]
        ends = [prompt.at, *(r.at if isinstance(r, Response) else r.end for r in rows)]
        tools = sorted({r.name for r in rows if isinstance(r, ToolCall)})
        extra = {"sessionstream.message_key": prompt.key, "sessionstream.tool.names": tools,
                 "sessionstream.tool.calls": len(rows) - len(responses)}
        return self._span(f"invoke_agent {self.session.source}", context, root, prompt.at,
                          max(ends), {**self._agent(responses), **_usage(responses), **extra})

    def _response(self, parent: SpanContext, row: Response, start: datetime) -> ReadableSpan:
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider_of(self.session.source, row.model),
            "gen_ai.request.model": row.model, "gen_ai.response.model": row.model,
            "gen_ai.agent.id": row.agent_id, "sessionstream.message_key": row.key,
            "sessionstream.priced": row.priced, **_usage([row]),
        }
        return self._span(f"chat {row.model}", self._context("response", row.key), parent,
                          start, row.at, attributes, SpanKind.CLIENT)

    def _tool(self, parent: SpanContext, row: ToolCall) -> ReadableSpan:
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": row.name,
                      "gen_ai.tool.call.id": row.tool_use_id, "gen_ai.agent.id": row.agent_id,
                      "sessionstream.tool.pending": row.is_error is None}
        status = Status(StatusCode.ERROR, "tool error") if row.is_error else Status()
        return self._span(f"execute_tool {row.name}", self._context("tool", row.tool_use_id),
                          parent, row.called_at, row.end, attributes, status=status)

    def _agent(self, responses: list[Response]) -> dict[str, object]:
        model = responses[0].model if responses else ""
        return {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": self.session.source,
                "gen_ai.provider.name": provider_of(self.session.source, model)}

    def _context(self, kind: SpanKindName, key: str) -> SpanContext:
        return SpanContext(self.trace, span_id_of(self.trace, kind, key), is_remote=False,
                           trace_flags=TraceFlags(TraceFlags.SAMPLED))

    def _span(self, name: str, context: SpanContext, parent: SpanContext | None,
              start: datetime, end: datetime, attributes: Mapping[str, object],
              kind: SpanKind = SpanKind.INTERNAL, status: Status | None = None) -> ReadableSpan:
        common = {"gen_ai.conversation.id": self.session.id, "session.id": self.session.id}
        kept = {k: v for k, v in {**common, **attributes}.items() if v is not None}
        return ReadableSpan(name=name, context=context, parent=parent, resource=self.resource,
                            attributes=kept, kind=kind, status=status or Status(),  # type: ignore[arg-type]
                            start_time=_nanos(start), end_time=_nanos(max(start, end)),
                            instrumentation_scope=InstrumentationScope(__name__))


def _usage(responses: Sequence[Response]) -> dict[str, object]:
    """GenAI usage attributes: input tokens include the cached ones, as the convention asks."""
    read = sum(r.cache_read_tokens for r in responses)
    created = sum(r.cache_creation_tokens for r in responses)
    return {
        "gen_ai.usage.input_tokens": sum(r.input_tokens for r in responses) + read + created,
        "gen_ai.usage.output_tokens": sum(r.output_tokens for r in responses),
        "gen_ai.usage.cache_read.input_tokens": read,
        "gen_ai.usage.cache_creation.input_tokens": created,
        "sessionstream.responses": len(responses),
        "sessionstream.cost_usd": round(sum(r.cost_usd for r in responses), 6),
    }


def _nanos(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1) * 1000


def default_resource() -> Resource:
    try:
        service_version = version("sessionstream")
    except PackageNotFoundError:
        service_version = "unknown"
    return Resource.create({"service.name": "sessionstream", "service.version": service_version})
