"""A clock for benchmarks whose figures must not depend on the hour they run at.

Outside a number's calling hours every check is blocked and also searches the next fourteen days for
its ``next_callable_at``: a bench run at 21:00 in New York measured that search, one run at 15:00 did
not. The gates under measurement read this clock instead: the system clock moved to the next hour at
which New York's calling hours are open for a while, still ticking, so attempts and caps behave as live.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dialguard.clock import Clock, system_clock
from dialguard.numbers import NumberFacts, parse_number
from dialguard.policy.hours import allowed_at
from dialguard.policy.rulebook import RuleBook

BENCH_NUMBER = "+12125550000"  # the bench's numbers are all New York's (212)
OPEN_FOR = timedelta(hours=3)  # long enough for any bench


def inside_hours_clock(rulebook: RuleBook, number: str = BENCH_NUMBER) -> Clock:
    """The system clock moved forward to the first whole hour at which ``number``'s calling hours have
    been and stay open for OPEN_FOR (holidays and weekends skipped by the packs' own rules)."""
    facts = parse_number(number, default_region="US")
    assert isinstance(facts, NumberFacts), number
    rules = rulebook.rules_for(facts)
    now = system_clock()
    at = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for _ in range(24 * 21):
        if all(allowed_at(rules, at + timedelta(minutes=m)) for m in range(0, 181, 15)):
            break
        at += timedelta(hours=1)
    else:
        raise RuntimeError(f"no calling hours open for {OPEN_FOR} in three weeks for {number}")
    offset = at - now
    return lambda: datetime.now(UTC) + offset
