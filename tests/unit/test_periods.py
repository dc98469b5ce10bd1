"""The period syntax of SESSIONSTREAM_SINCE, --since and --until: durations back from now, ISO
dates and datetimes, and a clear error naming the variable for anything else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streams.errors import ConfigError
from streams.periods import format_cutoff, parse_since, parse_until
from streams.settings import load_settings

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(("text", "back"), [
    ("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90)),
    ("2w", timedelta(weeks=2)), (" 7D ", timedelta(days=7)),
])
def test_a_duration_counts_back_from_now(text: str, back: timedelta) -> None:
    assert parse_since(text, NOW) == NOW - back
    assert parse_until(text, NOW) == NOW - back


def test_a_bare_date_starts_the_day_as_since_and_ends_it_as_until() -> None:
    assert parse_since("2026-11-01", NOW) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_until("2026-11-30", NOW) == datetime(2026, 12, 1, tzinfo=UTC)


def test_datetimes_are_utc_unless_they_name_a_zone() -> None:
    assert parse_since("2026-11-01T08:00", NOW) == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert parse_since("2026-11-01T08:00Z", NOW) == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert parse_until("2026-11-01T08:00+01:00", NOW) == datetime(2026, 11, 1, 7, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "30", "30 days", "d30", "-3d", "2026-13-01", "yesterday"])
def test_anything_else_is_refused_saying_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="30d, 12h, 90m, 2w"):
        parse_since(text, NOW)


def test_the_report_prints_a_day_or_minutes() -> None:
    assert format_cutoff(datetime(2026, 11, 1, tzinfo=UTC)) == "2026-11-01"
    assert format_cutoff(datetime(2026, 11, 1, 8, 5, 9, tzinfo=UTC)) == "2026-11-01T08:05Z"


def test_a_bad_since_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONSTREAM_SINCE", "last week")
    with pytest.raises(ConfigError, match=r"SESSIONSTREAM_SINCE: .*'last week' is not a period"):
        load_settings(_env_file=None)


@pytest.mark.parametrize(("raw", "kept"), [("30d", "30d"), ("2026-11-01", "2026-11-01"),
                                          ("", None)])
def test_a_good_since_setting_is_kept(monkeypatch: pytest.MonkeyPatch, raw: str,
                                      kept: str | None) -> None:
    monkeypatch.setenv("SESSIONSTREAM_SINCE", raw)
    assert load_settings(_env_file=None).since == kept
