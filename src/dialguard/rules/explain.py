"""Human-readable views of the rules: ``dialguard rules show`` and ``dialguard rules explain``. Pure."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from dialguard.numbers import NumberFacts
from dialguard.policy.hours import MOVING_HOLIDAYS, allowed_at, holiday_name, next_allowed
from dialguard.policy.model import CallingHours, EffectiveRules, Purpose, RuleLayer, Source
from dialguard.policy.rulebook import RuleBook
from dialguard.rules.loader import DAYS


def _period(period: timedelta) -> str:
    hours = int(period.total_seconds() // 3600)
    return f"{hours // 24} days" if hours % 24 == 0 and hours > 24 else f"{hours} hours"


def _source(source: Source) -> str:
    when = f", in force {source.effective}" if source.effective else ""
    return f"[{'policy' if source.policy else 'law'}: {source.citation}{when}]"


def _hours_lines(hours: CallingHours) -> list[str]:
    lines = []
    for i, day in enumerate(DAYS):
        windows = hours.weekdays.get(i, ())
        lines.append(f"    {day:<9} {', '.join(w.label() for w in windows) or 'no calls'}")
    if hours.holidays is not None:
        calendar = hours.holiday_country or "listed dates"
        if hours.holiday_subdivision:
            calendar += f"-{hours.holiday_subdivision}"
        labels = ", ".join(w.label() for w in hours.holidays) or "no calls"
        lines.append(f"    holidays  {labels} (calendar {calendar})")
    for extra in sorted(hours.extra_holidays):
        lines.append(f"    also a holiday: {extra}")
    for name in sorted(hours.moving_holidays):
        lines.append(f"    also a holiday: {MOVING_HOLIDAYS[name][0]} (moves with Easter)")
    lines.append(f"    {_source(hours.source)}")
    return lines


def layer_lines(layer: RuleLayer) -> list[str]:
    lines = [f"{layer.key}:"]
    if layer.calling_hours is not None:
        lines.append("  calling hours (callee's local time):")
        lines += _hours_lines(layer.calling_hours)
    for purpose, rule in sorted(layer.consent.items()):
        need = "consent required" if rule.required else "no consent needed"
        kinds = f" (kinds: {', '.join(sorted(rule.kinds))})" if rule.required and rule.kinds else ""
        lines.append(f"  {purpose}: {need}{kinds} {_source(rule.source)}")
    for cap in layer.frequency_caps:
        scope = ", ".join(sorted(cap.purposes)) or "every purpose"
        per = " per campaign" if cap.per_campaign else ""
        lines.append(
            f"  cap: {cap.max_calls} calls per {_period(cap.period)}{per} ({scope}) {_source(cap.source)}"
        )
    for listed in layer.dnc_lists:
        scope = ", ".join(sorted(listed.purposes)) or "every purpose"
        need = "required" if listed.required else "checked when loaded"
        age = f", no older than {listed.max_age_days} days" if listed.max_age_days else ""
        if listed.entry_lifetime_days:
            age += f", registrations lapse after {listed.entry_lifetime_days} days"
        exempt = f"; exempt: {', '.join(sorted(listed.exempt_kinds))}" if listed.exempt_kinds else ""
        lines.append(
            f"  do-not-call list {listed.list_name} ({scope}): {need}{age}{exempt} {_source(listed.source)}"
        )
    if layer.all_party_consent is not None:
        lines.append(
            f"  recording: all-party consent, record only after the notice {_source(layer.all_party_consent)}"
        )
    if (roam := layer.roaming) is not None:
        scope = ", ".join(sorted(roam.required_for))
        unknown = "blocks" if roam.block_unknown else "is allowed, kept as evidence"
        lines.append(f"  roaming: HLR look-up for {scope}; no answer {unknown} {_source(roam.source)}")
    if (emergency := layer.emergency) is not None:
        scope = ", ".join(sorted(emergency.purposes))
        lines.append(f"  declared emergencies stop: {scope} {_source(emergency.source)}")
    if layer.presumed_zones:
        lines.append(
            f"  zones presumed when unknown or sharing no window: {', '.join(layer.presumed_zones)}"
            f" ({layer.presumption})"
        )
    return lines


def show(rulebook: RuleBook, country: str | None = None) -> str:
    lines = [f"rules version {rulebook.version[:16]}"]
    if country:
        region = country.upper()
        national = rulebook.country_layer(region)
        layers = [national]
        layers += [v for k, v in sorted(rulebook.subdivisions.items()) if k.startswith(f"{region}-")]
    else:
        layers = [*(v for _, v in sorted(rulebook.countries.items())), rulebook.default]
        layers += [v for _, v in sorted(rulebook.subdivisions.items())]
        unique: dict[int, RuleLayer] = {}
        for layer in layers:
            unique.setdefault(id(layer), layer)  # EU members share one layer: show it once
        layers = list(unique.values())
    layers += list(rulebook.overrides)
    for layer in layers:
        lines += ["", *layer_lines(layer)]
    return "\n".join(lines)


def _zone_lines(rules: EffectiveRules, at: datetime) -> list[str]:
    lines = []
    for layer in rules.layers:
        hours = layer.calling_hours
        if hours is None:
            continue
        for zone in rules.zones:
            local = at.astimezone(ZoneInfo(zone))
            holiday = holiday_name(hours, local.date())
            windows = hours.windows_on(local.date(), holiday is not None)
            inside = any(w.contains(local.time()) for w in windows)
            day = f"{local:%A %Y-%m-%d %H:%M} {zone}" + (f", holiday: {holiday}" if holiday else "")
            labels = ", ".join(w.label() for w in windows) or "no calls"
            lines.append(f"  {layer.key}: {day} -> windows {labels}: {'inside' if inside else 'OUTSIDE'}")
    return lines


def explain(
    rulebook: RuleBook,
    number: NumberFacts,
    at: datetime,
    purpose: Purpose,
    *,
    lead_subdivision: str | None = None,
) -> str:
    """Every step of the timing and consent questions for one number at one instant."""
    rules = rulebook.rules_for(number, lead_subdivision=lead_subdivision)
    lines = [
        f"number {number.e164}: region {number.region}, subdivision {number.subdivision or '-'}, "
        f"line type {number.line_type}",
        f"rules version {rules.version[:16]}; layers: {', '.join(layer.key for layer in rules.layers)}",
        f"zones: {', '.join(rules.zones) or 'none known'}"
        + (f" ({rules.zone_note})" if rules.zone_note else ""),
        f"at {at.isoformat()}:",
    ]
    lines += _zone_lines(rules, at)
    nxt = None if allowed_at(rules, at) else next_allowed(rules, at)
    if nxt is None and rules.fallback_zones and not allowed_at(rules, at):
        # As the hours check does: zones that share no window give way to the stated presumption.
        lines.append(
            f"the {len(rules.zones)} zones share no window within 14 days: judging by "
            f"{', '.join(rules.fallback_zones)} ({rules.fallback_note})"
        )
        rules = replace(rules, zones=rules.fallback_zones, fallback_zones=())
        lines += _zone_lines(rules, at)
        nxt = None if allowed_at(rules, at) else next_allowed(rules, at)
    if allowed_at(rules, at):
        lines.append("hours: inside every window in every zone")
    else:
        lines.append(f"hours: blocked; next callable {nxt.isoformat() if nxt else 'not within 14 days'}")
    required = [
        (layer.key, rule) for layer in rules.layers if (rule := layer.consent.get(purpose)) and rule.required
    ]
    if required:
        for key, rule in required:
            kinds = ", ".join(sorted(rule.kinds)) or "any kind"
            lines.append(f"consent for {purpose}: required by {key} ({kinds}) {_source(rule.source)}")
    else:
        lines.append(f"consent for {purpose}: not required")
    for layer in rules.layers:
        for cap in layer.frequency_caps:
            if not cap.purposes or purpose in cap.purposes:
                every = _period(cap.period)
                lines.append(f"cap ({layer.key}): {cap.max_calls} calls per {every} {_source(cap.source)}")
    return "\n".join(lines)
