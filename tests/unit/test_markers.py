"""Every test module declares the marker of its folder, so ``-m unit`` (no servers) selects
exactly tests/unit and a module moved between folders cannot keep the wrong marker."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]
FOLDERS = ("unit", "contract", "integration")


def declared_markers(module: Path) -> set[str]:
    """The ``pytest.mark.<name>`` names assigned to a module-level ``pytestmark`` (one mark or a
    list or tuple of them)."""
    names: set[str] = set()
    for node in ast.parse(module.read_text(), str(module)).body:
        if not (isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)):
            continue
        marks = node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else [node.value]
        for mark in marks:
            if isinstance(mark, ast.Call):  # pytest.mark.name(...)
                mark = mark.func
            if (isinstance(mark, ast.Attribute) and isinstance(mark.value, ast.Attribute)
                    and mark.value.attr == "mark"):
                names.add(mark.attr)
    return names


def test_every_test_module_carries_the_marker_of_its_folder() -> None:
    wrong = {}
    for folder in FOLDERS:
        modules = sorted((TESTS / folder).rglob("test_*.py"))
        assert modules, f"no test modules found in tests/{folder}"
        for module in modules:
            declared = declared_markers(module) & set(FOLDERS)
            if declared != {folder}:
                wrong[str(module.relative_to(TESTS))] = sorted(declared)
    assert wrong == {}, "expected pytestmark = pytest.mark.<folder> in each of these"


def test_test_modules_live_in_a_marked_folder() -> None:
    elsewhere = [str(p.relative_to(TESTS)) for p in TESTS.rglob("test_*.py")
                 if p.relative_to(TESTS).parts[0] not in FOLDERS]
    assert elsewhere == []


def test_the_marker_reader_sees_single_and_listed_marks(tmp_path: Path) -> None:
    cases = {
        "pytestmark = pytest.mark.unit\n": {"unit"},
        "pytestmark = [pytest.mark.contract, pytest.mark.skipif(True, reason='x')]\n":
            {"contract", "skipif"},
        "import pytest\n\n\ndef test_x() -> None:\n    pytestmark = pytest.mark.unit\n": set(),
        "mark = pytest.mark.unit\n": set(),
    }
    for source, expected in cases.items():
        module = tmp_path / "test_case.py"
        module.write_text(source)
        assert declared_markers(module) == expected, source
