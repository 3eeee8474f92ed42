"""Admin work has a pool of its own (issue 10, item 12): imports, scrubs and the admin routes never
take a connection the call path needs, and an admin request that gets none in time answers 503.

Real sockets, real PostgreSQL; each pool is one connection, so "held" and "free" are exact.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialguard.clock import fixed_clock
from dialguard.config import DatabaseSettings, Settings
from dialguard.gate import Gate
from dialguard.rules.loader import load_rulebook
from dialguard.store.db import create_pool
from dialguard.store.tokens import Role, create_token
from dialguard.web.app import create_app
from dialguard.web.routes import ROUTES
from tests.conftest import as_gateway
from tests.fakes.waiting import server_reports
from tests.integration.test_http_api import concrete

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
RULES = load_rulebook()

Client = TestClient[web.Request, web.Application]


@dataclasses.dataclass
class Rig:
    client: Client
    calls: asyncpg.Pool  # the call path's pool: FastAGI checks and POST /v1/checks
    admin: asyncpg.Pool  # everything else
    headers: dict[str, str]


@pytest.fixture
async def rig(db_dsn: str, pool: asyncpg.Pool, aiohttp_client: Any) -> AsyncIterator[Rig]:
    calls = await create_pool(as_gateway(db_dsn), size=1)
    admin = await create_pool(as_gateway(db_dsn), size=1, application_name="dialguard-admin")
    settings = dataclasses.replace(Settings(), database=DatabaseSettings(admin_acquire_timeout=0.2))

    def gate(on: asyncpg.Pool) -> Gate:
        return Gate(pool=on, rulebook=RULES, clock=fixed_clock(NOW), default_region="US")

    app = create_app(
        settings=settings, pool=calls, gate=gate(calls), admin_pool=admin, admin_gate=gate(admin)
    )
    async with pool.acquire() as conn:
        token = await create_token(conn, name="admin-1", role=Role.ADMIN)
    try:
        yield Rig(await aiohttp_client(app), calls, admin, {"Authorization": f"Bearer {token}"})
    finally:
        await calls.close()
        await admin.close()


async def a_check(rig: Rig) -> dict[str, Any]:
    response = await rig.client.post("/v1/checks", json={"number": "+12125550142"}, headers=rig.headers)
    assert response.status == 200
    decision: dict[str, Any] = await response.json()
    assert decision["reason"] != "gate.unavailable"
    return decision


ADMIN_ROUTES = sorted((r.method, r.path) for r in ROUTES if not r.call_path)


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
async def test_an_admin_route_without_a_free_admin_connection_answers_503_and_checks_go_on(
    rig: Rig, method: str, path: str
) -> None:
    async with rig.admin.acquire():  # an import, say, holds the admin pool's only connection
        response = await rig.client.request(method, concrete(path), json={}, headers=rig.headers)
        assert response.status == 503
        body = await response.json()
        assert set(body) == {"error_id", "message", "details"}
        assert body["error_id"] == "admin_busy"
        assert body["details"] == {"admin_pool_size": 1, "waited_seconds": 0.2}
        await a_check(rig)  # the call path has its own connection


async def test_admin_routes_and_scrubs_never_take_the_call_paths_connection(rig: Rig) -> None:
    async with rig.calls.acquire():  # every call-path connection busy
        listed = await rig.client.post("/v1/dnc", json={"number": "+12125550142"}, headers=rig.headers)
        assert listed.status == 201
        lists = await rig.client.get("/v1/dnc/lists", headers=rig.headers)
        assert lists.status == 200
        scrub = await rig.client.post(
            "/v1/scrub?campaign=default",
            data="number\n+12125550142\n+12125550143\n",
            headers={**rig.headers, "Content-Type": "text/csv"},
        )
        lines = (await scrub.text()).splitlines()
    assert scrub.status == 200
    reasons = [line for line in lines if "gate.unavailable" in line]
    assert reasons == [] and '"dnc.internal"' in lines[0]


async def test_an_import_in_progress_holds_an_admin_connection_and_no_call_connection(
    rig: Rig, pool: asyncpg.Pool
) -> None:
    rest = asyncio.Event()

    async def upload() -> AsyncIterator[bytes]:
        # More than one read of the importer, then nothing until the test lets it finish.
        yield b"".join(b"212%07d\n" % n for n in range(2_000_000, 2_300_000))
        await rest.wait()
        yield b"2125550142\n"

    url = "/v1/dnc/imports?list=us_national&format=us-registry&date=2026-11-20"
    importing = asyncio.create_task(rig.client.post(url, data=upload(), headers=rig.headers))
    try:
        async with pool.acquire() as conn:
            await server_reports(
                conn,
                """SELECT count(*) > 0 FROM pg_stat_progress_copy p JOIN pg_stat_activity a USING (pid)
                    WHERE p.datname = current_database() AND a.application_name = 'dialguard-admin'
                      AND p.tuples_processed > 0""",
            )
        busy = await rig.client.get("/v1/dnc/lists", headers=rig.headers)
        assert busy.status == 503  # the import has the admin pool's connection...
        assert (await a_check(rig))["verdict"] == "BLOCK"  # ...and checks still have theirs
    finally:
        rest.set()
    response = await importing
    assert response.status == 201, await response.text()
    assert (await response.json())["rows"] == 300_001
    assert (await a_check(rig))["reason"] == "dnc.us_national"
