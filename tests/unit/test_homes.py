"""The user's folders every source's default roots start from, per OS, from the environment."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from streams.producers.homes import data_home, home_of
from streams.producers.records import epoch_ms

pytestmark = pytest.mark.unit


def test_home_is_home_then_userprofile_and_userprofile_first_on_windows() -> None:
    both = {"HOME": "/msys/me", "USERPROFILE": "C:/Users/me"}
    assert home_of(both, "linux") == Path("/msys/me")
    assert home_of(both, "win32") == Path("C:/Users/me")
    assert home_of({"USERPROFILE": "C:/Users/me"}, "linux") == Path("C:/Users/me")
    assert home_of({"HOME": "  "}, "linux") == Path.home()  # blank counts as unset


def test_data_home_is_xdg_data_home_else_dot_local_share() -> None:
    assert data_home({"XDG_DATA_HOME": "/data", "HOME": "/h"}) == Path("/data")
    assert data_home({"HOME": "/h"}, "darwin") == Path("/h/.local/share")
    assert data_home({"XDG_DATA_HOME": " ", "USERPROFILE": "C:/U"}, "win32") == Path(
        "C:/U/.local/share")


def test_epoch_ms_takes_positive_ints_only() -> None:
    assert epoch_ms(1_795_000_000_000) == datetime.fromtimestamp(1_795_000_000, UTC)
    assert [epoch_ms(v) for v in (0, -5, 1.5e12, "1795000000000", True, 10**20)] == [None] * 6
