"""`dialguard serve`'s sealer under supervision (issue 14, item 3): a real gateway process whose sealer
cannot get at its checkpoint table. /healthz says which task is down; the sealer is started again; and
SIGTERM ends the gateway at once while a seal is waiting on the database, cancellation never swallowed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.e2e.test_two_gateways import _free_port, _start_gateway
from tests.fakes.waiting import server_reports

SEALER_WAITS_ON_THE_LOCK = """
    SELECT count(*) > 0 FROM pg_stat_activity
     WHERE datname = current_database() AND application_name = 'dialguard'
       AND wait_event_type = 'Lock' AND query LIKE '%decision_checkpoints%' AND query_start > '{after}'
"""


async def health_until(http: aiohttp.ClientSession, url: str, wanted: Callable[[Any], bool]) -> Any:
    async with asyncio.timeout(60):  # the first seal comes 10 s after start
        while not wanted(body := await (await http.get(url)).json()):  # noqa: ASYNC110 - another process's
            await asyncio.sleep(0.1)
        return body


async def test_a_sealer_that_cannot_seal_is_reported_restarted_and_sigterm_still_ends_serve_at_once(
    new_database: Callable[[], Awaitable[str]], tmp_path: Path
) -> None:
    dsn = await new_database()
    http_port = _free_port()
    env = {
        **os.environ,
        "DIALGUARD_DATABASE_DSN": dsn,
        "DIALGUARD_DATABASE_COMMAND_TIMEOUT": "2",  # a seal waiting on a lock fails after 2 s
        "DIALGUARD_AGI_PORT": str(_free_port()),
        "DIALGUARD_HTTP_PORT": str(http_port),
        "DIALGUARD_CALLS_JOURNAL_PATH": str(tmp_path / "journal.jsonl"),
    }
    proc = await _start_gateway(env)
    assert proc.stderr is not None
    # Read as it comes: a full pipe would block the gateway's logging, and so its loop.
    said = asyncio.create_task(proc.stderr.read())
    holder = await asyncpg.connect(dsn)
    observer = await asyncpg.connect(dsn)
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE decision_checkpoints IN ACCESS EXCLUSIVE MODE")
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{http_port}/healthz"
                body = await health_until(http, url, lambda b: "sealer" in b.get("down", {}))
            assert body["status"] == "degraded"
            assert body["down"]["sealer"]["failures"] >= 1
            failed_by: datetime = await observer.fetchval("SELECT clock_timestamp()")
            # Started again after its backoff: a new seal waits on the lock, and is mid-run now.
            await server_reports(observer, SEALER_WAITS_ON_THE_LOCK.format(after=failed_by.isoformat()))
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):  # rather than never: a swallowed cancel would seal on
                assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await holder.close()
        await observer.close()
    log = (await said).decode()
    assert "background task sealer failed (1 in a row)" in log
    assert "Traceback" not in log  # a database that does not answer is expected: no traceback
