"""`dialguard serve` keeps admin work off the call path (issue 10, item 12): a real gateway process,
an HTTP import that holds the admin pool's only connection, and checks over FastAGI and HTTP meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from dialguard.store.db import create_pool
from dialguard.store.tokens import Role, create_token
from tests.e2e.test_two_gateways import gateways
from tests.fakes.asterisk_agi import FakeAsterisk
from tests.fakes.waiting import server_reports


@dataclass
class Gateway:
    agi_port: int
    http_port: int
    token: str  # an admin's
    observer: asyncpg.Connection  # to its database, of neither of its pools


@pytest.fixture
async def gateway(new_database: Callable[[], Awaitable[str]], tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway with one admin connection and two for calls, on a database of its own."""
    dsn = await new_database()
    setup = await create_pool(dsn, size=1)
    async with setup.acquire() as conn:
        token = await create_token(conn, name="admin-1", role=Role.ADMIN)
    await setup.close()
    observer = await asyncpg.connect(dsn)
    pools = {
        "DIALGUARD_DATABASE_POOL_SIZE": "2",
        "DIALGUARD_DATABASE_ADMIN_POOL_SIZE": "1",
        "DIALGUARD_DATABASE_ADMIN_ACQUIRE_TIMEOUT": "0.3",
    }
    try:
        async with gateways(dsn, tmp_path, count=1, **pools) as (ports,):
            yield Gateway(ports.agi, ports.http, token, observer)
    finally:
        await observer.close()


async def test_an_http_import_holds_the_admin_pool_while_checks_keep_their_own(
    gateway: Gateway,
) -> None:
    observer = gateway.observer
    # The live feed's hub holds a connection of its own, of neither pool (it LISTENs).
    await server_reports(  # this database's: other work on the server may have hubs of its own
        observer,
        """SELECT count(*) = 1 FROM pg_stat_activity
            WHERE application_name = 'dialguard-events' AND datname = current_database()""",
    )
    pools = await observer.fetch(
        """SELECT application_name, count(*) AS n FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1 ORDER BY 1"""
    )
    assert {r["application_name"]: r["n"] for r in pools} == {
        "dialguard": 2, "dialguard-admin": 1, "dialguard-events": 1,
    }  # fmt: skip
    headers = {"Authorization": f"Bearer {gateway.token}"}
    base = f"http://127.0.0.1:{gateway.http_port}"
    rest = asyncio.Event()

    async def upload() -> AsyncIterator[bytes]:
        yield b"".join(b"212%07d\n" % n for n in range(2_000_000, 2_300_000))
        await rest.wait()
        yield b"2125550142\n"

    async with aiohttp.ClientSession() as http:
        url = f"{base}/v1/dnc/imports?list=us_national&format=us-registry&date=2026-11-20"
        importing = asyncio.create_task(http.post(url, data=upload(), headers=headers))
        try:
            await server_reports(
                observer, "SELECT count(*) > 0 FROM pg_stat_progress_copy WHERE datname = current_database()"
            )
            async with http.get(f"{base}/v1/dnc/lists", headers=headers) as busy:
                assert busy.status == 503
                assert (await busy.json())["error_id"] == "admin_busy"
            async with http.post(f"{base}/v1/checks", json={"number": "+12125550142"}, headers=headers) as r:
                assert r.status == 200
                assert (await r.json())["reason"] != "gate.unavailable"
            run = await FakeAsterisk("127.0.0.1", gateway.agi_port).agi("check", "+12125550142")
            assert run.variables["DIALGUARD_VERDICT"] in ("ALLOW", "BLOCK")
            assert run.variables["DIALGUARD_REASON"] != "gate.unavailable"
        finally:
            rest.set()
        async with await importing as done:
            assert done.status == 201, await done.text()
            assert (await done.json())["rows"] == 300_001
