"""Calling hours in the callee's local time, holidays included, across every zone the number may be in.

A call is inside the window only if it is inside it in *every* candidate zone and for *every* rule layer
(national, subdivision, the administrator's): that is how the stricter rule wins. When it is not, the
earliest instant at which it would be is searched among the window openings, which are the only places
the allowed set can begin.

A layer's calling hours apply on the local days its period is in force (a rule dated from 2026-10-18
binds from midnight that day in each zone, and not before): each zone and each day of the search picks
the period of its own date, so a next_callable_at across the change is judged by the rule of that day.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from dialguard.policy.model import CallingHours, Detail, EffectiveRules, Reason, RuleLayer

# How far ahead next_callable_at is searched: long enough for a holiday weekend plus a Sunday ban.
SEARCH_DAYS = 14


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=256)
def _calendar(country: str, subdivision: str | None, year: int) -> Mapping[date, str]:
    """One year's public holidays with their names, built once (the package computes them on demand)."""
    cal = holidays_lib.country_holidays(country, subdiv=subdivision, years=year)
    return MappingProxyType({day: str(name) for day, name in cal.items()})


def easter(year: int) -> date:
    """Western Easter Sunday (the anonymous Gregorian algorithm, Meeus/Jones/Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1)


# Holidays that move with Easter, which a pack may add to a layer by name ("moving_holidays").
MOVING_HOLIDAYS = {"mardi_gras": ("Mardi Gras", -47)}  # name: (label, days from Easter)


@lru_cache(maxsize=256)
def _moving(name: str, year: int) -> date:
    return easter(year) + timedelta(days=MOVING_HOLIDAYS[name][1])


def holiday_name(hours: CallingHours, day: date) -> str | None:
    if day in hours.extra_holidays:
        return "listed in rule pack"
    for name in hours.moving_holidays:
        if _moving(name, day.year) == day:
            return MOVING_HOLIDAYS[name][0]
    if hours.holiday_country is None:
        return None
    return _calendar(hours.holiday_country, hours.holiday_subdivision, day.year).get(day)


def hours_on(layer: RuleLayer, day: date) -> CallingHours | None:
    """The layer's calling hours on a local day: None when it has none or its period is not in force then."""
    return layer.calling_hours if layer.calling_hours is not None and layer.in_force_on(day) else None


def _allowed_in(hours: CallingHours, local: datetime) -> bool:
    is_holiday = holiday_name(hours, local.date()) is not None
    return any(w.contains(local.time()) for w in hours.windows_on(local.date(), is_holiday))


def allowed_at(rules: EffectiveRules, instant: datetime) -> bool:
    """True when every layer's window in force holds in every candidate zone at ``instant``."""
    for layer in rules.layers:
        if layer.calling_hours is None:
            continue
        for zone in rules.zones:
            local = instant.astimezone(_zone(zone))
            hours = hours_on(layer, local.date())
            if hours is not None and not _allowed_in(hours, local):
                return False
    return True


def _openings(rules: EffectiveRules, after: datetime) -> Iterator[datetime]:
    """Every window start, in every zone and layer, from the day before ``after`` on, in UTC."""
    for layer in rules.layers:
        if layer.calling_hours is None:
            continue
        for zone_name in rules.zones:
            zone = _zone(zone_name)
            first = after.astimezone(zone).date() - timedelta(days=1)
            for offset in range(SEARCH_DAYS + 2):
                day = first + timedelta(days=offset)
                if (hours := hours_on(layer, day)) is None:
                    continue
                is_holiday = holiday_name(hours, day) is not None
                for window in hours.windows_on(day, is_holiday):
                    # Round-trip through UTC so a start inside a DST gap lands on a real instant.
                    local = datetime.combine(day, window.start, tzinfo=zone)
                    yield local.astimezone(UTC)
                # Midnight is an opening too when a window runs to 24:00 into a new day's window.
                yield datetime.combine(day, datetime.min.time(), tzinfo=zone).astimezone(UTC)


def next_allowed(rules: EffectiveRules, not_before: datetime) -> datetime | None:
    """The earliest instant at or after ``not_before`` that is inside every window, or None."""
    if allowed_at(rules, not_before):
        return not_before
    horizon = not_before + timedelta(days=SEARCH_DAYS)
    for candidate in sorted({t for t in _openings(rules, not_before) if not_before < t <= horizon}):
        if allowed_at(rules, candidate):
            return candidate
    return None


def check_hours(rules: EffectiveRules, now: datetime) -> Reason:
    reason = _judge(rules, now)
    if reason.passed or reason.retry_after is not None or not rules.fallback_zones:
        return reason
    # The candidate zones share no window in the whole search horizon (16 zones of a Russian mobile
    # under a short window): judge by the lead's own state or the pack's stated presumption instead.
    presumed = replace(rules, zones=rules.fallback_zones, zone_note=rules.fallback_note, fallback_zones=())
    judged = _judge(presumed, now)
    candidates: Detail = {"candidate_zones": list(rules.zones), "no_common_window": True}
    return replace(judged, detail={**judged.detail, **candidates})


def _judge(rules: EffectiveRules, now: datetime) -> Reason:
    locals_ = {zone: now.astimezone(_zone(zone)) for zone in rules.zones}
    days = {local.date() for local in locals_.values()} or {now.astimezone(UTC).date()}
    # The layers with a calling-hours rule in force on the day judged, in some candidate zone.
    layers = [
        layer for layer in rules.layers if any(hours_on(layer, day) is not None for day in sorted(days))
    ]
    local_times: Detail = {z: local.isoformat() for z, local in locals_.items()}
    detail: Detail = {
        "zones": list(rules.zones),
        "local_times": local_times,
        "layers": list(dict.fromkeys(layer.key for layer in layers)),
    }
    if rules.zone_note:
        detail["zone_note"] = rules.zone_note
    if not layers:
        return Reason("hours.within_window", True, {**detail, "note": "no calling-hours rule applies"})
    if not rules.zones:
        return Reason("hours.outside_window", False, {**detail, "why": "no time zone known for this number"})
    for layer in layers:
        for zone, local in locals_.items():
            hours = hours_on(layer, local.date())
            if hours is None or _allowed_in(hours, local):
                continue
            holiday = holiday_name(hours, local.date())
            windows = hours.windows_on(local.date(), holiday is not None)
            fail: Detail = {
                **detail,
                "failed_layer": layer.key,
                "failed_zone": zone,
                "local_time": local.isoformat(),
                "windows": [w.label() for w in windows],
                "source": hours.source.as_detail(),
            }
            code = "hours.outside_window"
            if holiday is not None and hours.holidays is not None:
                code = "hours.holiday"
                fail["holiday"] = holiday
            return Reason(code, False, fail, retry_after=next_allowed(rules, now))
    return Reason("hours.within_window", True, detail)
