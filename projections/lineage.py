"""Which session wrote a response that several session files hold: the lineage rule every store
applies the same way (session-formats.md sections 1.11 and 3.1).

Resuming, forking or handing a Claude Code session to the background starts a new file that
first copies the origin's whole conversation chain, byte for byte except ``sessionId``: same
line uuids, timestamps, ``message.id``, ``requestId`` and usage. A Codex fork or sub-agent
replays its parent's history the same way (re-stamped or not), and its usage rows land on the
parent's usage keys. ``sessions.events.v1`` reports what each file holds, so the copied
responses appear under both sessions; the stores count each response once, for the session
that first wrote it, with this module.

Input: per session, its *facts* (the main conversation's usage keys with the time the session
holds them at), whether its lines say ``sessionKind: bg``, and the parent it declares (Codex
``forked_from_id``). For two sessions sharing facts, :func:`copied_from` decides which one
copied the shared part from the other, from what a copy cannot have:

1. a declared parent is the origin;
2. a session holding a fact *older* than the newest shared one that the other lacks wrote the
   shared part (a copy's own turns all come after what it copied; the origin may hold a
   rewound branch, or earlier turns the copy did not take);
3. a session whose facts are all shared is the origin (the copy went on from it);
4. a ``bg`` session is the copy of a session without the marker;
5. otherwise both went on after the shared part (a fork whose origin also went on): the one
   that went on *later* is the origin (the copy's own turn follows the copy); a tie goes to the
   smaller session id.

A session's origin (``resumed_from``) is the session it copied from that shares the most facts
with it (its nearest ancestor: a resume of a resume copies the chain again), and everything the
session holds up to the newest fact it shares with that origin is the copied prefix
(``copied_until``): its prompts, responses, tool calls and files there belong to the origin
(and its sub-agents' rows there too where the main file echoes them:
:data:`ECHOED_SUBAGENT_SOURCES`).
The rule reads only the facts, never the order they arrived in, so any arrival order of the
files (backfill, live tail, two workers) gives the same owner. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["CROSS_SESSION_SOURCES", "ECHOED_SUBAGENT_SOURCES", "Lineage", "SessionFacts",
           "copied_from", "lineages"]

# Sources whose usage keys name one API response across every session (Claude's
# ``message.id:requestId``, Kimi CLI's ``message_id``, the provider's response id that
# ``/fork`` and ``/undo`` copy); Codex keys are cumulative counters, equal across sessions only
# inside a declared fork family.
CROSS_SESSION_SOURCES = frozenset({"claude-code", "kimi-cli"})

# Sources whose main file also holds its sub-agents' records (Kimi CLI echoes every sub-agent
# event into the parent's ``wire.jsonl`` as ``SubagentEvent``), so a copy of the main file
# copies them too: a sub-agent's rows up to a session's ``copied_until`` belong to its origin
# like the main file's. Elsewhere sub-agents live in files of their own, which no resume or
# fork copies, so their rows are never part of a copied prefix.
ECHOED_SUBAGENT_SOURCES = frozenset({"kimi-cli"})


@dataclass(frozen=True)
class SessionFacts:
    """What one store knows of a session for the lineage rule."""

    session_id: str
    source: str
    facts: Mapping[str, datetime] = field(default_factory=dict)  # usage key -> time held at
    background: bool = False  # its lines carry ``sessionKind: bg``
    forked_from: str | None = None  # the parent it declares


@dataclass(frozen=True)
class Lineage:
    """A session's origin and the end of its copied prefix (both None for an original)."""

    origin: str | None = None
    copied_until: datetime | None = None
    shared: int = 0


def _related(a: SessionFacts, b: SessionFacts) -> bool:
    """Whether shared keys of ``a`` and ``b`` mean a copy (see CROSS_SESSION_SOURCES)."""
    declared = a.forked_from == b.session_id or b.forked_from == a.session_id
    return declared or (a.source == b.source and a.source in CROSS_SESSION_SOURCES)


def copied_from(a: SessionFacts, b: SessionFacts) -> bool:
    """Whether ``a`` copied the facts it shares with ``b`` from ``b`` (rules 1-5 above).

    At most one of ``copied_from(a, b)`` and ``copied_from(b, a)`` is true; both are false when
    the two share nothing, are not related, or each holds a fact older than the shared ones
    (two originals that share a response by accident: nothing is decided).
    """
    if a.session_id == b.session_id or not _related(a, b):
        return False
    shared = a.facts.keys() & b.facts.keys()
    if not shared:
        return False
    if a.forked_from == b.session_id or b.forked_from == a.session_id:  # rule 1
        return a.forked_from == b.session_id
    a_own = [at for key, at in a.facts.items() if key not in shared]
    b_own = [at for key, at in b.facts.items() if key not in shared]
    a_early = bool(a_own) and min(a_own) < max(a.facts[key] for key in shared)
    b_early = bool(b_own) and min(b_own) < max(b.facts[key] for key in shared)
    if a_early or b_early:  # rule 2
        return b_early and not a_early
    if not a_own or not b_own:  # rule 3
        return bool(a_own) or (not b_own and _later(a, b))
    if a.background != b.background:  # rule 4
        return a.background
    a_first, b_first = min(a_own), min(b_own)  # rule 5
    return a_first < b_first or (a_first == b_first and _later(a, b))


def _later(a: SessionFacts, b: SessionFacts) -> bool:
    """Twins and exact ties: the ``bg`` one, else the larger session id, is the copy."""
    if a.background != b.background:
        return a.background
    return a.session_id > b.session_id


def lineages(sessions: Mapping[str, SessionFacts]) -> dict[str, Lineage]:
    """The lineage of every session in ``sessions`` (give all sessions that share facts with
    any of them: the origin is chosen among those)."""
    result: dict[str, Lineage] = {}
    for session in sessions.values():
        # the nearest ancestor shares the most facts; a tie goes to the smaller session id
        candidates = sorted((-len(session.facts.keys() & other.facts.keys()), other.session_id)
                            for other in sessions.values() if copied_from(session, other))
        if not candidates:
            result[session.session_id] = Lineage()
            continue
        shared, origin_id = candidates[0]
        origin = sessions[origin_id]
        until = max(at for key, at in session.facts.items() if key in origin.facts)
        result[session.session_id] = Lineage(origin_id, until, -shared)
    return result
