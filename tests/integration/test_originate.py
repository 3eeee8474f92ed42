"""POST /v1/calls end to end: the real gate and PostgreSQL, the AMI client against the fake Asterisk
manager, and the call's timeline read back through GET /v1/calls/{id}."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialguard.asterisk.ami import AmiClient
from dialguard.clock import Clock
from dialguard.config import Settings
from dialguard.gate import Gate
from dialguard.originate import OriginateSettings, Originator
from dialguard.pacing import Pacer
from dialguard.policy.model import Purpose
from dialguard.rules.loader import load_rulebook
from dialguard.store import campaigns, dnc
from dialguard.store.tokens import Role, create_token
from dialguard.timeline import CallTimeline
from dialguard.web.app import create_app
from tests.fakes.asterisk_ami import CallScript, FakeAmi, ReceivedAction

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 11:00 in New York
NEW_YORK = "+12125550142"
SECRET = "originate-secret"
RULES = load_rulebook()
KEY = {"Idempotency-Key": "k"}

Client = TestClient[web.Request, web.Application]


def running_clock() -> Clock:
    """NOW, moving on as real time does: calling hours hold, and the timeline measures real gaps."""
    started = time.monotonic()
    return lambda: NOW + timedelta(seconds=time.monotonic() - started)


@dataclasses.dataclass
class Rig:
    client: Client
    ami: FakeAmi
    link: AmiClient
    timeline: CallTimeline
    pool: asyncpg.Pool
    headers: dict[str, str]

    async def call(self, key: str | None = None, **body: Any) -> tuple[int, dict[str, Any], Any]:
        headers = {**self.headers, "Idempotency-Key": key or str(uuid.uuid4())}
        response = await self.client.post("/v1/calls", json={"number": NEW_YORK, **body}, headers=headers)
        return response.status, await response.json(), response.headers

    def originates(self) -> list[ReceivedAction]:
        return self.ami.originated()


@contextlib.asynccontextmanager
async def rig_with(
    pool: asyncpg.Pool, aiohttp_client: Any, script: Callable[[ReceivedAction], CallScript]
) -> AsyncIterator[Rig]:
    clock = running_clock()
    gate = Gate(pool=pool, rulebook=RULES, clock=clock, default_region="US")
    pacer = Pacer(clock)
    originator = Originator(
        gate=gate, pool=pool, ami=None, timeline=None, pacer=pacer, clock=clock,
        settings=OriginateSettings("PJSIP/{e164}@trunk", "dialguard-originate", 20),
    )  # fmt: skip
    timeline = CallTimeline(pool=pool, clock=clock, on_call_ended=originator.call_ended)
    async with FakeAmi(username="dialguard", secret=SECRET, on_originate=script) as ami:
        link = AmiClient(
            host=ami.host, port=ami.port, username="dialguard", secret=SECRET, on_event=timeline.on_event,
            ping_interval=5.0,
        )  # fmt: skip
        originator.ami, originator.timeline = link, timeline
        tasks = [asyncio.create_task(link.run()), asyncio.create_task(timeline.run())]
        try:
            assert await link.wait_up(10.0)
            app = create_app(settings=Settings(), pool=pool, gate=gate, originator=originator, ami=link)
            async with pool.acquire() as conn:
                await campaigns.add_campaign(conn, name="reminders", purpose=Purpose.INFORMATIONAL)
                token = await create_token(conn, name="dialer-1", role=Role.DIALER)
            client = await aiohttp_client(app)
            yield Rig(client, ami, link, timeline, pool, {"Authorization": f"Bearer {token}"})
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def rig(pool: asyncpg.Pool, aiohttp_client: Any) -> AsyncIterator[Rig]:
    async with rig_with(pool, aiohttp_client, lambda fields: CallScript()) as r:
        yield r


async def timeline_of(rig: Rig, call_id: str, until: str, within: float = 5.0) -> dict[str, Any]:
    """GET /v1/calls/{id} once the timeline has ``until`` in it."""
    deadline = time.monotonic() + within
    while True:
        await rig.timeline.flush()
        response = await rig.client.get(f"/v1/calls/{call_id}", headers=rig.headers)
        assert response.status == 200, await response.text()
        call: dict[str, Any] = await response.json()
        if any(step["kind"] == until for step in call["timeline"]):
            return call
        assert time.monotonic() < deadline, call
        await asyncio.sleep(0.05)


async def test_an_allowed_call_is_originated_once_and_its_timeline_tells_the_story(rig: Rig) -> None:
    status, body, _ = await rig.call(campaign="reminders")
    assert status == 202, body
    assert body["status"] == "originated" and body["decision"]["verdict"] == "ALLOW"
    (sent,) = rig.originates()
    assert sent.get("ChannelId") == body["call_id"] and sent.get("Async").lower() == "true"
    assert sent.get("Channel") == f"PJSIP/{NEW_YORK}@trunk" and sent.get("Context") == "dialguard-originate"
    assert int(sent.get("Timeout")) >= 15_000
    call = await timeline_of(rig, body["call_id"], "call.hangup")
    kinds = [step["kind"] for step in call["timeline"]]
    assert kinds[0] == "call.originated"
    for earlier, later in [("call.ringing", "call.answered"), ("call.answered", "call.agent_bridged"),
                           ("call.agent_bridged", "call.hangup")]:  # fmt: skip
        assert kinds.index(earlier) < kinds.index(later), kinds
    hangup = next(s for s in call["timeline"] if s["kind"] == "call.hangup")
    assert hangup["detail"]["cause"] == 16
    assert call["decision"]["call_id"] == body["call_id"]
    assert call["outcome"]["abandoned"] is False


async def test_a_blocked_call_answers_403_with_its_decision_and_nothing_is_originated(rig: Rig) -> None:
    async with rig.pool.acquire() as conn:
        await dnc.add_dnc(conn, number=NEW_YORK, at=NOW - timedelta(days=1), source="test", actor="test")
    status, body, _ = await rig.call(campaign="reminders")
    assert status == 403 and body["decision"]["reason"] == "dnc.internal"
    assert rig.originates() == []


async def test_a_retry_with_the_same_key_never_places_a_second_call(rig: Rig) -> None:
    first = await rig.call("key-1", campaign="reminders")
    again = await rig.call("key-1", campaign="reminders")
    assert first[0] == again[0] == 202
    assert again[1]["call_id"] == first[1]["call_id"] and again[1]["replayed"] is True
    assert len(rig.originates()) == 1
    other = await rig.call("key-1", campaign="reminders", lead_state="NY")
    assert other[0] == 422 and other[1]["error_id"] == "idempotency_key.reused"


async def test_two_requests_with_one_key_at_once_place_one_call(rig: Rig) -> None:
    answers = await asyncio.gather(*(rig.call("same", campaign="reminders") for _ in range(5)))
    assert len(rig.originates()) == 1
    assert {status for status, _, _ in answers} <= {202, 409}


@pytest.mark.parametrize("number", ["911", "9911", "+1911", "112"])
async def test_an_emergency_number_is_never_originated(rig: Rig, number: str) -> None:
    status, body, _ = await rig.call(number=number, campaign="reminders")
    assert status == 422 and body["error_id"] == "number.emergency"
    assert rig.originates() == []


async def test_without_the_ami_link_nothing_is_judged_counted_or_sent(rig: Rig) -> None:
    await rig.ami.server_down()  # Asterisk away: the link drops and cannot come back
    await asyncio.sleep(0.1)
    status, body, _ = await rig.call("down-1", campaign="reminders")
    assert status == 503 and body["error_id"].startswith("ami.")
    async with rig.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM decisions") == 0
    await rig.ami.server_up()
    assert await rig.link.wait_up(10.0)
    status, body, _ = await rig.call("down-1", campaign="reminders")  # the same key may try again
    assert status == 202


async def test_a_campaign_at_its_pace_answers_429_with_retry_after(
    pool: asyncpg.Pool, aiohttp_client: Any
) -> None:
    # The first call rings for a while: while it lasts the campaign has no place for a second.
    async with rig_with(pool, aiohttp_client, lambda fields: CallScript(ring_ms=800)) as rig:
        async with pool.acquire() as conn:
            await campaigns.add_campaign(
                conn, name="paced", purpose=Purpose.INFORMATIONAL, settings={"max_concurrent_calls": 1}
            )
        assert (await rig.call(campaign="paced"))[0] == 202
        status, body, headers = await rig.call(campaign="paced")
        assert status == 429 and body["error_id"] == "campaign.paced" and int(headers["Retry-After"]) >= 1
        assert len(rig.originates()) == 1
        await asyncio.sleep(2.0)  # the first call hangs up: its place is free
        assert (await rig.call(campaign="paced"))[0] == 202


async def test_an_answered_call_no_agent_reaches_in_2_seconds_is_counted_abandoned(
    pool: asyncpg.Pool, aiohttp_client: Any
) -> None:
    script = CallScript(agent_after_ms=None, talk_ms=2300)
    async with rig_with(pool, aiohttp_client, lambda fields: script) as rig:
        status, body, _ = await rig.call(campaign="reminders")
        assert status == 202
        call = await timeline_of(rig, body["call_id"], "call.hangup")
        assert call["outcome"]["abandoned"] is True and call["outcome"]["agent_at"] is None
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT answered, abandoned FROM campaign_answer_hours WHERE campaign = 'reminders'"
            )
        assert (row["answered"], row["abandoned"]) == (1, 1)


@pytest.mark.parametrize(
    ("headers", "body", "error_id"),
    [
        ({}, {"number": NEW_YORK}, "idempotency_key.missing"),
        (KEY, {"number": NEW_YORK, "variables": {"DIALGUARD_VERDICT": "ALLOW"}}, "bad_field"),
        (KEY, {"number": NEW_YORK, "variables": {"X": "1\r\nAction: Originate"}}, "bad_field"),
        (KEY, {"number": NEW_YORK, "variables": {"bad name": "1"}}, "bad_field"),
        (KEY, {"number": NEW_YORK, "lead_state": "Atlantis"}, "invalid_lead_state"),
    ],
)
async def test_bad_requests_are_refused_before_anything_is_judged(
    rig: Rig, headers: dict[str, str], body: dict[str, Any], error_id: str
) -> None:
    response = await rig.client.post("/v1/calls", json=body, headers={**rig.headers, **headers})
    assert response.status in (400, 422) and (await response.json())["error_id"] == error_id
    assert rig.originates() == []


async def test_the_dialers_variables_reach_the_channel_escaped_for_asterisk(rig: Rig) -> None:
    status, body, _ = await rig.call(campaign="reminders", variables={"LEAD_ID": "a,b(c)"})
    assert status == 202
    (sent,) = rig.originates()
    # As manager.c splits each Variable header (app.c's splitter): the value arrives whole.
    assert sent.variables["LEAD_ID"] == "a,b(c)"
    assert sent.variables["DIALGUARD_CALL_ID"] == body["call_id"]
    assert sent.variables["DIALGUARD_REASONS"] == ",".join(r["code"] for r in body["decision"]["reasons"])
