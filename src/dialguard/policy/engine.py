"""The decision engine: run every check, fold the reasons into one verdict. Pure: no I/O, no asyncio.

>>> # evaluate(facts, rules) -> Decision(verdict=BLOCK, reasons=(...), next_callable_at=...)
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from dialguard.numbers import EmergencyNumber, InvalidNumber
from dialguard.policy.abandon import check_abandon
from dialguard.policy.checks import check_campaign, check_consent, check_dnc, check_number
from dialguard.policy.emergency import check_emergency
from dialguard.policy.frequency import check_frequency
from dialguard.policy.hours import check_hours, next_allowed
from dialguard.policy.model import CallFacts, Decision, EffectiveRules, Purpose, Reason, Verdict
from dialguard.policy.roaming import allows_roamers, check_roaming
from dialguard.policy.rulebook import in_force

# An unknown campaign is judged as the strictest purpose, so its evidence is still complete.
STRICTEST_PURPOSE = Purpose.MARKETING


def evaluate(facts: CallFacts, rules: EffectiveRules | None) -> Decision:
    """Judge one call. ``rules`` may be None only for an invalid or an emergency number (nothing else is
    judged: an emergency number is allowed whatever the facts, an invalid one blocked)."""
    number_reason = check_number(facts.number)
    if isinstance(facts.number, EmergencyNumber):
        return Decision(Verdict.ALLOW, (number_reason,))
    if isinstance(facts.number, InvalidNumber) or rules is None:
        return Decision(Verdict.BLOCK, (number_reason,))
    purpose = facts.campaign.purpose if facts.campaign else STRICTEST_PURPOSE
    # The hours pick each layer's period per zone and per day (the search for next_callable_at may cross a
    # change); every other check judges by the periods in force now.
    hours_rules = _with_visited_zones(facts, rules)
    current = in_force(rules, facts.now)
    reasons: list[Reason] = [number_reason]
    if (unknown := check_campaign(facts)) is not None:
        reasons.append(unknown)
    reasons += [
        check_dnc(facts, current, purpose),
        check_consent(facts, current, purpose),
        check_hours(hours_rules, facts.now),
        check_frequency(facts, current, purpose),
        check_roaming(facts, current, purpose),
    ]
    reasons += check_abandon(facts, current, purpose)
    if (emergency := check_emergency(facts, current, purpose)) is not None:
        reasons.append(emergency)
    failed = [r for r in reasons if not r.passed]
    if not failed:
        return Decision(Verdict.ALLOW, tuple(reasons))
    return Decision(Verdict.BLOCK, tuple(reasons), _next_callable(failed, hours_rules))


def _with_visited_zones(facts: CallFacts, rules: EffectiveRules) -> EffectiveRules:
    """A roamer a campaign may call must be inside the window where they are, too."""
    roaming = facts.roaming
    if roaming is None or roaming.status != "abroad" or not allows_roamers(facts.campaign):
        return rules
    return replace(rules, zones=tuple(dict.fromkeys((*rules.zones, *roaming.visited_zones))))


def _next_callable(failed: list[Reason], rules: EffectiveRules) -> datetime | None:
    """When every failure is cured by waiting, the first instant all of them are, inside the hours."""
    waits = [r.retry_after for r in failed]
    if any(w is None for w in waits):
        return None
    latest = max(w for w in waits if w is not None)
    return next_allowed(rules, latest)
