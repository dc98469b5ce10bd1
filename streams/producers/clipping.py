"""Lines too big for one record, made to fit where they enter: long strings clipped, shape kept.

A transcript line can hold megabytes (a pasted file, an image in a tool result). Published as
is it would exceed the broker's record limit, fail the producer's flush and stop every other
session with it. :func:`fit_line` leaves a line that fits alone; a bigger JSON line gets its
longest strings clipped, each ending in ``… [clipped N chars]``, until it fits, so its ids,
usage numbers and structure survive and the parser reads it as usual. A line that is not JSON
(or nests past the topics' depth limit, or does not fit even with every string clipped) keeps
only its head: the parser then dead-letters it, naming the file, the line and its size.
"""

from __future__ import annotations

import json
from typing import Any

from schemas.limits import depth_problem

__all__ = ["LINE_BUDGET_BYTES", "fit_line", "fit_text", "json_size"]

LINE_BUDGET_BYTES = 512 * 1024
"""A line's share of one record, as encoded inside its event (the record limit is 1 MB; the
envelope, the path and a dead letter's wrapping take the rest)."""

_FIRST_CLIP = 64 * 1024  # chars a string keeps in the first pass; each pass keeps a quarter
_LAST_CLIP = 64
_HEAD_CHARS = 4096  # what a line that cannot be made to fit keeps, for a human to recognise
_WORST_ESCAPE = 6  # a control character is encoded as \u00XX


def json_size(text: str) -> int:
    """Bytes of ``text`` encoded as a JSON string (UTF-8, escapes included)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _fits(text: str, budget: int) -> bool:
    return len(text) * _WORST_ESCAPE <= budget or json_size(text) <= budget


def fit_line(text: str, budget: int = LINE_BUDGET_BYTES) -> str | None:
    """None when ``text`` fits ``budget`` as it is; else the clipped line that does."""
    if _fits(text, budget):
        return None
    if depth_problem(text) is None:
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict | list):
            limit = _FIRST_CLIP
            while limit >= _LAST_CLIP:
                clipped = json.dumps(_clip_strings(value, limit), ensure_ascii=False)
                if _fits(clipped, budget):
                    return clipped
                limit //= 4
    return text[:_HEAD_CHARS]


def fit_text(text: str, budget: int = LINE_BUDGET_BYTES) -> tuple[str, bool]:
    """``(text cut until it fits budget, whether it was cut)``: for whole-file snapshots."""
    cut = False
    while not _fits(text, budget):
        text, cut = text[: len(text) * budget // json_size(text)], True
    return text, cut


def _clip_strings(value: Any, limit: int) -> Any:
    """``value`` with every string (key or value) over ``limit`` chars clipped and marked."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return f"{value[:limit]}… [clipped {len(value) - limit} chars]"
    if isinstance(value, list):
        return [_clip_strings(item, limit) for item in value]
    if isinstance(value, dict):
        return {_clip_strings(k, limit): _clip_strings(v, limit) for k, v in value.items()}
    return value
