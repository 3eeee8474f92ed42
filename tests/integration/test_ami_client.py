"""The AMI client against the fake Asterisk manager (tests/fakes/asterisk_ami.py, after main/manager.c):
login, deadlines, a half-open link, drops, and an Originate that is never sent twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import pytest

from dialguard.asterisk.ami import (
    AmiActionFailed,
    AmiClient,
    AmiOutcomeUnknown,
    AmiUnavailable,
    LinkState,
)
from dialguard.asterisk.ami_protocol import AmiMessage
from tests.fakes.asterisk_ami import FakeAmi, ReceivedAction

SECRET = "s3cret-never-logged"
ORIGINATE = [("Channel", "PJSIP/+12025550143@trunk"), ("Context", "x"), ("Exten", "s"), ("Priority", "1")]


def client_of(ami: FakeAmi, events: list[AmiMessage] | None = None, **options: float) -> AmiClient:
    settings: dict[str, float] = {
        "action_timeout": 1.0, "ping_interval": 0.2, "ping_timeout": 0.3, "first_backoff": 0.05,
        "max_backoff": 0.2, "login_retry": 30.0, "connect_timeout": 1.0, **options,
    }  # fmt: skip
    sink = events if events is not None else []
    return AmiClient(
        host=ami.host, port=ami.port, username="dialguard", secret=SECRET, on_event=sink.append, **settings
    )


@contextlib.asynccontextmanager
async def running(client: AmiClient) -> AsyncIterator[AmiClient]:
    task = asyncio.create_task(client.run())
    try:
        yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def actions(ami: FakeAmi, name: str) -> list[ReceivedAction]:
    return [a for a in ami.actions if a.name.lower() == name.lower()]


async def eventually(condition: object, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_it_logs_in_with_events_on_and_never_logs_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    events: list[AmiMessage] = []
    async with FakeAmi(username="dialguard", secret=SECRET) as ami, running(client_of(ami, events)) as client:
        assert await client.wait_up(10.0)
        (login,) = actions(ami, "Login")
        assert login.get("Username") == "dialguard" and login.get("Events") == "on"
        await eventually(lambda: any(e.event == "FullyBooted" for e in events))
        pong = await client.action("Ping")
        assert pong.get("Response") == "Success" and pong.get("Ping") == "Pong"
    assert SECRET not in caplog.text and SECRET not in repr(client)


async def test_a_refused_login_is_a_state_for_healthz_not_a_crash_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeAmi(username="dialguard", secret="another", auth_fail_delay=0.1)  # Asterisk's: 1 s
    async with fake as ami, running(client_of(ami)) as client:
        await eventually(lambda: client.status.state is LinkState.AUTH_FAILED)
        await asyncio.sleep(0.5)  # many backoffs' worth: a crash loop would have logged in again
        assert len(actions(ami, "Login")) == 1
        assert "refused" in client.status.error.lower() or "fail" in client.status.error.lower()
        with pytest.raises(AmiUnavailable):
            await client.action("Ping")
    assert sum("AMI login" in r.message for r in caplog.records) == 1
    assert SECRET not in caplog.text


async def test_a_half_open_link_is_found_by_its_ping_and_dialled_again() -> None:
    async with FakeAmi(username="dialguard", secret=SECRET) as ami, running(client_of(ami)) as client:
        assert await client.wait_up(10.0)
        ami.silence()  # the socket stays open; nothing is answered
        await eventually(lambda: client.status.state is LinkState.DOWN, within=10.0)
        ami.unsilence()
        await eventually(lambda: client.is_up, within=10.0)
        assert len(actions(ami, "Login")) >= 2
        assert (await client.action("Ping")).get("Ping") == "Pong"


async def test_a_dropped_link_is_dialled_again() -> None:
    async with FakeAmi(username="dialguard", secret=SECRET) as ami, running(client_of(ami)) as client:
        assert await client.wait_up(10.0)
        ami.drop_connections()
        await eventually(lambda: len(actions(ami, "Login")) == 2 and client.is_up)
        assert client.status.reconnects == 1


async def test_every_action_has_a_deadline_and_an_unanswered_one_is_unknown_not_resent() -> None:
    fake = FakeAmi(username="dialguard", secret=SECRET)
    async with fake as ami, running(client_of(ami, ping_interval=30)) as client:
        assert await client.wait_up(10.0)
        ami.silence()
        started = time.monotonic()
        with pytest.raises(AmiOutcomeUnknown):
            await client.action("Ping", within=0.3)
        assert time.monotonic() - started < 1.0
        ami.unsilence()
        ami.drop_connections()  # the half-open link goes; the client dials again
        await eventually(lambda: len(actions(ami, "Login")) == 2 and client.is_up)
        await asyncio.sleep(0.2)
        assert actions(ami, "Ping") == []  # swallowed by the dead link, and not sent again on the new one


async def test_an_originate_in_flight_when_the_link_drops_is_unknown_and_never_sent_again() -> None:
    async with FakeAmi(username="dialguard", secret=SECRET) as ami, running(client_of(ami)) as client:
        assert await client.wait_up(10.0)
        ami.drop_after("Originate")
        with pytest.raises(AmiOutcomeUnknown):
            await client.originate(ORIGINATE)
        await eventually(lambda: len(actions(ami, "Login")) == 2 and client.is_up)
        await asyncio.sleep(0.3)  # time for any replay a client might do after reconnecting
        assert len(actions(ami, "Originate")) == 1


async def test_originate_is_always_async_and_asterisk_refusals_are_errors() -> None:
    async with FakeAmi(username="dialguard", secret=SECRET) as ami, running(client_of(ami)) as client:
        assert await client.wait_up(10.0)
        answer = await client.originate([*ORIGINATE, ("Async", "false")])
        assert answer.get("Response") == "Success"
        (sent,) = actions(ami, "Originate")
        assert sent.get("Async").lower() == "true"
        with pytest.raises(AmiActionFailed):
            await client.action("NoSuchAction")


async def test_an_action_while_the_link_is_down_is_refused_at_once() -> None:
    async with FakeAmi(username="dialguard", secret=SECRET) as ami:
        client = client_of(ami)
        with pytest.raises(AmiUnavailable):
            await client.originate([("Channel", "PJSIP/1@trunk")])
        assert actions(ami, "Originate") == []
