"""Properties of the shipped packs over random numbers and instants (issue 3):

- no ALLOW ever falls outside a window in any candidate zone, for any rule layer;
- next_callable_at, when given, is itself callable, and the minute before it is not.

The oracle reads the windows and the ``holidays`` package directly, not through policy/hours.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays as holidays_lib
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dialguard.numbers import NumberFacts, parse_number
from dialguard.policy.engine import evaluate
from dialguard.policy.hours import check_hours
from dialguard.policy.model import (
    Attempt,
    CallFacts,
    CallingHours,
    Campaign,
    ConsentRecord,
    EffectiveRules,
    Purpose,
)
from dialguard.rules.loader import load_rulebook

RULES = load_rulebook()

# Number ranges that exercise every kind of layer: US states with their own hours, Sunday and holiday
# bans, split and wide zone sets (208, toll-free, Guam), GB, PL, RU fixed and mobile, CN, the EU
# default (DE), the conservative default (AU mobile, BR).
PREFIXES = [
    "+1212555", "+1305555", "+1214555", "+1215555", "+1504555", "+1205555", "+1601555", "+1502555",
    "+1405555", "+1410555", "+1208555", "+1402555", "+1401555", "+1801555", "+1907555", "+1808555",
    "+1800555", "+1671555", "+1416555", "+4420794", "+4479111", "+4860123", "+7912123", "+7495123",
    "+8613812", "+4915123", "+6141234", "+5511987",
]  # fmt: skip

numbers = st.builds(
    lambda prefix, tail: parse_number(prefix + tail),
    st.sampled_from(PREFIXES),
    st.text("0123456789", min_size=4, max_size=4),
).filter(lambda n: isinstance(n, NumberFacts))
instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
lead_states = st.sampled_from([None, "US-FL", "US-TX", "US-CA", "US-PA", "US-AL"])
_LOUISIANA = holidays_lib.country_holidays("US", subdiv="LA", years=range(2026, 2029))


def _is_holiday(hours: CallingHours, day: object) -> bool:
    if day in hours.extra_holidays:
        return True
    # Mardi Gras as the holidays package dates it for Louisiana: a source apart from policy/hours.easter.
    if "mardi_gras" in hours.moving_holidays and _LOUISIANA.get(day) == "Mardi Gras":
        return True
    if hours.holiday_country is None:
        return False
    return day in holidays_lib.country_holidays(hours.holiday_country, subdiv=hours.holiday_subdivision)


def _inside_everywhere(rules: EffectiveRules, zones: list[str], instant: datetime) -> bool:
    for layer in rules.layers:
        hours = layer.calling_hours
        if hours is None:
            continue
        for zone in zones:
            local = instant.astimezone(ZoneInfo(zone))
            # A layer's period binds only on its own local days (a pack entry dated from 2026-10-18).
            if (layer.since and local.date() < layer.since) or (layer.until and local.date() > layer.until):
                continue
            windows = hours.windows_on(local.date(), _is_holiday(hours, local.date()))
            if not any(w.contains(local.time()) for w in windows):
                return False
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(number=numbers, instant=instants, lead=lead_states)
def test_no_allow_outside_a_window_in_any_candidate_zone(
    number: NumberFacts, instant: datetime, lead: str | None
) -> None:
    rules = RULES.rules_for(number, lead_subdivision=lead)
    judged = check_hours(rules, instant)
    if not judged.passed:
        return
    zones = judged.detail["zones"]
    assert isinstance(zones, list)
    if not judged.detail.get("no_common_window"):
        # Without a stated presumption, the zones judged are all the candidate zones.
        assert zones == list(rules.zones)
    assert _inside_everywhere(rules, [str(z) for z in zones], instant)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    number=numbers,
    instant=instants,
    lead=lead_states,
    recent=st.lists(st.integers(min_value=1, max_value=24 * 60 - 1), max_size=4),
)
def test_next_callable_at_is_callable_and_the_earliest(
    number: NumberFacts, instant: datetime, lead: str | None, recent: list[int]
) -> None:
    # Earlier calls in the last 24 h (minutes ago) can trip the 3-a-day caps of FL, OK and MD; a written
    # consent satisfies every pack, so only waiting can cure what blocks.
    consent = ConsentRecord(1, "express_written", "web_form", instant - timedelta(days=30), Purpose.MARKETING)
    campaign = Campaign("spring", Purpose.MARKETING)
    attempts = tuple(Attempt(instant - timedelta(minutes=m), "spring", Purpose.MARKETING) for m in recent)
    rules = RULES.rules_for(number, lead_subdivision=lead)

    def at(moment: datetime) -> CallFacts:
        return CallFacts(
            raw_number=number.e164,
            number=number,
            campaign_name="spring",
            campaign=campaign,
            now=moment,
            attempts=attempts,
            consents=(consent,),
            lead_subdivision=lead,
        )

    decision = evaluate(at(instant), rules)
    nxt = decision.next_callable_at
    assume(nxt is not None)
    assert nxt is not None
    assert nxt > instant
    waits = {"hours.outside_window", "hours.holiday", "frequency.cap"}
    then = evaluate(at(nxt), rules)
    assert not [r.code for r in then.reasons if not r.passed and r.code in waits]
    before = nxt - timedelta(minutes=1)
    if before > instant:
        earlier = evaluate(at(before), rules)
        assert [r.code for r in earlier.reasons if not r.passed and r.code in waits]
