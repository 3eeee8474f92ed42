"""Human-readable views of the rules: ``dialguard rules show`` and ``dialguard rules explain``. Pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from dialguard.numbers import NumberFacts
from dialguard.policy.abandon import governing
from dialguard.policy.hours import MOVING_HOLIDAYS, allowed_at, holiday_name, hours_on, next_allowed
from dialguard.policy.model import AbandonRule, CallingHours, EffectiveRules, Purpose, RuleLayer, Source
from dialguard.policy.rulebook import RuleBook, in_force, local_days
from dialguard.rules.loader import DAYS

T = TypeVar("T")


def _period(period: timedelta) -> str:
    hours = int(period.total_seconds() // 3600)
    return f"{hours // 24} days" if hours % 24 == 0 and hours > 24 else f"{hours} hours"


def _source(source: Source) -> str:
    when = f" from {source.effective}" if source.effective else ""
    when += f" until {source.until}" if source.until else ""
    when = f", in force{when}" if when else ""
    return f"[{'policy' if source.policy else 'law'}: {source.citation}{when}]"


def _unique(layers: Iterable[RuleLayer], pick: Callable[[RuleLayer], Iterable[T]]) -> list[T]:
    """The entries of every period, each once (the periods of a layer share their entries)."""
    seen: dict[int, T] = {}
    for layer in layers:
        for entry in pick(layer):
            seen.setdefault(id(entry), entry)
    return list(seen.values())


def _entries(layers: Sequence[RuleLayer]) -> Iterator[tuple[str, Source]]:
    """Every rule of the layers' periods, named as the pack names it, with its source."""
    for key in dict.fromkeys(layer.key for layer in layers):
        mine = [layer for layer in layers if layer.key == key]
        for hours in _unique(mine, lambda p: [p.calling_hours] if p.calling_hours else []):
            yield f"{key} hours", hours.source
        for rule in _unique(mine, lambda p: p.consent.values()):
            yield f"{key} consent.{rule.purpose}", rule.source
        for cap in _unique(mine, lambda p: p.frequency_caps):
            yield f"{key} cap {cap.max_calls} per {_period(cap.period)}", cap.source
        for listed in _unique(mine, lambda p: p.dnc_lists):
            yield f"{key} do-not-call list {listed.list_name}", listed.source
        for roam in _unique(mine, lambda p: [p.roaming] if p.roaming else []):
            yield f"{key} roaming", roam.source
        for emergency in _unique(mine, lambda p: [p.emergency] if p.emergency else []):
            yield f"{key} emergency", emergency.source
        for source in _unique(mine, lambda p: [p.all_party_consent] if p.all_party_consent else []):
            yield f"{key} recording", source
        for abandon in _unique(mine, lambda p: [p.abandon] if p.abandon else []):
            yield f"{key} abandoned calls", abandon.source


def _not_in_force(layers: Sequence[RuleLayer], days: Sequence[date]) -> list[str]:
    lines = []
    for name, source in _entries(layers):
        if any(source.in_force_on(day) for day in days):
            continue
        if source.effective is not None and source.effective > days[-1]:
            lines.append(f"  {name}: not yet in force (from {source.effective}) {_source(source)}")
        else:
            lines.append(f"  {name}: no longer in force (ended {source.until}) {_source(source)}")
    return lines


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


def _abandon_line(rule: AbandonRule) -> str:
    scope = ", ".join(sorted(rule.purposes)) or "every purpose"
    repeat = ""
    if rule.repeat_block:
        hours = rule.repeat_block.total_seconds() / 3600
        repeat = f"; no call to an abandoned number within {hours:g} hours unless an agent is guaranteed"
    return (
        f"abandoned calls ({scope}): a campaign is held once they reach {float(rule.max_rate):.1%} of its "
        f"answered calls over {_period(rule.window)} (measured against at least {rule.min_answered}); "
        f"an agent within {rule.agent_within.total_seconds():g} s of the answer, else the message; "
        f"ring at least {rule.min_ring_seconds} s{repeat} {_source(rule.source)}"
    )


def layer_lines(layer: RuleLayer, covers: list[str] | None = None) -> list[str]:
    """A layer with every entry of every period: an entry with dates applies only on its own days.
    ``covers``: the countries a shared layer serves (the EU's for its members), named in the heading."""
    periods = layer.periods()
    lines = [f"{layer.key} ({', '.join(covers)}):" if covers else f"{layer.key}:"]
    for hours in _unique(periods, lambda p: [p.calling_hours] if p.calling_hours else []):
        lines.append("  calling hours (callee's local time):")
        lines += _hours_lines(hours)
    for rule in sorted(_unique(periods, lambda p: p.consent.values()), key=lambda r: r.purpose):
        need = "consent required" if rule.required else "no consent needed"
        kinds = f" (kinds: {', '.join(sorted(rule.kinds))})" if rule.required and rule.kinds else ""
        lines.append(f"  {rule.purpose}: {need}{kinds} {_source(rule.source)}")
    for cap in _unique(periods, lambda p: p.frequency_caps):
        scope = ", ".join(sorted(cap.purposes)) or "every purpose"
        per = " per campaign" if cap.per_campaign else ""
        lines.append(
            f"  cap: {cap.max_calls} calls per {_period(cap.period)}{per} ({scope}) {_source(cap.source)}"
        )
    for listed in _unique(periods, lambda p: p.dnc_lists):
        scope = ", ".join(sorted(listed.purposes)) or "every purpose"
        need = "required" if listed.required else "checked when loaded"
        age = f", no older than {listed.max_age_days} days" if listed.max_age_days else ""
        if listed.entry_lifetime_days:
            age += f", registrations lapse after {listed.entry_lifetime_days} days"
        exempt = f"; exempt: {', '.join(sorted(listed.exempt_kinds))}" if listed.exempt_kinds else ""
        lines.append(
            f"  do-not-call list {listed.list_name} ({scope}): {need}{age}{exempt} {_source(listed.source)}"
        )
    for source in _unique(periods, lambda p: [p.all_party_consent] if p.all_party_consent else []):
        lines.append(f"  recording: all-party consent, record only after the notice {_source(source)}")
    for roam in _unique(periods, lambda p: [p.roaming] if p.roaming else []):
        scope = ", ".join(sorted(roam.required_for))
        unknown = "blocks" if roam.block_unknown else "is allowed, kept as evidence"
        lines.append(f"  roaming: HLR look-up for {scope}; no answer {unknown} {_source(roam.source)}")
    for emergency in _unique(periods, lambda p: [p.emergency] if p.emergency else []):
        scope = ", ".join(sorted(emergency.purposes))
        lines.append(f"  declared emergencies stop: {scope} {_source(emergency.source)}")
    for abandon in _unique(periods, lambda p: [p.abandon] if p.abandon else []):
        lines.append(f"  {_abandon_line(abandon)}")
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
        # One section per layer, however many countries share it (the EU's 27 members: one "EU" section
        # naming them), then the default for every other country, then the subdivisions.
        shared: dict[str, tuple[RuleLayer, list[str]]] = {}
        for region, layer in sorted(rulebook.countries.items()):
            shared.setdefault(layer.key, (layer, []))[1].append(region)
        for layer, regions in shared.values():
            lines += ["", *layer_lines(layer, regions if regions != [layer.key] else None)]
        layers = [rulebook.default, *(v for _, v in sorted(rulebook.subdivisions.items()))]
    layers += list(rulebook.overrides)
    for layer in layers:
        lines += ["", *layer_lines(layer)]
    return "\n".join(lines)


def _zone_lines(rules: EffectiveRules, at: datetime) -> list[str]:
    """Per layer and zone: the hours entry in force on that local day, its windows, inside or not."""
    lines = []
    for layer in rules.layers:
        for zone in rules.zones:
            local = at.astimezone(ZoneInfo(zone))
            hours = hours_on(layer, local.date())
            if hours is None:
                continue
            holiday = holiday_name(hours, local.date())
            windows = hours.windows_on(local.date(), holiday is not None)
            inside = any(w.contains(local.time()) for w in windows)
            day = f"{local:%A %Y-%m-%d %H:%M} {zone}" + (f", holiday: {holiday}" if holiday else "")
            labels = ", ".join(w.label() for w in windows) or "no calls"
            verdict = "inside" if inside else "OUTSIDE"
            lines.append(f"  {layer.key}: {day} -> windows {labels}: {verdict} {_source(hours.source)}")
    return lines


def explain(
    rulebook: RuleBook,
    number: NumberFacts,
    at: datetime,
    purpose: Purpose,
    *,
    lead_subdivision: str | None = None,
) -> str:
    """Every step of the timing and consent questions for one number at one instant.

    Each rule is judged by the entries in force on the callee's local date; the ones that are not yet or
    no longer in force are listed as such, with their dates.
    """
    rules = rulebook.rules_for(number, lead_subdivision=lead_subdivision)
    current = in_force(rules, at)
    days = local_days(rules.zones, at)
    layer_keys = ", ".join(dict.fromkeys(layer.key for layer in rules.layers))
    lines = [
        f"number {number.e164}: region {number.region}, subdivision {number.subdivision or '-'}, "
        f"line type {number.line_type}",
        f"rules version {rules.version[:16]}; layers: {layer_keys}",
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
        (layer.key, rule)
        for layer in current.layers
        if (rule := layer.consent.get(purpose)) and rule.required
    ]
    if required:
        for key, rule in required:
            kinds = ", ".join(sorted(rule.kinds)) or "any kind"
            lines.append(f"consent for {purpose}: required by {key} ({kinds}) {_source(rule.source)}")
    else:
        lines.append(f"consent for {purpose}: not required")
    for layer in current.layers:
        for cap in layer.frequency_caps:
            if not cap.purposes or purpose in cap.purposes:
                every = _period(cap.period)
                lines.append(f"cap ({layer.key}): {cap.max_calls} calls per {every} {_source(cap.source)}")
    if (found := governing(current)) is not None and (not found[1].purposes or purpose in found[1].purposes):
        lines.append(f"{_abandon_line(found[1])} (by {found[0]})")
    if dormant := _not_in_force(rules.layers, days):
        lines.append(f"not in force on {' / '.join(str(day) for day in days)}:")
        lines += dormant
    return "\n".join(lines)
