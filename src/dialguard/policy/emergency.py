"""Declared emergencies: no calls of the purposes a pack names into an area while one is in force there.

New York forbids telemarketing into an area under a declared state of emergency. The declaration is a
fact (an administrator enters it, with its end and area codes); the pack says which purposes it stops.
"""

from __future__ import annotations

from dialguard.policy.model import CallFacts, Detail, EffectiveRules, Purpose, Reason


def check_emergency(facts: CallFacts, rules: EffectiveRules, purpose: Purpose) -> Reason | None:
    """None when no layer of this number stops the purpose in an emergency: there is nothing to check."""
    binding = {
        layer.key: rule
        for layer in rules.layers
        if (rule := layer.emergency) is not None and purpose in rule.purposes
    }
    if not binding:
        return None
    in_force = [e for e in facts.emergencies if e.area in binding]
    if not in_force:
        return Reason("hours.no_emergency", True, {"areas": sorted(binding)})
    # Several may overlap: the call waits for the last of them to end.
    last = max(in_force, key=lambda e: e.ends_at)
    detail: Detail = {
        "emergency_id": last.id,
        "area": last.area,
        "declaration": last.reason,
        "ends_at": last.ends_at.isoformat(),
        "source": binding[last.area].source.as_detail(),
    }
    return Reason("hours.emergency", False, detail, retry_after=last.ends_at)
