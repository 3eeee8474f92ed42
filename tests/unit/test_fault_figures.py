"""The figures of bench/faults.py's table: pure arithmetic on what the sessions recorded (no timing here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _faults() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "faults.py"
    spec = importlib.util.spec_from_file_location("bench_faults", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


faults = _faults()


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert faults.percentile(values, 99) == 99.0
    assert faults.percentile(values, 50) == 50.0
    assert faults.percentile([7.0], 99) == 7.0
    assert faults.percentile([3.0, 1.0, 2.0], 100) == 3.0
    assert faults.percentile([], 99) is None


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        # (started, ended, judged on facts), the fault lifted at 10
        ([(9.0, 9.1, False), (10.2, 10.3, True)], 0.3),  # the first check after the lift is judged
        ([(10.1, 10.2, False), (10.5, 10.9, True), (11.0, 11.1, True)], 0.9),  # blocked after the lift too
        # a judged check that started before the last blocked one does not count as recovered
        ([(10.1, 12.5, True), (10.2, 10.3, False), (10.4, 10.6, True)], 0.6),
        ([(10.1, 10.2, False)], None),  # not back yet
        ([(9.0, 10.5, True)], None),  # started before the lift: says nothing about after it
    ],
)
def test_recovery_is_the_first_judged_check_after_the_last_one_that_was_not(
    outcomes: list[tuple[float, float, bool]], expected: float | None
) -> None:
    got = faults.recovery(outcomes, 10.0)
    assert got == (None if expected is None else pytest.approx(expected))


def test_the_table_right_aligns_figures_bold_or_not_and_never_the_first_column() -> None:
    text = faults.table([["1. cut", "3/4", "**0**", "x"]], ["fault", "answered", "lost", "note"])
    assert text.splitlines()[1] == "| --- | ---: | ---: | --- |"
    assert text.splitlines()[2] == "| 1. cut | 3/4 | **0** | x |"
