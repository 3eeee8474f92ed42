"""The engine and the checks that need no calendar: number, campaign, do-not-call, consent, verdict."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialguard.numbers import InvalidNumber, LineType, NumberFacts
from dialguard.policy.engine import evaluate
from dialguard.policy.model import (
    Attempt,
    CallFacts,
    CallingHours,
    Campaign,
    ConsentRecord,
    ConsentRule,
    DncHit,
    FrequencyCap,
    Purpose,
    Source,
    TimeWindow,
    Verdict,
)
from dialguard.policy.rulebook import RuleBook, dated_layer, in_force
from tests.fakes.rules import simple_rulebook

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 13:00 in Warsaw
PL = NumberFacts(
    e164="+48601234567",
    country_code=48,
    region="PL",
    subdivision=None,
    time_zones=("Europe/Warsaw",),
    line_type=LineType.MOBILE,
)
MARKETING = Campaign("spring", Purpose.MARKETING)
RULES = simple_rulebook().rules_for(PL)


def facts(**kw: object) -> CallFacts:
    base: dict[str, object] = {
        "raw_number": PL.e164,
        "number": PL,
        "campaign_name": "spring",
        "campaign": MARKETING,
        "now": NOW,
    }
    base.update(kw)
    return CallFacts(**base)  # type: ignore[arg-type]


def consent(**kw: object) -> ConsentRecord:
    base: dict[str, object] = {
        "id": 7,
        "kind": "express",
        "source": "web_form",
        "granted_at": NOW - timedelta(days=10),
        "purpose": Purpose.MARKETING,
    }
    base.update(kw)
    return ConsentRecord(**base)  # type: ignore[arg-type]


def test_invalid_number_blocks_alone() -> None:
    d = evaluate(facts(number=InvalidNumber("abc", "not a number")), None)
    assert d.verdict is Verdict.BLOCK
    assert d.codes == ("number.invalid",)
    assert d.reason == "number.invalid"


def test_allow_when_every_check_passes_and_reason_is_ok() -> None:
    d = evaluate(facts(consents=(consent(),)), RULES)
    assert d.verdict is Verdict.ALLOW
    assert d.reason == "ok"
    assert d.codes == (
        "number.ok",
        "dnc.clear",
        "consent.valid",
        "hours.within_window",
        "frequency.ok",
        "roaming.not_required",
    )
    assert d.next_callable_at is None


def test_internal_list_wins_over_national_and_prefix() -> None:
    hits = (
        DncHit("us_national", "registry", NOW),
        DncHit("internal", "dtmf", NOW, entry_id=3),
        DncHit("internal", "cli", NOW, prefix="+4860"),
    )
    d = evaluate(facts(consents=(consent(),), dnc_hits=hits), RULES)
    assert d.reason == "dnc.internal"
    r = d.reasons[1]
    assert r.detail["entry_id"] == 3
    assert r.detail["also_on"] == ["internal", "us_national"]


def test_national_list_code_names_the_list() -> None:
    d = evaluate(facts(consents=(consent(),), dnc_hits=(DncHit("uk_tps", "tps", NOW),)), RULES)
    assert d.reason == "dnc.uk_tps"


def test_prefix_hit() -> None:
    d = evaluate(
        facts(consents=(consent(),), dnc_hits=(DncHit("internal", "cli", NOW, prefix="+4860"),)), RULES
    )
    assert d.reason == "dnc.prefix"


def test_consent_missing_revoked_expired() -> None:
    assert evaluate(facts(), RULES).reason == "consent.missing"
    revoked = consent(revoked_at=NOW - timedelta(minutes=1))
    assert evaluate(facts(consents=(revoked,)), RULES).reason == "consent.revoked"
    expired = consent(expires_at=NOW)
    assert evaluate(facts(consents=(expired,)), RULES).reason == "consent.expired"
    # An expiry one second ahead is still valid.
    assert (
        evaluate(facts(consents=(consent(expires_at=NOW + timedelta(seconds=1)),)), RULES).verdict == "ALLOW"
    )


def test_consent_scope_purpose_and_campaign() -> None:
    other_purpose = consent(purpose=Purpose.SURVEY)
    assert evaluate(facts(consents=(other_purpose,)), RULES).reason == "consent.missing"
    this_campaign = consent(purpose=None, campaign="spring")
    assert evaluate(facts(consents=(this_campaign,)), RULES).verdict is Verdict.ALLOW
    other_campaign = consent(purpose=None, campaign="autumn")
    assert evaluate(facts(consents=(other_campaign,)), RULES).reason == "consent.missing"


def test_consent_granted_in_the_future_does_not_count() -> None:
    assert (
        evaluate(facts(consents=(consent(granted_at=NOW + timedelta(seconds=1)),)), RULES).verdict == "BLOCK"
    )


def test_consent_not_required_for_informational() -> None:
    d = evaluate(facts(campaign=Campaign("notices", Purpose.INFORMATIONAL)), RULES)
    assert d.verdict is Verdict.ALLOW
    assert "consent.not_required" in d.codes


def test_unknown_campaign_is_judged_as_marketing() -> None:
    d = evaluate(facts(campaign=None, campaign_name="ghost"), RULES)
    assert d.codes[:2] == ("number.ok", "campaign.unknown")
    assert "consent.missing" in d.codes


def test_time_curable_block_gets_next_callable_but_dnc_does_not() -> None:
    late = datetime(2026, 11, 23, 20, 30, tzinfo=UTC)  # 21:30 Warsaw: after 21:00
    d = evaluate(facts(now=late, consents=(consent(),)), RULES)
    assert d.reason == "hours.outside_window"
    assert d.next_callable_at == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # 08:00 Warsaw
    d = evaluate(facts(now=late, consents=(consent(),), dnc_hits=(DncHit("internal", "cli", NOW),)), RULES)
    assert d.next_callable_at is None


def test_cap_and_hours_together_wait_for_both() -> None:
    rules = simple_rulebook(cap=(1, timedelta(hours=24))).rules_for(PL)
    # Called at 19:00 UTC (20:00 Warsaw) yesterday's evening: the slot frees at 19:00 UTC today,
    # which is 20:00 Warsaw, inside the window.
    called = datetime(2026, 11, 22, 19, 0, tzinfo=UTC)
    attempt = Attempt(called, "spring", Purpose.MARKETING)
    d = evaluate(facts(consents=(consent(),), attempts=(attempt,)), rules)
    assert d.reason == "frequency.cap"
    assert d.next_callable_at == called + timedelta(hours=24)
    # If it frees after hours, the next opening is the answer.
    called = datetime(2026, 11, 22, 20, 30, tzinfo=UTC)  # frees 21:30 Warsaw
    d = evaluate(
        facts(consents=(consent(),), attempts=(Attempt(called, "spring", Purpose.MARKETING),)), rules
    )
    assert d.next_callable_at == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)


def test_cap_is_exactly_the_cap() -> None:
    rules = simple_rulebook(cap=(3, timedelta(hours=24))).rules_for(PL)
    recent = tuple(Attempt(NOW - timedelta(hours=h), "spring", Purpose.MARKETING) for h in (1, 2))
    assert evaluate(facts(consents=(consent(),), attempts=recent), rules).verdict is Verdict.ALLOW
    three = (*recent, Attempt(NOW - timedelta(hours=3), "spring", Purpose.MARKETING))
    assert evaluate(facts(consents=(consent(),), attempts=three), rules).reason == "frequency.cap"
    # An attempt exactly one period ago has left the window.
    edge = (*recent, Attempt(NOW - timedelta(hours=24), "spring", Purpose.MARKETING))
    assert evaluate(facts(consents=(consent(),), attempts=edge), rules).verdict is Verdict.ALLOW


@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)))
def test_allow_only_inside_the_window_and_next_callable_is_callable(now: datetime) -> None:
    rules = simple_rulebook(start=time(9), end=time(20)).rules_for(PL)
    d = evaluate(facts(now=now, consents=(consent(granted_at=datetime(2025, 1, 1, tzinfo=UTC)),)), rules)
    local = now.astimezone(ZoneInfo("Europe/Warsaw")).time()
    assert (d.verdict is Verdict.ALLOW) == (time(9) <= local < time(20))
    if d.next_callable_at is not None:
        again = evaluate(
            facts(now=d.next_callable_at, consents=(consent(granted_at=datetime(2025, 1, 1, tzinfo=UTC)),)),
            rules,
        )
        assert again.verdict is Verdict.ALLOW


# ---------------------------------------------------------------- dated entries (issue 10, item 4)

NEW_RULE = date(2026, 10, 18)  # a Sunday
NY = NumberFacts(
    e164="+12125550100",
    country_code=1,
    region="US",
    subdivision="US-NY",
    time_zones=("America/New_York",),
    line_type=LineType.FIXED_LINE_OR_MOBILE,
)
EVERY_DAY = dict.fromkeys(range(6), (TimeWindow(time(8), time(21)),))


def dated_book(zones: tuple[str, ...] = ("America/New_York",)) -> RuleBook:
    """Sunday 13:30-21:00 until the day before NEW_RULE, then no Sunday calls; written consent from NEW_RULE
    on (any consent before); a 1-a-day cap that ends the day before NEW_RULE."""
    old, new = (
        Source("old act", date(2019, 12, 3), until=NEW_RULE - timedelta(days=1)),
        Source("new act", NEW_RULE),
    )
    layer = dated_layer(
        "XX",
        hours=(
            CallingHours({**EVERY_DAY, 6: (TimeWindow(time(13, 30), time(21)),)}, old),
            CallingHours(EVERY_DAY, new),
        ),
        consent=(
            ConsentRule(Purpose.MARKETING, True, old),
            ConsentRule(Purpose.MARKETING, True, new, frozenset({"express_written"})),
        ),
        caps=(FrequencyCap(1, timedelta(days=1), old),),
        presumed_zones=zones,
        presumption="test",
    )
    return RuleBook(countries={}, subdivisions={}, default=layer, version="dated")


def ny_facts(now: datetime, **kw: object) -> CallFacts:
    return facts(raw_number=NY.e164, number=NY, now=now, **kw)


def test_a_dated_rule_applies_only_from_its_date_and_the_old_one_until_then() -> None:
    rules = dated_book().rules_for(NY)
    express = consent(granted_at=datetime(2026, 1, 1, tzinfo=UTC))
    sunday_before = datetime(2026, 10, 11, 14, 0, tzinfo=ZoneInfo("America/New_York"))
    d = evaluate(ny_facts(sunday_before, consents=(express,)), rules)
    assert d.verdict is Verdict.ALLOW, d.reasons
    sunday_after = datetime(2026, 10, 18, 14, 0, tzinfo=ZoneInfo("America/New_York"))
    d = evaluate(ny_facts(sunday_after, consents=(express,)), rules)
    assert d.codes.count("hours.outside_window") == 1 and "consent.missing" in d.codes
    hours = next(r for r in d.reasons if r.code == "hours.outside_window")
    assert hours.detail["source"] == {
        "citation": "new act",
        "effective": "2026-10-18",
        "until": None,
        "policy": False,
    }
    consent_reason = next(r for r in d.reasons if r.code == "consent.missing")
    assert consent_reason.detail["kinds_accepted"] == ["express_written"]


def test_a_dated_rule_starts_at_midnight_in_the_callees_zone() -> None:
    rules = dated_book().rules_for(NY)
    express = consent(granted_at=datetime(2026, 1, 1, tzinfo=UTC))
    # 03:59 UTC on the 18th is still Saturday 23:59 in New York: the old consent rule (any kind) holds,
    # though the hours block (after 21:00).
    d = evaluate(ny_facts(datetime(2026, 10, 18, 3, 59, tzinfo=UTC), consents=(express,)), rules)
    assert "consent.valid" in d.codes
    d = evaluate(ny_facts(datetime(2026, 10, 18, 4, 0, tzinfo=UTC), consents=(express,)), rules)
    assert "consent.missing" in d.codes


def test_where_the_callees_zones_disagree_about_the_date_both_periods_bind() -> None:
    # A number that may be in New York or in Tokyo: at 2026-10-17 16:00 UTC it is the 17th in New York
    # and already the 18th in Tokyo, so the old and the new consent rules both apply: the stricter wins.
    rules = dated_book().rules_for(replace(NY, time_zones=("America/New_York", "Asia/Tokyo")))
    current = in_force(rules, datetime(2026, 10, 17, 16, 0, tzinfo=UTC))
    assert [(layer.since, layer.until) for layer in current.layers] == [
        (date(2019, 12, 3), date(2026, 10, 17)),
        (NEW_RULE, None),
    ]
    express = consent(granted_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert (
        "consent.missing"
        in evaluate(ny_facts(datetime(2026, 10, 17, 16, 0, tzinfo=UTC), consents=(express,)), rules).codes
    )


def test_a_cap_that_has_ended_no_longer_counts() -> None:
    rules = dated_book().rules_for(NY)
    written = consent(kind="express_written", granted_at=datetime(2026, 1, 1, tzinfo=UTC))
    monday = datetime(2026, 10, 12, 12, 0, tzinfo=ZoneInfo("America/New_York"))
    earlier = (Attempt(monday - timedelta(hours=1), "spring", Purpose.MARKETING),)
    assert evaluate(ny_facts(monday, consents=(written,), attempts=earlier), rules).reason == "frequency.cap"
    later = monday + timedelta(days=7)
    earlier = (Attempt(later - timedelta(hours=1), "spring", Purpose.MARKETING),)
    assert evaluate(ny_facts(later, consents=(written,), attempts=earlier), rules).verdict is Verdict.ALLOW


def test_next_callable_across_the_change_is_judged_by_the_rule_of_that_day() -> None:
    rules = dated_book().rules_for(NY)
    written = consent(kind="express_written", granted_at=datetime(2026, 1, 1, tzinfo=UTC))
    ny = ZoneInfo("America/New_York")
    d = evaluate(ny_facts(datetime(2026, 10, 10, 21, 30, tzinfo=ny), consents=(written,)), rules)
    assert d.next_callable_at == datetime(2026, 10, 11, 13, 30, tzinfo=ny)
    d = evaluate(ny_facts(datetime(2026, 10, 17, 21, 30, tzinfo=ny), consents=(written,)), rules)
    assert d.next_callable_at == datetime(2026, 10, 19, 8, 0, tzinfo=ny)


def test_undated_rules_are_selected_without_any_work() -> None:
    assert in_force(RULES, NOW) is RULES


def test_overlapping_entries_of_one_rule_are_refused_by_the_builder() -> None:
    with pytest.raises(ValueError, match="overlap"):
        dated_layer("XX", hours=(CallingHours(EVERY_DAY, Source("a")), CallingHours(EVERY_DAY, Source("b"))))
