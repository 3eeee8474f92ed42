"""Declared emergencies (N.Y. Gen. Bus. Law 399-z): no marketing into the area while one is in force."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dialguard.numbers import NumberFacts, parse_number
from dialguard.policy.emergency import check_emergency
from dialguard.policy.engine import evaluate
from dialguard.policy.model import (
    AnswerCounts,
    CallFacts,
    Campaign,
    ConsentRecord,
    Emergency,
    Purpose,
    RegistryStatus,
    Verdict,
)
from dialguard.rules.loader import load_rulebook

RULES = load_rulebook()
NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 11:00 in New York, a Monday
BUFFALO = parse_number("+17165550100")
assert isinstance(BUFFALO, NumberFacts)
STORM = Emergency(7, "US-NY", "Executive Order 27: winter storm, Erie County", NOW + timedelta(hours=30))


def facts(
    *emergencies: Emergency, purpose: Purpose = Purpose.INFORMATIONAL, lead: str | None = None
) -> CallFacts:
    return CallFacts(
        raw_number=BUFFALO.e164,
        number=BUFFALO,
        campaign_name="c",
        campaign=Campaign("c", purpose),
        now=NOW,
        emergencies=emergencies,
        lead_subdivision=lead,
        consents=(ConsentRecord(1, "express", "web_form", NOW - timedelta(days=1), purpose=purpose),),
        registries=(RegistryStatus("us_national", NOW.date(), 1, hit=False),),  # fresh, not listed
        # Read, as the gate reads them for a US callee: no calls abandoned, the campaign under its limit.
        campaign_answers=AnswerCounts(0, 0, NOW - timedelta(days=30), NOW),
    )


def test_no_layer_stops_the_purpose_so_nothing_is_checked() -> None:
    rules = RULES.rules_for(BUFFALO)
    assert check_emergency(facts(STORM), rules, Purpose.INFORMATIONAL) is None
    jersey = parse_number("+12015550100")
    assert isinstance(jersey, NumberFacts)
    assert check_emergency(facts(STORM), RULES.rules_for(jersey), Purpose.MARKETING) is None


def test_none_in_force_passes_and_says_where_it_looked() -> None:
    reason = check_emergency(facts(), RULES.rules_for(BUFFALO), Purpose.MARKETING)
    assert reason is not None and (reason.code, reason.passed) == ("hours.no_emergency", True)
    assert reason.detail == {"areas": ["US-NY"]}


def test_one_in_force_blocks_marketing_until_it_ends_then_inside_the_window() -> None:
    decision = evaluate(facts(STORM, purpose=Purpose.MARKETING), RULES.rules_for(BUFFALO))
    assert (decision.verdict, decision.reason) == (Verdict.BLOCK, "hours.emergency")
    detail = next(r.detail for r in decision.reasons if r.code == "hours.emergency")
    assert detail["emergency_id"] == 7 and detail["area"] == "US-NY"
    assert "399-z" in detail["source"]["citation"]  # type: ignore[index]
    # It ends at 22:00 UTC the next day, 17:00 in Buffalo: inside the window, so callable then.
    assert decision.next_callable_at == STORM.ends_at
    late = Emergency(8, "US-NY", "order 28", datetime(2026, 11, 25, 3, 0, tzinfo=UTC))  # 22:00 local
    decision = evaluate(facts(STORM, late, purpose=Purpose.MARKETING), RULES.rules_for(BUFFALO))
    assert decision.next_callable_at == datetime(2026, 11, 25, 13, 0, tzinfo=UTC)  # 08:00 next morning


def test_informational_calls_and_other_areas_are_not_stopped() -> None:
    assert evaluate(facts(STORM), RULES.rules_for(BUFFALO)).verdict is Verdict.ALLOW
    elsewhere = Emergency(9, "US-FL", "hurricane", NOW + timedelta(days=2))
    decision = evaluate(facts(elsewhere, purpose=Purpose.MARKETING), RULES.rules_for(BUFFALO))
    assert "hours.emergency" not in decision.codes


def test_a_lead_who_lives_in_new_york_is_covered_whatever_the_number() -> None:
    miami = parse_number("+13055550100")
    assert isinstance(miami, NumberFacts)
    rules = RULES.rules_for(miami, lead_subdivision="US-NY")
    reason = check_emergency(facts(STORM, purpose=Purpose.MARKETING, lead="US-NY"), rules, Purpose.MARKETING)
    assert reason is not None and reason.code == "hours.emergency"
