"""Which parser reads which source: filled by the parser modules themselves as they are imported.

A parser module decorates its ``decide`` with :func:`parses`, naming its producer class, so a
source's name is written once, on the producer (:mod:`streams.sources`). :mod:`agents.parse_lines`
imports every module of :mod:`agents.parsers` and routes each line by :func:`registered`.
Every parser has the same contract: pure ``FileChanged -> list[SessionEvent]``, raising
``InvalidEvent`` for a line it cannot read.
"""

from __future__ import annotations

from collections.abc import Callable

from schemas.events import SessionEvent
from schemas.file_changes import FileChanged
from streams.producers.base import FileProducer

__all__ = ["Parser", "parses", "registered"]

Parser = Callable[[FileChanged], list[SessionEvent]]

_PARSERS: dict[str, Parser] = {}


def parses(producer: type[FileProducer]) -> Callable[[Parser], Parser]:
    """Register the decorated function as the parser of ``producer``'s source; it is returned
    unchanged.

    Raises:
        TypeError: another module already registered a parser for that source.
    """
    def register(parser: Parser) -> Parser:
        other = _PARSERS.get(producer.source)
        if other is not None and other.__module__ != parser.__module__:
            raise TypeError(f"source {producer.source!r} has two parsers: "
                            f"{other.__module__} and {parser.__module__}")
        _PARSERS[producer.source] = parser  # a module imported again replaces its own
        return parser
    return register


def registered() -> dict[str, Parser]:
    """``{source: parser}`` of every parser module imported so far (a copy)."""
    return dict(_PARSERS)
