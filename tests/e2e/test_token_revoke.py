"""Two `dialguard serve` processes keep API tokens (an hour here, so that nothing expires during the
test); `dialguard token revoke` on the shared database makes both refuse the token, by the NOTIFY their
event hubs hear (issue 15: the token cache)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.cli import dialguard
from tests.e2e.test_two_gateways import gateways


@pytest.fixture
async def two_gateways(tmp_path: Path, db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[list[str]]:
    """The base URLs of two gateways' HTTP APIs."""
    async with gateways(db_dsn, tmp_path, DIALGUARD_HTTP_TOKEN_CACHE_SECONDS="3600") as started:
        yield [p.url for p in started]


async def test_a_token_revoked_with_the_cli_is_refused_by_every_gateway(
    two_gateways: list[str], db_dsn: str
) -> None:
    code, out, err = await dialguard(db_dsn, "token", "create", "dialer-1", "--role", "dialer")
    assert code == 0, err
    token = out.strip()  # the token alone on stdout
    auth = {"Authorization": f"Bearer {token}"}
    body = {"number": "+48601234567"}
    async with aiohttp.ClientSession() as http:
        for base in two_gateways:
            for _ in range(2):  # the second from the cache
                answer = await http.post(f"{base}/v1/checks", json=body, headers=auth)
                assert answer.status == 200, await answer.text()
        code, _, err = await dialguard(db_dsn, "token", "revoke", "dialer-1")
        assert code == 0, err

        async def refused_by_both() -> bool:
            statuses = [(await http.get(f"{base}/v1/whoami", headers=auth)).status for base in two_gateways]
            return statuses == [401, 401]

        async with asyncio.timeout(15):  # generous: the NOTIFY's way is awaited, not timed
            while not await refused_by_both():  # noqa: ASYNC110 - another process's state
                await asyncio.sleep(0.05)
        for base in two_gateways:
            assert (await http.post(f"{base}/v1/checks", json=body, headers=auth)).status == 401
