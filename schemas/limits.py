"""The limits every value on every topic obeys, and the pure checks that enforce them.

They are part of the contract: a consumer in any language can read any record of a topic.

* **Nesting.** No JSON value nests deeper than :data:`MAX_DEPTH` objects and arrays. Real
  transcripts stay below 30; pydantic refuses to serialize past 255 levels and Python's own
  ``json`` raises ``RecursionError`` near 1,000, so a deeper line is refused where it enters
  (:func:`depth_problem`), never half-way through a pipeline.
* **Integers.** Counts, offsets and sizes are at most :data:`MAX_SAFE_INT` (2**53 - 1): the
  largest integer every JSON reader (JavaScript included) holds exactly, and small enough that
  a sum of a few of them still fits Postgres's and Neo4j's 64-bit integers. :data:`Count` is
  the field type that says so.
* **NUL.** Text never holds U+0000: Postgres cannot store it in ``text`` or ``jsonb``. It is
  stripped where text enters (:func:`strip_nul`, :func:`strip_nul_escapes`).
* **Record size.** An encoded record is at most :data:`MAX_RECORD_BYTES`, under Kafka's default
  ``message.max.bytes`` (1 MiB); bigger content is clipped where it enters.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

__all__ = [
    "MAX_DEPTH", "MAX_RECORD_BYTES", "MAX_SAFE_INT", "Count", "depth_problem", "strip_nul",
    "strip_nul_escapes", "strip_nul_escapes_text",
]

MAX_DEPTH = 64
MAX_SAFE_INT = 2**53 - 1
MAX_RECORD_BYTES = 1_000_000  # under Kafka's default message.max.bytes (1 MiB + overhead)

Count = Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]
"""A non-negative integer every JSON reader and every store holds exactly."""

# A JSON string (unrolled so a long string is one fast scan) or one bracket.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_TOKENS_BYTES = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
# ``\u0000`` as a JSON escape: preceded by an even number of backslashes (``\\u0000`` is a
# literal backslash followed by "u0000" and must stay).
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
_NUL_ESCAPE_BYTES = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def depth_problem(text: str | bytes, limit: int = MAX_DEPTH) -> str | None:
    """Why the JSON document ``text`` nests too deeply, or None when it does not.

    Reads the text without parsing it (no recursion, so any depth is safe) and costs two
    ``count`` calls for the usual document, whose brackets could not reach the limit at all.
    """
    if isinstance(text, bytes):
        if text.count(b"{") + text.count(b"[") <= limit:
            return None
        tokens = (m.group()[:1] for m in _TOKENS_BYTES.finditer(text))
        opening, closing = (b"{", b"["), (b"}", b"]")
    else:
        if text.count("{") + text.count("[") <= limit:
            return None
        tokens = (m.group()[:1] for m in _TOKENS.finditer(text))
        opening, closing = ("{", "["), ("}", "]")
    depth = 0
    for token in tokens:
        if token in opening:
            depth += 1
            if depth > limit:
                return (f"JSON nested more than {limit} levels deep (objects and arrays); "
                        "the limit keeps every value encodable")
        elif token in closing:
            depth -= 1
    return None


def strip_nul(text: str) -> str:
    """``text`` without U+0000 characters."""
    return text.replace("\x00", "") if "\x00" in text else text


def strip_nul_escapes(raw: bytes) -> bytes:
    """The JSON document ``raw`` with every ``\\u0000`` escape removed (a raw NUL byte cannot
    appear inside a JSON string, so the escapes are the only way a NUL gets in)."""
    if b"\\u0000" not in raw:
        return raw
    return _NUL_ESCAPE_BYTES.sub(rb"\1", raw)


def strip_nul_escapes_text(text: str) -> str:
    """:func:`strip_nul_escapes` for a JSON document held as text."""
    if "\\u0000" not in text:
        return text
    return _NUL_ESCAPE.sub(r"\1", text)
