"""Roaming: a mobile subscriber abroad must not be called at their cost."""

from __future__ import annotations

from dialguard.numbers import NumberFacts
from dialguard.policy.model import CallFacts, Campaign, Detail, EffectiveRules, Purpose, Reason, RoamingRule


def _rules(rules: EffectiveRules, purpose: Purpose) -> list[RoamingRule]:
    return [r for layer in rules.layers if (r := layer.roaming) is not None and purpose in r.required_for]


def roaming_required(rules: EffectiveRules, campaign: Campaign | None, purpose: Purpose) -> bool:
    """Whether this call needs an HLR answer: a pack asks for the purpose, or the campaign does."""
    asked = bool(campaign and campaign.settings.get("roaming") is True)
    return asked or bool(_rules(rules, purpose))


def allows_roamers(campaign: Campaign | None) -> bool:
    """A campaign may call subscribers abroad; the calling window then holds in the visited country too."""
    return bool(campaign and campaign.settings.get("allow_roamers") is True)


def check_roaming(facts: CallFacts, rules: EffectiveRules, purpose: Purpose) -> Reason:
    number = facts.number
    assert isinstance(number, NumberFacts)
    if not roaming_required(rules, facts.campaign, purpose):
        return Reason("roaming.not_required", True, {})
    if not number.possibly_mobile:
        return Reason("roaming.not_mobile", True, {"line_type": str(number.line_type)})
    roaming = facts.roaming
    if roaming is None:
        return Reason("roaming.unknown", False, {"cause": "not_looked_up"})
    detail: Detail = {
        "status": roaming.status,
        "visited_country": roaming.visited_country,
        "provider": roaming.provider,
        "age_seconds": roaming.age_seconds,
        "cause": roaming.cause,
    }
    if pack_rules := _rules(rules, purpose):
        detail["sources"] = [r.source.as_detail() for r in pack_rules]
    if roaming.status == "home":
        return Reason("roaming.home", True, detail)
    if roaming.status == "abroad":
        if allows_roamers(facts.campaign):
            return Reason("roaming.abroad", True, {**detail, "allowed_by": "campaign allows roamers"})
        return Reason("roaming.abroad", False, detail)
    # No answer: where any rule that asked is law, block; where all are policy (or only the campaign
    # asked), call and keep the failure as evidence.
    block = any(r.block_unknown for r in pack_rules) if pack_rules else False
    return Reason("roaming.unknown", not block, {**detail, "on_unknown": "block" if block else "allow"})
