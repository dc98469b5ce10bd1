"""Points in time written the way people say them: ``30d``, ``12h``, ``90m``, ``2w`` or an ISO
date or datetime, turned into a UTC :class:`~datetime.datetime` for a given ``now``.

One syntax for every bound: ``SESSIONSTREAM_SINCE``, ``run --since``, ``backfill --since`` and
``--until``, and ``redrive --since`` and ``--until``. A duration counts back from ``now``; a date
or datetime without a zone is UTC. A bare date as an *upper* bound (:func:`parse_until`) means
the end of that day, so ``--since 2026-11-01 --until 2026-11-30`` covers all of November.
Pure functions: the caller passes ``now``, so tests and reports agree on the cutoff.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

__all__ = ["PERIOD_SYNTAX", "format_cutoff", "parse_since", "parse_until"]

PERIOD_SYNTAX = ("a duration back from now (30d, 12h, 90m, 2w) or an ISO date or datetime "
                 "(2026-11-01, 2026-11-01T08:00, 2026-11-01T08:00+01:00; UTC when no zone)")

_DURATION = re.compile(r"^\s*(?P<n>\d+)\s*(?P<unit>[mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_since(text: str, now: datetime) -> datetime:
    """The instant ``text`` names, as a lower bound: ``30d`` is ``now`` minus 30 days, a bare
    date is the start of that day (UTC).

    Raises:
        ValueError: ``text`` is neither a duration nor an ISO date or datetime; the message
            says what is accepted.
    """
    return _parse(text, now, end_of_day=False)


def parse_until(text: str, now: datetime) -> datetime:
    """The instant ``text`` names, as an upper bound: like :func:`parse_since`, except that a
    bare date is the *end* of that day (the next midnight, UTC), so the day is included.

    Raises:
        ValueError: as :func:`parse_since`.
    """
    return _parse(text, now, end_of_day=True)


def format_cutoff(when: datetime) -> str:
    """``when`` as the reports print it: ``2026-11-01`` at midnight UTC, else minutes."""
    when = when.astimezone(UTC)
    if (when.hour, when.minute, when.second, when.microsecond) == (0, 0, 0, 0):
        return when.date().isoformat()
    return when.strftime("%Y-%m-%dT%H:%MZ")


def _parse(text: str, now: datetime, *, end_of_day: bool) -> datetime:
    value = text.strip()
    duration = _DURATION.match(value)
    if duration:
        amount = int(duration["n"])
        return now.astimezone(UTC) - timedelta(**{_UNITS[duration["unit"].lower()]: amount})
    try:
        if _DATE_ONLY.match(value):
            day = date.fromisoformat(value)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start
        moment = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z")
                                        else value)
    except ValueError:
        raise ValueError(f"{text!r} is not a period: expected {PERIOD_SYNTAX}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
