"""One parse step for every source: route each raw line to its source's pure parser.

``decide(event)`` looks up ``PARSERS[event.source]``. ``PARSERS`` is built at import from the
parser modules of :mod:`agents.parsers`, each of which registers its ``decide`` for its
producer's source (:func:`agents.parsers.registry.parses`); every module of that package is
imported here (``pkgutil``), so adding a source means adding one parser module and nothing
here. A line of an unknown source is an ``InvalidEvent`` (dead-lettered with the list of known
sources), never a crash.
"""

from __future__ import annotations

import importlib
import pkgutil

from agents import parsers
from agents.parsers.registry import Parser, registered
from schemas.events import SessionEvent
from schemas.file_changes import FileChanged
from schemas.limits import strip_nul
from streams.errors import InvalidEvent

__all__ = ["PARSERS", "decide"]


def _discover() -> dict[str, Parser]:
    """Import every parser module (each registers itself) and return the registrations."""
    for info in pkgutil.iter_modules(parsers.__path__, f"{parsers.__name__}."):
        importlib.import_module(info.name)
    return registered()


PARSERS: dict[str, Parser] = _discover()


def decide(event: FileChanged) -> list[SessionEvent]:
    """The normalized events of one raw line, by the parser of its source."""
    parser = PARSERS.get(event.source)
    if parser is None:
        raise InvalidEvent(f"no parser for source {event.source!r} "
                           f"(known: {', '.join(sorted(PARSERS))})")
    return parser(_without_nul(event))


def _without_nul(event: FileChanged) -> FileChanged:
    """``event`` with U+0000 removed from its text: no store can hold it, and a raw NUL byte
    would otherwise make a JSON line unreadable."""
    line = event.payload.line
    if "\x00" not in line:
        return event
    return event.model_copy(update={"payload": event.payload.model_copy(
        update={"line": strip_nul(line)})})
