"""Which rule layers apply to a number, and which zones it may be in. Pure data lookup."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from dialguard.numbers import NumberFacts, zones_for_subdivision
from dialguard.policy.model import EffectiveRules, RuleLayer


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
        layers = [*self.overrides, *self.countries.values(), *self.subdivisions.values(), self.default]
        days = next(
            (r.entry_lifetime_days for layer in layers for r in layer.dnc_lists if r.list_name == list_name),
            None,
        )
        return timedelta(days=days) if days else None

    def rules_for(self, number: NumberFacts, *, lead_subdivision: str | None = None) -> EffectiveRules:
        national = self.country_layer(number.region)
        layers = [national]
        # Both the area code's state and the lead's own state apply: both must allow.
        for sub in dict.fromkeys(s for s in (number.subdivision, lead_subdivision) if s):
            if (layer := self.subdivisions.get(sub)) is not None:
                layers.append(layer)
        layers.extend(self.overrides)
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
