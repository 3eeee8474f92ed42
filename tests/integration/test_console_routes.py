"""The routes the supervisors' console reads (issue 13) and the page itself, over a real socket and a
real PostgreSQL: a number explained, verdicts counted, whose token this is; / and /static/."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialguard.clock import fixed_clock
from dialguard.config import Settings
from dialguard.gate import CheckRequest, Gate
from dialguard.policy.model import Purpose
from dialguard.rules.loader import load_rulebook
from dialguard.store import campaigns, consent, dnc
from dialguard.store.tokens import Role, create_token
from dialguard.web.app import create_app

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 11:00 in New York
NEW_YORK = "+12125550142"

Client = TestClient[web.Request, web.Application]


@dataclasses.dataclass
class Api:
    client: Client
    gate: Gate
    tokens: dict[str, str]

    async def get(self, path: str, role: str = "supervisor", **params: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"}
        response = await self.client.get(path, params=params, headers=headers)
        return response.status, await response.json()


@pytest.fixture
async def api(pool: asyncpg.Pool, aiohttp_client: Any) -> Api:
    gate = Gate(pool=pool, rulebook=load_rulebook(), clock=fixed_clock(NOW), default_region="US")
    client = await aiohttp_client(create_app(settings=Settings(), pool=pool, gate=gate))
    async with pool.acquire() as conn:
        tokens = {str(role): await create_token(conn, name=f"{role}-1", role=role) for role in Role}
    return Api(client, gate, tokens)


async def consented(pool: asyncpg.Pool, number: str) -> None:
    async with pool.acquire() as conn:
        await consent.grant_consent(
            conn, at=NOW, number=number, kind="express_written", source="web_form",
            purpose=Purpose.MARKETING, granted_at=NOW - timedelta(days=30),
        )  # fmt: skip


async def stored(pool: asyncpg.Pool) -> tuple[int, int]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT (SELECT count(*) FROM decisions), (SELECT count(*) FROM attempts)")
    assert row is not None
    return row[0], row[1]


async def test_a_number_outside_its_hours_says_why_and_from_when(api: Api, pool: asyncpg.Pool) -> None:
    await consented(pool, NEW_YORK)
    status, body = await api.get(
        "/v1/numbers/+1 (212) 555-0142/explain", at="2026-11-23T03:00:00Z", campaign="default"
    )
    assert status == 200, body
    assert (body["number"], body["campaign"], body["purpose"]) == (NEW_YORK, "default", "marketing")
    assert body["may_call"] is False
    assert body["reason"] == "hours.outside_window"
    assert body["next_callable_at"] == "2026-11-23T13:00:00+00:00"  # 08:00 in New York
    failed = [r for r in body["decision"]["reasons"] if not r["passed"]]
    assert [r["code"] for r in failed] == ["hours.outside_window"]
    assert failed[0]["detail"]["local_time"] == "2026-11-22T22:00:00-05:00"
    assert body["at"] == "2026-11-23T03:00:00+00:00"
    assert any("America/New_York" in line and "OUTSIDE" in line for line in body["explanation"])
    assert body["decision"]["recorded"] is False
    assert await stored(pool) == (0, 0)  # a dry run: nothing stored, no attempt counted


async def test_a_number_that_may_be_called_now(api: Api, pool: asyncpg.Pool) -> None:
    await consented(pool, NEW_YORK)
    status, body = await api.get(f"/v1/numbers/{NEW_YORK}/explain")
    assert status == 200, body
    assert (body["may_call"], body["reason"], body["next_callable_at"]) == (True, "ok", None)
    assert body["at"] == NOW.isoformat()  # the gateway's clock, not the wall's
    assert await stored(pool) == (0, 0)


async def test_an_opt_out_blocks_with_no_time_to_wait_for(api: Api, pool: asyncpg.Pool) -> None:
    await consented(pool, NEW_YORK)
    async with pool.acquire() as conn:
        await dnc.add_dnc(conn, at=NOW, number=NEW_YORK, source="complaint")
    status, body = await api.get(f"/v1/numbers/{NEW_YORK}/explain", role="dialer")
    assert status == 200, body
    assert (body["may_call"], body["reason"], body["next_callable_at"]) == (False, "dnc.internal", None)


async def test_emergency_numbers_unknown_campaigns_and_bad_questions(api: Api) -> None:
    status, body = await api.get("/v1/numbers/911/explain")
    assert status == 200 and body["may_call"] is True and body["reason"] == "ok"
    assert body["decision"]["reasons"][0]["code"] == "number.emergency"
    assert body["explanation"] == []
    status, body = await api.get(f"/v1/numbers/{NEW_YORK}/explain", campaign="nobody-made-this")
    assert status == 200 and body["reason"] == "campaign.unknown"
    cases = [
        ("/v1/numbers/call-me-maybe/explain", {}, 422, "invalid_number"),
        (f"/v1/numbers/{NEW_YORK}/explain", {"at": "tomorrow"}, 400, "bad_field"),
        (f"/v1/numbers/{NEW_YORK}/explain", {"at": "2026-11-23T03:00:00"}, 400, "bad_field"),
        (f"/v1/numbers/{NEW_YORK}/explain", {"lead_state": "Atlantis"}, 422, "invalid_lead_state"),
    ]
    for path, params, want, error_id in cases:
        status, body = await api.get(path, **params)
        assert (status, body["error_id"]) == (want, error_id), (path, params, body)


async def test_a_lead_state_brings_its_rules(api: Api, pool: asyncpg.Pool) -> None:
    await consented(pool, NEW_YORK)
    # 20:30 in New York: inside the federal window, past Florida's 20:00.
    at = "2026-11-24T01:30:00Z"
    _, plain = await api.get(f"/v1/numbers/{NEW_YORK}/explain", at=at)
    status, florida = await api.get(f"/v1/numbers/{NEW_YORK}/explain", at=at, lead_state="FL")
    assert status == 200, florida
    assert plain["may_call"] is True
    assert florida["may_call"] is False and florida["reason"] == "hours.outside_window"


async def test_verdicts_counted_by_campaign_and_reason_over_a_window(api: Api, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await campaigns.add_campaign(conn, name="spring", purpose=Purpose.INFORMATIONAL)
        await dnc.add_dnc(conn, at=NOW, number="+12125550100", source="complaint")
    for number in ("+12125550101", "+12125550102", "+12125550100"):
        await api.gate.check(CheckRequest(number=number, campaign="spring"))
    await api.gate.check(CheckRequest(number="not a number", campaign="spring"))
    await api.gate.check(CheckRequest(number="+12125550103", campaign="other"))  # no such campaign
    # A dry run judged at another instant is stored with that instant: outside the window.
    await api.gate.check(CheckRequest(number="+12125550104", campaign="spring", at=NOW - timedelta(days=3)))

    status, body = await api.get("/v1/stats/verdicts", campaign="spring")
    assert status == 200, body
    assert body["until"] == NOW.isoformat()
    assert body["since"] == (NOW - timedelta(hours=24)).isoformat()
    assert body["counts"] == [
        {"campaign": "spring", "verdict": "ALLOW", "reason": "ok", "count": 2},
        {"campaign": "spring", "verdict": "BLOCK", "reason": "dnc.internal", "count": 1},
        {"campaign": "spring", "verdict": "BLOCK", "reason": "number.invalid", "count": 1},
    ]
    _, every = await api.get("/v1/stats/verdicts", role="admin")
    assert {(c["campaign"], c["reason"]) for c in every["counts"]} >= {("other", "campaign.unknown")}
    since = (NOW - timedelta(days=4)).isoformat()
    _, wider = await api.get("/v1/stats/verdicts", campaign="spring", since=since)
    assert sum(c["count"] for c in wider["counts"]) == 5
    _, none = await api.get(
        "/v1/stats/verdicts", campaign="spring", until=(NOW - timedelta(days=10)).isoformat()
    )
    assert none["counts"] == []


@pytest.mark.parametrize(
    ("params", "error_id"),
    [
        ({"since": "2026-11-23T16:00:00Z", "until": "2026-11-23T15:00:00Z"}, "bad_query"),
        ({"since": "2026-11-23T16:00:00Z", "until": "2026-11-23T16:00:00Z"}, "bad_query"),
        ({"since": "2026-10-01T00:00:00Z", "until": "2026-11-23T00:00:00Z"}, "bad_query"),
        ({"since": "last week"}, "bad_field"),
        ({"until": "0001-01-01T00:00:00+14:00"}, "bad_field"),
    ],
)
async def test_a_window_that_is_not_one_is_refused(api: Api, params: dict[str, str], error_id: str) -> None:
    status, body = await api.get("/v1/stats/verdicts", **params)
    assert (status, body["error_id"]) == (400, error_id), body


async def test_whoami_names_the_token_and_its_role(api: Api) -> None:
    for role in ("admin", "dialer", "supervisor"):
        status, body = await api.get("/v1/whoami", role=role)
        assert (status, body) == (200, {"name": f"{role}-1", "role": role})
    response = await api.client.get("/v1/whoami", headers={"Authorization": "Bearer dg_wrong"})
    assert response.status == 401


async def test_the_page_and_its_files_need_no_token_and_say_what_they_are(api: Api) -> None:
    page = await api.client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    html = await page.text()
    assert '<script type="module" src="/static/main.js"></script>' in html
    for name, kind in (
        ("main.js", "text/javascript"),
        ("console.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ):
        response = await api.client.get(f"/static/{name}")
        assert (response.status, response.content_type) == (200, kind), name
    for path in ("/static/missing.js", "/static/%2e%2e%2fpage.py", "/static/../web/page.py"):
        response = await api.client.get(path)
        assert response.status == 404, path
        assert (await response.json())["error_id"] == "not_found"
