"""Checks that need no calendar arithmetic: number, campaign, do-not-call, consent, roaming.

Each takes facts (and rules) and returns one :class:`Reason`; none does I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime, time

from dialguard.numbers import EmergencyNumber, InvalidLeadState, InvalidNumber, NumberFacts
from dialguard.policy.model import (
    CallFacts,
    ConsentRecord,
    ConsentRule,
    Detail,
    DncHit,
    EffectiveRules,
    ListRule,
    Purpose,
    Reason,
    is_company_list,
)


def _iso(dt: object) -> str | None:
    return dt.isoformat() if dt is not None else None  # type: ignore[attr-defined]  # date or datetime


def check_number(number: NumberFacts | InvalidNumber | EmergencyNumber) -> Reason:
    if isinstance(number, InvalidNumber):
        return Reason("number.invalid", False, {"input": number.raw, "why": number.reason})
    if isinstance(number, EmergencyNumber):
        # Passed: an emergency call is never blocked (DESIGN, "Failure and security").
        return Reason(
            "number.emergency",
            True,
            {
                "service": number.service,
                "dialled": number.raw,
                "digits": number.digits,
                "countries": list(number.countries),
            },
        )
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


def check_lead_state(lead: InvalidLeadState) -> Reason:
    """A lead state that names no state or province of the number's country: its rules cannot be
    chosen, so the call is not judged (a silently dropped state would skip that state's rules)."""
    return Reason(
        "lead_state.invalid", False, {"value": lead.raw, "country": lead.country, "why": lead.reason}
    )


def check_campaign(facts: CallFacts) -> Reason | None:
    """Only an unknown campaign makes a reason; a known one is evidence in the other checks."""
    if facts.campaign is None:
        return Reason("campaign.unknown", False, {"campaign": facts.campaign_name})
    return None


def _list_rules(rules: EffectiveRules) -> dict[str, ListRule]:
    """The national lists the packs name, by name; a later layer's rule for a list wins."""
    return {rule.list_name: rule for layer in rules.layers for rule in layer.dnc_lists}


def _exempting_consent(facts: CallFacts, rule: ListRule | None, purpose: Purpose) -> ConsentRecord | None:
    """A written agreement or a business relationship that lets this seller call a listed number."""
    if rule is None or not rule.exempt_kinds:
        return None
    valid = [
        c for c in facts.consents if c.kind in rule.exempt_kinds and _consent_is_valid(c, facts, purpose)
    ]
    return max(valid, key=lambda c: c.granted_at, default=None)


def _hit_detail(hit: DncHit, others: list[DncHit], now: datetime) -> Detail:
    detail: Detail = {
        "list": hit.list_name,
        "entry_id": hit.entry_id,
        "source": hit.source,
        "added_at": _iso(hit.added_at),
        "list_version": _iso(hit.list_version),
        "prefix": hit.prefix,
        "also_on": sorted({h.list_name for h in others if h is not hit}),
    }
    if hit.added_at > now:
        # A dry run at an earlier instant: the entry still blocks (the safe side), and says why it is there.
        detail["added_after_instant_judged"] = True
    return detail


def check_dnc(facts: CallFacts, rules: EffectiveRules, purpose: Purpose) -> Reason:
    """The company's lists (never exempt) first, then wildcards, then national lists and their freshness."""
    registry_hits = [
        DncHit(
            r.list_name,
            "registry",
            datetime.combine(r.list_date, time(), UTC),
            r.version_id,
            None,
            r.list_date,
        )
        for r in facts.registries
        if r.hit
    ]
    hits = [*facts.dnc_hits, *registry_hits]
    company = [h for h in hits if is_company_list(h.list_name) and h.prefix is None]
    if company:
        return Reason("dnc.internal", False, _hit_detail(company[0], hits, facts.now))
    prefixes = [h for h in hits if h.prefix is not None]
    if prefixes:
        return Reason("dnc.prefix", False, _hit_detail(prefixes[0], hits, facts.now))
    named = _list_rules(rules)
    binding = {n: r for n, r in named.items() if not r.purposes or purpose in r.purposes}
    exemptions: list[Detail] = []
    for hit in hits:
        if hit.list_name in named and hit.list_name not in binding:
            continue  # a national list that the packs apply to other purposes only (e.g. surveys)
        rule = binding.get(hit.list_name)
        if (consent := _exempting_consent(facts, rule, purpose)) is not None:
            exemptions.append({"list": hit.list_name, **_consent_detail(consent)})
            continue
        listed = _hit_detail(hit, hits, facts.now)
        if rule is not None:
            listed["source_of_rule"] = rule.source.as_detail()
        return Reason(f"dnc.{hit.list_name}", False, listed)
    loaded = {r.list_name: r for r in facts.registries}
    today = facts.now.astimezone(UTC).date()
    for rule in binding.values():
        if not rule.required:
            continue
        status = loaded.get(rule.list_name)
        age = (today - status.list_date).days if status else None
        if status is not None and (rule.max_age_days is None or (age or 0) < rule.max_age_days):
            continue
        if (consent := _exempting_consent(facts, rule, purpose)) is not None:
            exemptions.append({"list": rule.list_name, "stale": True, **_consent_detail(consent)})
            continue
        return Reason(
            "dnc.list_stale",
            False,
            {
                "list": rule.list_name,
                "loaded": status is not None,
                "list_date": _iso(status.list_date) if status else None,
                "age_days": age,
                "max_age_days": rule.max_age_days,
                "source": rule.source.as_detail(),
            },
        )
    detail: Detail = {"lists": {r.list_name: r.list_date.isoformat() for r in facts.registries}}
    if exemptions:
        detail["exemptions"] = exemptions
    return Reason("dnc.clear", True, detail)


def _consent_matches(c: ConsentRecord, facts: CallFacts, purpose: Purpose) -> bool:
    if c.campaign is not None:
        return c.campaign == facts.campaign_name
    return c.purpose is None or c.purpose == purpose


def _consent_is_valid(c: ConsentRecord, facts: CallFacts, purpose: Purpose) -> bool:
    return (
        _consent_matches(c, facts, purpose)
        and c.revoked_at is None
        and c.granted_at <= facts.now
        and (c.expires_at is None or c.expires_at > facts.now)
    )


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
        c for c in candidates if _consent_is_valid(c, facts, purpose) and (kinds is None or c.kind in kinds)
    ]
    if valid:
        best = max(valid, key=lambda c: c.granted_at)
        return Reason("consent.valid", True, {**_consent_detail(best), "required_by": sources})
    base: Detail = {
        "purpose": str(purpose),
        "kinds_accepted": sorted(kinds) if kinds is not None else "any",
        "required_by": sources,
    }
    later = [c for c in candidates if c.granted_at > facts.now]
    if later:
        # Judged at an instant before the consent was given (a dry run with --at): say so, or the
        # "missing" consent that the ledger plainly holds would be a riddle.
        first = min(later, key=lambda c: c.granted_at)
        base["granted_after_instant_judged"] = _consent_detail(first)
        candidates = [c for c in candidates if c.granted_at <= facts.now]
    if candidates:
        latest = max(candidates, key=lambda c: c.granted_at)
        if latest.revoked_at is not None:
            return Reason("consent.revoked", False, {**base, **_consent_detail(latest)})
        if latest.expires_at is not None and latest.expires_at <= facts.now:
            return Reason("consent.expired", False, {**base, **_consent_detail(latest)})
        return Reason("consent.missing", False, {**base, "not_accepted": _consent_detail(latest)})
    return Reason("consent.missing", False, base)
