"""One parse step for every source: route each raw line to its source's pure parser.

``decide(event)`` looks up ``PARSERS[event.source]``; every parser has the same contract
(``FileChanged -> list[SessionEvent]``, ``InvalidEvent`` for a line it cannot read), so adding a
source means adding one parser module and one entry here. A line of an unknown source is an
``InvalidEvent`` (dead-lettered with the list of known sources), never a crash.
"""

from __future__ import annotations

from collections.abc import Callable

from agents.parsers import antigravity, claude, codex, gemini, session_skill
from schemas.events import SessionEvent
from schemas.file_changes import FileChanged
from schemas.limits import strip_nul
from streams.errors import InvalidEvent

__all__ = ["PARSERS", "decide"]

PARSERS: dict[str, Callable[[FileChanged], list[SessionEvent]]] = {
    "claude-code": claude.decide,
    "codex": codex.decide,
    "gemini-cli": gemini.decide,
    "antigravity": antigravity.decide,
    "session-skill": session_skill.decide,
}


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
