"""Validation of events handed to ``sessionstream publish`` and ``POST /api/v1/events``.

Pure: bytes in, a :class:`ValidBatch` (encoded records ready to send) or a
:class:`PublishRejected` out, never I/O. A batch is all or nothing: every event is checked
against its topic's value model and *every* problem is reported, each naming the event and the
field (``events[2].payload.line_no: Input should be a valid integer``), before anything is sent.

Input is a JSON object (one event), a JSON array, ``{"events": [...]}`` or JSON lines, in
UTF-8. Hostile input is refused before it is parsed, so parsing cannot fail in unplanned ways:
the body is at most :data:`MAX_BODY_BYTES`, its nesting is measured without recursion
(:func:`schemas.limits.depth_problem`) and no event may nest deeper than
:data:`schemas.limits.MAX_DEPTH` (400; deeper values crash the parser or the serializer). Every
``\\u0000`` is stripped before validation, so no NUL reaches a topic. Integers above
:data:`schemas.limits.MAX_SAFE_INT` in bounded fields are 422s naming the field. Before
validation a ``null`` becomes the field's default when the field has one and does not accept
``None`` itself (recursively, through nested models and discriminated unions); a list field
that arrives as ``null`` becomes ``[]``. A missing ``event_id`` is derived from the event's
content, so the same event published twice is the same event. Only input topics are
publishable; topics an agent writes (and dead letters) are refused, naming the writer.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, cast, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.envelope import SessionKey, derive_event_id
from schemas.limits import MAX_DEPTH, MAX_RECORD_BYTES, depth_problem, strip_nul_escapes
from streams.codecs import encode, encode_key
from streams.errors import InvalidEvent, SessionStreamError
from streams.topics import CATALOGUE, FILTERED, SUMMARIES, TopicSpec

__all__ = [
    "DERIVED_BY", "MAX_BODY_BYTES", "MAX_EVENTS", "MAX_KEY_CHARS", "MAX_RECORD_BYTES",
    "PublishRejected", "ValidBatch", "check_idempotency_key", "fill_nulls", "parse_events",
    "publishable_topics", "resolve_topic", "validate_body", "validate_events",
]

logger = logging.getLogger(__name__)

MAX_EVENTS = 1000  # events per request or file: keeps one request's work bounded
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_KEY_CHARS = 256
"""Longest idempotency key: it becomes the key of a compacted record."""
_WRAPPER_DEPTH = 2
"""Levels ``{"events": [...]}`` adds around an event; the body may nest this much deeper."""
_SHAPES = 'one JSON event, a JSON array, {"events": [...]} or JSON lines'

DERIVED_BY = {
    FILTERED.name: "the filter_events agent (from sessions.events.v1)",
    SUMMARIES.name: "the summarize_sessions agent (from sessions.events.v1)",
}
"""Topics an agent writes: publishing there would bypass (and contradict) the agent."""


class PublishRejected(SessionStreamError):
    """The input cannot be published; nothing was. ``status`` is the HTTP status to answer
    with (400 not JSON, 404 unknown topic, 409 idempotency conflict, 413 too large, 422
    invalid), ``problems`` one line per invalid field."""

    def __init__(self, status: int, message: str, problems: list[str] | None = None) -> None:
        self.status = status
        self.message = message
        self.problems = problems or []
        super().__init__("\n  ".join([message, *self.problems]))


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


def fill_nulls(annotation: object, value: Any) -> Any:
    """``value`` with each ``null`` of a field that has a default (and rejects ``None``)
    removed, so the default applies; a ``null`` list becomes ``[]``."""
    annotation = _unwrap(annotation)
    if isinstance(value, dict):
        model = _model_for(annotation, value)
        return _fill_model(model, value) if model is not None else value
    if isinstance(value, list) and get_origin(annotation) in (list, set, frozenset, tuple):
        args = get_args(annotation)
        item = args[0] if args else Any
        return [fill_nulls(item, v) for v in value]
    return value


def _fill_model(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in out:
            continue
        if out[key] is not None:
            out[key] = fill_nulls(field.annotation, out[key])
        elif _accepts_none(field.annotation):
            continue
        elif not field.is_required():
            del out[key]  # the model's own default (or default factory) applies
        elif get_origin(_unwrap(field.annotation)) in (list, set, frozenset, tuple):
            out[key] = []
    return out


def _unwrap(annotation: object) -> object:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _members(annotation: object) -> tuple[object, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(_unwrap(a) for a in get_args(annotation))
    return (annotation,)


def _accepts_none(annotation: object) -> bool:
    annotation = _unwrap(annotation)
    return annotation is Any or any(m in (None, type(None)) for m in _members(annotation))


def _model_for(annotation: object, value: dict[str, Any]) -> type[BaseModel] | None:
    """The model a JSON object of ``annotation`` is: a discriminated union's member is chosen
    by its ``Literal`` fields (``kind``); ambiguous means none."""
    models = [m for m in _members(annotation)
              if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) <= 1:
        return models[0] if models else None
    matching = [m for m in models if _literals_match(m, value)]
    return matching[0] if len(matching) == 1 else None


def _literals_match(model: type[BaseModel], value: dict[str, Any]) -> bool:
    tags = {n: get_args(f.annotation) for n, f in model.model_fields.items()
            if get_origin(f.annotation) is Literal and n in value}
    return bool(tags) and all(value[n] in allowed for n, allowed in tags.items())
