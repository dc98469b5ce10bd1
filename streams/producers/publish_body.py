"""Reading a publish body into events: size, encoding, shape and nesting, refused before parsing.

The first step of ``sessionstream publish`` and ``POST /api/v1/events``: bytes in, a list of
JSON values (and the topic a ``{"topic", "events"}`` wrapper names) out, or a
:class:`PublishRejected` saying why not. Input is a JSON object (one event), a JSON array,
``{"events": [...]}`` or JSON lines, in UTF-8. Hostile input is refused before it is parsed, so
parsing cannot fail in unplanned ways: the body is at most :data:`MAX_BODY_BYTES`, its nesting
is measured without recursion (:func:`schemas.limits.depth_problem`) and no event may nest
deeper than :data:`schemas.limits.MAX_DEPTH`. Every ``\\u0000`` escape is removed first.
"""

from __future__ import annotations

import json
from typing import Any

from schemas.limits import MAX_DEPTH, depth_problem, strip_nul_escapes
from streams.errors import SessionStreamError

__all__ = ["MAX_BODY_BYTES", "MAX_EVENTS", "PublishRejected", "parse_events"]

MAX_EVENTS = 1000  # events per request or file: keeps one request's work bounded
MAX_BODY_BYTES = 5 * 1024 * 1024
_WRAPPER_DEPTH = 2
"""Levels ``{"events": [...]}`` adds around an event; the body may nest this much deeper."""
_SHAPES = 'one JSON event, a JSON array, {"events": [...]} or JSON lines'


class PublishRejected(SessionStreamError):
    """The input cannot be published; nothing was. ``status`` is the HTTP status to answer
    with (400 not JSON, 404 unknown topic, 409 idempotency conflict, 413 too large, 422
    invalid), ``problems`` one line per invalid field."""

    def __init__(self, status: int, message: str, problems: list[str] | None = None) -> None:
        self.status = status
        self.message = message
        self.problems = problems or []
        super().__init__("\n  ".join([message, *self.problems]))


def parse_events(raw: bytes) -> tuple[list[Any], str | None]:
    """The events of a body (and the topic a ``{"topic", "events"}`` wrapper names).

    Raises :class:`PublishRejected`: 413 over :data:`MAX_BODY_BYTES` or :data:`MAX_EVENTS`; 400
    not UTF-8, empty, not JSON (nor JSON lines), nested deeper than ``MAX_DEPTH``; 422 no
    events. ``\\u0000`` escapes are removed first (text never holds NUL)."""
    if len(raw) > MAX_BODY_BYTES:
        raise PublishRejected(413, f"body of {len(raw)} bytes is over the limit of "
                                   f"{MAX_BODY_BYTES} bytes; split it into smaller batches")
    try:
        text = strip_nul_escapes(raw).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PublishRejected(400, f"body is not UTF-8 text: {exc}") from exc
    if not text.strip():
        raise PublishRejected(400, f"body is empty: send {_SHAPES}")
    _refuse_depth(text, "body", MAX_DEPTH + _WRAPPER_DEPTH)
    value = _loads(text)
    topic = None
    if isinstance(value, dict) and "events" in value and set(value) <= {"events", "topic"}:
        topic, value = value.get("topic"), value["events"]
        if not isinstance(value, list):
            raise PublishRejected(400, '"events" must be an array of event objects')
    events = value if isinstance(value, list) else [value]
    if not events:
        raise PublishRejected(422, "no events: the batch is empty")
    if len(events) > MAX_EVENTS:
        raise PublishRejected(413, f"batch of {len(events)} events is over the limit of "
                                   f"{MAX_EVENTS} per request; split it")
    _refuse_deep_events(events)
    return events, topic if isinstance(topic, str) else None


def _refuse_depth(text: str, what: str, limit: int) -> None:
    """400 when ``text`` nests deeper than ``limit``: measured before ``json.loads``, which
    recurses (a 100,000-deep body would raise ``RecursionError``)."""
    if depth_problem(text, limit) is not None:
        wrapped = f", {limit} inside " + '{"events": [...]}' if limit > MAX_DEPTH else ""
        raise PublishRejected(400, f"{what} nests more than {limit} levels deep (objects and "
                                   f"arrays); an event may nest at most {MAX_DEPTH} levels "
                                   f"(schemas.limits.MAX_DEPTH){wrapped}")


def _refuse_deep_events(events: list[Any]) -> None:
    """400 naming the first event deeper than ``MAX_DEPTH``: pydantic cannot serialize such a
    value and consumers of the topic must be able to read every record."""
    deep = [i for i, event in enumerate(events) if _nests_deeper(event, MAX_DEPTH)]
    if deep:
        more = f" ({len(deep)} of {len(events)} events)" if len(deep) > 1 else ""
        raise PublishRejected(400, f"events[{deep[0]}] nests more than {MAX_DEPTH} levels deep "
                                   f"(objects and arrays){more}, over the limit of schemas."
                                   "limits.MAX_DEPTH; nothing was published")


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether ``value`` holds more than ``limit`` levels of dicts and lists (no recursion)."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as whole:
        # JSON lines end with "\n" only: str.splitlines() would also split inside strings
        # holding U+2028, U+0085 and other characters JSON allows unescaped
        lines = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
        if len(lines) < 2:
            raise PublishRejected(400, f"body is not JSON: {whole}") from whole
        values = []
        for n, line in lines:  # JSON lines: one event per line
            _refuse_depth(line, f"line {n}", MAX_DEPTH)
            try:
                values.append(json.loads(line))
            except ValueError as exc:
                raise PublishRejected(400, f"body is neither JSON nor JSON lines: line {n}: "
                                           f"{exc}") from exc
        return values
