"""Checks that need no calendar arithmetic: number, campaign, do-not-call, consent, roaming.

Each takes facts (and rules) and returns one :class:`Reason`; none does I/O.
"""

from __future__ import annotations

from dialguard.numbers import InvalidNumber, NumberFacts
from dialguard.policy.model import (
    CallFacts,
    ConsentRecord,
    ConsentRule,
    Detail,
    EffectiveRules,
    Purpose,
    Reason,
)


def _iso(dt: object) -> str | None:
    return dt.isoformat() if dt is not None else None  # type: ignore[attr-defined]  # date or datetime


def check_number(number: NumberFacts | InvalidNumber) -> Reason:
    if isinstance(number, InvalidNumber):
        return Reason("number.invalid", False, {"input": number.raw, "why": number.reason})
    return Reason(
        "number.ok",
        True,
        {
            "e164": number.e164,
            "region": number.region,
            "subdivision": number.subdivision,
            "line_type": str(number.line_type),
        },
    )


def check_campaign(facts: CallFacts) -> Reason | None:
    """Only an unknown campaign makes a reason; a known one is evidence in the other checks."""
    if facts.campaign is None:
        return Reason("campaign.unknown", False, {"campaign": facts.campaign_name})
    return None


def check_dnc(facts: CallFacts) -> Reason:
    # The company's own list always wins, then named lists, then prefix wildcards.
    order = {"internal": 0}
    hits = sorted(facts.dnc_hits, key=lambda h: (order.get(h.list_name, 1), h.prefix is not None))
    if not hits:
        return Reason("dnc.clear", True, {"lists_checked": "all"})
    hit = hits[0]
    if hit.prefix is not None:
        code = "dnc.prefix"
    elif hit.list_name == "internal" or hit.list_name.startswith("campaign:"):
        code = "dnc.internal"
    else:
        code = f"dnc.{hit.list_name}"
    detail: Detail = {
        "list": hit.list_name,
        "entry_id": hit.entry_id,
        "source": hit.source,
        "added_at": _iso(hit.added_at),
        "list_version": _iso(hit.list_version),
        "prefix": hit.prefix,
        "also_on": sorted({h.list_name for h in hits[1:]}),
    }
    return Reason(code, False, detail)


def _consent_matches(c: ConsentRecord, facts: CallFacts, purpose: Purpose) -> bool:
    if c.campaign is not None:
        return c.campaign == facts.campaign_name
    return c.purpose is None or c.purpose == purpose


def _consent_detail(c: ConsentRecord) -> Detail:
    return {
        "consent_id": c.id,
        "kind": c.kind,
        "source": c.source,
        "granted_at": _iso(c.granted_at),
        "expires_at": _iso(c.expires_at),
        "revoked_at": _iso(c.revoked_at),
        "scope": f"campaign:{c.campaign}" if c.campaign else f"purpose:{c.purpose or 'any'}",
    }


def check_consent(facts: CallFacts, rules: EffectiveRules, purpose: Purpose) -> Reason:
    required: list[ConsentRule] = [
        rule for layer in rules.layers if (rule := layer.consent.get(purpose)) is not None and rule.required
    ]
    if not required:
        return Reason("consent.not_required", True, {"purpose": str(purpose)})
    # Every layer that asks for consent must accept the kind held (e.g. Florida: written consent).
    kinds: frozenset[str] | None = None
    for rule in required:
        if rule.kinds:
            kinds = rule.kinds if kinds is None else kinds & rule.kinds
    sources = [r.source.as_detail() for r in required]
    candidates = [c for c in facts.consents if _consent_matches(c, facts, purpose)]
    valid = [
        c
        for c in candidates
        if c.revoked_at is None
        and c.granted_at <= facts.now
        and (c.expires_at is None or c.expires_at > facts.now)
        and (kinds is None or c.kind in kinds)
    ]
    if valid:
        best = max(valid, key=lambda c: c.granted_at)
        return Reason("consent.valid", True, {**_consent_detail(best), "required_by": sources})
    base: Detail = {
        "purpose": str(purpose),
        "kinds_accepted": sorted(kinds) if kinds is not None else "any",
        "required_by": sources,
    }
    if candidates:
        latest = max(candidates, key=lambda c: c.granted_at)
        if latest.revoked_at is not None:
            return Reason("consent.revoked", False, {**base, **_consent_detail(latest)})
        if latest.expires_at is not None and latest.expires_at <= facts.now:
            return Reason("consent.expired", False, {**base, **_consent_detail(latest)})
        return Reason("consent.missing", False, {**base, "not_accepted": _consent_detail(latest)})
    return Reason("consent.missing", False, base)
