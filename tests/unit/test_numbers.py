"""What dialplans pass, read as E.164 — or refused with a reason an administrator can act on."""

from __future__ import annotations

import doctest

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from phonenumbers import timezone

import dialguard.numbers
from dialguard.numbers import (
    InvalidNumber,
    LineType,
    NumberFacts,
    parse_number,
    parse_wildcard,
    region_and_type,
    zones_for_subdivision,
)


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+48 601 234 567", "US", "+48601234567"),
        ("0048601234567", "US", "+48601234567"),  # 00 international prefix, even from a US PBX
        ("011 48 601 234 567", "US", "+48601234567"),  # NANP international prefix
        ("601 234 567", "PL", "+48601234567"),  # national format in the default region
        ("9601234567", "PL", "+48601234567"),  # outside-line 9, stripped because needed
        ("9 1 (212) 555-0142", "US", "+12125550142"),
        ("(212) 555-0142", "US", "+12125550142"),
        ("212.555.0142", "US", "+12125550142"),
    ],
)
def test_dialplan_formats(raw: str, region: str, e164: str) -> None:
    parsed = parse_number(raw, default_region=region)
    assert isinstance(parsed, NumberFacts) and parsed.e164 == e164


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("12", "too short"),
        ("call me", "characters other than digits"),
        ("+1 212 555 01", "too short for +1"),
        ("+999 1234567", "unknown country code"),
        ("4" * 60, "longer than 40 characters"),
        ("+48+601234567", "may only lead"),
        ("212555014\x00", "characters other than digits"),
    ],
)
def test_bad_numbers_say_why(raw: str, why: str) -> None:
    parsed = parse_number(raw)
    assert isinstance(parsed, InvalidNumber)
    assert why in parsed.reason


def test_split_area_code_keeps_every_zone_and_its_state() -> None:
    parsed = parse_number("+1 208 555 0100")
    assert isinstance(parsed, NumberFacts)
    assert parsed.subdivision == "US-ID"
    assert set(parsed.time_zones) == {"America/Boise", "America/Los_Angeles"}
    assert parsed.line_type is LineType.FIXED_LINE_OR_MOBILE and parsed.possibly_mobile


def test_subdivision_zones_for_a_lead_state() -> None:
    assert set(zones_for_subdivision("US-TX")) == {"America/Chicago", "America/Denver"}
    assert zones_for_subdivision("US-ZZ") == ()


def test_masked_for_logs() -> None:
    parsed = parse_number("+48601234567")
    assert isinstance(parsed, NumberFacts) and parsed.masked() == "+48…67"


@given(st.text(max_size=80))
def test_any_input_gives_an_answer_never_an_exception(raw: str) -> None:
    assert isinstance(parse_number(raw), NumberFacts | InvalidNumber)


def test_docstring_examples() -> None:
    assert doctest.testmod(dialguard.numbers).failed == 0


@pytest.mark.parametrize(
    ("raw", "wildcard"),
    [
        ("+1212*", "+1212*"),
        ("+1 (212) 55-*", "+121255*"),
        ("+0212*", None),  # no country code starts with 0 (the database refuses it too)
        ("1212*", None),  # the + says the digits are international
        ("+1212", None),  # no *: a number, not a wildcard
        ("+*", None),
        ("+1234567890123456*", None),  # longer than any E.164 prefix
    ],
)
def test_wildcards_for_the_do_not_call_lists(raw: str, wildcard: str | None) -> None:
    parsed = parse_wildcard(raw)
    assert (parsed if isinstance(parsed, str) else None) == wildcard


def _example_numbers() -> list[str]:
    """Every region's example number of every type phonenumbers has one for, and a few digits off them."""
    found = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(11):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
                found += [e164, e164[:-1], e164 + "0"]
    return sorted(set(found))


def test_validity_type_and_zones_are_what_phonenumbers_says_however_few_times_we_ask() -> None:
    """parse_number types a number once (issue 15) instead of is_valid_number, number_type,
    region_code_for_number and time_zones_for_number each matching the ranges again: the answers must
    not change."""
    examples = _example_numbers()
    assert len(examples) > 1000
    for e164 in examples:
        number = phonenumbers.parse(e164)
        facts = parse_number(e164)
        assert isinstance(facts, NumberFacts) == phonenumbers.is_valid_number(number), e164
        if isinstance(facts, NumberFacts):
            zones = tuple(z for z in timezone.time_zones_for_number(number) if z != "Etc/Unknown")
            assert facts.time_zones == zones, e164
            assert facts.region == phonenumbers.region_code_for_number(number), e164
            assert facts.line_type == dialguard.numbers._LINE_TYPES[phonenumbers.number_type(number)], e164


@pytest.mark.parametrize("helper", ["phonenumbers'", "none"])
def test_region_and_type_in_one_pass_answer_as_the_two_public_calls(
    helper: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """region_and_type replaces region_code_for_number then number_type (issue 15): the same answers for
    every example number and its neighbours, valid or not, in plans of one country and of many; also
    with a phonenumbers release that no longer has the private helper it types with."""
    if helper == "none":
        monkeypatch.setattr(dialguard.numbers, "_number_type_helper", None)
    for e164 in _example_numbers():
        number = phonenumbers.parse(e164)
        expected = (phonenumbers.region_code_for_number(number) or "ZZ", phonenumbers.number_type(number))
        assert region_and_type(number) == expected, e164
