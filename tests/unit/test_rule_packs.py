"""The shipped rule packs at their edges, and the loader's refusals. Each case names its source."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import pytest

from dialguard.numbers import NumberFacts, parse_number
from dialguard.policy.hours import allowed_at, check_hours, easter, next_allowed
from dialguard.policy.model import EffectiveRules, Purpose, RuleLayer, TimeWindow
from dialguard.rules.explain import explain
from dialguard.rules.loader import PackError, default_pack_dir, load_rulebook, read_packs
from tests.cli import dialguard

RULES = load_rulebook()


def number(raw: str) -> NumberFacts:
    parsed = parse_number(raw)
    assert isinstance(parsed, NumberFacts)
    return parsed


def at(text: str, zone: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def keys(rules: EffectiveRules) -> list[str]:
    """The layers that apply, by name (a layer with dated entries comes as several periods)."""
    return list(dict.fromkeys(layer.key for layer in rules.layers))


def layer_on(key: str, day: date) -> RuleLayer:
    """The period of a subdivision's layer in force on a day."""
    return next(period for period in RULES.subdivisions[key].periods() if period.in_force_on(day))


@pytest.mark.parametrize(
    ("raw", "local", "zone", "allowed"),
    [
        # TSR 16 CFR 310.4(c): 8:00-21:00 callee's local time (New York, 212).
        ("+12125550100", "2026-11-23 07:59", "America/New_York", False),
        ("+12125550100", "2026-11-23 08:00", "America/New_York", True),
        ("+12125550100", "2026-11-23 20:59", "America/New_York", True),
        ("+12125550100", "2026-11-23 21:00", "America/New_York", False),
        # Fla. Stat. 501.616(6): 8:00-20:00 (Miami, 305): 20:00 local is already outside.
        ("+13055550100", "2026-11-23 19:59", "America/New_York", True),
        ("+13055550100", "2026-11-23 20:00", "America/New_York", False),
        # Area code 208 spans Boise (Mountain) and Los Angeles (Pacific): 20:30 Mountain is
        # 19:30 Pacific, inside both; 7:30 Pacific is 8:30 Mountain, still outside in LA.
        ("+12085550100", "2026-11-23 20:30", "America/Boise", True),
        ("+12085550100", "2026-11-23 21:00", "America/Boise", False),
        ("+12085550100", "2026-11-23 08:30", "America/Boise", False),
        ("+12085550100", "2026-11-23 09:00", "America/Boise", True),
        # Tex. Bus. & Com. Code 301.051(a): Sunday from noon (Dallas, 214); weekdays from 9:00.
        ("+12145550100", "2026-11-22 11:59", "America/Chicago", False),
        ("+12145550100", "2026-11-22 12:00", "America/Chicago", True),
        ("+12145550100", "2026-11-23 08:00", "America/Chicago", False),
        # Pennsylvania (Philadelphia, 215): until 2026-10-17 Sunday calls 13:30-21:00 only (73 P.S. 2245(a));
        # from 2026-10-18 no Sunday calls and 09:00-19:00 on other days (as reported; the pack's two entries).
        ("+12155550100", "2026-10-11 13:29", "America/New_York", False),
        ("+12155550100", "2026-10-11 13:30", "America/New_York", True),
        ("+12155550100", "2026-10-11 20:59", "America/New_York", True),
        ("+12155550100", "2026-10-17 08:00", "America/New_York", True),
        ("+12155550100", "2026-10-17 20:59", "America/New_York", True),
        ("+12155550100", "2026-10-18 13:30", "America/New_York", False),
        ("+12155550100", "2026-10-19 08:59", "America/New_York", False),
        ("+12155550100", "2026-10-19 09:00", "America/New_York", True),
        ("+12155550100", "2026-10-19 18:59", "America/New_York", True),
        ("+12155550100", "2026-10-19 19:00", "America/New_York", False),
        ("+12155550100", "2026-11-22 14:00", "America/New_York", False),
        # Louisiana: no calls on a state holiday (Thanksgiving 2026-11-26, New Orleans 504).
        ("+15045550100", "2026-11-26 12:00", "America/Chicago", False),
        ("+15045550100", "2026-11-25 12:00", "America/Chicago", True),
        # Ala. Code 8-19C-5: Mardi Gras (2027-02-09) in Mobile (251); the stricter reading, statewide (205).
        ("+12515550100", "2027-02-09 12:00", "America/Chicago", False),
        ("+12055550100", "2027-02-09 12:00", "America/Chicago", False),
        ("+12515550100", "2027-02-08 19:59", "America/Chicago", True),
        # Ala. Admin. Code r. 770-X-5-.17(1)(b): not before 8 a.m. or after 8 p.m. (Birmingham, 205).
        ("+12055550100", "2026-11-23 07:59", "America/Chicago", False),
        ("+12055550100", "2026-11-23 08:00", "America/Chicago", True),
        ("+12055550100", "2026-11-23 19:59", "America/Chicago", True),
        ("+12055550100", "2026-11-23 20:00", "America/Chicago", False),
        ("+12515550100", "2027-02-10 08:00", "America/Chicago", True),
        # DST in the US: 2026-03-08 02:00 -> 03:00. 8:00 local exists on both sides.
        ("+12125550100", "2026-03-08 07:59", "America/New_York", False),
        ("+12125550100", "2026-03-08 08:00", "America/New_York", True),
        # PL policy window 9:00-20:00, no Sundays or holidays (11 November is Independence Day).
        ("+48601234567", "2026-11-23 08:59", "Europe/Warsaw", False),
        ("+48601234567", "2026-11-23 09:00", "Europe/Warsaw", True),
        ("+48601234567", "2026-11-11 12:00", "Europe/Warsaw", False),
        # EU DST: 2026-10-25 03:00 -> 02:00 in Berlin (the EU pack, a German mobile).
        ("+4915123456789", "2026-10-26 09:00", "Europe/Berlin", True),
        ("+4915123456789", "2026-10-25 12:00", "Europe/Berlin", False),  # a Sunday
        # A Russian mobile may be in any of 16 zones, Bucharest-like UTC+2 to Kamchatka UTC+12: the
        # 9:00-20:00 window (RU pack, company policy inside 230-FZ) holds in all of them 07:00-08:00 UTC.
        ("+79121234567", "2026-11-23 06:59", "UTC", False),
        ("+79121234567", "2026-11-23 07:00", "UTC", True),
        ("+79121234567", "2026-11-23 07:59", "UTC", True),
        ("+79121234567", "2026-11-23 08:00", "UTC", False),
        # An Australian mobile (no AU pack: the conservative default, 9:00-20:00 Monday to Saturday)
        # spans Cocos UTC+6:30 to Lord Howe UTC+11 in November: 02:30-09:00 UTC.
        ("+61412345678", "2026-11-23 02:29", "UTC", False),
        ("+61412345678", "2026-11-23 02:30", "UTC", True),
        ("+61412345678", "2026-11-23 08:59", "UTC", True),
        ("+61412345678", "2026-11-23 09:00", "UTC", False),
    ],
)
def test_calling_windows_at_their_edges(raw: str, local: str, zone: str, allowed: bool) -> None:
    rules = RULES.rules_for(number(raw))
    assert allowed_at(rules, at(local, zone)) is allowed


# Tex. Bus. & Com. Code 301.051(a): not before 9 a.m. or after 9 p.m. on a weekday or Saturday, not before
# noon or after 9 p.m. on a Sunday. 2026-11-21 is a Saturday, 11-22 a Sunday, 11-23 a Monday.
TEXAS_EDGES = [  # (local time, allowed, which edge of the window)
    ("2026-11-23 08:59", False, "opens"),
    ("2026-11-23 09:00", True, "opens"),
    ("2026-11-23 20:59", True, "closes"),
    ("2026-11-23 21:00", False, "closes"),
    ("2026-11-21 08:59", False, "opens"),
    ("2026-11-21 09:00", True, "opens"),
    ("2026-11-21 20:59", True, "closes"),
    ("2026-11-21 21:00", False, "closes"),
    ("2026-11-22 11:59", False, "opens"),
    ("2026-11-22 12:00", True, "opens"),
    ("2026-11-22 20:59", True, "closes"),
    ("2026-11-22 21:00", False, "closes"),
]


@pytest.mark.parametrize(("local", "allowed", "edge"), TEXAS_EDGES)
def test_texas_hours_on_a_texas_number(local: str, allowed: bool, edge: str) -> None:
    # Austin (512) is in Central time only.
    rules = RULES.rules_for(number("+15125550100"))
    assert keys(rules) == ["US", "US-TX"]
    assert allowed_at(rules, at(local, "America/Chicago")) is allowed


@pytest.mark.parametrize(("local", "allowed", "edge"), TEXAS_EDGES)
def test_texas_hours_bind_a_texas_lead_on_another_states_number(local: str, allowed: bool, edge: str) -> None:
    # A Chicago (312) number whose lead lives in Texas: the Texas layer applies in every zone the call may
    # reach, El Paso's Mountain time included, so the window opens at 9:00 (noon on Sunday) Mountain and
    # closes at 21:00 Central.
    rules = RULES.rules_for(number("+13125550100"), lead_subdivision="US-TX")
    assert keys(rules) == ["US", "US-IL", "US-TX"]
    assert {"America/Chicago", "America/Denver"} <= set(rules.zones)
    zone = "America/Denver" if edge == "opens" else "America/Chicago"
    assert allowed_at(rules, at(local, zone)) is allowed


def test_next_callable_is_the_next_window_opening_in_every_zone() -> None:
    rules = RULES.rules_for(number("+12085550100"))
    # 21:30 Boise on Monday: the next instant inside 8-21 in both Boise and LA is 8:00 Pacific.
    nxt = next_allowed(rules, at("2026-11-23 21:30", "America/Boise"))
    assert nxt == at("2026-11-24 08:00", "America/Los_Angeles")
    assert allowed_at(rules, nxt)


def test_next_callable_across_a_dated_change_follows_the_rule_of_that_day() -> None:
    philadelphia = RULES.rules_for(number("+12155550100"))
    # Saturday night before the change: Sunday 2026-10-11 from 13:30 under the rule then in force.
    nxt = next_allowed(philadelphia, at("2026-10-10 21:30", "America/New_York"))
    assert nxt == at("2026-10-11 13:30", "America/New_York")
    # The Saturday night just before it: Sunday 2026-10-18 is already under the ban, and Monday opens at 9.
    nxt = next_allowed(philadelphia, at("2026-10-17 21:30", "America/New_York"))
    assert nxt == at("2026-10-19 09:00", "America/New_York")


def test_a_rule_takes_effect_at_midnight_in_the_callees_zone_not_in_utc() -> None:
    philadelphia = RULES.rules_for(number("+12155550100"))
    # 2026-10-18 00:30 UTC is still Saturday 20:30 in Philadelphia: the Saturday window then in force
    # (8-21) holds; had the date been taken in UTC, the 9-19 window from 2026-10-18 would have blocked it.
    saturday = check_hours(philadelphia, datetime(2026, 10, 18, 0, 30, tzinfo=UTC))
    assert saturday.passed
    sunday = check_hours(philadelphia, at("2026-10-18 14:00", "America/New_York"))
    assert not sunday.passed
    assert sunday.detail["failed_layer"] == "US-PA"
    assert sunday.detail["source"]["effective"] == "2026-10-18"  # type: ignore[index,call-overload]
    assert sunday.detail["windows"] == []


def test_state_layer_applies_with_the_lead_state() -> None:
    # A 212 (New York) number whose lead lives in Florida: Florida's 20:00 end applies too.
    rules = RULES.rules_for(number("+12125550100"), lead_subdivision="US-FL")
    assert keys(rules) == ["US", "US-NY", "US-FL"]
    assert not allowed_at(rules, at("2026-11-23 20:30", "America/New_York"))


def test_zones_sharing_no_window_fall_back_to_the_pack_presumption() -> None:
    # With a 10:00-18:00 window the 16 zones of a Russian mobile share no instant at all: the RU pack's
    # [presume] (Moscow) decides, and the evidence keeps the candidate zones and says why.
    narrow = load_rulebook({"RU": {"hours": {"source": "test", "all": ["10:00-18:00"]}}})
    rules = narrow.rules_for(number("+79121234567"))
    assert next_allowed(rules, at("2026-11-23 12:00", "Europe/Moscow")) is None
    inside = check_hours(rules, at("2026-11-23 12:00", "Europe/Moscow"))
    assert inside.passed
    assert inside.detail["zones"] == ["Europe/Moscow"]
    assert inside.detail["no_common_window"] is True
    assert len(inside.detail["candidate_zones"]) == 16  # type: ignore[arg-type]
    assert "Moscow" in str(inside.detail["zone_note"])
    after = check_hours(rules, at("2026-11-23 18:00", "Europe/Moscow"))
    assert not after.passed
    assert after.retry_after == at("2026-11-24 10:00", "Europe/Moscow")


def test_zones_sharing_no_window_fall_back_to_the_leads_own_state() -> None:
    # A Guam number (UTC+10) whose lead lives in New York: under a 10:00-14:00 window the two zones
    # never overlap, so the lead's own state (the fact the dialer gave) decides, not the pack's coasts.
    narrow = load_rulebook({"US": {"hours": {"source": "test", "all": ["10:00-14:00"]}}})
    rules = narrow.rules_for(number("+16715550100"), lead_subdivision="US-NY")
    assert set(rules.zones) == {"Pacific/Guam", "America/New_York"}
    judged = check_hours(rules, at("2026-11-23 11:00", "America/New_York"))
    assert judged.passed
    assert judged.detail["zones"] == ["America/New_York"]
    assert "US-NY" in str(judged.detail["zone_note"])
    assert not check_hours(rules, at("2026-11-23 14:00", "America/New_York")).passed


def test_zones_that_share_a_window_keep_the_all_zones_rule() -> None:
    # 06:30 UTC: inside 9-20 in Kamchatka and Moscow but not in Bucharest-like UTC+2 (08:30): blocked,
    # and no presumption may rescue it, since a common window exists later that morning.
    rules = RULES.rules_for(number("+79121234567"))
    judged = check_hours(rules, at("2026-11-23 06:30", "UTC"))
    assert not judged.passed
    assert "no_common_window" not in judged.detail
    assert judged.retry_after == at("2026-11-23 07:00", "UTC")


def test_guernsey_numbers_are_judged_by_the_gb_pack() -> None:
    assert RULES.rules_for(number("+447911123456")).layers[0].key == "GB"


def test_every_rule_names_its_source() -> None:
    named = [*RULES.countries.values(), *RULES.subdivisions.values(), RULES.default]
    for layer in [period for named_layer in named for period in named_layer.periods()]:
        if layer.calling_hours is not None:
            assert layer.calling_hours.source.citation
        for rule in layer.consent.values():
            assert rule.source.citation
        for cap in layer.frequency_caps:
            assert cap.source.citation
        for listed in layer.dnc_lists:
            assert listed.source.citation
        if layer.roaming is not None:
            assert layer.roaming.source.citation
        if layer.all_party_consent is not None:
            assert layer.all_party_consent.citation
        if layer.emergency is not None:
            assert layer.emergency.source.citation


XX = '[pack]\ncountry = "XX"\n'
W = 'source = "s"\nall = ["08:00-21:00"]\n'  # the body of an hours entry
H = "[hours]\n" + W


def write_packs(tmp_path: Path, extra: str, name: str = "XX.toml") -> Path:
    (tmp_path / "DEFAULT.toml").write_text((default_pack_dir() / "DEFAULT.toml").read_text())
    (tmp_path / name).write_text(extra)
    return tmp_path


@pytest.mark.parametrize(
    ("pack", "key", "why"),
    [
        (XX + '[hours\n', "(syntax)", ""),
        (XX + '[emergency]\npurposes = ["marketing"]\n', "emergency.source", "legal source"),
        (XX + '[emergency]\npurposes = []\nsource = "s"\n', "emergency.purposes", "must list"),
        (
            XX + '[hours]\nsource = "s"\nall = ["08:00-21:00"]\nholidays = []\n'
            'moving_holidays = ["easter_egg"]\n',
            "hours.moving_holidays",
            "mardi_gras",
        ),
        (XX + '[hours]\nsource = "s"\nall = ["08:00-21:00"]\nlunch = []\n', "hours.lunch", "unknown key"),
        (XX + '[hours]\nsource = "s"\nall = ["21:00-08:00"]\n', "hours.all", "ends before it starts"),
        (XX + '[hours]\nsource = "s"\nall = ["8-21"]\n', "hours.all", "HH:MM-HH:MM"),
        (XX + '[hours]\nall = ["08:00-21:00"]\n', "hours.source", "legal source"),
        (XX + '[presume]\nzones = ["Mars/Olympus"]\nreason = "r"\n', "presume.zones", "unknown time zone"),
        (
            XX + '[hours]\nsource = "s"\nall = ["08:00-21:00"]\nholidays = []\n'
            'holiday_calendar = "QQ"\n',
            "hours.holiday_calendar",
            "no holiday calendar",
        ),
        (XX + '[consent.telepathy]\nrequired = true\nsource = "s"\n', "consent.telepathy", "unknown key"),
        (XX + '[[caps]]\nmax_calls = 3\nsource = "s"\n', "caps[0]", "exactly one of"),
        ('[pack]\ncountry = "Narnia"\n', "pack.country", "region code"),
        (XX + '[[dnc]]\nlist = "US National"\nsource = "s"\n', "dnc[0].list", "list name"),
        (XX + '[[dnc]]\nlist = "x"\nmax_age_days = 0\nsource = "s"\n', "dnc[0].max_age_days", "≥ 1"),
        (
            XX + '[[dnc]]\nlist = "x"\nentry_lifetime_days = "3y"\nsource = "s"\n',
            "dnc[0].entry_lifetime_days",
            "≥ 1",
        ),
        (
            XX + '[[dnc]]\nlist = "x"\nexempt_kinds = ["hug"]\nsource = "s"\n',
            "dnc[0].exempt_kinds",
            "consent kinds",
        ),
        (XX + '[[dnc]]\nlist = "x"\n', "dnc[0].source", "legal source"),
        # Dated entries: an until before the effective date, entries whose days overlap, or none at all.
        (XX + H + 'effective = 2026-10-18\nuntil = 2026-10-17\n', "hours.until", "before it takes effect"),
        (XX + '[[hours]]\n' + W + 'until = 2026-10-18\n[[hours]]\n' + W + 'effective = 2026-10-18\n',
         "hours[1]", "overlap hours[0]"),
        (XX + '[[hours]]\n' + W + 'effective = 2026-10-18\n[[hours]]\n' + W + 'until = 2026-12-31\n',
         "hours[0]", "overlap hours[1]"),
        (XX + '[[hours]]\n' + W + '[[hours]]\n' + W + 'effective = 2026-10-18\n', "hours[1]", "overlap"),
        ('hours = []\n' + XX, "hours", "at least one"),
        (XX + H + 'until = 2026-10-17T00:00:00\n', "hours.until", "TOML date"),
        (XX + '[[consent.marketing]]\nrequired = true\nsource = "s"\n'
         '[[consent.marketing]]\nrequired = false\nsource = "s"\neffective = 2027-01-01\n',
         "consent.marketing[1]", "overlap consent.marketing[0]"),
        (XX + '[[dnc]]\nlist = "x"\nsource = "s"\nuntil = 2026-12-31\n'
         '[[dnc]]\nlist = "y"\nsource = "s"\n[[dnc]]\nlist = "x"\nsource = "s"\neffective = 2026-12-31\n',
         "dnc[2]", "overlap dnc[0]"),
        (XX + '[[caps]]\nmax_calls = 3\nperiod_hours = 24\nsource = "s"\neffective = 2027-01-02\n'
         'until = 2027-01-01\n', "caps[0].until", "before it takes effect"),
    ],
)  # fmt: skip
def test_a_bad_pack_stops_start_up_naming_file_and_key(tmp_path: Path, pack: str, key: str, why: str) -> None:
    with pytest.raises(PackError) as err:
        load_rulebook(pack_dir=write_packs(tmp_path, pack))
    assert err.value.where.endswith("XX.toml")
    assert err.value.key == key
    assert why in err.value.reason


def test_dated_entries_that_take_turns_are_accepted(tmp_path: Path) -> None:
    pack = (
        XX + "[[hours]]\n" + W + "until = 2026-10-17\n"
        '[[hours]]\nsource = "s2"\nall = ["09:00-19:00"]\neffective = 2026-10-18\n'
        '[[caps]]\nmax_calls = 3\nperiod_hours = 24\nsource = "c"\neffective = 2026-11-01\n'
    )
    book = load_rulebook(pack_dir=write_packs(tmp_path, pack))
    layer = book.countries["XX"]
    assert [(p.since, p.until) for p in layer.periods()] == [
        (None, date(2026, 10, 17)),
        (date(2026, 10, 18), date(2026, 10, 31)),
        (date(2026, 11, 1), None),
    ]
    assert [p.calling_hours.source.citation for p in layer.periods() if p.calling_hours] == ["s", "s2", "s2"]
    assert [len(p.frequency_caps) for p in layer.periods()] == [0, 0, 1]


def test_every_shipped_pack_loads_and_its_periods_take_turns() -> None:
    assert {f.removesuffix(".toml") for f in read_packs(None)} >= {
        "US",
        "GB",
        "PL",
        "RU",
        "CN",
        "EU",
        "DEFAULT",
    }
    named = [*RULES.countries.values(), *RULES.subdivisions.values(), RULES.default]
    for layer in named:
        periods = layer.periods()
        assert periods[0].since is None and periods[-1].until is None, layer.key
        for before, after in pairwise(periods):
            assert before.until is not None and after.since == before.until + timedelta(days=1), layer.key
        for period in periods:  # each entry in a period is in force on every day of it
            for source in [r.source for r in period.consent.values()] + (
                [period.calling_hours.source] if period.calling_hours else []
            ):
                assert source.in_force_on(period.since or date.min), layer.key
                assert period.until is None or source.in_force_on(period.until), layer.key


def test_explain_at_names_the_entry_applied_and_the_ones_not_in_force() -> None:
    philadelphia = number("+12155550100")
    before = explain(RULES, philadelphia, at("2026-10-11 14:00", "America/New_York"), Purpose.MARKETING)
    assert "US-PA: Sunday 2026-10-11 14:00 America/New_York -> windows 13:30-21:00: inside" in before
    assert "until 2026-10-17" in before.split("US-PA: Sunday")[1].splitlines()[0]
    assert "not in force on 2026-10-11:" in before
    assert "US-PA hours: not yet in force (from 2026-10-18)" in before
    after = explain(RULES, philadelphia, at("2026-10-18 14:00", "America/New_York"), Purpose.MARKETING)
    assert "US-PA: Sunday 2026-10-18 14:00 America/New_York -> windows no calls: OUTSIDE" in after
    assert "from 2026-10-18" in after.split("US-PA: Sunday")[1].splitlines()[0]
    assert "US-PA hours: no longer in force (ended 2026-10-17)" in after
    assert "hours: blocked; next callable 2026-10-19T13:00:00+00:00" in after  # 09:00 Eastern


def test_overrides_change_the_layer_and_the_version() -> None:
    relaxed = load_rulebook({"US-FL": {"hours": {"source": "counsel", "all": ["08:00-21:00"]}}})
    assert relaxed.version != RULES.version
    rules = relaxed.rules_for(number("+13055550100"))
    assert allowed_at(rules, at("2026-11-23 20:30", "America/New_York"))


def test_an_override_of_no_layer_is_refused() -> None:
    with pytest.raises(PackError, match=r"rules\.overrides\.US-ZZ"):
        load_rulebook({"US-ZZ": {"hours": {"source": "x", "all": ["08:00-20:00"]}}})


# What RULES.md names, jurisdiction by jurisdiction: each must be in the shipped packs (issue 3, "Done when").
SUNDAY = 6
US_STATE_HOURS = {  # subdivision: (weekday window, Sunday window or None for no Sunday calls)
    "US-FL": ("08:00-20:00", "08:00-20:00"),  # 8:00-20:00
    "US-OK": ("08:00-20:00", "08:00-20:00"),
    "US-MD": ("08:00-20:00", "08:00-20:00"),
    "US-TX": ("09:00-21:00", "12:00-21:00"),  # weekdays and Saturday 09:00-21:00, Sunday 12:00-21:00
    "US-KY": ("10:00-21:00", "10:00-21:00"),  # from 10:00
    "US-PA": ("09:00-19:00", None),  # as reported from 2026-10-18 (before it: Sunday 13:30-21:00)
    "US-AL": ("08:00-20:00", None),  # no Sunday calls
    "US-LA": ("08:00-20:00", None),
    "US-MS": ("08:00-20:00", None),
}
HOLIDAY_BANS = ("US-AL", "US-LA", "US-NE", "US-PA", "US-RI", "US-UT")
ALL_PARTY_RECORDING = ("CA", "CT", "FL", "IL", "MD", "MA", "MT", "NH", "PA", "WA")
EU_MEMBERS = {
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
    "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
}  # fmt: skip


def labels(windows: tuple[TimeWindow, ...]) -> str | None:
    return " ".join(w.label() for w in windows) or None


@pytest.mark.parametrize(("key", "hours"), sorted(US_STATE_HOURS.items()))
def test_every_state_window_in_rules_md_is_in_the_us_pack(key: str, hours: tuple[str, str | None]) -> None:
    layer = layer_on(key, date(2026, 11, 23))
    assert layer.calling_hours is not None
    weekdays = layer.calling_hours.weekdays
    assert (labels(weekdays[0]), labels(weekdays.get(SUNDAY, ()))) == hours


def test_every_state_cap_consent_list_and_holiday_rule_in_rules_md_is_in_the_us_pack() -> None:
    us = RULES.countries["US"]
    assert [(c.max_calls, c.period.days, c.per_campaign) for c in us.frequency_caps] == [
        (7, 7, True)
    ]  # Reg F
    assert [(d.list_name, d.max_age_days) for d in us.dnc_lists] == [("us_national", 31)]
    for key in ("US-FL", "US-OK", "US-MD"):  # 3 / 24 h; prior express written consent for automated calls
        layer = RULES.subdivisions[key]
        assert [(c.max_calls, c.period.days) for c in layer.frequency_caps] == [(3, 1)]
        assert layer.consent[Purpose.MARKETING].kinds == {"express_written"}
    assert [(d.list_name, d.entry_lifetime_days) for d in RULES.subdivisions["US-TX"].dnc_lists] == [
        ("us_tx", 1095)
    ]
    for key in HOLIDAY_BANS:
        hours = RULES.subdivisions[key].calling_hours
        assert hours is not None and hours.holidays == () and hours.holiday_country == "US", key
    new_york = RULES.subdivisions["US-NY"].emergency  # no calls into an area under a declared emergency
    assert new_york is not None and new_york.purposes == {Purpose.MARKETING}
    alabama = RULES.subdivisions["US-AL"].calling_hours  # Mardi Gras in Mobile and Baldwin counties
    assert alabama is not None and alabama.moving_holidays == {"mardi_gras"}
    assert {k for k, layer in RULES.subdivisions.items() if layer.all_party_consent} == {
        f"US-{s}" for s in ALL_PARTY_RECORDING
    }


def test_every_country_in_rules_md_has_its_pack() -> None:
    gb, pl, ru = (RULES.countries[c] for c in ("GB", "PL", "RU"))
    assert [(d.list_name, d.max_age_days) for d in gb.dnc_lists] == [("uk_tps", 28), ("uk_ctps", None)]
    assert {alias: RULES.region_aliases[alias] for alias in ("GG", "JE", "IM")} == dict.fromkeys(
        ("GG", "JE", "IM"), "GB"
    )
    assert pl.consent[Purpose.MARKETING].required and pl.roaming is not None
    assert Purpose.MARKETING in pl.roaming.required_for
    assert ru.consent[Purpose.MARKETING].required
    assert "CN" in RULES.countries
    assert EU_MEMBERS.issubset(RULES.countries)  # the EU default, or a member's own pack
    assert RULES.default.calling_hours is not None  # every other country: the conservative default


def test_easter_and_mardi_gras_agree_with_the_holidays_package_for_a_century() -> None:
    for year in range(2000, 2100):
        louisiana = holidays.country_holidays("US", subdiv="LA", years=year)
        mardi_gras = next(day for day, name in louisiana.items() if name == "Mardi Gras")
        assert easter(year) - timedelta(days=47) == mardi_gras, year


async def test_rules_explain_at_on_the_command_line_shows_the_entry_in_force() -> None:
    # No database is opened for an explanation without --campaign: the DSN is never used.
    args = ("rules", "explain", "+12155550100", "--purpose", "marketing")
    code, out, err = await dialguard(
        "postgresql://unused@127.0.0.1:9/none", *args, "--at", "2026-10-11T14:00-04:00"
    )
    assert code == 0, err
    assert "windows 13:30-21:00: inside" in out
    assert "US-PA hours: not yet in force (from 2026-10-18)" in out
    code, out, err = await dialguard(
        "postgresql://unused@127.0.0.1:9/none", *args, "--at", "2026-10-18T14:00-04:00"
    )
    assert code == 0, err
    assert "windows no calls: OUTSIDE" in out
    assert "US-PA hours: no longer in force (ended 2026-10-17)" in out


def test_rules_show_names_the_countries_a_shared_layer_serves() -> None:
    """Issue 11: `rules show` printed 26 sections all headed "EU:" and no country."""
    from dialguard.rules.explain import show

    text = show(load_rulebook())
    headings = [line for line in text.splitlines() if line.startswith("EU")]
    assert len(headings) == 1 and "DE" in headings[0] and "FR" in headings[0]
