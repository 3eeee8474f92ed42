"""numbers.parse_lead_state: the one reading of a lead's own state, by the number's country.

Issue 10, item 5: every entry point (CLI, HTTP, FastAGI, scrub) reads it through this function.
"""

from __future__ import annotations

import re

import holidays
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialguard.numbers import InvalidLeadState, NumberFacts, parse_lead_state, parse_number


def number(raw: str) -> NumberFacts:
    parsed = parse_number(raw)
    assert isinstance(parsed, NumberFacts), parsed
    return parsed


NY = number("+1 212 555 0142")
TORONTO = number("+1 416 555 0100")
WARSAW = number("+48 22 123 45 67")
LONDON = number("+44 20 7946 0018")
MOSCOW = number("+7 495 123 4567")
SAN_JUAN = number("+1 787 555 0100")  # Puerto Rico: its own region in the +1 plan


@pytest.mark.parametrize("typed", ["FL", "fl", "Fl", " us-fl ", "US-FL", "Florida", "FLORIDA", "  florida\t"])
def test_the_forms_users_type_read_alike(typed: str) -> None:
    assert parse_lead_state(typed, NY) == "US-FL"


@pytest.mark.parametrize(
    ("typed", "num", "read"),
    [
        ("new   york", NY, "US-NY"),  # blanks inside a name are blanks
        ("CA", NY, "US-CA"),  # a US number's CA is California, never Canada
        ("District of Columbia", NY, "US-DC"),
        ("ON", TORONTO, "CA-ON"),
        ("Québec", TORONTO, "CA-QC"),
        ("quebec", TORONTO, "CA-QC"),
        ("Nouveau-Brunswick", TORONTO, "CA-NB"),  # a name with a dash is not taken for an ISO code
        ("CA-ON", NY, "CA-ON"),  # the ISO form names its country: any country of the number's plan
        ("US-FL", TORONTO, "US-FL"),
        ("US-FL", SAN_JUAN, "US-FL"),
        ("14", WARSAW, "PL-14"),  # other countries: ISO 3166-2, with their names
        ("pl-14", WARSAW, "PL-14"),
        ("Mazowieckie", WARSAW, "PL-14"),
        ("Scotland", LONDON, "GB-SCT"),
        ("GB-SCT", LONDON, "GB-SCT"),
    ],
)
def test_codes_iso_codes_and_names_of_the_numbers_country(typed: str, num: NumberFacts, read: str) -> None:
    assert parse_lead_state(typed, num) == read


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_no_lead_state_is_none(blank: str | None) -> None:
    assert parse_lead_state(blank, NY) is None


@pytest.mark.parametrize(
    ("typed", "num"),
    [
        ("US-XX", NY),
        ("XX", NY),
        ("Floridaa", NY),
        ("ON", NY),  # a province, but the number is not Canadian: write CA-ON
        ("FL", TORONTO),
        ("US FL", NY),
        ("US_FL", NY),
        ("US-FL", WARSAW),  # another numbering plan's state
        ("PL-14", NY),
        ("Moscow", MOSCOW),  # no subdivisions known for RU
        ("FL", SAN_JUAN),  # a bare code reads in the number's own country, and PR has none
    ],
)
def test_anything_else_is_an_error_naming_the_value_and_the_forms(typed: str, num: NumberFacts) -> None:
    read = parse_lead_state(typed, num)
    assert isinstance(read, InvalidLeadState), read
    assert read.raw == typed and read.country == num.region
    assert repr(typed) in read.reason and "\n" not in read.reason


def test_the_error_shows_the_forms_on_the_numbers_own_state() -> None:
    read = parse_lead_state("US-XX", NY)
    assert isinstance(read, InvalidLeadState)
    assert read.reason == (
        "lead state 'US-XX' is not a state or province of US: "
        "write its code (NY), its ISO 3166-2 code (US-NY) or its name (New York)"
    )
    read = parse_lead_state("Moscow", MOSCOW)
    assert isinstance(read, InvalidLeadState)
    assert read.reason == (
        "lead state 'Moscow': no states or provinces are known for a RU number; leave it out"
    )


@pytest.mark.parametrize(("country", "num"), [("US", NY), ("CA", TORONTO), ("PL", WARSAW), ("GB", LONDON)])
def test_every_code_and_name_the_data_holds_is_read(country: str, num: NumberFacts) -> None:
    # The names come from data (the holidays package's ISO 3166-2 subdivisions), not from a hand list.
    calendar = holidays.country_holidays(country)
    assert calendar.subdivisions
    for code in calendar.subdivisions:
        assert parse_lead_state(code, num) == f"{country}-{code}"
        assert parse_lead_state(f"{country}-{code}".lower(), num) == f"{country}-{code}"
    for code, names in calendar.get_subdivision_aliases().items():
        for name in names:
            assert parse_lead_state(name.upper(), num) == f"{country}-{code}", name


@given(st.text(max_size=30))
def test_any_value_gives_a_state_or_an_error_never_an_exception(typed: str) -> None:
    read = parse_lead_state(typed, NY)
    assert read is None or isinstance(read, InvalidLeadState) or re.fullmatch(r"[A-Z]{2}-[A-Z0-9]{1,3}", read)
