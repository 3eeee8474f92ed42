"""The one place that reads "now". Everything else is handed a clock, so tests can fix the time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]

# The instants anyone may give us: outside them a date is a typo (or an attack on the database's range).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2199, 12, 31, 23, 59, 59, tzinfo=UTC)


def system_clock() -> datetime:
    return datetime.now(UTC)


def parse_instant(text: str) -> datetime:
    """ISO-8601 with a UTC offset (``2026-11-23T20:30:00-07:00`` or ``...Z``); ValueError says why not."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 time; write e.g. 2026-11-23T20:30:00-07:00") from None
    if at.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; add one, e.g. {text}+00:00 or {text}Z")
    try:
        in_utc = at.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not EARLIEST <= in_utc <= LATEST:
        raise ValueError(f"{text!r} is out of range: give a time between {EARLIEST.year} and {LATEST.year}")
    return at


def fixed_clock(at: datetime) -> Clock:
    """A clock stopped at ``at`` (timezone-aware), for dry runs with ``--at`` and for tests."""
    if at.tzinfo is None:
        raise ValueError("a fixed clock needs a timezone-aware instant")
    return lambda: at
