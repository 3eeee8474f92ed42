"""Which rule layers apply to a number, and which zones it may be in. Pure data lookup."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Protocol, TypeVar
from zoneinfo import ZoneInfo

from dialguard.numbers import NumberFacts, zones_for_subdivision
from dialguard.policy.model import (
    AbandonRule,
    CallingHours,
    ConsentRule,
    EffectiveRules,
    EmergencyRule,
    FrequencyCap,
    ListRule,
    Purpose,
    RoamingRule,
    RuleLayer,
    Source,
)


class _Sourced(Protocol):
    @property
    def source(self) -> Source: ...


_R = TypeVar("_R", bound=_Sourced)


def _one_in_force(entries: Sequence[_R], day: date, what: str) -> _R | None:
    found = [e for e in entries if e.source.in_force_on(day)]
    if len(found) > 1:
        raise ValueError(f"{what}: {len(found)} entries in force on {day}; their dates must not overlap")
    return found[0] if found else None


def dated_layer(
    key: str,
    *,
    hours: Sequence[CallingHours] = (),
    consent: Sequence[ConsentRule] = (),
    caps: Sequence[FrequencyCap] = (),
    dnc: Sequence[ListRule] = (),
    roaming: Sequence[RoamingRule] = (),
    emergency: Sequence[EmergencyRule] = (),
    recording: Sequence[Source] = (),
    abandon: Sequence[AbandonRule] = (),
    presumed_zones: tuple[str, ...] = (),
    presumption: str | None = None,
) -> RuleLayer:
    """A layer from all its entries, each in force from its source's ``effective`` to its ``until``.

    The layer is cut at every day an entry starts or stops applying; each period holds the entries in force
    throughout it (at most one calling-hours rule, one consent rule per purpose, one roaming, emergency,
    recording and abandon rule: overlapping dates for one of those are an error). Built once, at load.
    """
    sources = [
        *(h.source for h in hours), *(c.source for c in consent), *(c.source for c in caps),
        *(d.source for d in dnc), *(r.source for r in roaming), *(e.source for e in emergency), *recording,
        *(a.source for a in abandon),
    ]  # fmt: skip
    starts = {s.effective for s in sources if s.effective is not None}
    starts |= {s.until + timedelta(days=1) for s in sources if s.until is not None and s.until < date.max}
    bounds = sorted(starts)
    by_purpose: dict[Purpose, list[ConsentRule]] = {}
    for consent_rule in consent:
        by_purpose.setdefault(consent_rule.purpose, []).append(consent_rule)
    periods = []
    for i, since in enumerate([None, *bounds]):
        day = since or date.min
        until = bounds[i] - timedelta(days=1) if i < len(bounds) else None
        consent_now: dict[Purpose, ConsentRule] = {}
        for purpose, rules in by_purpose.items():
            if (rule := _one_in_force(rules, day, f"{key}: consent.{purpose}")) is not None:
                consent_now[purpose] = rule
        all_party = [s for s in recording if s.in_force_on(day)]
        if len(all_party) > 1:
            raise ValueError(f"{key}: recording: {len(all_party)} entries in force on {day}")
        periods.append(
            RuleLayer(
                key=key,
                calling_hours=_one_in_force(hours, day, f"{key}: hours"),
                consent=consent_now,
                frequency_caps=tuple(c for c in caps if c.source.in_force_on(day)),
                dnc_lists=tuple(d for d in dnc if d.source.in_force_on(day)),
                roaming=_one_in_force(roaming, day, f"{key}: roaming"),
                emergency=_one_in_force(emergency, day, f"{key}: emergency"),
                abandon=_one_in_force(abandon, day, f"{key}: abandon"),
                all_party_consent=all_party[0] if all_party else None,
                presumed_zones=presumed_zones,
                presumption=presumption,
                since=since,
                until=until,
            )
        )
    return replace(periods[-1], earlier=tuple(periods[:-1]))


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_days(zones: Iterable[str], instant: datetime) -> tuple[date, ...]:
    """The dates ``instant`` falls on in each zone (its UTC date when no zone is known), earliest first."""
    days = {instant.astimezone(_zone(z)).date() for z in zones} or {instant.astimezone(UTC).date()}
    return tuple(sorted(days))


def in_force(rules: EffectiveRules, instant: datetime) -> EffectiveRules:
    """The layers' periods in force at ``instant``.

    Dates are compared in the callee's zones, not in UTC: a statute binds from the start of a day where it
    applies, and the zones the number may be in are the best evidence of where that is (UTC would start a
    US state's rule on the evening before, and an Asian one hours late). Where the zones disagree about the
    date (around midnight, or a number spanning many zones), every period in force on any of their dates
    applies: the stricter wins, as for the hours. A few comparisons per layer; nothing is rebuilt.
    """
    if all(layer.since is None and layer.until is None for layer in rules.layers):
        return rules
    days = local_days(rules.zones, instant)
    layers = tuple(layer for layer in rules.layers if any(layer.in_force_on(day) for day in days))
    return replace(rules, layers=layers)


class RuleBook:
    """Rule layers by country and subdivision, a default for every other country, admin overrides last."""

    def __init__(
        self,
        *,
        countries: Mapping[str, RuleLayer],
        subdivisions: Mapping[str, RuleLayer],
        default: RuleLayer,
        version: str,
        overrides: tuple[RuleLayer, ...] = (),
        region_aliases: Mapping[str, str] | None = None,
    ) -> None:
        self.countries = dict(countries)
        self.subdivisions = dict(subdivisions)
        self.default = default
        self.version = version
        self.overrides = overrides
        # Territories that share a numbering plan and a law: GG, JE, IM are judged by the GB pack.
        self.region_aliases = dict(region_aliases or {})

    def country_layer(self, region: str) -> RuleLayer:
        region = self.region_aliases.get(region, region)
        return self.countries.get(region, self.default)

    def entry_lifetime(self, list_name: str) -> timedelta | None:
        """How long a registration on the list lasts, if a pack says (an override first): imports skip
        lapsed entries."""
        named = [*self.overrides, *self.countries.values(), *self.subdivisions.values(), self.default]
        layers = [period for layer in named for period in layer.periods()]
        days = next(
            (r.entry_lifetime_days for layer in layers for r in layer.dnc_lists if r.list_name == list_name),
            None,
        )
        return timedelta(days=days) if days else None

    def rules_for(self, number: NumberFacts, *, lead_subdivision: str | None = None) -> EffectiveRules:
        national = self.country_layer(number.region)
        layers = list(national.periods())
        # Both the area code's state and the lead's own state apply: both must allow.
        for sub in dict.fromkeys(s for s in (number.subdivision, lead_subdivision) if s):
            if (layer := self.subdivisions.get(sub)) is not None:
                layers.extend(layer.periods())
        layers.extend(period for layer in self.overrides for period in layer.periods())
        zones = list(number.time_zones)
        if lead_subdivision:
            zones += [z for z in zones_for_subdivision(lead_subdivision) if z not in zones]
        presumed = next((layer for layer in layers if layer.presumed_zones), None)
        presumption = (presumed.presumption or f"zones presumed by {presumed.key}") if presumed else None
        note = None
        if not zones and presumed is not None:
            zones, note = list(presumed.presumed_zones), presumption
        fallback: tuple[str, ...] = ()
        fallback_note = None
        if lead_subdivision and (lead_zones := zones_for_subdivision(lead_subdivision)):
            fallback, fallback_note = lead_zones, f"the lead's own state {lead_subdivision}"
        elif presumed is not None and note is None:
            fallback, fallback_note = presumed.presumed_zones, presumption
        return EffectiveRules(
            layers=tuple(layers),
            zones=tuple(zones),
            version=self.version,
            zone_note=note,
            fallback_zones=tuple(fallback) if tuple(fallback) != tuple(zones) else (),
            fallback_note=fallback_note,
        )
