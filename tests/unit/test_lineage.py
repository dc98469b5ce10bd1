"""The lineage rule (projections.lineage) on every cross-file shape, in every arrival order."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from projections.lineage import Lineage, SessionFacts, copied_from, lineages

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def claude(sid: str, facts: dict[str, float], bg: bool = False) -> SessionFacts:
    return SessionFacts(sid, "claude-code", {k: at(m) for k, m in facts.items()}, background=bg)


A = claude("A", {"r1": 1, "r2": 2, "r3": 3})
B = claude("B", {"r1": 1, "r2": 2, "r3": 3, "r4": 10, "r5": 11})  # resume of A
C = claude("C", {"r1": 1, "r2": 2, "r3": 3, "r4": 10, "r5": 11, "r6": 20})  # resume of B


def decide(*sessions: SessionFacts) -> dict[str, Lineage]:
    return lineages({s.session_id: s for s in sessions})


def test_an_ordinary_session_has_no_origin() -> None:
    assert decide(claude("Z", {"z1": 1})) == {"Z": Lineage()}


def test_a_chained_resume_links_each_file_to_its_nearest_ancestor() -> None:
    result = decide(A, B, C)
    assert result["A"] == Lineage()
    assert result["B"] == Lineage("A", at(3), 3)
    assert result["C"] == Lineage("B", at(11), 5)


def test_any_arrival_order_gives_the_same_lineage() -> None:
    expected = decide(A, B, C)
    for order in itertools.permutations([A, B, C]):
        assert decide(*order) == expected
    # what is known so far is decided the same way whichever file came first
    for pair in itertools.permutations([A, C]):
        assert decide(*pair)["C"] == Lineage("A", at(3), 3)


def test_a_background_hand_off_is_the_copy() -> None:
    d = claude("D", {"d1": 1, "d2": 2})
    e = claude("E", {"d1": 1, "d2": 2, "e1": 5}, bg=True)
    assert decide(d, e)["E"] == Lineage("D", at(2), 2)
    # before the hand-off wrote a turn of its own, the two files are twins: the marker decides
    twin = claude("0-E", {"d1": 1, "d2": 2}, bg=True)
    assert decide(d, twin)["0-E"] == Lineage("D", at(2), 2)
    assert decide(d, twin)["D"] == Lineage()


def test_a_fork_whose_origin_went_on_is_told_apart_by_the_rewound_branch() -> None:
    # G holds a rewound prompt+response (g0) older than the last copied line; H cannot.
    g = claude("Z-G", {"g0": 0.5, "g1": 1, "g2": 2, "g3": 30})
    h = claude("A-H", {"g1": 1, "g2": 2, "h1": 10})
    assert decide(g, h)["A-H"] == Lineage("Z-G", at(2), 2)
    assert decide(g, h)["Z-G"] == Lineage()


def test_a_fork_without_other_evidence_the_one_that_went_on_first_is_the_copy() -> None:
    g = claude("G", {"g1": 1, "g2": 2, "g3": 30})
    h = claude("H", {"g1": 1, "g2": 2, "h1": 10})
    assert decide(g, h) == {"G": Lineage(), "H": Lineage("G", at(2), 2)}


def test_copied_from_is_antisymmetric() -> None:
    shapes = [A, B, C, claude("X", {"r1": 1, "x": 0.5}), claude("Y", {"r2": 2})]
    for a, b in itertools.permutations(shapes, 2):
        assert not (copied_from(a, b) and copied_from(b, a)), (a.session_id, b.session_id)


def test_two_originals_sharing_a_key_by_accident_decide_nothing() -> None:
    a = claude("P", {"x": 5, "p": 1})
    b = claude("Q", {"x": 5, "q": 2})
    assert decide(a, b) == {"P": Lineage(), "Q": Lineage()}


def test_codex_keys_link_only_a_declared_fork() -> None:
    parent = SessionFacts("P", "codex", {"codex:T1": at(1), "codex:T2": at(2)})
    fork = SessionFacts("F", "codex", {"codex:T1": at(9), "codex:T2": at(9), "codex:T3": at(12)},
                        forked_from="P")
    stranger = SessionFacts("S", "codex", {"codex:T1": at(0)})
    result = decide(parent, fork, stranger)
    assert result["F"] == Lineage("P", at(9), 2)
    assert result["S"] == Lineage() and result["P"] == Lineage()
