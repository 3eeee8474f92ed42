"""The campaign settings the code understands, and what each may hold. Pure.

A setting reaches the call path: ``language`` names a prompt directory in a ``STREAM FILE`` path and
``optout_digit`` is the one key armed during the notice, so a bad value would silently disable the
opt-out or play whatever path it names. They are refused when a campaign is defined, and a bad value
already stored is ignored (the default serves) when a call reads it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from dialguard.numbers import NumberFacts, parse_number

LANGUAGE = re.compile(r"[a-z]{2,3}")  # a prompt directory: en, es, pl ... never a path
OPTOUT_KEYS = "0123456789*#"


def _language(value: Any) -> str | None:
    if isinstance(value, str) and LANGUAGE.fullmatch(value):
        return None
    return 'language: two or three lower-case letters naming a prompt directory, e.g. "es"'


def _optout_digit(value: Any) -> str | None:
    if isinstance(value, str) and len(value) == 1 and value in OPTOUT_KEYS:
        return None
    return f'optout_digit: exactly one key of {OPTOUT_KEYS}, e.g. "9"'


def _flag(name: str) -> Callable[[Any], str | None]:
    return lambda value: None if isinstance(value, bool) else f"{name}: true or false"


def _bounded(
    name: str, low: float, high: float, example: str, *, whole: bool = False
) -> Callable[[Any], str | None]:
    kinds = int if whole else int | float

    def check(value: Any) -> str | None:
        ok = isinstance(value, kinds) and not isinstance(value, bool) and low <= value <= high
        what = "a whole number" if whole else "a number"
        return None if ok else f"{name}: {what} from {low:g} to {high:g}, e.g. {example}"

    return check


ANSWER_PATHS = ("agent_first", "notice_first")
SOUND_NAME = re.compile(r"[a-z0-9_-]{1,32}(/[a-z0-9_-]{1,32}){0,3}")  # a prompt under Asterisk's sounds


def _answer_path(value: Any) -> str | None:
    if value in ANSWER_PATHS:
        return None
    return f"answer_path: {' or '.join(ANSWER_PATHS)} (when the callee answers an originated call)"


def _sound(name: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and SOUND_NAME.fullmatch(value):
            return None
        return f'{name}: a prompt under Asterisk\'s sounds, without extension, e.g. "acme/seller-name"'

    return check


SELLER_NAME_MAX = 64


def _seller_name(value: Any) -> str | None:
    # Named in the abandonment message and the evidence: one short printable line.
    if isinstance(value, str) and value.strip() and len(value) <= SELLER_NAME_MAX and value.isprintable():
        return None
    return f'seller_name: 1 to {SELLER_NAME_MAX} printable characters naming the seller, e.g. "Acme Energy"'


def _callback_number(value: Any) -> str | None:
    # A number the callee can ring back: valid, written in E.164 so no region is guessed.
    if isinstance(value, str) and value.startswith("+"):
        parsed = parse_number(value, default_region="ZZ", dial_prefix="")
        if isinstance(parsed, NumberFacts) and parsed.e164 == value:
            return None
    return 'callback_number: a valid number in E.164 form, "+" and digits only, e.g. "+442071234567"'


SETTINGS: dict[str, Callable[[Any], str | None]] = {
    "language": _language,
    "optout_digit": _optout_digit,
    "roaming": _flag("roaming"),  # ask the HLR for this campaign's calls
    "allow_roamers": _flag("allow_roamers"),  # a roamer may be called, inside the window where they are
    # POST /v1/calls pacing, per gateway: calls ringing or talking at once, and new calls a second
    "max_concurrent_calls": _bounded("max_concurrent_calls", 1, 10_000, "30", whole=True),
    "calls_per_second": _bounded("calls_per_second", 0.01, 1_000, "2.5"),
    # An originated call's answer: straight to an agent, or the notice first (default: by the rules)
    "answer_path": _answer_path,
    # The abandonment message's middle part: a recording of the seller's name, made by the site
    "seller_prompt": _sound("seller_prompt"),
    # Abandoned calls (policy/abandon.py): an agent takes every call (preview or progressive dialling), so
    # a number abandoned lately may be called again; and who the abandonment message names.
    "agent_guaranteed": _flag("agent_guaranteed"),
    "seller_name": _seller_name,
    "callback_number": _callback_number,
}


def setting_problems(settings: Mapping[str, Any]) -> list[str]:
    """What is wrong with a campaign's settings: unknown keys and bad values, one line each."""
    problems = [f"{key}: not a setting dialguard knows ({', '.join(sorted(SETTINGS))})"
                for key in settings if key not in SETTINGS]  # fmt: skip
    problems += [p for key, value in settings.items() if key in SETTINGS and (p := SETTINGS[key](value))]
    return problems


def usable(settings: Mapping[str, Any], key: str) -> Any:
    """A stored setting if it is valid, else None (the default serves)."""
    value = settings.get(key)
    check = SETTINGS.get(key)
    return value if value is not None and check is not None and check(value) is None else None
