"""Regenerate ``src/dialguard/data/nanp_area_codes.json`` from phonenumbers' offline geocoder.

The daemon never imports the geocoder (about 100 MB of resident memory); it reads this small table
instead: US state or Canadian province by area code, and the time zones of each subdivision.

    .venv/bin/python tools/make_area_codes.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import phonenumbers
from phonenumbers import geocoder, timezone

US_STATES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA", "Kansas": "KS",
    "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD", "Massachusetts": "MA",
    "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS", "Missouri": "MO", "Montana": "MT",
    "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM",
    "New York": "NY", "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK",
    "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC",
    "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT",
    "Virginia": "VA", "Washington": "WA", "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY",
    "Washington D.C.": "DC", "Washington, D.C.": "DC", "District of Columbia": "DC",
}  # fmt: skip
CA_PROVINCES = {
    "Alberta": "AB", "British Columbia": "BC", "Manitoba": "MB", "New Brunswick": "NB",
    "Newfoundland and Labrador": "NL", "Nova Scotia": "NS", "Ontario": "ON", "Quebec": "QC",
    "Prince Edward Island": "PE", "Saskatchewan": "SK", "Northwest Territories": "NT", "Nunavut": "NU",
    "Yukon": "YT", "Nova Scotia/Prince Edward Island": "NS", "Northwest Territories/Nunavut/Yukon": "NT",
}  # fmt: skip
ABBREVIATION = re.compile(r", ([A-Z]{2})$")


def subdivision_of(region: str, description: str) -> str | None:
    if region == "US":
        if m := ABBREVIATION.search(description):
            return m.group(1) if m.group(1) in US_STATES.values() else None
        return US_STATES.get(description)
    if region == "CA":
        if m := ABBREVIATION.search(description):
            return m.group(1) if m.group(1) in CA_PROVINCES.values() else None
        return CA_PROVINCES.get(description)
    return None


def build() -> dict[str, dict[str, object]]:
    area_codes: dict[str, str] = {}
    zones: dict[str, set[str]] = {}
    for npa in range(200, 1000):
        for line in ("2345678", "5550123", "7654321"):
            number = phonenumbers.parse(f"+1{npa}{line}")
            if not phonenumbers.is_valid_number(number):
                continue
            region = phonenumbers.region_code_for_number(number)
            code = subdivision_of(region, geocoder.description_for_number(number, "en"))
            if code is None:
                continue
            sub = f"{region}-{code}"
            area_codes[str(npa)] = sub
            zones.setdefault(sub, set()).update(
                z for z in timezone.time_zones_for_number(number) if z != "Etc/Unknown"
            )
            break
    return {
        "generated_by": {"tool": "tools/make_area_codes.py", "phonenumbers": phonenumbers.__version__},
        "area_codes": dict(sorted(area_codes.items())),
        "zones": {k: sorted(v) for k, v in sorted(zones.items())},
    }


def main() -> int:
    out = Path(__file__).resolve().parent.parent / "src/dialguard/data/nanp_area_codes.json"
    data = build()
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{len(data['area_codes'])} area codes, {len(data['zones'])} subdivisions -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
