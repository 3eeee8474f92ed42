"""The HTTP token cache (issue 15) over real sockets and a real PostgreSQL: several gateways on one database,
revocations and role changes reaching them by NOTIFY, a lost LISTEN link, and a hit that takes no
connection. Caches here keep tokens for an hour, so that only a NOTIFY or a link event can explain a
token refused later: nothing expires during a test."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialguard.clock import fixed_clock
from dialguard.config import HttpSettings, Settings
from dialguard.events import EventHub
from dialguard.gate import Gate
from dialguard.store.db import create_pool
from dialguard.store.tokens import Role, create_token, revoke_token
from dialguard.web.app import create_app
from dialguard.web.token_cache import TokenCache
from tests.fakes.proxy import CuttableProxy
from tests.fakes.rules import simple_rulebook

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 16:00 in Warsaw: inside the test pack's hours
HOUR = 3600.0
Client = TestClient[web.Request, web.Application]


@dataclasses.dataclass
class Gateway:
    hub: EventHub
    cache: TokenCache
    client: Client

    async def whoami(self, token: str) -> tuple[int, dict[str, Any]]:
        response = await self.client.get("/v1/whoami", headers=bearer(token))
        return response.status, await response.json()

    async def check(self, token: str) -> int:
        body = {"number": "+48 22 123 45 67"}
        return (await self.client.post("/v1/checks", json=body, headers=bearer(token))).status


MakeGateway = Callable[..., Awaitable[Gateway]]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def gateway(db_dsn: str, pool: asyncpg.Pool, aiohttp_client: Any) -> AsyncIterator[MakeGateway]:
    """Gateways as serve wires them for HTTP: a hub whose link the token cache watches."""
    tasks: list[asyncio.Task[None]] = []

    async def make(
        *, max_age: float = HOUR, unknown_age: float = 1.0, hub_dsn: str | None = None,
        app_pool: asyncpg.Pool | None = None, **hub_kw: Any,
    ) -> Gateway:  # fmt: skip
        cache = TokenCache(max_age=max_age, unknown_age=unknown_age)
        hub = EventHub(dsn=hub_dsn or db_dsn, watches=[cache.watch], **hub_kw)
        tasks.append(asyncio.create_task(hub.run()))
        await hub.wait_ready(10)
        on = app_pool or pool
        gate = Gate(pool=on, rulebook=simple_rulebook(), clock=fixed_clock(NOW), default_region="PL")
        settings = dataclasses.replace(Settings(), http=HttpSettings(max_body_bytes=4096))
        app = create_app(settings=settings, pool=on, gate=gate, events=hub, token_cache=cache)
        return Gateway(hub, cache, await aiohttp_client(app))

    yield make
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def until(condition: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll ``condition`` (generously: a NOTIFY's way is not timed here, only awaited)."""
    async with asyncio.timeout(within):
        while not await condition():  # noqa: ASYNC110 - a request's answer is what is waited on
            await asyncio.sleep(0.02)


async def heard(gateways: tuple[Gateway, ...], change: Awaitable[Any]) -> Any:
    """Make ``change`` to api_tokens and return its result once every gateway has heard its NOTIFY (each
    forgets what it kept then): what is asserted next does not race the NOTIFY."""
    before = [gw.cache.cleared for gw in gateways]
    result = await change

    async def all_heard() -> bool:
        return all(gw.cache.cleared > n for gw, n in zip(gateways, before, strict=True))

    await until(all_heard)
    return result


async def new_token(pool: asyncpg.Pool, name: str, *gateways: Gateway, role: Role = Role.DIALER) -> str:
    async def create() -> str:
        async with pool.acquire() as conn:
            return await create_token(conn, name=name, role=role)

    return str(await heard(gateways, create()))


async def test_a_revocation_reaches_every_gateway_by_notify(gateway: MakeGateway, pool: asyncpg.Pool) -> None:
    a, b = await gateway(), await gateway()
    token = await new_token(pool, "dialer-1", a, b)
    for gw in (a, b):
        assert (await gw.whoami(token))[0] == 200
        assert (await gw.whoami(token))[0] == 200
        assert gw.cache.hits == 1  # the second request was served from the cache
    async with pool.acquire() as conn:  # as `dialguard token revoke` does
        assert await revoke_token(conn, name="dialer-1", at=NOW)

    async def refused_by_both() -> bool:
        return all([(await gw.whoami(token))[0] == 401 for gw in (a, b)])

    await until(refused_by_both)
    assert (await b.check(token)) == 401


async def test_a_role_changed_by_hand_and_a_token_created_are_seen_at_once(
    gateway: MakeGateway, pool: asyncpg.Pool
) -> None:
    gw = await gateway(unknown_age=HOUR)
    token = await new_token(pool, "dialer-1", gw)
    assert await gw.whoami(token) == (200, {"name": "dialer-1", "role": "dialer"})
    assert await gw.check(token) == 200
    async with pool.acquire() as conn:  # psql, not the CLI: the trigger tells the gateways all the same
        await conn.execute("UPDATE api_tokens SET role = 'supervisor' WHERE name = 'dialer-1'")

    async def demoted() -> bool:
        return (await gw.whoami(token))[1].get("role") == "supervisor"

    await until(demoted)
    assert await gw.check(token) == 403

    # A token refused as unknown (kept an hour here) and then stored: its INSERT is announced too.
    known = "dg_made-by-hand"
    assert (await gw.whoami(known))[0] == 401
    assert (await gw.whoami(known))[0] == 401
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO api_tokens (name, role, token_hash, created_by)
               VALUES ('by-hand', 'dialer', $1, 'x')""",
            hashlib.sha256(known.encode()).digest(),
        )

    async def accepted() -> bool:
        return (await gw.whoami(known))[0] == 200

    await until(accepted)
    async with pool.acquire() as conn:  # a new token is not in the cache: looked up at once
        fresh = await create_token(conn, name="dialer-2", role=Role.DIALER)
    assert await gw.whoami(fresh) == (200, {"name": "dialer-2", "role": "dialer"})


async def test_zero_seconds_keeps_no_token(gateway: MakeGateway, pool: asyncpg.Pool) -> None:
    gw = await gateway(max_age=0)
    token = await new_token(pool, "dialer-1", gw)
    for _ in range(3):
        assert (await gw.whoami(token))[0] == 200
    assert gw.cache.hits == 0 and len(gw.cache) == 0
    async with pool.acquire() as conn:
        await revoke_token(conn, name="dialer-1", at=NOW)
    assert (await gw.whoami(token))[0] == 401  # the very next request: there was nothing to forget


async def test_a_notify_missed_on_a_silent_link_is_made_up_for_once_the_link_is_found_dead(
    db_dsn: str, gateway: MakeGateway, pool: asyncpg.Pool
) -> None:
    proxy = CuttableProxy.for_dsn(db_dsn)
    await proxy.start()
    try:
        gw = await gateway(
            hub_dsn=proxy.dsn_through(db_dsn), retry_max=0.2, safety_every=0.2, query_timeout=0.5
        )
        token = await new_token(pool, "dialer-1", gw)
        assert (await gw.whoami(token))[0] == 200
        assert len(gw.cache) == 1
        # The hub's link goes silent (its replies and NOTIFYs stop arriving, nothing says so); the
        # revocation's NOTIFY is lost on it. Links made later flow again.
        proxy.hold_replies()
        async with pool.acquire() as conn:
            await revoke_token(conn, name="dialer-1", at=NOW)

        async def refused() -> bool:
            return (await gw.whoami(token))[0] == 401

        # Refused once the hub found its link dead (its read timed out) and forgot what it kept.
        await until(refused)

        async def linked() -> bool:
            return gw.cache.active

        await until(linked)  # a new link, LISTENing, forgetting again what a gap may have left
        assert gw.hub.reconnects >= 1
        assert (await gw.whoami(token))[0] == 401
    finally:
        await proxy.close()


async def test_nothing_is_kept_while_the_link_is_down_and_requests_still_look_tokens_up(
    db_dsn: str, gateway: MakeGateway, pool: asyncpg.Pool
) -> None:
    proxy = CuttableProxy.for_dsn(db_dsn)
    await proxy.start()
    try:
        gw = await gateway(hub_dsn=proxy.dsn_through(db_dsn), retry_max=0.2)
        token = await new_token(pool, "dialer-1", gw)
        assert (await gw.whoami(token))[0] == 200
        proxy.cut()

        async def unlinked() -> bool:
            return not gw.cache.active

        await until(unlinked)
        assert len(gw.cache) == 0  # forgotten as soon as the link was lost
        for _ in range(2):
            assert (await gw.whoami(token))[0] == 200  # from the database, each time
        assert len(gw.cache) == 0
        async with pool.acquire() as conn:  # its NOTIFY cannot reach this gateway
            await revoke_token(conn, name="dialer-1", at=NOW)
        assert (await gw.whoami(token))[0] == 401  # the next request: nothing kept to be stale
        proxy.restore()

        async def linked() -> bool:
            return gw.cache.active

        await until(linked)
        assert (await gw.whoami(token))[0] == 401
    finally:
        await proxy.close()


async def test_a_kept_token_needs_no_database_connection(
    gateway: MakeGateway, pool: asyncpg.Pool, proxied: tuple[CuttableProxy, asyncpg.Pool]
) -> None:
    """The app's pools reach the database through a proxy that is then cut; the hub's link is direct.
    GET /v1/whoami reads nothing but the token: served while the pools cannot reach the database, until
    the revocation's NOTIFY makes the gateway ask the database, which it cannot reach."""
    proxy, through = proxied
    gw = await gateway(app_pool=through)
    token = await new_token(pool, "dialer-1", gw)
    assert (await gw.whoami(token))[0] == 200
    proxy.cut()
    assert await gw.whoami(token) == (200, {"name": "dialer-1", "role": "dialer"})
    async with pool.acquire() as conn:
        await revoke_token(conn, name="dialer-1", at=NOW)

    async def not_served() -> bool:
        return (await gw.whoami(token))[0] != 200

    misses = gw.cache.misses
    await until(not_served)
    assert gw.cache.misses > misses  # looked up again, and the database is out of reach


async def test_a_check_with_a_kept_token_sends_no_token_query(
    gateway: MakeGateway, db_dsn: str, pool: asyncpg.Pool
) -> None:
    """Every statement the app's pool sends is logged: the second POST /v1/checks with the same token
    reads api_tokens no more (the first did)."""
    own = await create_pool(db_dsn, size=2)
    sent: list[str] = []
    try:
        held = [await own.acquire() for _ in range(2)]
        for conn in held:
            conn.add_query_logger(lambda q: sent.append(q.query))
        for conn in held:
            await own.release(conn)
        gw = await gateway(app_pool=own)
        token = await new_token(pool, "dialer-1", gw)
        assert await gw.check(token) == 200
        assert any("api_tokens" in q for q in sent)
        sent.clear()
        assert await gw.check(token) == 200
        assert sent, "the check itself still reads and writes"
        assert not any("api_tokens" in q for q in sent)
    finally:
        await own.close()
