"""GET /v1/decisions over real HTTP and PostgreSQL: newest first, keyset pages that hold still while
decisions keep arriving, the filters, and every bad query a clear 4xx."""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from dialguard.clock import fixed_clock
from dialguard.config import HttpSettings, Settings
from dialguard.gate import CheckRequest, Gate
from dialguard.store.decision_log import Cursor, InvalidCursor
from dialguard.store.tokens import Role, create_token
from dialguard.web.app import create_app
from tests.decision_rows import store_decision
from tests.fakes.rules import simple_rulebook

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def api(pool: asyncpg.Pool, aiohttp_client: Any) -> tuple[Client, dict[str, str]]:
    settings = dataclasses.replace(Settings(), http=HttpSettings(max_body_bytes=4096))
    gate = Gate(pool=pool, rulebook=simple_rulebook(), clock=fixed_clock(NOW), default_region="US")
    client = await aiohttp_client(create_app(settings=settings, pool=pool, gate=gate))
    async with pool.acquire() as conn:
        token = await create_token(conn, name="sup", role=Role.SUPERVISOR)
    return client, {"Authorization": f"Bearer {token}"}


async def listing(client: Client, headers: dict[str, str], **query: Any) -> dict[str, Any]:
    response = await client.get("/v1/decisions", params=query, headers=headers)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    assert set(body) == {"decisions", "next_cursor"}
    return body


async def every_page(client: Client, headers: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = await listing(client, headers, **query)
        rows += page["decisions"]
        if page["next_cursor"] is None:
            return rows
        query["cursor"] = page["next_cursor"]


async def test_a_decision_comes_back_as_stored_with_its_id(
    api: tuple[Client, dict[str, str]], pool: asyncpg.Pool
) -> None:
    client, headers = api
    gate = Gate(pool=pool, rulebook=simple_rulebook(), clock=fixed_clock(NOW), default_region="PL")
    result = await gate.check(CheckRequest("+48601234567", campaign="spring"))
    page = await listing(client, headers)
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT id, body FROM decisions WHERE call_id = $1", result.call_id)
    assert page == {"decisions": [{**row["body"], "id": row["id"]}], "next_cursor": None}
    assert page["decisions"][0]["reasons"] == result.to_json()["reasons"]


async def test_pages_walk_the_log_newest_first_once_each_even_through_equal_instants(
    api: tuple[Client, dict[str, str]], pool: asyncpg.Pool
) -> None:
    client, headers = api
    async with pool.acquire() as conn:
        # Three decisions share each instant: a page boundary falls between twins.
        for i in range(21):
            await store_decision(conn, at=NOW - timedelta(minutes=i // 3))
    rows = await every_page(client, headers, limit=4)
    assert len(rows) == 21 and len({r["id"] for r in rows}) == 21
    keys = [(r["decided_at"], r["id"]) for r in rows]
    assert keys == sorted(keys, reverse=True)
    first = await listing(client, headers)
    assert len(first["decisions"]) == 21 and first["next_cursor"] is None  # the default limit is 50


async def test_pages_hold_still_while_decisions_arrive(
    api: tuple[Client, dict[str, str]], pool: asyncpg.Pool
) -> None:
    client, headers = api
    async with pool.acquire() as conn:
        for i in range(10):
            await store_decision(conn, at=NOW - timedelta(minutes=i))
        first = await listing(client, headers, limit=4)
        for i in range(5):  # newer decisions, as a busy hour goes on
            await store_decision(conn, at=NOW + timedelta(seconds=i + 1))
    rest = await every_page(client, headers, limit=4, cursor=first["next_cursor"])
    seen = [r["id"] for r in first["decisions"] + rest]
    assert len(seen) == len(set(seen)) == 10  # none repeated, none skipped, none of the newer ones
    newest = await listing(client, headers, limit=5)
    assert [r["decided_at"] for r in newest["decisions"]] == [
        (NOW + timedelta(seconds=s)).isoformat() for s in (5, 4, 3, 2, 1)
    ]


async def test_filters_by_campaign_verdict_reason_number_and_time(
    api: tuple[Client, dict[str, str]], pool: asyncpg.Pool
) -> None:
    client, headers = api
    async with pool.acquire() as conn:
        await store_decision(conn, at=NOW - timedelta(hours=3), campaign="spring")
        await store_decision(conn, at=NOW - timedelta(hours=2), campaign="spring", failed=("dnc.internal",))
        await store_decision(
            conn,
            at=NOW - timedelta(hours=1),
            campaign="autumn",
            failed=("hours.outside_window", "dnc.internal"),
        )
        await store_decision(conn, at=NOW, campaign="autumn", number="+12125550199")

    async def ids(**query: Any) -> list[tuple[str, str]]:
        return [(r["campaign"], r["reason"]) for r in (await listing(client, headers, **query))["decisions"]]

    assert await ids(campaign="spring") == [("spring", "dnc.internal"), ("spring", "ok")]
    assert await ids(verdict="BLOCK") == [("autumn", "hours.outside_window"), ("spring", "dnc.internal")]
    # reason matches the decision's reason: its first failed code.
    assert await ids(reason="dnc.internal") == [("spring", "dnc.internal")]
    assert await ids(reason="ok", campaign="autumn") == [("autumn", "ok")]
    assert await ids(number="(212) 555-0199") == [("autumn", "ok")]  # read as the checks read it
    since, until = (NOW - timedelta(hours=2)).isoformat(), (NOW - timedelta(hours=1)).isoformat()
    assert await ids(since=since, until=until) == [("spring", "dnc.internal")]  # since in, until out
    assert await ids(campaign="nobody") == []


@pytest.mark.parametrize(
    ("query", "status", "error_id"),
    [
        ({"cursor": "not-a-cursor"}, 422, "invalid_cursor"),
        ({"cursor": ""}, 422, "invalid_cursor"),
        ({"cursor": "MTIzNDU"}, 422, "invalid_cursor"),  # base64 of "12345": no id
        ({"cursor": "LTEuMA"}, 422, "invalid_cursor"),  # "-1.0": id 0
        ({"cursor": "OTk5OTk5OTk5OTk5OTk5OTk5OS4x"}, 422, "invalid_cursor"),  # a time out of range
        ({"number": "12"}, 422, "invalid_number"),
        ({"verdict": "MAYBE"}, 400, "bad_query"),
        ({"limit": "0"}, 400, "bad_query"),
        ({"limit": "501"}, 400, "bad_query"),
        ({"limit": "ten"}, 400, "bad_query"),
        ({"since": "yesterday"}, 400, "bad_field"),
        ({"until": "2026-11-23T10:00:00"}, 400, "bad_field"),  # no offset
    ],
)
async def test_a_bad_query_is_refused_with_the_error_shape(
    api: tuple[Client, dict[str, str]], query: dict[str, str], status: int, error_id: str
) -> None:
    client, headers = api
    response = await client.get("/v1/decisions", params=query, headers=headers)
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) == {"error_id", "message", "details"} and body["error_id"] == error_id


async def test_the_limit_goes_to_500(api: tuple[Client, dict[str, str]], pool: asyncpg.Pool) -> None:
    client, headers = api
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO decisions (call_id, number, campaign, verdict, reason, body, rules_version,
                                      decided_at, recorded, writer, row_hash)
               SELECT gen_random_uuid(), '+12125550142', 'bulk', 'ALLOW', 'ok', '{"verdict": "ALLOW"}',
                      'test', $1::timestamptz - i * interval '1 second', false, 'test', '\\x00'
                 FROM generate_series(1, 501) AS i""",
            NOW,
        )
    page = await listing(client, headers, limit=500)
    assert len(page["decisions"]) == 500 and page["next_cursor"] is not None
    last = await listing(client, headers, limit=500, cursor=page["next_cursor"])
    assert len(last["decisions"]) == 1 and last["next_cursor"] is None


@given(st.datetimes(timezones=st.just(UTC)), st.integers(min_value=1, max_value=2**63 - 1))
def test_a_cursor_comes_back_as_it_went(at: datetime, ident: int) -> None:
    cursor = Cursor(at, ident)
    assert Cursor.decode(cursor.encode()) == cursor


@given(st.text(max_size=60))
def test_any_text_is_a_cursor_or_an_invalid_one(text: str) -> None:
    with contextlib.suppress(InvalidCursor):  # anything else (a 500) fails the test
        Cursor.decode(text)
