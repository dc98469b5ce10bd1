"""Bytes <-> models for every topic: the only place payloads are (de)serialized.

Keys and values are UTF-8 JSON written by pydantic. Decoding validates against the topic's
schema and raises :class:`~streams.errors.InvalidEvent` naming every invalid field, so the
caller can dead-letter the record with a reason a human can act on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.dead_letters import DeadLetter
from schemas.envelope import SessionKey
from streams.errors import InvalidEvent

__all__ = ["dead_letter", "decode", "encode", "encode_key"]

_ADAPTERS: dict[int, TypeAdapter[Any]] = {}


def _adapter(schema: object) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(id(schema))
    if adapter is None:
        adapter = _ADAPTERS[id(schema)] = TypeAdapter(schema)
    return adapter


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


def encode_key(source: str, session_id: str) -> bytes:
    return SessionKey(source=source, session_id=session_id).model_dump_json().encode()


def decode(schema: object, raw: bytes | None, what: str = "value") -> Any:
    """Validate ``raw`` against ``schema``; :class:`InvalidEvent` lists every bad field."""
    if raw is None:
        raise InvalidEvent(f"{what} is empty (a tombstone or a null record)")
    try:
        return _adapter(schema).validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()[:10]
        )
        raise InvalidEvent(f"{what} does not match its schema: {problems}") from exc


def dead_letter(consumer: str, exc: Exception, topic: str, partition: int, offset: int,
                key: bytes | None, value: bytes | None) -> bytes:
    """The dead-letter record for a record ``consumer`` gave up on because of ``exc``."""
    def text(raw: bytes | None) -> str:
        if raw is None:
            return ""
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return repr(raw)

    return DeadLetter(
        consumer=consumer, error=str(exc), error_type=type(exc).__name__, topic=topic,
        partition=partition, offset=offset, key=text(key) if key is not None else None,
        value=text(value), failed_at=datetime.now(UTC),
    ).model_dump_json().encode()
