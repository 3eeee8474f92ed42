"""Rule packs (TOML, one per jurisdiction) into a :class:`RuleBook`, validated strictly at start.

A pack::

    [pack]
    country = "US"                      # a region code, "EU" (with members = [...]) or "DEFAULT"
    name = "United States"
    aliases = []                        # regions judged by this pack ("GG", "JE", "IM" for GB)

    [hours]                             # callee's local time; every rule names its source
    source = "47 CFR 64.1200(c)(1)"
    effective = 2003-10-01              # in force from this day (the callee's date) ...
    until = 2030-12-31                  # ... to this one, both included; either may be left out
    all = ["08:00-21:00"]               # every day unless a day says otherwise
    sunday = []                         # no calls on Sunday
    holidays = []                       # on public holidays: these windows ([] = none); absent = a normal day
    holiday_calendar = "US"             # the `holidays` package's calendar; "*" = the callee's own country
    moving_holidays = ["mardi_gras"]    # feasts that move with Easter, by name

    [consent.marketing]
    required = true
    kinds = ["express_written"]         # empty or absent: any kind of consent counts
    source = "..."

    [[caps]]
    max_calls = 3
    period_hours = 24
    purposes = ["marketing"]
    source = "..."

    [[dnc]]                             # a national do-not-call list this country requires
    list = "us_national"
    max_age_days = 31                   # stale from this age of the publisher's data on
    purposes = ["marketing"]
    exempt_kinds = ["written_agreement"]   # consent kinds that may still call a listed number
    entry_lifetime_days = 1095          # registrations lapse (Texas); imports then need registered_on
    source = "..."

    [emergency]                         # no calls of these purposes into the area while a declared
    purposes = ["marketing"]            # emergency is in force (`dialguard emergency add`)
    source = "..."

    [abandon]                           # abandoned calls (answered, no agent in time), per campaign
    max_rate = 0.03                     # at or above this share of answered calls, the campaign is held
    window_days = 30                    # measured over a rolling window (or window_hours)
    min_answered = 34                   # the rate is measured against at least this many answered calls
    agent_within_seconds = 2            # an agent later than this after the answer: abandoned
    min_ring_seconds = 15               # ring an unanswered call at least this long (the dialplan's job)
    repeat_block_hours = 72             # no call to an abandoned number within this (absent: none)
    purposes = ["marketing"]            # empty or absent: every purpose
    source = "..."

    [presume]                           # zones to assume when the number gives none, or when
                                        # the zones it gives share no window at all
    zones = ["America/New_York"]
    reason = "..."

    [subdivisions.FL]                   # the same sections, for a state or province
    name = "Florida"

A rule that changes on a date is written as dated entries, an array of tables whose dates do not overlap
(``[[hours]]``, ``[[consent.marketing]]``, ``[[roaming]]``, ``[[emergency]]``, ``[[recording]]``,
``[[abandon]]``; ``[[caps]]``
and ``[[dnc]]`` entries carry their own dates, and two entries for one list must not overlap)::

    [[subdivisions.PA.hours]]
    source = "..."
    until = 2026-10-17
    sunday = ["13:30-21:00"]
    [[subdivisions.PA.hours]]
    source = "..."
    effective = 2026-10-18
    sunday = []

Each entry applies only on its own days; the policy picks the one in force on the callee's local date.

A mistake stops start-up with the file, the key and the reason (:class:`PackError`).
Admin overrides (config ``[rules.overrides."US-FL".hours]`` etc.) replace a layer's sections;
``[rules.overrides.all]`` adds a layer every call must also satisfy.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from datetime import date, time, timedelta
from fractions import Fraction
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib

from dialguard.policy.hours import MOVING_HOLIDAYS
from dialguard.policy.model import (
    AbandonRule,
    CallingHours,
    ConsentRule,
    EmergencyRule,
    FrequencyCap,
    ListRule,
    Purpose,
    RoamingRule,
    RuleLayer,
    Source,
    TimeWindow,
)
from dialguard.policy.rulebook import RuleBook, dated_layer

T = TypeVar("T")

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WINDOW = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
SOURCE_KEYS = {"source", "effective", "until", "policy"}
LAYER_KEYS = {
    "name",
    "hours",
    "consent",
    "caps",
    "dnc",
    "roaming",
    "emergency",
    "recording",
    "presume",
    "abandon",
    "note",
}
EMERGENCY_KEYS = {"purposes"} | SOURCE_KEYS
RECORDING_KEYS = {"all_party_consent"} | SOURCE_KEYS
ROAMING_KEYS = {"required_for", "on_unknown"} | SOURCE_KEYS
HOURS_KEYS = {
    "all", *DAYS, "holidays", "holiday_calendar", "holiday_subdivision", "extra_holidays", "moving_holidays"
}  # fmt: skip
HOURS_KEYS |= SOURCE_KEYS
CONSENT_KEYS = {"required", "kinds"} | SOURCE_KEYS
CAP_KEYS = {"max_calls", "period_hours", "period_days", "purposes", "per_campaign"} | SOURCE_KEYS
PRESUME_KEYS = {"zones", "reason"}
ABANDON_KEYS = {
    "max_rate", "window_hours", "window_days", "min_answered", "agent_within_seconds", "min_ring_seconds",
    "repeat_block_hours", "purposes",
} | SOURCE_KEYS  # fmt: skip
DNC_KEYS = {
    "list",
    "required",
    "max_age_days",
    "entry_lifetime_days",
    "purposes",
    "exempt_kinds",
} | SOURCE_KEYS
LIST_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
PACK_KEYS = {"country", "name", "aliases", "members"}
CONSENT_KINDS = {"express", "express_written", "written_agreement", "ebr_purchase", "ebr_inquiry", "verbal"}


def _days(source: Source) -> str:
    return f"{source.effective or 'always'} to {source.until or 'open'}"


class PackError(Exception):
    """A rule pack or an override is wrong: names the file, the key and what is wrong with it."""

    def __init__(self, where: str, key: str, reason: str) -> None:
        super().__init__(f"{where}: {key}: {reason}")
        self.where, self.key, self.reason = where, key, reason


class _Builder:
    """Builds layers from one pack's TOML, raising PackError with the exact key on the first mistake."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, reason: str) -> PackError:
        return PackError(self.where, key, reason)

    def keys(self, table: Any, allowed: set[str], key: str) -> Mapping[str, Any]:
        if not isinstance(table, Mapping):
            raise self.fail(key, "must be a table")
        for k in table:
            if k not in allowed:
                raise self.fail(
                    f"{key}.{k}" if key else k, f"unknown key (allowed: {', '.join(sorted(allowed))})"
                )
        return table

    def source(self, table: Mapping[str, Any], key: str) -> Source:
        citation = table.get("source")
        if citation is None:
            raise self.fail(
                f"{key}.source", "every rule needs its legal source (or policy = true and a reason)"
            )
        if not isinstance(citation, str) or not citation.strip():
            raise self.fail(f"{key}.source", "must be a non-empty string")
        effective, until = table.get("effective"), table.get("until")
        for day, day_key in ((effective, "effective"), (until, "until")):
            # A TOML date, not a date-time: a datetime is a date too in Python, so say it outright.
            if day is not None and (not isinstance(day, date) or hasattr(day, "hour")):
                raise self.fail(f"{key}.{day_key}", "must be a TOML date, e.g. 2024-01-01")
        if effective is not None and until is not None and until < effective:
            raise self.fail(f"{key}.until", f"ends ({until}) before it takes effect ({effective})")
        policy = table.get("policy", False)
        if not isinstance(policy, bool):
            raise self.fail(f"{key}.policy", "must be true or false")
        return Source(citation, effective, policy, until)

    def no_overlap(self, entries: Sequence[tuple[str, Source]], what: str) -> None:
        """Dated entries of one rule take turns: each must end before the next takes effect."""
        ordered = sorted(entries, key=lambda e: e[1].effective or date.min)
        for (before_key, before), (after_key, after) in pairwise(ordered):
            if before.until is None or before.until >= (after.effective or date.min):
                raise self.fail(
                    after_key,
                    f"its dates overlap {before_key} ({_days(before)} and {_days(after)}): entries of {what} "
                    "must take turns; give the earlier an until before the later's effective",
                )

    def dated(
        self, value: Any, key: str, build: Callable[[Any, str], T], source: Callable[[T], Source]
    ) -> list[T]:
        """One rule, written once (a table) or as dated entries (an array of tables) that do not overlap."""
        if not isinstance(value, list):
            return [build(value, key)]
        if not value:
            raise self.fail(key, "an array of dated entries needs at least one")
        built = [(f"{key}[{i}]", build(item, f"{key}[{i}]")) for i, item in enumerate(value)]
        self.no_overlap([(k, source(entry)) for k, entry in built], key)
        return [entry for _, entry in built]

    def windows(self, value: Any, key: str) -> tuple[TimeWindow, ...]:
        if not isinstance(value, list):
            raise self.fail(key, 'must be a list of "HH:MM-HH:MM" windows')
        out = []
        for text in value:
            m = WINDOW.match(text) if isinstance(text, str) else None
            if m is None:
                raise self.fail(key, f'{text!r} is not a "HH:MM-HH:MM" window')
            h1, m1, h2, m2 = (int(g) for g in m.groups())
            if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
                raise self.fail(key, f"{text!r} is not a time of day")
            start = time(h1, m1)
            end = time.max if h2 == 24 else time(h2, m2)
            if end <= start:
                raise self.fail(key, f"{text!r} ends before it starts")
            out.append(TimeWindow(start, end))
        return tuple(sorted(out, key=lambda w: w.start))

    def hours(self, table: Any, key: str, region: str, sub: str | None) -> CallingHours:
        t = self.keys(table, HOURS_KEYS, key)
        base = self.windows(t["all"], f"{key}.all") if "all" in t else ()
        weekdays = {i: self.windows(t[d], f"{key}.{d}") if d in t else base for i, d in enumerate(DAYS)}
        holiday_windows = self.windows(t["holidays"], f"{key}.holidays") if "holidays" in t else None
        calendar = t.get("holiday_calendar")
        if calendar == "*":
            calendar = region
        subdivision = t.get("holiday_subdivision", sub if calendar == region else None)
        if calendar is not None:
            try:
                holidays_lib.country_holidays(calendar, subdiv=subdivision, years=2026)
            except (NotImplementedError, KeyError) as exc:
                raise self.fail(
                    f"{key}.holiday_calendar", f"no holiday calendar {calendar!r}/{subdivision}: {exc}"
                ) from None
        extra = t.get("extra_holidays", [])
        if not isinstance(extra, list) or not all(isinstance(d, date) for d in extra):
            raise self.fail(f"{key}.extra_holidays", "must be a list of TOML dates")
        moving = t.get("moving_holidays", [])
        if not isinstance(moving, list) or not all(name in MOVING_HOLIDAYS for name in moving):
            raise self.fail(f"{key}.moving_holidays", f"must list names from {sorted(MOVING_HOLIDAYS)}")
        if holiday_windows is None and (calendar is not None or extra or moving):
            raise self.fail(
                f"{key}.holidays", "a holiday calendar needs the holiday windows ([] for no calls)"
            )
        return CallingHours(
            weekdays={i: w for i, w in weekdays.items() if w},
            source=self.source(t, key),
            holidays=holiday_windows,
            holiday_country=calendar,
            holiday_subdivision=subdivision,
            extra_holidays=frozenset(extra),
            moving_holidays=frozenset(moving),
        )

    def purpose(self, name: str, key: str) -> Purpose:
        try:
            return Purpose(name)
        except ValueError:
            raise self.fail(
                key, f"unknown purpose {name!r} ({', '.join(p.value for p in Purpose)})"
            ) from None

    def consent(self, table: Any, key: str) -> list[ConsentRule]:
        out = []
        for name, value in self.keys(table, {p.value for p in Purpose}, key).items():
            purpose = self.purpose(name, f"{key}.{name}")

            def rule(table: Any, k: str, purpose: Purpose = purpose) -> ConsentRule:
                r = self.keys(table, CONSENT_KEYS, k)
                required = r.get("required")
                if not isinstance(required, bool):
                    raise self.fail(f"{k}.required", "must be true or false")
                kinds = r.get("kinds", [])
                if not isinstance(kinds, list) or not all(kind in CONSENT_KINDS for kind in kinds):
                    raise self.fail(f"{k}.kinds", f"must be a list of {', '.join(sorted(CONSENT_KINDS))}")
                return ConsentRule(purpose, required, self.source(r, k), frozenset(kinds))

            out += self.dated(value, f"{key}.{name}", rule, lambda c: c.source)
        return out

    def caps(self, value: Any, key: str) -> tuple[FrequencyCap, ...]:
        if not isinstance(value, list):
            raise self.fail(key, "must be an array of tables ([[caps]])")
        out = []
        for i, cap in enumerate(value):
            k = f"{key}[{i}]"
            c = self.keys(cap, CAP_KEYS, k)
            n = c.get("max_calls")
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise self.fail(f"{k}.max_calls", "must be a whole number ≥ 0")
            hours, days = c.get("period_hours"), c.get("period_days")
            if (hours is None) == (days is None):
                raise self.fail(k, "give exactly one of period_hours, period_days")
            amount = hours if hours is not None else days
            if not isinstance(amount, int | float) or isinstance(amount, bool) or amount <= 0:
                raise self.fail(f"{k}.period_{'hours' if hours is not None else 'days'}", "must be > 0")
            period = timedelta(hours=amount) if hours is not None else timedelta(days=amount)
            purposes = c.get("purposes", [])
            if not isinstance(purposes, list):
                raise self.fail(f"{k}.purposes", "must be a list")
            per_campaign = c.get("per_campaign", False)
            if not isinstance(per_campaign, bool):
                raise self.fail(f"{k}.per_campaign", "must be true or false")
            out.append(
                FrequencyCap(
                    max_calls=n,
                    period=period,
                    source=self.source(c, k),
                    purposes=frozenset(self.purpose(p, f"{k}.purposes") for p in purposes),
                    per_campaign=per_campaign,
                )
            )
        return tuple(out)

    def dnc(self, value: Any, key: str) -> tuple[ListRule, ...]:
        if not isinstance(value, list):
            raise self.fail(key, "must be an array of tables ([[dnc]])")
        out = []
        for i, item in enumerate(value):
            k = f"{key}[{i}]"
            t = self.keys(item, DNC_KEYS, k)
            name = t.get("list")
            if not isinstance(name, str) or not LIST_NAME.fullmatch(name):
                raise self.fail(f"{k}.list", "must be a list name like us_national (lower case, digits, _)")
            required = t.get("required", True)
            if not isinstance(required, bool):
                raise self.fail(f"{k}.required", "must be true or false")
            age, lifetime = t.get("max_age_days"), t.get("entry_lifetime_days")
            for days, days_key in ((age, "max_age_days"), (lifetime, "entry_lifetime_days")):
                if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 1):
                    raise self.fail(f"{k}.{days_key}", "must be a whole number of days ≥ 1")
            purposes = t.get("purposes", [])
            kinds = t.get("exempt_kinds", [])
            if not isinstance(purposes, list):
                raise self.fail(f"{k}.purposes", "must be a list")
            if not isinstance(kinds, list) or not all(kind in CONSENT_KINDS for kind in kinds):
                raise self.fail(f"{k}.exempt_kinds", f"must list consent kinds from {sorted(CONSENT_KINDS)}")
            out.append(
                ListRule(
                    list_name=name,
                    source=self.source(t, k),
                    required=required,
                    max_age_days=age,
                    purposes=frozenset(self.purpose(p, f"{k}.purposes") for p in purposes),
                    exempt_kinds=frozenset(kinds),
                    entry_lifetime_days=lifetime,
                )
            )
        for name in {rule.list_name for rule in out}:
            self.no_overlap(
                [(f"{key}[{i}]", r.source) for i, r in enumerate(out) if r.list_name == name], f"list {name}"
            )
        return tuple(out)

    def roaming(self, table: Any, key: str) -> RoamingRule:
        t = self.keys(table, ROAMING_KEYS, key)
        purposes = t.get("required_for")
        if not isinstance(purposes, list) or not purposes:
            raise self.fail(f"{key}.required_for", "must list the purposes that need an HLR look-up")
        on_unknown = t.get("on_unknown", "block")
        if on_unknown not in ("block", "allow"):
            raise self.fail(f"{key}.on_unknown", 'must be "block" (the rule is law) or "allow" (policy)')
        return RoamingRule(
            required_for=frozenset(self.purpose(p, f"{key}.required_for") for p in purposes),
            block_unknown=on_unknown == "block",
            source=self.source(t, key),
        )

    def emergency(self, table: Any, key: str) -> EmergencyRule:
        t = self.keys(table, EMERGENCY_KEYS, key)
        purposes = t.get("purposes")
        if not isinstance(purposes, list) or not purposes:
            raise self.fail(f"{key}.purposes", "must list the purposes a declared emergency stops")
        return EmergencyRule(
            purposes=frozenset(self.purpose(p, f"{key}.purposes") for p in purposes),
            source=self.source(t, key),
        )

    def recording(self, table: Any, key: str) -> tuple[Source, bool]:
        t = self.keys(table, RECORDING_KEYS, key)
        if not isinstance(t.get("all_party_consent"), bool):
            raise self.fail(f"{key}.all_party_consent", "must be true or false")
        return self.source(t, key), t["all_party_consent"]

    def abandon(self, table: Any, key: str) -> AbandonRule:
        t = self.keys(table, ABANDON_KEYS, key)

        def number(name: str, low: float, high: float, *, whole: bool = False) -> float:
            value = t.get(name)
            kinds = int if whole else int | float
            if not isinstance(value, kinds) or isinstance(value, bool) or not low < value <= high:
                what = "a whole number" if whole else "a number"
                raise self.fail(f"{key}.{name}", f"must be {what} above {low:g} and at most {high:g}")
            return value

        rate = t.get("max_rate")
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 < rate < 1:
            raise self.fail(f"{key}.max_rate", "must be a share above 0 and below 1, e.g. 0.03 for 3 %")
        max_rate = Fraction(str(rate))  # 0.03 as written, 3/100: no binary rounding at the boundary
        hours, days = t.get("window_hours"), t.get("window_days")
        if (hours is None) == (days is None):
            raise self.fail(key, "give exactly one of window_hours, window_days")
        # The counts are kept an hour a row: a window is whole hours, at most a year of them.
        window = timedelta(
            hours=number("window_hours", 0, 8784, whole=True) if hours is not None else 0,
            days=number("window_days", 0, 366, whole=True) if days is not None else 0,
        )
        # Below this many answered calls one abandoned call would already be over the limit: the smallest
        # sample where it is not (34 for 3 %) is the default, and the least a pack may set.
        least = math.ceil(1 / max_rate)
        min_answered = t.get("min_answered", least)
        if not isinstance(min_answered, int) or isinstance(min_answered, bool) or min_answered < least:
            raise self.fail(
                f"{key}.min_answered",
                f"must be a whole number of at least {least} (1 / max_rate: below it one abandoned call "
                "is over the limit and the campaign could never call again until the window slides)",
            )
        repeat = t.get("repeat_block_hours")
        purposes = t.get("purposes", [])
        if not isinstance(purposes, list):
            raise self.fail(f"{key}.purposes", "must be a list")
        return AbandonRule(
            max_rate=max_rate,
            window=window,
            agent_within=timedelta(seconds=number("agent_within_seconds", 0, 60)),
            min_ring_seconds=int(number("min_ring_seconds", 0, 300, whole=True)),
            min_answered=min_answered,
            source=self.source(t, key),
            repeat_block=timedelta(hours=number("repeat_block_hours", 0, 8784))
            if repeat is not None
            else None,
            purposes=frozenset(self.purpose(p, f"{key}.purposes") for p in purposes),
        )

    def presume(self, table: Any, key: str) -> tuple[tuple[str, ...], str]:
        t = self.keys(table, PRESUME_KEYS, key)
        zones = t.get("zones")
        if not isinstance(zones, list) or not zones:
            raise self.fail(f"{key}.zones", "must be a non-empty list of time zones")
        for zone in zones:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError, TypeError):
                raise self.fail(f"{key}.zones", f"unknown time zone {zone!r}") from None
        reason = t.get("reason")
        if not isinstance(reason, str) or not reason:
            raise self.fail(f"{key}.reason", "say why these zones are presumed")
        return tuple(zones), reason

    def layer(
        self, table: Mapping[str, Any], key: str, layer_key: str, region: str, sub: str | None
    ) -> RuleLayer:
        t = self.keys(table, LAYER_KEYS, key)
        prefix = f"{key}." if key else ""
        zones, reason = self.presume(t["presume"], f"{prefix}presume") if "presume" in t else ((), None)

        def hours(value: Any, k: str) -> CallingHours:
            return self.hours(value, k, region, sub)

        def entries(name: str, build: Callable[[Any, str], T], source: Callable[[T], Source]) -> list[T]:
            return self.dated(t[name], f"{prefix}{name}", build, source) if name in t else []

        recording = entries("recording", self.recording, lambda r: r[0])
        return dated_layer(
            layer_key,
            hours=entries("hours", hours, lambda h: h.source),
            consent=self.consent(t["consent"], f"{prefix}consent") if "consent" in t else (),
            caps=self.caps(t["caps"], f"{prefix}caps") if "caps" in t else (),
            dnc=self.dnc(t["dnc"], f"{prefix}dnc") if "dnc" in t else (),
            roaming=entries("roaming", self.roaming, lambda r: r.source),
            emergency=entries("emergency", self.emergency, lambda e: e.source),
            abandon=entries("abandon", self.abandon, lambda a: a.source),
            recording=[src for src, all_party in recording if all_party],
            presumed_zones=zones,
            presumption=reason,
        )


def default_pack_dir() -> Path:
    return Path(str(resources.files("dialguard").joinpath("rules")))


def read_packs(pack_dir: Path | None) -> dict[str, dict[str, Any]]:
    directory = pack_dir or default_pack_dir()
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise PackError(str(directory), "*.toml", "no rule packs in this directory")
    packs = {}
    for path in files:
        try:
            packs[path.name] = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise PackError(str(path), "(syntax)", str(exc)) from None
    return packs


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """An override replaces whole sections (hours, caps, presume) and single consent purposes."""
    merged = dict(base)
    for section, value in override.items():
        if section == "consent" and isinstance(value, Mapping) and isinstance(base.get("consent"), Mapping):
            merged["consent"] = {**base["consent"], **value}
        else:
            merged[section] = value
    return merged


def load_rulebook(overrides: Mapping[str, Any] | None = None, pack_dir: Path | None = None) -> RuleBook:
    """Read, validate and assemble every pack; raise :class:`PackError` on the first mistake."""
    packs = read_packs(pack_dir)
    overrides = dict(overrides or {})
    used: set[str] = set()

    def override_for(layer_key: str) -> Mapping[str, Any]:
        if layer_key in overrides:
            used.add(layer_key)
            value = overrides[layer_key]
            if not isinstance(value, Mapping):
                raise PackError("config", f"rules.overrides.{layer_key}", "must be a table")
            return value
        return {}

    countries: dict[str, RuleLayer] = {}
    subdivisions: dict[str, RuleLayer] = {}
    aliases: dict[str, str] = {}
    default: RuleLayer | None = None
    for filename, data in packs.items():
        b = _Builder(filename)
        with_override = _Builder(f"{filename} as overridden in config")
        head = b.keys(data.get("pack"), PACK_KEYS, "pack")
        country = head.get("country")
        if not isinstance(country, str) or not (
            country in ("EU", "DEFAULT") or re.fullmatch(r"[A-Z]{2}", country)
        ):
            raise b.fail("pack.country", 'must be a region code like "US", or "EU" or "DEFAULT"')
        body = {k: v for k, v in data.items() if k not in ("pack", "subdivisions")}
        members = head.get("members", [country]) if country == "EU" else [country]
        for region in members:
            layer_key = country if country != "EU" else "EU"
            override = override_for(region if country != "EU" else "EU")
            builder = with_override if override else b
            merged = _merge(body, override)
            layer = builder.layer(merged, "", layer_key, region if country != "DEFAULT" else "", None)
            if country == "DEFAULT":
                default = layer
            elif region in countries:
                raise b.fail("pack.country", f"{region} already has a pack")
            else:
                countries[region] = layer
        for alias in head.get("aliases", []):
            aliases[alias] = country
        subs = data.get("subdivisions", {})
        if not isinstance(subs, Mapping):
            raise b.fail("subdivisions", "must be a table of [subdivisions.XX] sections")
        for sub, table in subs.items():
            key = f"{country}-{sub}"
            override = override_for(key)
            builder = with_override if override else b
            subdivisions[key] = builder.layer(
                _merge(table, override), f"subdivisions.{sub}", key, country, sub
            )
    if default is None:
        raise PackError(str(pack_dir or default_pack_dir()), "DEFAULT", "a DEFAULT pack is required")
    extra: tuple[RuleLayer, ...] = ()
    if "all" in overrides:
        extra = (_Builder("config").layer(override_for("all"), "rules.overrides.all", "config", "", None),)
    unknown = set(overrides) - used
    if unknown:
        raise PackError("config", f"rules.overrides.{sorted(unknown)[0]}", "no pack layer by that name")
    version = hashlib.sha256(
        json.dumps({"packs": packs, "overrides": overrides}, sort_keys=True, default=str).encode()
    ).hexdigest()
    return RuleBook(
        countries=countries,
        subdivisions=subdivisions,
        default=default,
        version=version,
        overrides=extra,
        region_aliases=aliases,
    )
