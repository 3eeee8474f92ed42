"""`dialguard serve` wires its metrics: a real gateway process, a call over FastAGI, a national list
imported over HTTP, and /metrics read without a token as Prometheus would."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from dialguard.store.db import create_pool
from dialguard.store.tokens import Role, create_token
from tests.e2e.test_two_gateways import gateways
from tests.fakes.asterisk_agi import FakeAsterisk


async def test_serve_counts_its_checks_and_reads_its_pools_journal_and_lists(
    new_database: Callable[[], Awaitable[str]], tmp_path: Path
) -> None:
    dsn = await new_database()
    setup = await create_pool(dsn, size=1)
    async with setup.acquire() as conn:
        token = await create_token(conn, name="admin-1", role=Role.ADMIN)
    await setup.close()
    pools = {"DIALGUARD_DATABASE_POOL_SIZE": "3", "DIALGUARD_DATABASE_ADMIN_POOL_SIZE": "2"}
    async with gateways(dsn, tmp_path, count=1, **pools) as (ports,):
        run = await FakeAsterisk("127.0.0.1", ports.agi).agi("check", "not a number")
        assert run.variables["DIALGUARD_REASON"] == "number.invalid"
        base = f"http://127.0.0.1:{ports.http}"
        list_date = datetime.now(UTC).date() - timedelta(days=3)  # the gateway's clock is the system's
        async with aiohttp.ClientSession() as http:
            url = f"{base}/v1/dnc/imports?list=us_national&format=us-registry&date={list_date.isoformat()}"
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(url, data=b"2125550100\n", headers=headers) as response:
                assert response.status == 201, await response.text()
            async with http.get(f"{base}/metrics") as response:
                assert response.status == 200
                text = await response.text()
        today = datetime.now(UTC).date()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("dialguard_checks_total", (("reason", "number.invalid"), ("verdict", "BLOCK")))] == 1
    assert samples[("dialguard_decisions_total", (("outcome", "stored"),))] == 1
    assert samples[("dialguard_check_seconds_count", ())] == 1
    assert samples[("dialguard_db_pool_size", (("pool", "call"),))] == 3
    assert samples[("dialguard_db_pool_size", (("pool", "admin"),))] == 2
    assert samples[("dialguard_optout_journal_lines", ())] == 0
    assert samples[("dialguard_dnc_list_age_days", (("list", "us_national"),))] == (today - list_date).days
    assert not [name for name, _ in samples if name.startswith("dialguard_hlr_")]  # no HLR configured
