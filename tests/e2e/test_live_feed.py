"""Two `dialguard serve` processes on one database: a supervisor following one of them sees the
decisions of both, within a second, through GET /v1/events (the wiring of serve: each gateway's
announcer, its hub on a connection of its own, the stream)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from dialguard.store.tokens import Role, create_token
from tests.decision_rows import SseReader
from tests.e2e.test_two_gateways import gateways


@pytest.fixture
async def two_gateways(tmp_path: Path, db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[list[str]]:
    """The base URLs of two gateways' HTTP APIs."""
    async with gateways(db_dsn, tmp_path) as started:
        yield [p.url for p in started]


async def test_a_supervisor_on_one_gateway_follows_the_checks_of_both(
    two_gateways: list[str], pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        supervisor = await create_token(conn, name="sup", role=Role.SUPERVISOR)
        dialer = await create_token(conn, name="dialer", role=Role.DIALER)
    a, b = two_gateways
    async with aiohttp.ClientSession() as http:
        follow = await http.get(f"{a}/v1/events", headers={"Authorization": f"Bearer {supervisor}"})
        assert follow.status == 200 and follow.headers["Content-Type"] == "text/event-stream"
        events = SseReader(follow)
        for base, number in ((b, "+48601234567"), (a, "+48601234568"), (b, "+48601234569")):
            started = asyncio.get_running_loop().time()
            answer = await http.post(
                f"{base}/v1/checks",
                json={"number": number, "campaign": "spring"},
                headers={"Authorization": f"Bearer {dialer}"},
            )
            assert answer.status == 200, await answer.text()
            decision = await answer.json()
            got = await events.event(within=1.0)
            assert got.event == "decision" and got.json["call_id"] == decision["call_id"]
            assert asyncio.get_running_loop().time() - started < 1.0
        follow.close()
    async with pool.acquire() as conn:
        writers = await conn.fetchval("SELECT count(DISTINCT writer) FROM decisions")
    assert writers == 2
