"""What systemd's environment asks of the gateway, read as sd_notify(3) and sd_watchdog_enabled(3) do."""

from __future__ import annotations

import pytest

from dialguard.watchdog import SystemdNotifier, watchdog_interval


def test_no_notify_socket_no_notifier() -> None:
    assert SystemdNotifier.from_environment({}, pid=42) is None
    assert SystemdNotifier.from_environment({"NOTIFY_SOCKET": ""}, pid=42) is None


def test_an_abstract_name_is_sent_to_with_a_leading_nul_and_a_path_as_it_is() -> None:
    abstract = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@/org/freedesktop/systemd1/notify"}, pid=1)
    assert abstract is not None and abstract.address == "\0/org/freedesktop/systemd1/notify"
    path = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "/run/systemd/notify"}, pid=1)
    assert path is not None and path.address == "/run/systemd/notify"


def test_a_socket_that_is_not_a_unix_one_is_not_used() -> None:
    assert SystemdNotifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"}, pid=1) is None


@pytest.mark.parametrize(
    ("env", "every"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "10000000"}, 5.0),  # WatchdogSec=10s: a ping every 5 s
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "42"}, 5.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "43"}, None),  # another process's watchdog
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "ten seconds"}, None),
    ],
)
def test_the_pings_come_at_half_the_watchdog_time_asked_of_this_process(
    env: dict[str, str], every: float | None
) -> None:
    assert watchdog_interval(env, pid=42) == every
