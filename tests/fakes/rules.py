"""Small hand-built rule books for tests of the gate (the real packs are tested on their own)."""

from __future__ import annotations

from datetime import date, time, timedelta

from dialguard.policy.model import (
    CallingHours,
    ConsentRule,
    FrequencyCap,
    Purpose,
    RuleLayer,
    Source,
    TimeWindow,
)
from dialguard.policy.rulebook import RuleBook

TEST_SOURCE = Source("test rule", date(2026, 1, 1))


def simple_layer(
    key: str,
    *,
    start: time = time(8),
    end: time = time(21),
    consent_for: tuple[Purpose, ...] = (Purpose.MARKETING,),
    cap: tuple[int, timedelta] | None = None,
) -> RuleLayer:
    window = (TimeWindow(start, end),)
    return RuleLayer(
        key=key,
        calling_hours=CallingHours(weekdays=dict.fromkeys(range(7), window), source=TEST_SOURCE),
        consent={p: ConsentRule(p, True, TEST_SOURCE) for p in consent_for},
        frequency_caps=(FrequencyCap(cap[0], cap[1], TEST_SOURCE),) if cap else (),
    )


def simple_rulebook(**layer_kw: object) -> RuleBook:
    layer = simple_layer("ANY", **layer_kw)  # type: ignore[arg-type]
    return RuleBook(
        countries={}, subdivisions={}, default=layer, version="test-" + repr(sorted(layer_kw.items()))
    )
