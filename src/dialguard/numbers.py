"""What a dialplan passes, turned into E.164 with its region, time zones and line type — or a clear no.

>>> parse_number("+48 601 234 567").e164
'+48601234567'
>>> parse_number("9 1 (212) 555-1234").subdivision
'US-NY'
>>> parse_number("12").reason
'too short to be a phone number'

The daemon never loads phonenumbers' geocoder (about 100 MB resident); the US state or Canadian
province of an area code comes from ``data/nanp_area_codes.json``, made by ``tools/make_area_codes.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources

import phonenumbers
from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    PhoneMetadata,
    PhoneNumberType,
    phonenumberutil,
    timezone,
)

# Private (the Java library's getNumberTypeHelper): a release without it gets the two public calls.
_number_type_helper = getattr(phonenumberutil, "_number_type_helper", None)

MAX_INPUT_CHARS = 40  # the longest E.164 number is 15 digits; anything far beyond is not a number
ALLOWED = re.compile(r"[0-9+\-\s().\/]+")
UNKNOWN_ZONE = "Etc/Unknown"


class LineType(StrEnum):
    MOBILE = "mobile"
    FIXED_LINE = "fixed_line"
    FIXED_LINE_OR_MOBILE = "fixed_line_or_mobile"  # every US/CA number: the plan does not tell them apart
    TOLL_FREE = "toll_free"
    PREMIUM_RATE = "premium_rate"
    SHARED_COST = "shared_cost"
    VOIP = "voip"
    PERSONAL_NUMBER = "personal_number"
    PAGER = "pager"
    UAN = "uan"
    VOICEMAIL = "voicemail"
    UNKNOWN = "unknown"


_LINE_TYPES = {
    PhoneNumberType.MOBILE: LineType.MOBILE,
    PhoneNumberType.FIXED_LINE: LineType.FIXED_LINE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE: LineType.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.TOLL_FREE: LineType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE: LineType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST: LineType.SHARED_COST,
    PhoneNumberType.VOIP: LineType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER: LineType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER: LineType.PAGER,
    PhoneNumberType.UAN: LineType.UAN,
    PhoneNumberType.VOICEMAIL: LineType.VOICEMAIL,
}


@dataclass(frozen=True, slots=True)
class NumberFacts:
    e164: str
    country_code: int
    region: str  # ISO 3166 alpha-2 ("US", "PL", "GG"), or "001" for non-geographic numbers
    subdivision: str | None  # "US-TX", "CA-ON" from the area code; None elsewhere
    time_zones: tuple[str, ...]  # empty when the numbering plan does not say
    line_type: LineType

    @property
    def possibly_mobile(self) -> bool:
        """Mobile, or a plan (NANP) where fixed and mobile share ranges: treat as mobile unless told."""
        return self.line_type in (LineType.MOBILE, LineType.FIXED_LINE_OR_MOBILE, LineType.UNKNOWN)

    def masked(self) -> str:
        """For logs: country code and last two digits only."""
        return f"+{self.country_code}…{self.e164[-2:]}"


@dataclass(frozen=True, slots=True)
class InvalidNumber:
    raw: str
    reason: str


_WILDCARD = re.compile(r"\+[1-9][0-9]{0,13}")


def parse_wildcard(raw: str) -> str | InvalidNumber:
    """A do-not-call wildcard, ``+1 212*`` -> ``+1212*``: +, country code and leading digits, then *."""
    prefix = re.sub(r"[\s().-]", "", raw.removesuffix("*"))
    if not raw.endswith("*") or not _WILDCARD.fullmatch(prefix):
        return InvalidNumber(raw, "not a wildcard; write + and the leading digits, then *, e.g. +1212*")
    return prefix + "*"


def parse_number(
    raw: str, *, default_region: str = "US", dial_prefix: str = "9"
) -> NumberFacts | InvalidNumber:
    """Parse what a dialplan or a CSV row holds into :class:`NumberFacts`, or say why it is not a number.

    Accepts ``+48 601 234 567``, ``0048…`` and ``011…`` (international access codes), national format
    in ``default_region``, and a leading outside-line ``dial_prefix`` (stripped only when the number
    is not valid with it).
    """
    text = raw.strip()
    if not text:
        return InvalidNumber(raw, "empty")
    if len(text) > MAX_INPUT_CHARS:
        return InvalidNumber(raw[:MAX_INPUT_CHARS] + "…", f"longer than {MAX_INPUT_CHARS} characters")
    if not ALLOWED.fullmatch(text):
        return InvalidNumber(raw, "holds characters other than digits, +, spaces, dashes, dots, parentheses")
    plus = text.startswith("+")
    digits = re.sub(r"\D", "", text)
    if "+" in text[1:]:
        return InvalidNumber(raw, "a + may only lead the number")
    if len(digits) < 3:
        return InvalidNumber(raw, "too short to be a phone number")
    if plus:
        candidates = ["+" + digits]
    else:
        candidates = [digits]
        if digits.startswith("00"):
            candidates.append("+" + digits[2:])  # the international prefix most of the world uses
        if dial_prefix and digits.startswith(dial_prefix) and len(digits) > len(dial_prefix) + 2:
            rest = digits[len(dial_prefix) :]
            candidates.append(rest)
            if rest.startswith("00"):
                candidates.append("+" + rest[2:])
    why = "not a valid number"
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, default_region)
        except phonenumbers.NumberParseException as exc:
            why = _parse_error(exc)
            continue
        # A number is valid exactly when its type is known (is_valid_number asks the same question).
        region, kind = region_and_type(number)
        if kind != PhoneNumberType.UNKNOWN:
            return _facts(number, region, kind)
        why = _invalid_reason(number, default_region)
    return InvalidNumber(raw, why)


def _parse_error(exc: phonenumbers.NumberParseException) -> str:
    return {
        phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
        phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
        phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
        phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short to be a phone number",
        phonenumbers.NumberParseException.TOO_LONG: "too long to be a phone number",
    }.get(exc.error_type, "not a phone number")


def _invalid_reason(number: phonenumbers.PhoneNumber, default_region: str) -> str:
    possible = phonenumbers.is_possible_number_with_reason(number)
    region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    where = f"+{number.country_code} ({region})" if region != "ZZ" else f"+{number.country_code}"
    return {
        phonenumbers.ValidationResult.TOO_SHORT: f"too short for {where}",
        phonenumbers.ValidationResult.TOO_LONG: f"too long for {where}",
        phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
        phonenumbers.ValidationResult.INVALID_LENGTH: f"wrong length for {where}",
    }.get(
        possible, f"not an assigned number range in {where} (national numbers are read as {default_region})"
    )


def region_and_type(number: phonenumbers.PhoneNumber) -> tuple[str, int]:
    """``region_code_for_number`` ("ZZ" for none) and ``number_type``, found in one pass.

    In a plan shared by many countries (+1, +7, +44...) both first search for the country, typing the
    number against each one's ranges until one knows it; number_type then types it once more. Asked one
    after the other, that is three typings of a North American number where one does (its parse 80 ->
    68 µs, issue 15). tests/unit/test_numbers.py holds this equal to the two public calls for every
    example number phonenumbers ships.
    """
    if _number_type_helper is None:
        return phonenumbers.region_code_for_number(number) or "ZZ", phonenumbers.number_type(number)
    code = number.country_code or 0
    regions = COUNTRY_CODE_TO_REGION_CODE.get(code)
    if not regions:
        return "ZZ", PhoneNumberType.UNKNOWN
    national = phonenumbers.national_significant_number(number)
    if len(regions) > 1:
        for region in regions:
            metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
            if metadata is None:
                continue
            if metadata.leading_digits is not None:
                if re.match(metadata.leading_digits, national):
                    return region, _number_type_helper(national, metadata)
            elif (kind := _number_type_helper(national, metadata)) != PhoneNumberType.UNKNOWN:
                return region, kind
        return "ZZ", PhoneNumberType.UNKNOWN
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, regions[0])
    kind = PhoneNumberType.UNKNOWN if metadata is None else _number_type_helper(national, metadata)
    return regions[0], kind


def _facts(number: phonenumbers.PhoneNumber, region: str, kind: int) -> NumberFacts:
    if phonenumbers.is_number_type_geographical(kind, number.country_code or 0):
        found = timezone.time_zones_for_geographical_number(number)  # what time_zones_for_number does
    else:
        found = timezone.time_zones_for_number(number)  # the country's zones
    zones = tuple(z for z in found if z != UNKNOWN_ZONE)
    national = str(number.national_number)
    subdivision = None
    if number.country_code == 1 and len(national) == 10:
        subdivision = _nanp()["area_codes"].get(national[:3])
    return NumberFacts(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        country_code=number.country_code or 0,
        region=region,
        subdivision=subdivision,
        time_zones=zones,
        line_type=_LINE_TYPES.get(kind, LineType.UNKNOWN),
    )


@cache
def _nanp() -> dict[str, dict[str, str]]:
    data = resources.files("dialguard").joinpath("data/nanp_area_codes.json").read_text()
    loaded: dict[str, dict[str, str]] = json.loads(data)
    return loaded


@cache
def zones_for_country(region: str) -> tuple[str, ...]:
    """Every time zone of a country (tzdata's zone.tab): where a roamer in that country may be."""
    table = resources.files("tzdata").joinpath("zoneinfo/zone.tab").read_text(encoding="utf-8")
    rows = (line.split("\t") for line in table.splitlines() if line and not line.startswith("#"))
    return tuple(row[2] for row in rows if len(row) >= 3 and row[0] == region.upper())


def zones_for_subdivision(subdivision: str) -> tuple[str, ...]:
    """Time zones a US state or Canadian province spans (``US-TX`` → Chicago, Denver); () if unknown."""
    zones: dict[str, list[str]] = _nanp()["zones"]  # type: ignore[assignment]
    return tuple(zones.get(subdivision.upper(), ()))


# ---------------------------------------------------------------- the lead's own state

_ISO_SUBDIVISION = re.compile(r"([A-Za-z]{2})-([A-Za-z0-9]{1,3})")


@dataclass(frozen=True, slots=True)
class InvalidLeadState:
    """A lead state the number's country does not make a state or province of; ``reason`` is one line."""

    raw: str
    country: str  # the number's region
    reason: str


@dataclass(frozen=True, slots=True)
class _Subdivisions:
    """One country's states or provinces: every accepted spelling (casefolded) to its code."""

    codes: tuple[str, ...]
    names: dict[str, tuple[str, ...]]  # code -> its names, as the data writes them
    spellings: dict[str, str]


@cache
def _subdivisions(region: str) -> _Subdivisions:
    """A country's subdivisions as the ``holidays`` package lists them (ISO 3166-2 codes and their
    names, in English and the country's languages): the data the packs' holiday calendars use too."""
    import holidays  # the policy loads it anyway; numbers.py stays light for the CLI's other commands

    try:
        calendar = holidays.country_holidays(region)
    except NotImplementedError:  # a country it has no calendar for, or "001" (non-geographic)
        return _Subdivisions((), {}, {})
    codes = tuple(sorted(str(c) for c in calendar.subdivisions))
    names = {code: tuple(calendar.get_subdivision_aliases().get(code, ())) for code in codes}
    spellings: dict[str, str] = {}
    for code in codes:
        for spelling in (code, f"{region}-{code}", *names[code]):
            key = " ".join(spelling.split()).casefold()
            # A spelling two subdivisions share names neither: a guess is what this parser refuses to make.
            spellings[key] = code if spellings.get(key, code) == code else ""
    return _Subdivisions(codes, names, {k: v for k, v in spellings.items() if v})


def parse_lead_state(raw: str | None, number: NumberFacts) -> str | InvalidLeadState | None:
    """The lead's own state or province as the rule packs name it (``US-FL``), read against the number.

    Accepted, in any case and with blanks around: the code (``FL``), the ISO 3166-2 code (``US-FL``) and
    the name (``Florida``) of a subdivision of the number's country — a US number's states, a Canadian
    number's provinces, a Polish number's voivodeships (``PL-14``, ``14``, ``Mazowieckie``). The ISO
    form may also name a subdivision of another country of the number's numbering plan (a +1 number's
    lead may live in ``CA-ON``). Nothing else is guessed: an unknown value is an :class:`InvalidLeadState`.
    Blank or None: no lead state (None).

    >>> ny = parse_number("+1 212 555 0142")
    >>> [parse_lead_state(s, ny) for s in ("FL", " us-fl ", "florida")]
    ['US-FL', 'US-FL', 'US-FL']
    >>> print(parse_lead_state("US-XX", ny).reason)  # doctest: +NORMALIZE_WHITESPACE
    lead state 'US-XX' is not a state or province of US: write its code (NY),
    its ISO 3166-2 code (US-NY) or its name (New York)
    """
    if raw is None or not raw.strip():
        return None
    text = " ".join(raw.split())
    region = number.region
    if (code := _subdivisions(region).spellings.get(text.casefold())) is not None:
        return f"{region}-{code}"
    if (iso := _ISO_SUBDIVISION.fullmatch(text)) is not None:
        country, code = iso.group(1).upper(), iso.group(2).upper()
        same_plan = phonenumbers.region_codes_for_country_code(number.country_code)
        if country in same_plan and code in _subdivisions(country).codes:
            return f"{country}-{code}"
    return InvalidLeadState(raw, region, _lead_state_error(raw, number))


def _lead_state_error(raw: str, number: NumberFacts) -> str:
    region = number.region
    known = _subdivisions(region)
    if not known.codes:
        return f"lead state {raw!r}: no states or provinces are known for a {region} number; leave it out"
    own = (number.subdivision or "").removeprefix(f"{region}-")
    example = own if own in known.codes else known.codes[0]
    forms = f"its code ({example}), its ISO 3166-2 code ({region}-{example})"
    if names := known.names[example]:
        forms += f" or its name ({names[0]})"
    return f"lead state {raw!r} is not a state or province of {region}: write {forms}"


# ---------------------------------------------------------------- emergency and short service numbers

# What asterisk-conf/extensions_dialguard.conf dials in [dialguard-emergency] before any check, and in
# which countries each number reaches which service ("*": everywhere). The dialplan dials every one of
# them whatever the site's country, so the gate treats them alike: the countries name the service in a
# decision's evidence and say which "+<country code><number>" forms are meant (+1911, +44999).
# tests/unit/test_emergency_numbers.py reads the dialplan and holds the two lists equal.
EMERGENCY_NUMBERS: dict[str, dict[str, str]] = {
    "112": {"*": "emergency (GSM, EU and most of the world)"},
    "911": {"US": "emergency", "CA": "emergency"},
    "933": {"US": "911 address test"},
    "988": {"US": "988 Suicide and Crisis Lifeline", "CA": "9-8-8 Suicide Crisis Helpline"},
    "999": {"GB": "emergency", "PL": "ambulance"},
    "997": {"PL": "police"},
    "998": {"PL": "fire service"},
    "101": {"RU": "fire service", "GB": "police (non-emergency)"},
    "102": {"RU": "police"},
    "103": {"RU": "ambulance"},
    "104": {"RU": "gas emergency"},
    "110": {"CN": "police", "DE": "police"},
    "119": {"CN": "fire service", "JP": "fire service and ambulance", "KR": "fire service and ambulance"},
    "120": {"CN": "ambulance"},
    "122": {"CN": "traffic accidents"},
    "111": {"GB": "NHS 111", "NZ": "emergency"},
    "000": {"AU": "emergency"},
}
_SEPARATORS = re.compile(r"[\s().\-/]")


@dataclass(frozen=True, slots=True)
class EmergencyNumber:
    """An emergency or short service number: never blocked, never dialled by a campaign."""

    raw: str  # as dialled: "9911", "+1 911"
    digits: str  # as the service is dialled: "911" (no outside-line prefix, no country code)
    service: str  # "US: emergency", or every country's when the site's is not among them
    countries: tuple[str, ...]  # where the number reaches a service; ("*",) for everywhere


def emergency_number(raw: str, *, region: str = "US", dial_prefix: str = "9") -> EmergencyNumber | None:
    """The emergency or short service number ``raw`` dials, or None.

    Exactly the dialplan's numbers (``911``), with the outside-line ``dial_prefix`` (``9911``), or
    after a + and the country code of a country where the number reaches a service (``+1911``,
    ``+44999``; ``+1999`` is no emergency number). Blanks, dashes, dots and parentheses are ignored.
    ``region`` (the site's) only chooses which service the evidence names.

    >>> emergency_number("9-911").digits
    '911'
    >>> emergency_number("+1 911").service
    'US: emergency'
    >>> emergency_number("411") is None, emergency_number("+1999") is None
    (True, True)
    """
    text = _SEPARATORS.sub("", raw)
    if len(text) > 8:  # "+" and a three-digit country code, then four digits: longer is a phone number
        return None
    if text.startswith("+"):
        return _international_emergency(raw, text[1:])
    digits = text
    if digits not in EMERGENCY_NUMBERS and dial_prefix and digits.startswith(dial_prefix):
        digits = digits[len(dial_prefix) :]
    if digits not in EMERGENCY_NUMBERS:
        return None
    return _emergency(raw, digits, region.upper())


def is_emergency(raw: str, *, region: str = "US", dial_prefix: str = "9") -> bool:
    """Whether ``raw`` dials an emergency or short service number (see :func:`emergency_number`):
    what a dialer must never originate."""
    return emergency_number(raw, region=region, dial_prefix=dial_prefix) is not None


def _international_emergency(raw: str, digits: str) -> EmergencyNumber | None:
    for length in (1, 2, 3):
        code, rest = digits[:length], digits[length:]
        if rest not in EMERGENCY_NUMBERS or not code.isdigit() or code.startswith("0"):
            continue
        services = EMERGENCY_NUMBERS[rest]
        plan = phonenumbers.region_codes_for_country_code(int(code))
        meant = [r for r in plan if r in services]
        if meant or ("*" in services and plan):
            return _emergency(raw, rest, meant[0] if meant else "*")
    return None


def _emergency(raw: str, digits: str, region: str) -> EmergencyNumber:
    services = EMERGENCY_NUMBERS[digits]
    if region in services and region != "*":
        service = f"{region}: {services[region]}"
    elif "*" in services:
        service = services["*"]
    else:
        service = "; ".join(f"{country}: {what}" for country, what in services.items())
    return EmergencyNumber(raw, digits, service, tuple(services))
