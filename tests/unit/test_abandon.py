"""The abandoned-call governor, pure: the rate boundary by boundary, the cold start, the 72-hour rest,
the pack entries and their validation, and the campaign settings it reads."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialguard.numbers import NumberFacts, parse_number
from dialguard.policy.abandon import at_limit, check_abandon, read_windows
from dialguard.policy.campaign_settings import setting_problems, usable
from dialguard.policy.engine import evaluate
from dialguard.policy.model import (
    AbandonedCall,
    AbandonRule,
    AnswerCounts,
    CallFacts,
    Campaign,
    EffectiveRules,
    Purpose,
    Reason,
    RuleLayer,
    Source,
    Verdict,
)
from dialguard.rules.explain import explain, show
from dialguard.rules.loader import PackError, default_pack_dir, load_rulebook

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # a Tuesday, noon in London
SRC = Source("test rule", date(2026, 1, 1))
RATE = AbandonRule(
    max_rate=Fraction(3, 100),
    window=timedelta(days=30),
    agent_within=timedelta(seconds=2),
    min_ring_seconds=15,
    min_answered=34,
    source=SRC,
)
REPEAT = AbandonRule(
    max_rate=Fraction(3, 100),
    window=timedelta(hours=24),
    agent_within=timedelta(seconds=2),
    min_ring_seconds=15,
    min_answered=34,
    source=SRC,
    repeat_block=timedelta(hours=72),
)


def number(raw: str) -> NumberFacts:
    parsed = parse_number(raw)
    assert isinstance(parsed, NumberFacts)
    return parsed


GB_NUMBER = number("+442071234567")


def rules(rule: AbandonRule | None, key: str = "XX") -> EffectiveRules:
    return EffectiveRules(layers=(RuleLayer(key=key, abandon=rule),), zones=("Europe/London",), version="t")


def facts(
    answered: int = 0,
    abandoned: int = 0,
    *,
    last: datetime | None = None,
    settings: dict[str, object] | None = None,
    purpose: Purpose = Purpose.MARKETING,
    counted: bool = True,
    now: datetime = NOW,
) -> CallFacts:
    return CallFacts(
        raw_number=GB_NUMBER.e164,
        number=GB_NUMBER,
        campaign_name="spring",
        campaign=Campaign("spring", purpose, settings or {}),  # type: ignore[arg-type]
        now=now,
        campaign_answers=AnswerCounts(answered, abandoned, now - timedelta(days=30), now)
        if counted
        else None,
        last_abandoned=AbandonedCall("c-1", "autumn", last) if last else None,
    )


def rate_of(f: CallFacts, rule: AbandonRule = RATE) -> Reason:
    return check_abandon(f, rules(rule), Purpose.MARKETING)[0]


# ---------------------------------------------------------------- the rate, boundary by boundary


@pytest.mark.parametrize(
    ("answered", "abandoned", "held"),
    [
        (100, 3, True),  # exactly at the limit: held, the next call could be abandoned too
        (100, 2, False),  # one under
        (101, 3, False),  # 2.97 %
        (100, 4, True),  # over
        (1000, 30, True),
        (1000, 29, False),
        # The cold start: measured against at least 34 answered calls.
        (0, 0, False),
        (1, 1, False),  # 1 of the first 1 is 100 %, but 1 < 3 % of 34 = 1.02
        (1, 2, True),  # 2 already exceed what 34 answered calls allow
        (33, 1, False),
        (34, 1, False),  # 2.94 %
        (66, 2, True),  # 3.03 %: a real excess, not a cold start
        (67, 2, False),  # 2.985 %
    ],
)
def test_the_rate_at_its_boundaries(answered: int, abandoned: int, held: bool) -> None:
    reason = rate_of(facts(answered, abandoned))
    assert reason.code == ("campaign.abandon_rate" if held else "campaign.abandon_ok")
    assert reason.passed is not held
    assert reason.detail["answered"] == answered and reason.detail["abandoned"] == abandoned
    assert reason.detail["limit"] == 0.03 and reason.detail["window_seconds"] == 30 * 86400
    assert reason.detail["measured_against"] == max(answered, 34)
    assert reason.retry_after is None  # waiting alone does not say when: calls still to come decide


def test_the_evidence_names_the_window_the_rate_and_the_rule() -> None:
    reason = rate_of(facts(200, 6))
    assert reason.detail["rate"] == 0.03
    assert reason.detail["window_start"] == (NOW - timedelta(days=30)).isoformat()
    assert reason.detail["window_end"] == NOW.isoformat()
    assert reason.detail["source"] == SRC.as_detail()
    assert reason.detail["campaign"] == "spring" and reason.detail["layer"] == "XX"
    assert rate_of(facts(0, 0)).detail["rate"] is None  # no answered call: no rate, not 0 %


def test_counts_not_read_are_no_call() -> None:
    reason = rate_of(facts(counted=False))
    assert not reason.passed and reason.code == "campaign.abandon_rate"
    assert "not counted" in str(reason.detail["why"])


def test_no_rule_no_reason_and_a_rule_for_other_purposes_does_not_judge() -> None:
    assert check_abandon(facts(1, 1), rules(None), Purpose.MARKETING) == ()
    marketing_only = AbandonRule(**{**_fields(RATE), "purposes": frozenset({Purpose.MARKETING})})
    assert check_abandon(facts(100, 50), rules(marketing_only), Purpose.SURVEY) == ()
    assert not check_abandon(facts(100, 50), rules(marketing_only), Purpose.MARKETING)[0].passed


def test_the_last_layer_with_a_rule_governs() -> None:
    strict = AbandonRule(**{**_fields(RATE), "max_rate": Fraction(1, 100), "min_answered": 100})
    layered = EffectiveRules(
        layers=(RuleLayer(key="GB", abandon=RATE), RuleLayer(key="config", abandon=strict)),
        zones=(),
        version="t",
    )
    reason = check_abandon(facts(100, 2), layered, Purpose.MARKETING)[0]
    assert reason.code == "campaign.abandon_rate" and reason.detail["layer"] == "config"


def _fields(rule: AbandonRule) -> dict[str, object]:
    return {name: getattr(rule, name) for name in rule.__slots__}  # type: ignore[attr-defined]


@given(
    answered=st.integers(0, 100_000),
    abandoned=st.integers(0, 5_000),
    extra=st.integers(1, 1000),
    n=st.integers(34, 1000),
)
def test_properties_of_the_limit(answered: int, abandoned: int, extra: int, n: int) -> None:
    rule = AbandonRule(**{**_fields(RATE), "min_answered": n})
    counts = AnswerCounts(answered, abandoned, NOW, NOW)
    held = at_limit(counts, rule)
    # Exactly the definition, in exact arithmetic.
    assert held == (Fraction(abandoned, max(answered, n)) >= Fraction(3, 100))
    # More abandoned calls never free a held campaign; more answered calls never hold a free one.
    assert not held or at_limit(AnswerCounts(answered, abandoned + extra, NOW, NOW), rule)
    assert held or not at_limit(AnswerCounts(answered + extra, abandoned, NOW, NOW), rule)
    # From the sample on, a campaign let through is strictly under the limit.
    if answered >= n and not held:
        assert Fraction(abandoned, answered) < Fraction(3, 100)


# ---------------------------------------------------------------- the 72-hour rest


def repeat_of(f: CallFacts) -> Reason:
    return check_abandon(f, rules(REPEAT), Purpose.MARKETING)[1]


def test_a_number_abandoned_within_72_hours_rests_until_then() -> None:
    abandoned_at = NOW - timedelta(hours=72) + timedelta(microseconds=1)
    reason = repeat_of(facts(last=abandoned_at))
    assert reason.code == "campaign.abandoned_recently" and not reason.passed
    assert reason.retry_after == abandoned_at + timedelta(hours=72)
    assert reason.detail["next_callable_at"] == (abandoned_at + timedelta(hours=72)).isoformat()
    assert reason.detail["abandoned_campaign"] == "autumn"  # any campaign's abandonment counts


def test_at_72_hours_exactly_the_number_may_be_called() -> None:
    reason = repeat_of(facts(last=NOW - timedelta(hours=72)))
    assert reason.code == "campaign.repeat_ok" and reason.passed


def test_no_abandoned_call_and_an_agent_guaranteed_pass() -> None:
    assert repeat_of(facts()).code == "campaign.repeat_ok"
    guaranteed = repeat_of(facts(last=NOW - timedelta(hours=1), settings={"agent_guaranteed": True}))
    assert guaranteed.passed and guaranteed.detail["agent_guaranteed"] is True
    assert guaranteed.detail["abandoned_at"] == (NOW - timedelta(hours=1)).isoformat()  # still evidence
    # A stored value that is not a flag does not guarantee anything.
    assert not repeat_of(facts(last=NOW - timedelta(hours=1), settings={"agent_guaranteed": "yes"})).passed


def test_a_rule_without_a_repeat_block_makes_no_repeat_reason() -> None:
    assert [r.code for r in check_abandon(facts(last=NOW), rules(RATE), Purpose.MARKETING)] == [
        "campaign.abandon_ok"
    ]


def test_the_engine_blocks_and_says_when_the_number_is_callable() -> None:
    pack = load_rulebook().rules_for(GB_NUMBER)
    gb = CallFacts(
        raw_number=GB_NUMBER.e164,
        number=GB_NUMBER,
        campaign_name="spring",
        campaign=Campaign("spring", Purpose.SURVEY),
        now=NOW,
        campaign_answers=AnswerCounts(10, 0, NOW - timedelta(hours=24), NOW),
        last_abandoned=AbandonedCall("c-1", "spring", NOW - timedelta(hours=1)),
    )
    decision = evaluate(gb, pack)
    assert decision.verdict is Verdict.BLOCK and decision.reason == "campaign.abandoned_recently"
    # 71 hours on is Friday 11:00 in London: inside the GB window, so exactly then.
    assert decision.next_callable_at == NOW + timedelta(hours=71)
    assert "campaign.abandon_ok" in decision.codes


# ---------------------------------------------------------------- the packs


def test_the_us_and_gb_packs_carry_the_rule_with_its_source_and_periods() -> None:
    book = load_rulebook()
    us = book.country_layer("US")
    gb = book.country_layer("GB")
    assert us.abandon is not None and us.abandon.window == timedelta(days=30)
    assert us.abandon.repeat_block is None and us.abandon.purposes == {Purpose.MARKETING}
    assert "310.4(b)(4)" in us.abandon.source.citation and us.abandon.source.effective == date(2008, 10, 1)
    before = next(p for p in us.periods() if p.in_force_on(date(2008, 9, 30)))
    assert before.abandon is not None and before.abandon.window == timedelta(days=1)  # "per day" until 2008
    assert gb.abandon is not None and gb.abandon.window == timedelta(hours=24)
    assert gb.abandon.repeat_block == timedelta(hours=72) and gb.abandon.source.policy
    for rule in (us.abandon, gb.abandon):
        assert rule.max_rate == Fraction(3, 100) and rule.min_answered == 34
        assert rule.agent_within == timedelta(seconds=2) and rule.min_ring_seconds == 15
    assert book.country_layer("GG").abandon == gb.abandon  # the +44 territories too
    assert book.country_layer("PL").abandon is None


def test_the_facts_read_covers_the_window_of_the_period_in_force() -> None:
    book = load_rulebook()
    us = number("+12125550123")
    for instant, window in (
        (datetime(2008, 9, 30, 16, tzinfo=UTC), timedelta(days=1)),
        (NOW, timedelta(days=30)),
    ):
        assert read_windows(book.rules_for(us), instant) == (instant - window, None)
    assert read_windows(book.rules_for(GB_NUMBER), NOW) == (
        NOW - timedelta(hours=24),
        NOW - timedelta(hours=72),
    )
    pl = number("+48601234567")
    assert read_windows(book.rules_for(pl), NOW) == (None, None)  # no rule: nothing read


def test_rules_show_and_explain_name_the_rule() -> None:
    book = load_rulebook()
    shown = show(book, "GB")
    assert "abandoned calls (every purpose): a campaign is held once they reach 3.0%" in shown
    assert "no call to an abandoned number within 72 hours unless an agent is guaranteed" in shown
    assert "Ofcom" in shown
    told = explain(book, GB_NUMBER, NOW, Purpose.MARKETING)
    assert "over 24 hours (measured against at least 34)" in told and "(by GB)" in told
    us = number("+12125550123")
    surveyed = explain(book, us, NOW, Purpose.SURVEY)
    assert "abandoned calls (marketing)" not in surveyed  # the TSR: telemarketing only
    assert "US abandoned calls: no longer in force (ended 2008-09-30)" in surveyed  # the 2003 measure


PACK = '[pack]\ncountry = "XX"\n[abandon]\nsource = "s"\n'
GOOD = "max_rate = 0.03\nwindow_days = 30\nagent_within_seconds = 2\nmin_ring_seconds = 15\n"


def write_pack(tmp_path: Path, body: str) -> Path:
    (tmp_path / "DEFAULT.toml").write_text((default_pack_dir() / "DEFAULT.toml").read_text())
    (tmp_path / "XX.toml").write_text(body)
    return tmp_path


@pytest.mark.parametrize(
    ("body", "key", "why"),
    [
        (GOOD.replace("0.03", "0"), "abandon.max_rate", "above 0 and below 1"),
        (GOOD.replace("0.03", "1"), "abandon.max_rate", "above 0 and below 1"),
        (GOOD.replace("0.03", '"3%"'), "abandon.max_rate", "e.g. 0.03"),
        (GOOD.replace("0.03", "true"), "abandon.max_rate", "e.g. 0.03"),
        (GOOD.replace("window_days = 30\n", ""), "abandon", "exactly one of window_hours, window_days"),
        (GOOD + "window_hours = 24\n", "abandon", "exactly one of"),
        (GOOD.replace("window_days = 30", "window_days = 0"), "abandon.window_days", "above 0"),
        (GOOD.replace("window_days = 30", "window_days = 1.5"), "abandon.window_days", "whole number"),
        (GOOD.replace("= 2\n", "= -2\n"), "abandon.agent_within_seconds", "above 0"),
        (
            GOOD.replace("min_ring_seconds = 15", 'min_ring_seconds = "15"'),
            "abandon.min_ring_seconds",
            "whole",
        ),
        (GOOD + "min_answered = 33\n", "abandon.min_answered", "at least 34"),
        (GOOD + "repeat_block_hours = 0\n", "abandon.repeat_block_hours", "above 0"),
        (GOOD + 'purposes = ["telepathy"]\n', "abandon.purposes", "unknown purpose"),
        (GOOD + "rate = 0.03\n", "abandon.rate", "unknown key"),
    ],
)
def test_a_bad_abandon_rule_stops_start_up(tmp_path: Path, body: str, key: str, why: str) -> None:
    with pytest.raises(PackError) as err:
        load_rulebook(pack_dir=write_pack(tmp_path, PACK + body))
    assert err.value.where.endswith("XX.toml") and err.value.key == key
    assert why in err.value.reason


def test_a_missing_source_is_refused_and_a_good_rule_loads(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="legal source"):
        load_rulebook(pack_dir=write_pack(tmp_path, '[pack]\ncountry = "XX"\n[abandon]\n' + GOOD))
    book = load_rulebook(
        pack_dir=write_pack(tmp_path, PACK + GOOD + "min_answered = 100\nrepeat_block_hours = 48\n")
    )
    rule = book.country_layer("XX").abandon
    assert rule is not None and rule.min_answered == 100 and rule.repeat_block == timedelta(hours=48)


def test_an_override_replaces_the_packs_rule() -> None:
    ours = {"source": "our policy", "policy": True, "max_rate": 0.01, "window_hours": 24,
            "agent_within_seconds": 1, "min_ring_seconds": 20}  # fmt: skip
    override = {"GB": {"abandon": ours}}
    rule = load_rulebook(overrides=override).country_layer("GB").abandon
    assert rule is not None and rule.max_rate == Fraction(1, 100) and rule.min_answered == 100
    assert rule.repeat_block is None


# ---------------------------------------------------------------- campaign settings


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"agent_guaranteed": "yes"}, "agent_guaranteed: true or false"),
        ({"seller_name": ""}, "seller_name"),
        ({"seller_name": "x" * 65}, "seller_name"),
        ({"seller_name": "Acme\nEnergy"}, "seller_name"),
        ({"seller_name": 7}, "seller_name"),
        ({"callback_number": "020 7123 4567"}, "callback_number: a valid number in E.164"),
        ({"callback_number": "+44 20 7123 4567"}, "callback_number"),
        ({"callback_number": "+4420"}, "callback_number"),
        ({"callback_number": 442071234567}, "callback_number"),
    ],
)
def test_bad_abandon_settings_are_refused(settings: dict[str, object], problem: str) -> None:
    problems = setting_problems(settings)
    assert len(problems) == 1 and problems[0].startswith(problem)


def test_good_abandon_settings_pass_and_are_usable() -> None:
    settings = {"agent_guaranteed": True, "seller_name": "Acme Energy", "callback_number": "+442071234567"}
    assert setting_problems(settings) == []
    assert usable(settings, "callback_number") == "+442071234567"
    assert usable({"agent_guaranteed": 1}, "agent_guaranteed") is None
