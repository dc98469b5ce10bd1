"""Validation of events handed to ``sessionstream publish`` and ``POST /api/v1/events``.

Pure: bytes in, a :class:`ValidBatch` (encoded records ready to send) or a
:class:`~streams.producers.publish_body.PublishRejected` out, never I/O. A batch is all or
nothing: every event is checked against its topic's value model and *every* problem is reported,
each naming the event and the field (``events[2].payload.line_no: Input should be a valid
integer``), before anything is sent.

The body is read by :mod:`streams.producers.publish_body` (shapes, size and nesting limits,
``\\u0000`` removed, so no NUL reaches a topic). Integers above
:data:`schemas.limits.MAX_SAFE_INT` in bounded fields are 422s naming the field. Before
validation a ``null`` becomes the field's default (:mod:`streams.producers.publish_nulls`). A
missing ``event_id`` is derived from the event's content, so the same event published twice is
the same event. Only input topics are publishable; topics an agent writes (and dead letters) are
refused, naming the writer. The body's names (``PublishRejected``, ``parse_events``, the
limits) and ``fill_nulls`` are re-exported here, the one import the callers need.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.envelope import SessionKey, derive_event_id
from schemas.limits import MAX_RECORD_BYTES
from streams.codecs import encode, encode_key
from streams.errors import InvalidEvent
from streams.producers.publish_body import MAX_BODY_BYTES, MAX_EVENTS, PublishRejected, parse_events
from streams.producers.publish_nulls import fill_nulls
from streams.topics import CATALOGUE, FILTERED, SUMMARIES, SUMMARY_RETRIES, TopicSpec

__all__ = [
    "DERIVED_BY", "MAX_BODY_BYTES", "MAX_EVENTS", "MAX_KEY_CHARS", "MAX_RECORD_BYTES",
    "PublishRejected", "ValidBatch", "check_idempotency_key", "fill_nulls", "parse_events",
    "publishable_topics", "resolve_topic", "validate_body", "validate_events",
]

logger = logging.getLogger(__name__)

MAX_KEY_CHARS = 256
"""Longest idempotency key: it becomes the key of a compacted record."""
DERIVED_BY = {
    FILTERED.name: "the filter_events agent (from sessions.events.v1)",
    SUMMARIES.name: "the summarize_sessions agent (from sessions.events.v1)",
    SUMMARY_RETRIES.name: "the LLM summarizer (its retry queue)",
}
"""Topics an agent writes: publishing there would bypass (and contradict) the agent."""


@dataclass(frozen=True)
class ValidBatch:
    """Events that all passed validation, encoded as they will be sent."""

    topic: str
    events: list[BaseModel]
    records: list[tuple[bytes, bytes]]  # (key, value)
    digest: str  # sha256 of the topic and the encoded records: what "the same body" means

    @property
    def event_ids(self) -> list[str]:
        return [str(getattr(e, "event_id", "")) for e in self.events]


def publishable_topics() -> list[str]:
    return sorted(name for name in CATALOGUE if name not in DERIVED_BY)


def resolve_topic(name: str | None) -> TopicSpec:
    """The catalogue entry of a publishable topic; :class:`PublishRejected` says why not."""
    listing = f"publishable topics: {', '.join(publishable_topics())}"
    if not name:
        raise PublishRejected(400, f"no topic given ({listing})")
    if name in DERIVED_BY:
        raise PublishRejected(422, f"topic {name} is written by {DERIVED_BY[name]}; "
                                   f"publish to its input instead ({listing})")
    if name.endswith(".dlq"):
        raise PublishRejected(422, f"topic {name} holds dead letters, written only by the "
                                   f"consumer that gave up on a record ({listing})")
    spec = CATALOGUE.get(name)
    if spec is None:
        raise PublishRejected(404, f"unknown topic {name!r} ({listing})")
    return spec


def check_idempotency_key(key: str | None) -> str | None:
    """``key`` when usable as an idempotency key (None: none given); else a 400.

    A key is 1 to :data:`MAX_KEY_CHARS` printable characters that encode as UTF-8 (a header
    or an argument in another encoding arrives with surrogates, which cannot be stored)."""
    if key is None:
        return None
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PublishRejected(400, "idempotency key is not UTF-8 text") from exc
    if not key or len(key) > MAX_KEY_CHARS:
        raise PublishRejected(400, f"idempotency key must be 1 to {MAX_KEY_CHARS} characters")
    if not key.isprintable():
        raise PublishRejected(400, "idempotency key must hold printable characters only")
    return key


def validate_body(topic: str | None, raw: bytes) -> ValidBatch:
    """Parse ``raw`` and validate it for ``topic`` (or the topic its wrapper names).

    Raises :class:`PublishRejected` only, whatever ``raw`` holds: a failure of a parser or
    of the models that input can cause is a 400 naming it, never an unexpected exception."""
    try:
        return _validate_body(topic, raw)
    except PublishRejected:
        raise
    except (ValueError, RecursionError, OverflowError, InvalidEvent) as exc:
        logger.warning("publish: body refused by %s", type(exc).__name__, exc_info=True)
        raise PublishRejected(400, f"body cannot be read as events: "
                                   f"{type(exc).__name__}: {exc}") from exc


def _validate_body(topic: str | None, raw: bytes) -> ValidBatch:
    if topic:
        resolve_topic(topic)  # an unknown topic is the first thing to say
    events, named = parse_events(raw)
    if topic and named and topic != named:
        raise PublishRejected(400, f"two topics given: {topic} and {named} (in the body)")
    return validate_events(resolve_topic(topic or named), events)


def validate_events(spec: TopicSpec, events: list[Any]) -> ValidBatch:
    """Every event of ``events`` as ``spec``'s value model, or every problem of every event."""
    adapter = _adapter(spec.name)
    problems: list[str] = []
    models: list[BaseModel] = []
    records: list[tuple[bytes, bytes]] = []
    for i, event in enumerate(events):
        where = f"events[{i}]"
        if not isinstance(event, dict):
            problems.append(f"{where}: expected a JSON object, got {type(event).__name__}")
            continue
        try:
            model = adapter.validate_json(json.dumps(_with_id(spec, fill_nulls(spec.value,
                                                                                event))))
        except ValidationError as exc:
            problems += [f"{where}{_path(err['loc'])}: {err['msg']}" for err in exc.errors()]
            continue
        try:
            key = _key_of(spec, model)
        except ValidationError as exc:
            problems.append(f"{where}: cannot build the {spec.key.__name__} key: "
                            + "; ".join(f"{_path(e['loc'])[1:]}: {e['msg']}"
                                        for e in exc.errors()))
            continue
        try:
            value = encode(model)
        except InvalidEvent as exc:
            problems.append(f"{where}: {exc}")
            continue
        if len(key) + len(value) > MAX_RECORD_BYTES:
            problems.append(f"{where}: encoded event is {len(key) + len(value)} bytes, over "
                            f"the limit of {MAX_RECORD_BYTES} bytes per event")
        models.append(model)
        records.append((key, value))
    if problems:
        bad = len({int(p[len("events["):p.index("]")]) for p in problems})
        raise PublishRejected(422, f"{bad} of {len(events)} events are invalid for "
                                   f"{spec.name}; nothing was published", problems)
    digest = hashlib.sha256(spec.name.encode())
    for key, value in records:
        digest.update(b"\x1e" + key + b"\x1f" + value)
    return ValidBatch(spec.name, models, records, digest.hexdigest())


@functools.cache
def _adapter(topic: str) -> TypeAdapter[Any]:
    return TypeAdapter(cast(Any, CATALOGUE[topic].value))


def _path(loc: tuple[int | str, ...]) -> str:
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part.isidentifier():
            parts.append(f".{part}")
        else:  # a union tag such as user.prompted
            parts.append(f"[{part}]")
    return "".join(parts)


def _with_id(spec: TopicSpec, event: dict[str, Any]) -> dict[str, Any]:
    """A missing ``event_id`` derives from the content: same event, same id."""
    if event.get("event_id") is not None or "event_id" not in _fields(spec.value):
        return event
    content = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)
    return {**event, "event_id": derive_event_id("published", spec.name, content)}


def _fields(model: object) -> dict[str, Any]:
    return getattr(model, "model_fields", {})


def _key_of(spec: TopicSpec, event: BaseModel) -> bytes:
    """The record key: from the envelope's fields, else the payload's (e.g. a poller's id)."""
    if spec.key is SessionKey:
        return encode_key(getattr(event, "source", ""), getattr(event, "session_id", ""))
    payload = getattr(event, "payload", None)
    values = {}
    for name in spec.key.model_fields:
        for holder in (event, payload):
            if holder is not None and name in _fields(type(holder)):
                values[name] = getattr(holder, name)
                break
    return encode(spec.key.model_validate(values))


