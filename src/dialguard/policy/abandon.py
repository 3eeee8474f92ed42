"""Abandoned calls: a campaign at its limit is held, and (GB) an abandoned number rests. Pure: no I/O.

Two checks from the rule in force (``[abandon]`` in a pack; the last layer that has one governs, so an
administrator's override replaces the pack's):

- ``campaign.abandon_rate`` / ``campaign.abandon_ok``: the campaign's abandoned calls against its answered
  calls over the rule's window. Held *at* the limit, not only over it: the next call may be abandoned too.
- ``campaign.abandoned_recently`` / ``campaign.repeat_ok``: no call to a number abandoned within the
  repeat block (Ofcom: 72 h), unless the campaign guarantees an agent (``agent_guaranteed``).

The cold start. A rate over a handful of answered calls says nothing (1 abandoned of the first 1 answered
is 100 %), and blocking on it would keep the campaign from the answered calls that bring the rate down
until the window slides: 30 days in the US. So the rate is measured against at least ``min_answered``
answered calls (default and least ``ceil(1 / max_rate)``, 34 for 3 %): below it, the campaign is held once
its abandoned count alone reaches what the limit allows of that many. A campaign that goes on to answer
``min_answered`` calls is within the limit when it gets there; one that answers fewer in the whole window
may end it with one abandoned call (at the default) over too few answered calls. docs/rules.md.
"""

from __future__ import annotations

from datetime import date, datetime

from dialguard.policy.campaign_settings import usable
from dialguard.policy.model import (
    AbandonRule,
    AnswerCounts,
    CallFacts,
    Detail,
    EffectiveRules,
    Purpose,
    Reason,
)
from dialguard.policy.rulebook import RuleBook, in_force


def governing(rules: EffectiveRules) -> tuple[str, AbandonRule] | None:
    """The abandon rule of the last layer that has one, with that layer's key."""
    found = [(layer.key, layer.abandon) for layer in rules.layers if layer.abandon is not None]
    return found[-1] if found else None


def rules_in_force(rulebook: RuleBook, day: date) -> list[tuple[str, AbandonRule]]:
    """Every layer's abandon rule in force on ``day`` (the EU's members share one layer), by layer key."""
    named = [*rulebook.countries.values(), rulebook.default, *rulebook.subdivisions.values()]
    layers = {layer.key: layer for layer in [*named, *rulebook.overrides]}.values()
    return [
        (layer.key, period.abandon)
        for layer in layers
        for period in layer.periods()
        if period.abandon is not None and period.in_force_on(day)
    ]


def read_windows(rules: EffectiveRules, now: datetime) -> tuple[datetime | None, datetime | None]:
    """What the facts read must cover at ``now``: the start of the rate's window and of the repeat block
    (None: not read). Asked before the campaign's purpose is known, so it ignores the rule's purposes."""
    found = governing(in_force(rules, now))
    if found is None:
        return None, None
    rule = found[1]
    return now - rule.window, (now - rule.repeat_block if rule.repeat_block else None)


def at_limit(counts: AnswerCounts, rule: AbandonRule) -> bool:
    """abandoned / max(answered, min_answered) >= max_rate, in exact integers."""
    measured = max(counts.answered, rule.min_answered)
    return counts.abandoned * rule.max_rate.denominator >= rule.max_rate.numerator * measured


def rate_reason(counts: AnswerCounts | None, key: str, rule: AbandonRule, campaign: str) -> Reason:
    """The campaign's rate under ``rule``; no counts (they could not be read) is no call."""
    detail: Detail = {
        "campaign": campaign,
        "layer": key,
        "limit": float(rule.max_rate),
        "window_seconds": int(rule.window.total_seconds()),
        "min_answered": rule.min_answered,
        "agent_within_seconds": rule.agent_within.total_seconds(),
        "min_ring_seconds": rule.min_ring_seconds,
        "source": rule.source.as_detail(),
    }
    if counts is None:
        return Reason(
            "campaign.abandon_rate", False, {**detail, "why": "the campaign's calls were not counted"}
        )
    detail |= {
        "answered": counts.answered,
        "abandoned": counts.abandoned,
        "rate": round(counts.abandoned / counts.answered, 6) if counts.answered else None,
        "measured_against": max(counts.answered, rule.min_answered),
        "window_start": counts.since.isoformat(),
        "window_end": counts.until.isoformat(),
    }
    if at_limit(counts, rule):
        # No retry_after: when the rate falls depends on calls still to come and on which hours slide out.
        return Reason("campaign.abandon_rate", False, detail)
    return Reason("campaign.abandon_ok", True, detail)


def _repeat_reason(facts: CallFacts, key: str, rule: AbandonRule) -> Reason:
    assert rule.repeat_block is not None
    detail: Detail = {
        "layer": key,
        "repeat_block_hours": rule.repeat_block.total_seconds() / 3600,
        "source": rule.source.as_detail(),
    }
    last = facts.last_abandoned
    if last is not None:
        detail |= {
            "abandoned_call_id": last.call_id,
            "abandoned_campaign": last.campaign,
            "abandoned_at": last.answered_at.isoformat(),
        }
    settings = facts.campaign.settings if facts.campaign else {}
    if usable(settings, "agent_guaranteed") is True:
        return Reason("campaign.repeat_ok", True, {**detail, "agent_guaranteed": True})
    if last is None or not last.answered_at <= facts.now < last.answered_at + rule.repeat_block:
        return Reason("campaign.repeat_ok", True, detail)
    callable_at = last.answered_at + rule.repeat_block
    return Reason(
        "campaign.abandoned_recently",
        False,
        {**detail, "next_callable_at": callable_at.isoformat()},
        retry_after=callable_at,
    )


def check_abandon(facts: CallFacts, rules: EffectiveRules, purpose: Purpose) -> tuple[Reason, ...]:
    """The rate's reason and, where the rule has a repeat block, the number's; none where no rule applies."""
    found = governing(rules)
    if found is None:
        return ()
    key, rule = found
    if rule.purposes and purpose not in rule.purposes:
        return ()
    reasons = [rate_reason(facts.campaign_answers, key, rule, facts.campaign_name)]
    if rule.repeat_block is not None:
        reasons.append(_repeat_reason(facts, key, rule))
    return tuple(reasons)
