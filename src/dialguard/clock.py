"""The one place that reads "now". Everything else is handed a clock, so tests can fix the time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def fixed_clock(at: datetime) -> Clock:
    """A clock stopped at ``at`` (timezone-aware), for dry runs with ``--at`` and for tests."""
    if at.tzinfo is None:
        raise ValueError("a fixed clock needs a timezone-aware instant")
    return lambda: at
