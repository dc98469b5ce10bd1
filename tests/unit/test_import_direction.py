"""Imports point one way: schemas <- streams <- projections <- agents <- app.

Each package may import the ones before it, never one after it. Every module of every package
is read as source (its syntax tree, so imports inside functions and ``TYPE_CHECKING`` blocks
count too, and nothing is executed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("schemas", "streams", "projections", "agents", "app")


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute names of the modules ``path`` imports (``import x``, ``from x import y``, and
    relative imports resolved against the module's own package)."""
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                found.add(".".join([*base, *([node.module] if node.module else [])]))
            else:
                found.add(str(node.module))
    return found


@pytest.mark.parametrize("layer", LAYERS[:-1])
def test_a_package_imports_nothing_of_the_packages_after_it(layer: str) -> None:
    later = set(LAYERS[LAYERS.index(layer) + 1:])
    modules = sorted((ROOT / layer).rglob("*.py"))
    assert modules, f"no modules found in {layer}/"
    wrong = {f"{path.relative_to(ROOT)}: {name}"
             for path in modules for name in imported_modules(path)
             if name.split(".")[0] in later}
    assert sorted(wrong) == []


def test_the_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    module = tmp_path / "streams" / "producers" / "x.py"
    module.parent.mkdir(parents=True)
    module.write_text("\n".join([
        "import json, agents.parse_lines",
        "from app.cli import main",
        "from . import base",
        "from ..topics import FILE_CHANGES",
        "def later():",
        "    import projections.base as b",
        "if TYPE_CHECKING:",
        "    from schemas import events",
    ]))
    assert imported_modules(module, tmp_path) == {
        "json", "agents.parse_lines", "app.cli", "streams.producers", "streams.topics",
        "projections.base", "schemas"}
