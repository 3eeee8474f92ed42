"""The abandoned-call governor against a real PostgreSQL: outcomes and their hourly counts (two writers at
once), the window's edge, the gate blocking a campaign at its limit and a number abandoned within 72 hours
(Gate.check, FastAGI, POST /v1/checks), and GET /v1/campaigns/{name} over HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialguard.asterisk.agi_routes import agi_routes
from dialguard.asterisk.agi_server import AgiServer
from dialguard.clock import fixed_clock
from dialguard.config import Settings
from dialguard.gate import CheckRequest, Gate
from dialguard.policy.model import Purpose, Verdict
from dialguard.rules.loader import load_rulebook
from dialguard.store import abandons, campaigns
from dialguard.store.tokens import Role, create_token
from dialguard.web.app import create_app
from tests.decision_rows import store_decision
from tests.fakes.asterisk_agi import FakeAsterisk

# A Tuesday, 10:00 in London (GMT): inside the GB pack's 08:00-21:00, and so is every instant used below.
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
GB = "+442071234567"
GB_OTHER = "+442079460000"
US = "+12125550123"

Client = TestClient[web.Request, web.Application]


async def record(
    conn: Any, *, at: datetime, number: str = GB_OTHER, campaign: str = "spring", abandoned: bool = False
) -> bool:
    """An answered call of a decided one, its outcome kept as the AMI timeline keeps it."""
    call_id = await store_decision(conn, at=at - timedelta(seconds=20), campaign=campaign, number=number)
    agent_at = None if abandoned else at + timedelta(seconds=1)
    return await abandons.record_outcomes(conn, [abandons.Outcome(call_id, at, agent_at, abandoned)]) == 1


async def hour_rows(conn: Any, campaign: str = "spring") -> list[tuple[datetime, int, int]]:
    rows = await conn.fetch(
        "SELECT hour, answered, abandoned FROM campaign_answer_hours WHERE campaign = $1 ORDER BY hour",
        campaign,
    )
    return [(r["hour"], r["answered"], r["abandoned"]) for r in rows]


# ---------------------------------------------------------------- the store


async def test_an_outcome_is_kept_once_and_counted_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        call_id = await store_decision(conn, at=NOW - timedelta(seconds=20), number=GB)
        first = abandons.Outcome(call_id, NOW, None, abandoned=True)
        assert await abandons.record_outcomes(conn, [first]) == 1
        # A replay (the AMI batch retried), even one that now says otherwise, changes nothing.
        again = abandons.Outcome(call_id, NOW, NOW, abandoned=False)
        assert await abandons.record_outcomes(conn, [again]) == 0
        # A call the gate never decided is not counted.
        assert await abandons.record_outcomes(conn, [abandons.Outcome(uuid.uuid4(), NOW, None, True)]) == 0
        assert await hour_rows(conn) == [(NOW, 1, 1)]
        assert await conn.fetchval("SELECT abandoned FROM call_outcomes WHERE call_id = $1", call_id) is True


async def test_the_hour_is_the_utc_hour_whatever_the_session_zone(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("SET TIME ZONE 'Asia/Kolkata'")  # +05:30: a local hour starts at :30 UTC
        try:
            await record(conn, at=NOW + timedelta(minutes=45))
        finally:
            await conn.execute("RESET TIME ZONE")
        assert await hour_rows(conn) == [(NOW, 1, 0)]


async def test_two_writers_of_one_hour_lose_no_count(pool: asyncpg.Pool) -> None:
    """Each round starts a new hour, so both writers race to create its row, then to add to it."""

    async def writer(conn: Any, hour: datetime, abandoned: bool) -> None:
        for i in range(10):
            await record(conn, at=hour + timedelta(seconds=i), abandoned=abandoned and i % 2 == 0)

    async with pool.acquire() as one, pool.acquire() as two:
        for round_ in range(5):
            hour = NOW + timedelta(hours=round_)
            await asyncio.gather(writer(one, hour, True), writer(two, hour, False))
        rows = await hour_rows(one)
    assert rows == [(NOW + timedelta(hours=h), 20, 5) for h in range(5)]


async def test_the_windows_first_hour_counts_its_abandoned_calls_not_its_answered(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for minute in (10, 50):  # the hour that holds the window's start (now - 24 h = 10:30 yesterday)
            await record(
                conn, at=NOW - timedelta(hours=24) + timedelta(minutes=minute), abandoned=minute == 10
            )
        await record(conn, at=NOW - timedelta(hours=25))  # wholly before the window
        await record(conn, at=NOW - timedelta(hours=3), abandoned=True)
        await record(conn, at=NOW - timedelta(hours=3))
        await record(conn, at=NOW + timedelta(hours=2), abandoned=True)  # after the instant judged
        counts = await abandons.campaign_rate(
            conn, "spring", window=timedelta(hours=24), now=NOW + timedelta(minutes=30)
        )
        assert (counts.answered, counts.abandoned) == (2, 2)
        # On the hour the window starts with a whole hour: it counts in full.
        counts = await abandons.campaign_rate(conn, "spring", window=timedelta(hours=24), now=NOW)
        assert (counts.answered, counts.abandoned) == (4, 2)
        assert counts.since == NOW - timedelta(hours=24) and counts.until == NOW
        empty = await abandons.campaign_rate(conn, "autumn", window=timedelta(days=30), now=NOW)
        assert (empty.answered, empty.abandoned) == (0, 0)


# ---------------------------------------------------------------- through the gate


@pytest.fixture
async def gate(pool: asyncpg.Pool) -> Gate:
    async with pool.acquire() as conn:
        await campaigns.add_campaign(conn, name="spring", purpose=Purpose.SURVEY)
        await campaigns.add_campaign(
            conn, name="preview", purpose=Purpose.SURVEY, settings={"agent_guaranteed": True}
        )
    return Gate(pool=pool, rulebook=load_rulebook(), clock=fixed_clock(NOW), default_region="GB")


async def fill(pool: asyncpg.Pool, *, answered: int, abandoned: int, at: datetime) -> None:
    async with pool.acquire() as conn:
        for i in range(answered):
            await record(conn, at=at + timedelta(seconds=i), abandoned=i < abandoned)


def reason(result: Any, code: str) -> dict[str, Any]:
    return next(r.detail for r in result.decision.reasons if r.code == code)


async def test_a_campaign_at_its_limit_is_blocked_until_the_window_slides(
    gate: Gate, pool: asyncpg.Pool
) -> None:
    await fill(pool, answered=100, abandoned=3, at=NOW - timedelta(hours=2))
    result = await gate.check(CheckRequest(GB, campaign="spring"))
    assert result.verdict is Verdict.BLOCK and result.decision.reason == "campaign.abandon_rate"
    evidence = reason(result, "campaign.abandon_rate")
    assert evidence["answered"] == 100 and evidence["abandoned"] == 3 and evidence["rate"] == 0.03
    assert evidence["limit"] == 0.03 and evidence["window_seconds"] == 86400 and evidence["layer"] == "GB"
    assert evidence["window_start"] == (NOW - timedelta(hours=24)).isoformat()
    assert result.decision.next_callable_at is None
    async with pool.acquire() as conn:  # the stored decision carries the same evidence
        body = await conn.fetchval("SELECT body FROM decisions WHERE call_id = $1", result.call_id)
    assert body["reason"] == "campaign.abandon_rate"
    # One more answered call without abandonment dilutes the rate under the limit.
    await fill(pool, answered=1, abandoned=0, at=NOW - timedelta(minutes=5))
    assert (await gate.check(CheckRequest(GB, campaign="spring"))).verdict is Verdict.ALLOW
    await fill(pool, answered=1, abandoned=1, at=NOW - timedelta(minutes=4))
    assert (await gate.check(CheckRequest(GB, campaign="spring"))).verdict is Verdict.BLOCK
    # The hour those calls were answered in leaves the window: while the window starts inside that hour,
    # its abandoned calls still count and its answered ones no longer do (the safe side) ...
    gate.clock = fixed_clock(NOW + timedelta(hours=22, minutes=30))
    late = await gate.check(CheckRequest(GB, campaign="spring"))
    assert late.decision.reason == "campaign.abandon_rate"
    assert reason(late, "campaign.abandon_rate")["answered"] == 2  # the 09:55 and 09:56 calls
    # ... and once it has wholly left, nothing of it counts.
    gate.clock = fixed_clock(NOW + timedelta(hours=23))
    slid = await gate.check(CheckRequest(GB, campaign="spring"))
    assert slid.verdict is Verdict.ALLOW, slid.decision.reasons
    assert reason(slid, "campaign.abandon_ok")["abandoned"] == 1


async def test_a_campaigns_first_abandoned_call_does_not_stop_it(gate: Gate, pool: asyncpg.Pool) -> None:
    await fill(pool, answered=1, abandoned=1, at=NOW - timedelta(hours=1))  # 100 % of one answered call
    result = await gate.check(CheckRequest(GB, campaign="spring"))
    assert result.verdict is Verdict.ALLOW
    assert reason(result, "campaign.abandon_ok")["measured_against"] == 34


async def test_a_number_abandoned_within_72_hours_waits_unless_an_agent_is_guaranteed(
    gate: Gate, pool: asyncpg.Pool
) -> None:
    abandoned_at = NOW - timedelta(hours=1)
    async with pool.acquire() as conn:
        await record(conn, at=abandoned_at, number=GB, campaign="autumn", abandoned=True)
    result = await gate.check(CheckRequest(GB, campaign="spring"))  # another campaign's abandonment counts
    assert result.verdict is Verdict.BLOCK and result.decision.reason == "campaign.abandoned_recently"
    assert result.decision.next_callable_at == abandoned_at + timedelta(hours=72)  # Friday 09:00, in hours
    assert result.to_json()["next_callable_at"] == (abandoned_at + timedelta(hours=72)).isoformat()
    assert reason(result, "campaign.abandoned_recently")["abandoned_campaign"] == "autumn"
    assert (await gate.check(CheckRequest(GB, campaign="preview"))).verdict is Verdict.ALLOW
    assert (await gate.check(CheckRequest(GB_OTHER, campaign="spring"))).verdict is Verdict.ALLOW
    gate.clock = fixed_clock(abandoned_at + timedelta(hours=72))
    assert (await gate.check(CheckRequest(GB, campaign="spring"))).verdict is Verdict.ALLOW


async def test_no_abandon_rule_no_abandon_reason(gate: Gate, pool: asyncpg.Pool) -> None:
    await fill(pool, answered=10, abandoned=10, at=NOW - timedelta(hours=1))
    result = await gate.check(CheckRequest("+48601234567", campaign="spring"))  # Poland: no such rule
    assert not any(code.startswith("campaign.") for code in result.decision.codes)


async def test_a_scrub_look_ahead_judges_each_number_by_its_own_rule(gate: Gate, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await record(conn, at=NOW - timedelta(hours=1), number=GB, abandoned=True)
    judged = await gate.look_ahead(
        [CheckRequest(n, campaign="spring") for n in (GB, GB_OTHER, "+48601234567")]
    )
    assert [j.decision.reason for j in judged[:2]] == ["campaign.abandoned_recently", "ok"]
    assert reason(judged[1], "campaign.abandon_ok")["abandoned"] == 1
    assert not any(code.startswith("campaign.") for code in judged[2].decision.codes)


async def test_fastagi_check_sets_the_reason_and_when_to_call_again(gate: Gate, pool: asyncpg.Pool) -> None:
    abandoned_at = NOW - timedelta(hours=1)
    async with pool.acquire() as conn:
        await record(conn, at=abandoned_at, number=GB, abandoned=True)
    server = AgiServer(routes=agi_routes(gate=gate), host="127.0.0.1", port=0)
    await server.start()
    try:
        run = await FakeAsterisk("127.0.0.1", server.port).agi("check", GB, "spring")
    finally:
        await server.close()
    assert run.variables["DIALGUARD_VERDICT"] == "BLOCK"
    assert run.variables["DIALGUARD_REASON"] == "campaign.abandoned_recently"
    assert run.variables["DIALGUARD_NEXT_CALLABLE"] == (abandoned_at + timedelta(hours=72)).isoformat()


# ---------------------------------------------------------------- HTTP


@pytest.fixture
async def api(gate: Gate, pool: asyncpg.Pool, aiohttp_client: Any) -> tuple[Client, dict[str, str]]:
    client = await aiohttp_client(create_app(settings=Settings(), pool=pool, gate=gate))
    async with pool.acquire() as conn:
        tokens = {str(role): await create_token(conn, name=f"{role}-1", role=role) for role in Role}
    return client, tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_post_check_blocks_a_campaign_at_its_limit(
    api: tuple[Client, dict[str, str]], pool: asyncpg.Pool
) -> None:
    client, tokens = api
    await fill(pool, answered=40, abandoned=2, at=NOW - timedelta(hours=1))
    response = await client.post(
        "/v1/checks", json={"number": GB, "campaign": "spring"}, headers=bearer(tokens["dialer"])
    )
    assert response.status == 200
    body = await response.json()
    assert body["verdict"] == "BLOCK" and body["reason"] == "campaign.abandon_rate"
    detail = next(r["detail"] for r in body["reasons"] if r["code"] == "campaign.abandon_rate")
    assert (detail["answered"], detail["abandoned"], detail["measured_against"]) == (40, 2, 40)


async def test_get_campaign_shows_its_rate_per_pack(
    api: tuple[Client, dict[str, str]], pool: asyncpg.Pool
) -> None:
    client, tokens = api
    await fill(pool, answered=100, abandoned=3, at=NOW - timedelta(hours=2))
    await fill(pool, answered=100, abandoned=0, at=NOW - timedelta(days=10))  # inside 30 days, not 24 h
    for role in ("admin", "supervisor", "dialer"):
        response = await client.get("/v1/campaigns/spring", headers=bearer(tokens[role]))
        assert response.status == 200, role
    body = await response.json()
    assert body["name"] == "spring" and body["purpose"] == "survey" and body["settings"] == {}
    by_pack = {entry["pack"]: entry for entry in body["abandon"]}
    assert set(by_pack) == {"US", "GB"}
    gb, us = by_pack["GB"], by_pack["US"]
    assert (gb["answered"], gb["abandoned"], gb["held"]) == (100, 3, True)
    assert gb["window_seconds"] == 86400 and gb["limit"] == 0.03 and gb["repeat_block_hours"] == 72
    assert (us["answered"], us["abandoned"], us["held"]) == (200, 3, False)
    assert us["rate"] == 0.015 and us["purposes"] == ["marketing"] and us["repeat_block_hours"] is None
    assert us["window_start"] == (NOW - timedelta(days=30)).isoformat()
    assert "310.4(b)(4)" in us["source"]["citation"]


async def test_get_campaign_unknown_or_unusable_names_are_404(api: tuple[Client, dict[str, str]]) -> None:
    client, tokens = api
    for name in ("nope", "x" * 200, "%00", "caf%C3%A9", "..%2F.."):
        response = await client.get(f"/v1/campaigns/{name}", headers=bearer(tokens["supervisor"]))
        assert response.status == 404, name
        body = await response.json()
        assert body["error_id"] == "unknown_campaign"
    response = await client.get("/v1/campaigns/default", headers=bearer(tokens["supervisor"]))
    assert response.status == 200 and (await response.json())["purpose"] == "marketing"  # the implicit one
    assert (await client.get("/v1/campaigns/spring")).status == 401


async def test_get_campaign_lists_no_rate_where_no_pack_has_a_rule(
    pool: asyncpg.Pool, aiohttp_client: Any
) -> None:
    from tests.fakes.rules import simple_rulebook

    gate = Gate(pool=pool, rulebook=simple_rulebook(), clock=fixed_clock(NOW), default_region="GB")
    client = await aiohttp_client(create_app(settings=dataclasses.replace(Settings()), pool=pool, gate=gate))
    async with pool.acquire() as conn:
        token = await create_token(conn, name="s", role=Role.SUPERVISOR)
        await campaigns.add_campaign(
            conn, name="plain", purpose=Purpose.MARKETING, settings={"seller_name": "Acme"}
        )
    body = await (await client.get("/v1/campaigns/plain", headers=bearer(token))).json()
    assert body == {
        "name": "plain",
        "purpose": "marketing",
        "settings": {"seller_name": "Acme"},
        "abandon": [],
    }
