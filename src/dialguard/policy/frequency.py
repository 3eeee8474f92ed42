"""Frequency caps: how many calls the same number may get in a rolling period.

The gate counts attempts inside a PostgreSQL transaction that holds the number's lock, so a cap
holds across gateways; this module only judges the attempts it is given.
"""

from __future__ import annotations

from datetime import datetime

from dialguard.policy.model import Attempt, CallFacts, Detail, EffectiveRules, FrequencyCap, Purpose, Reason
from dialguard.policy.rulebook import in_force


def caps_counting(rules: EffectiveRules, purpose: Purpose) -> list[tuple[str, FrequencyCap]]:
    """The caps (with their layer's key) that count a call of this purpose."""
    return [
        (layer.key, cap)
        for layer in rules.layers
        for cap in layer.frequency_caps
        if not cap.purposes or purpose in cap.purposes
    ]


def counted_purposes(rules: EffectiveRules) -> frozenset[Purpose]:
    """The purposes some cap of ``rules`` counts, in force now or not: a call of any other purpose needs
    no attempts read."""
    return frozenset(p for p in Purpose if caps_counting(rules, p))


def caps_apply(rules: EffectiveRules, purpose: Purpose, now: datetime) -> bool:
    """A call placed at ``now`` counts against a cap: the gate then decides it under the number's lock."""
    return bool(caps_counting(in_force(rules, now), purpose))


def _counted(
    cap: FrequencyCap, attempts: tuple[Attempt, ...], facts: CallFacts, purpose: Purpose
) -> list[datetime]:
    since = facts.now - cap.period
    return sorted(
        a.at
        for a in attempts
        if a.at > since
        and (not cap.purposes or a.purpose in cap.purposes)
        and (not cap.per_campaign or a.campaign == facts.campaign_name)
    )


def check_frequency(facts: CallFacts, rules: EffectiveRules, purpose: Purpose) -> Reason:
    caps = caps_counting(rules, purpose)
    if not caps:
        return Reason("frequency.ok", True, {"caps": []})
    counted: list[Detail] = []
    for key, cap in caps:
        times = _counted(cap, facts.attempts, facts, purpose)
        entry: Detail = {
            "layer": key,
            "max_calls": cap.max_calls,
            "period_seconds": int(cap.period.total_seconds()),
            "per_campaign": cap.per_campaign,
            "attempts": len(times),
            "source": cap.source.as_detail(),
        }
        if len(times) >= cap.max_calls:
            # The slot frees when the oldest attempt that keeps the count at the cap leaves the period.
            frees_at = times[len(times) - cap.max_calls] + cap.period
            entry["frees_at"] = frees_at.isoformat()
            return Reason("frequency.cap", False, {**entry, "caps": counted}, retry_after=frees_at)
        counted.append(entry)
    return Reason("frequency.ok", True, {"caps": counted})
