"""Emergency and short service numbers (issue 10, item 13, the gate's side): one list, the dialplan's.

The dialplan ([dialguard-emergency] in asterisk-conf/extensions_dialguard.conf) dials them before any
check; numbers.EMERGENCY_NUMBERS is the gate's copy, and these tests hold the two equal, number for
number, and the digits each is dialled as.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialguard.numbers import EMERGENCY_NUMBERS, NumberFacts, emergency_number, is_emergency, parse_number
from tests.dialplan_shipped import CONF, PHONES, emergency_extensions, installed
from tests.fakes.dialplan import Channel, Dialplan, call, load_dialplan

SHIPPED = emergency_extensions(load_dialplan(CONF))
SITE_REGIONS = ["US", "GB", "PL", "CN"]


@pytest.fixture(scope="module")
def dp(tmp_path_factory: pytest.TempPathFactory) -> Dialplan:
    return installed(tmp_path_factory.mktemp("asterisk"))


def dialled_by_the_dialplan(dp: Dialplan, number: str) -> str:
    """The digits the emergency dial string carries when a phone dials ``number``."""
    dials: list[str] = []

    def trunk(dialstring: str, chan: Channel) -> str:
        dials.append(dialstring)
        return "ANSWER"

    call(dp, PHONES, number, dial=trunk)
    g = dp.globals
    prefix, suffix = g["DIALGUARD_EMERGENCY_DIAL_PREFIX"], g["DIALGUARD_EMERGENCY_DIAL_SUFFIX"]
    assert len(dials) == 1 and dials[0].startswith(prefix) and dials[0].endswith(suffix), dials
    return dials[0][len(prefix) : len(dials[0]) - len(suffix)]


def test_the_gates_list_is_the_dialplans_list() -> None:
    # Every number both with and without the outside-line 9, and nothing else, on either side.
    assert sorted(SHIPPED) == sorted([*EMERGENCY_NUMBERS, *(f"9{n}" for n in EMERGENCY_NUMBERS)])
    assert len(SHIPPED) == len(set(SHIPPED))


@pytest.mark.parametrize("number", SHIPPED)
@pytest.mark.parametrize("region", SITE_REGIONS)
def test_each_is_an_emergency_for_the_gate_on_any_site_dialled_as_the_dialplan_dials_it(
    dp: Dialplan, number: str, region: str
) -> None:
    # The dialplan dials them whatever the site's country: so does the gate, lest a route that checks
    # every number block one the dialplan would have dialled.
    found = emergency_number(number, region=region, dial_prefix="9")
    assert found is not None
    assert found.raw == number
    assert found.digits == dialled_by_the_dialplan(dp, number)
    assert is_emergency(number, region=region)


@pytest.mark.parametrize(
    ("raw", "digits", "service"),
    [
        (" 911 ", "911", "US: emergency"),
        ("9-911", "911", "US: emergency"),
        ("(911)", "911", "US: emergency"),
        ("+1911", "911", "US: emergency"),  # a phone that writes every number as E.164
        ("+1 911", "911", "US: emergency"),
        ("+44 999", "999", "GB: emergency"),
        ("+48 112", "112", "emergency (GSM, EU and most of the world)"),
        ("+61000", "000", "AU: emergency"),
        ("999", "999", "GB: emergency; PL: ambulance"),  # on a US site: every country's service
    ],
)
def test_the_forms_a_number_may_take(raw: str, digits: str, service: str) -> None:
    found = emergency_number(raw, region="US", dial_prefix="9")
    assert found is not None and (found.digits, found.service) == (digits, service)


def test_the_sites_country_names_the_service() -> None:
    found = emergency_number("999", region="PL")
    assert found is not None and found.service == "PL: ambulance"


@pytest.mark.parametrize(
    "raw",
    [
        "411", "611", "311", "211", "511", "811",  # directory and N11 services: the dialplan checks them
        "12", "1", "", "91", "99", "9",
        "1911", "01911", "00911", "011911",  # not what the dialplan dials
        "+1999", "+1110", "+44911", "+4112", "+0911",  # a country where the number is no service
        "9112345678", "1121234567", "9990000000", "+1 911 555 0100",  # phone numbers that start alike
        "911a", "*911", "9+911",
    ],
)  # fmt: skip
def test_other_short_numbers_and_look_alikes_are_not_emergency_numbers(raw: str) -> None:
    assert emergency_number(raw, region="US", dial_prefix="9") is None
    assert not is_emergency(raw)


def test_the_outside_line_prefix_is_the_sites() -> None:
    assert is_emergency("0911", dial_prefix="0")
    assert not is_emergency("9911", dial_prefix="0")
    assert not is_emergency("9911", dial_prefix="")


@given(st.from_regex(r"\+?[0-9 ()\-]{0,20}", fullmatch=True))
def test_no_valid_phone_number_is_taken_for_an_emergency_number(raw: str) -> None:
    parsed = parse_number(raw, default_region="US", dial_prefix="")
    if isinstance(parsed, NumberFacts):
        assert not is_emergency(raw, dial_prefix="")
