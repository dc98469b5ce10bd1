"""The start-up line of each watching source names the folders found and counts the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.pipeline import _roots_line

pytestmark = pytest.mark.unit


def test_found_folders_are_named_and_missing_ones_counted(tmp_path: Path) -> None:
    found, gone = tmp_path / "found", tmp_path / "gone"
    found.mkdir()
    assert _roots_line([found]) == str(found)
    assert _roots_line([gone, found, tmp_path / "also-gone"]) == f"{found} (+2 not there yet)"


def test_a_source_with_no_folder_yet_says_it_is_waiting(tmp_path: Path) -> None:
    first = tmp_path / "a"
    assert _roots_line([first]) == f"{first} (none there yet; picked up when created)"
    assert _roots_line([first, tmp_path / "b", tmp_path / "c"]) == (
        f"{first} and 2 more (none there yet; picked up when created)")
