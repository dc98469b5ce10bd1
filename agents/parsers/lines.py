"""What every per-source line parser shares: the ``decide`` skeleton and JSON value helpers.

:func:`decide_lines` is the whole contract of a parser around its source-specific ``derive``:
a ``file.removed`` becomes ``session.file_removed``; a line is loaded as a JSON object (lone
surrogate escapes replaced so every event encodes as UTF-8), derived into payloads and wrapped
in envelopes with deterministic ids (``derive_event_id(event.event_id, kind, n)``, ``n``
counting that kind within the line). A line that is not a JSON object, or whose payloads do not
fit the event schemas, raises ``InvalidEvent`` naming the file and line number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.envelope import derive_event_id
from schemas.events import EventPayload, SessionEvent, SessionFileRemoved
from schemas.file_changes import FileChanged
from schemas.limits import MAX_DEPTH, depth_problem, strip_nul_escapes_text
from streams.errors import InvalidEvent

__all__ = [
    "MAX_RAW_CHARS", "MAX_TEXT_CHARS", "Common", "JsonTooDeep", "Obj", "as_obj", "as_str",
    "blocks_text", "clip", "decide_lines", "load_json", "load_line", "parse_time",
    "timestamp_of", "token_count", "where",
]

Obj = dict[str, Any]
Common = dict[str, Any]  # the fields every payload of one line shares (uuid, time, agent...)
MAX_RAW_CHARS = 2_000  # of an unknown line kept as ``UnknownLine.raw``
Derive = Callable[[Obj, FileChanged], list[EventPayload]]
DeriveSnapshot = Callable[[FileChanged], list[EventPayload]]

# Texts are clipped (and flagged ``truncated``) so one event stays far below Kafka's default
# 1 MiB message limit even when a tool result holds a whole file.
MAX_TEXT_CHARS = 100_000
# JSON may escape lone UTF-16 surrogates (JS slicing cuts emoji in half); they cannot be encoded.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# orjson reads an integer past 64 bits as a float; json keeps it exact, so the schemas can
# refuse it by name. Texts with such long digit runs take json's path. (Found with a byte
# table, every digit made "0": a regex scan for 19 digits cost four times the parse.)
_DIGITS_AS_ZERO = bytes(48 if 48 <= b <= 57 else 120 for b in range(256))
_LONG_DIGITS = b"0" * 19


def decide_lines(
    event: FileChanged,
    derive: Derive,
    snapshot: DeriveSnapshot | None = None,
    session_of: Callable[[Obj], str | None] | None = None,
    time_of: Callable[[Obj], datetime | None] | None = None,
) -> list[SessionEvent]:
    """The normalized events of one ``sessions.file-changes.v1`` event.

    A line goes to ``derive``; a ``file.snapshot`` (a whole rewritten file, text in
    ``payload.line``) to ``snapshot``, and is an ``InvalidEvent`` for a source without one.
    ``session_of``, when given, may file a line under another session than the file's (a
    global history file whose lines name their conversation); None keeps the file's.
    ``time_of`` reads a line's time (default: its ``timestamp``); without one the event is dated
    by the file's mtime.
    """
    if event.type == "file.removed":
        removed = SessionFileRemoved(path=event.payload.path, agent_id=event.payload.agent_id,
                                     file_kind=event.payload.file_kind)
        return _envelopes(event, [removed], None)
    if event.type == "file.snapshot":
        if snapshot is None:
            raise InvalidEvent(f"{where(event)}: this source publishes no whole-file snapshots")
        return _checked(event, lambda: _envelopes(event, snapshot(event), None))
    if event.type != "file.line_appended":
        raise InvalidEvent(f"{where(event)}: unexpected event type {event.type!r}")
    line = load_line(event)
    session_id = session_of(line) if session_of is not None else None
    occurred_at = (time_of or timestamp_of)(line)
    return _checked(event, lambda: _envelopes(event, derive(line, event), occurred_at,
                                              session_id))


def _checked(event: FileChanged, build: Callable[[], list[SessionEvent]]) -> list[SessionEvent]:
    try:
        return build()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidEvent(
            f"{where(event)}: does not fit the event schema "
            f"({'.'.join(map(str, first['loc']))}: {first['msg']})"
        ) from exc


def where(event: FileChanged) -> str:
    """``<path> line <n>``, and the size on disk when the producer clipped the line."""
    clipped = event.payload.original_bytes
    size = f" (a line of {clipped} bytes, clipped to fit one record)" if clipped else ""
    return f"{event.payload.path} line {event.payload.line_no}{size}"


def load_line(event: FileChanged) -> Obj:
    """The event's text as a JSON object; ``InvalidEvent`` naming file, line and reason."""
    try:
        value = load_json(event.payload.line)
    except JsonTooDeep as exc:
        raise InvalidEvent(f"{where(event)}: {exc}") from exc
    except json.JSONDecodeError as exc:
        detail = exc.msg.removesuffix(" at")  # "Unterminated string starting at"
        raise InvalidEvent(f"{where(event)}: not JSON ({detail} at char {exc.pos})") from exc
    if not isinstance(value, dict):
        raise InvalidEvent(f"{where(event)}: not a JSON object (got {type(value).__name__})")
    return value


class JsonTooDeep(ValueError):
    """A JSON text nests past :data:`~schemas.limits.MAX_DEPTH`."""


def load_json(text: str) -> Any:
    """``json.loads(text)`` within the topics' limits: nesting past ``MAX_DEPTH`` raises
    :class:`JsonTooDeep` (a ``ValueError``, as ``json.JSONDecodeError`` is), ``\\u0000`` escapes
    are dropped (no store holds a NUL) and lone surrogates become U+FFFD (so every event
    encodes as UTF-8). No depth can exhaust the stack.

    The usual line is read by orjson (a C parser that refuses more than 1,024 levels itself),
    and its nesting measured on the parsed value only when the text has enough brackets to
    reach the limit; anything orjson cannot read exactly as json does (lone surrogates,
    integers past 64 bits, NaN, invalid JSON) takes json's path, depth checked first."""
    text = strip_nul_escapes_text(text)
    value = _fast_load(text)
    if value is not _UNREAD:
        return value
    problem = depth_problem(text)
    if problem is not None:
        raise JsonTooDeep(problem)
    value = json.loads(text)
    return _scrub(value) if SURROGATE_ESCAPE.search(text) else value


_UNREAD = object()


def _fast_load(text: str) -> Any:
    """orjson's reading of ``text``, or ``_UNREAD`` when json's path must decide."""
    if SURROGATE_ESCAPE.search(text):
        return _UNREAD
    try:
        raw = text.encode()
    except UnicodeEncodeError:  # a lone surrogate character
        return _UNREAD
    if _LONG_DIGITS in raw.translate(_DIGITS_AS_ZERO):
        return _UNREAD
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _UNREAD
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and _nesting(value) > MAX_DEPTH:
        raise JsonTooDeep(depth_problem(text) or f"JSON nested more than {MAX_DEPTH} levels")
    return value


def _nesting(value: Any) -> int:
    """How many objects and arrays deep ``value`` goes (stops counting past MAX_DEPTH)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return deepest


def _scrub(value: Any) -> Any:
    """``value`` with every lone surrogate replaced by U+FFFD, so events encode as UTF-8."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    if isinstance(value, dict):
        return {_scrub(key): _scrub(item) for key, item in value.items()}
    return value


def _envelopes(
    event: FileChanged, payloads: list[EventPayload], occurred_at: datetime | None,
    session_id: str | None = None,
) -> list[SessionEvent]:
    # The payloads were validated when built; the envelope's fields are the input's (validated
    # when it was read), an id derived from them, and a string. Validating them again per
    # event cost more than building it.
    seen: dict[str, int] = {}
    envelopes = []
    occurred_at = occurred_at or event.occurred_at
    session_id = session_id or event.session_id
    for payload in payloads:
        index = seen.get(payload.kind, 0)
        seen[payload.kind] = index + 1
        envelopes.append(SessionEvent.model_construct(
            event_id=derive_event_id(event.event_id, payload.kind, index), source=event.source,
            type=payload.kind, schema_version=1, occurred_at=occurred_at,
            session_id=session_id, payload=payload,
        ))
    return envelopes


def timestamp_of(line: Obj) -> datetime | None:
    """The line's ``timestamp`` as an aware datetime (naive values are taken as UTC)."""
    return parse_time(line.get("timestamp"))


def parse_time(raw: object) -> datetime | None:
    """An ISO-8601 string (``Z`` allowed, naive taken as UTC) or epoch milliseconds, else None."""
    if type(raw) is int and raw > 0:
        try:
            return datetime.fromtimestamp(raw / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def clip(text: str, limit: int = MAX_TEXT_CHARS) -> tuple[str, bool]:
    """``(text cut to limit, whether it was cut)``."""
    return (text[:limit], True) if len(text) > limit else (text, False)


def as_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def token_count(value: object) -> int:
    """A token count: non-negative ints pass, anything else (null, bool, junk) counts 0."""
    return value if type(value) is int and value >= 0 else 0


def as_obj(value: object) -> Obj:
    return value if isinstance(value, dict) else {}


def blocks_text(value: object) -> str:
    """A tool result or message content as text: a string as is, a list of blocks by their
    ``text`` fields (one per line; a block without one gives an empty line), null as ``''``,
    anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(as_str(as_obj(block).get("text")) or "" for block in value)
    return "" if value is None else json.dumps(value, ensure_ascii=False)
