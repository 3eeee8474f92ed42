"""Roaming: a mobile subscriber abroad must not be called at their cost."""

from __future__ import annotations

from dialguard.numbers import NumberFacts
from dialguard.policy.model import CallFacts, Detail, EffectiveRules, Purpose, Reason


def check_roaming(facts: CallFacts, rules: EffectiveRules, purpose: Purpose) -> Reason:
    number = facts.number
    assert isinstance(number, NumberFacts)
    roaming = facts.roaming
    if roaming is None:
        return Reason("roaming.not_required", True, {})
    if not number.possibly_mobile:
        return Reason("roaming.not_mobile", True, {"line_type": str(number.line_type)})
    detail: Detail = {
        "status": roaming.status,
        "visited_country": roaming.visited_country,
        "provider": roaming.provider,
        "age_seconds": roaming.age_seconds,
        "cause": roaming.cause,
    }
    if roaming.status == "home":
        return Reason("roaming.home", True, detail)
    if roaming.status == "abroad":
        return Reason("roaming.abroad", False, detail)
    return Reason("roaming.unknown", False, detail)
