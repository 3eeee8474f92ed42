"""Campaign settings reach the call path: only what the code understands, in a form it can use."""

from __future__ import annotations

import pytest

from dialguard.policy.campaign_settings import setting_problems, usable


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"optout_digit": "#*"}, "optout_digit: exactly one key"),  # would arm no key at all
        ({"optout_digit": "79"}, "optout_digit: exactly one key"),
        ({"optout_digit": 9}, "optout_digit: exactly one key"),
        ({"language": "../../../etc/passwd"}, "language: two or three lower-case letters"),
        ({"language": "EN"}, "language: two or three lower-case letters"),
        ({"roaming": "yes please"}, "roaming: true or false"),
        ({"allow_roamers": 1}, "allow_roamers: true or false"),
        ({"optout_key": "9"}, "optout_key: not a setting dialguard knows"),
    ],
)
def test_a_setting_the_call_path_cannot_use_is_refused(settings: dict[str, object], problem: str) -> None:
    problems = setting_problems(settings)
    assert len(problems) == 1 and problems[0].startswith(problem)


def test_usable_settings_pass() -> None:
    good = {"language": "es", "optout_digit": "#", "roaming": True, "allow_roamers": False}
    assert setting_problems(good) == []
    assert usable(good, "optout_digit") == "#"


def test_a_bad_value_stored_before_validation_is_ignored_when_a_call_reads_it() -> None:
    stored = {"optout_digit": "79", "language": "../x"}
    assert usable(stored, "optout_digit") is None and usable(stored, "language") is None
