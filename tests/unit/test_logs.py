"""Numbers in log lines are masked; ids, times and ports are not numbers."""

from __future__ import annotations

import logging

from dialguard.logs import MaskNumbers, mask


def test_numbers_keep_five_leading_and_two_trailing_digits() -> None:
    assert mask("call to +12025550143 blocked") == "call to +1202*****43 blocked"
    assert mask("lead 2025550143, again +48601234567.") == "lead 20255***43, again +4860*****67."


def test_what_is_not_a_phone_number_is_left_alone() -> None:
    text = "call 3f2b9c1e-1234-4abc-9def-123456789012 at 2026-11-23T16:00:00+00:00 on port 4573 in 12.5 ms"
    assert mask(text) == text


def test_the_filter_masks_arguments_and_extras_unless_told_not_to() -> None:
    record = logging.LogRecord("x", logging.INFO, "", 0, "opt-out of %s", ("+12025550143",), None)
    record.number = "+12025550143"
    MaskNumbers().filter(record)
    assert record.getMessage() == "opt-out of +1202*****43" and record.number == "+1202*****43"
    loud = logging.LogRecord("x", logging.CRITICAL, "", 0, "LOST %s", ("+12025550143",), None)
    loud.unmasked = True
    MaskNumbers().filter(loud)
    assert loud.getMessage() == "LOST +12025550143"
