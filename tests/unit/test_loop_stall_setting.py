"""gate.loop_stall_limit: the loop watchdog's limit, from the file or the environment, checked at start."""

from __future__ import annotations

import pytest

from dialguard.config import ConfigError, load_settings


def test_the_watchdog_is_on_by_default_and_the_environment_sets_its_limit() -> None:
    assert load_settings(env={}).gate.loop_stall_limit == 3.0
    assert load_settings(env={"DIALGUARD_GATE_LOOP_STALL_LIMIT": "2.5"}).gate.loop_stall_limit == 2.5
    assert load_settings(env={"DIALGUARD_GATE_LOOP_STALL_LIMIT": "0"}).gate.loop_stall_limit == 0  # off


@pytest.mark.parametrize("limit", ["0.5", "-1", "nan", "soon"])
def test_a_limit_the_heartbeat_cannot_meet_is_refused_naming_the_key(limit: str) -> None:
    with pytest.raises(ConfigError, match=r"^gate\.loop_stall_limit: "):
        load_settings(env={"DIALGUARD_GATE_LOOP_STALL_LIMIT": limit})
