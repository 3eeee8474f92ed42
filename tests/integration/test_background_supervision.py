"""Background work is supervised (issue 14, item 3): a round that fails is logged and run again after a
capped backoff, and /healthz says "degraded", naming the task, until a round succeeds again.

The work is the real opt-out journal's replay on a real database, failing for a real reason: its file
has become a directory (IsADirectoryError, an OSError as "Too many open files" is). /healthz is the
real HTTP app on a real socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialguard.clock import system_clock
from dialguard.config import Settings
from dialguard.gate import Gate
from dialguard.journal import OptOutJournal
from dialguard.rules.loader import load_rulebook
from dialguard.store.db import StoreUnavailable
from dialguard.watchdog import Supervisor
from dialguard.web.app import create_app

Client = TestClient[web.Request, web.Application]


async def health_until(client: Client, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """/healthz's answer once ``wanted`` holds for it, or fail after 30 s."""
    async with asyncio.timeout(30):
        while True:
            response = await client.get("/healthz")
            body: dict[str, Any] = await response.json()
            if wanted(body):
                assert response.status == 200, body
                body.pop("warnings", None)  # autovacuum off on the test server: a warning, never a failure
                return body
            await asyncio.sleep(0.01)  # the state is another task's, with nothing to await


def backoffs_of(supervisor: Supervisor, failures: int) -> list[float]:
    return [supervisor.backoff(n) for n in range(1, failures + 1)]


def test_the_backoff_doubles_from_the_first_and_stops_at_the_cap() -> None:
    assert backoffs_of(Supervisor(), 9) == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoffs_of(Supervisor(first_backoff=0.5, max_backoff=3), 5) == [0.5, 1, 2, 3, 3]


async def test_a_task_that_fails_three_times_is_restarted_each_time_and_health_says_so_until_it_works(
    pool: asyncpg.Pool, aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate = Gate(pool=pool, rulebook=load_rulebook(), clock=system_clock, default_region="US")
    tasks = Supervisor(first_backoff=0.01, max_backoff=0.04)
    client: Client = await aiohttp_client(create_app(settings=Settings(), pool=pool, gate=gate, tasks=tasks))
    journal = OptOutJournal(tmp_path / "optout-journal.jsonl")
    assert (await health_until(client, lambda body: True)) == {"status": "ok"}

    journal.path.mkdir()  # where the journal file should be: every replay fails
    caplog.set_level(logging.INFO, logger="dialguard.watchdog")
    replaying = asyncio.create_task(tasks.every("journal_replay", 0.01, lambda: journal.replay(pool)))
    try:
        body = await health_until(client, lambda body: body.get("down", {}).get("journal_replay") is not None)
        assert body["status"] == "degraded"
        assert "IsADirectoryError" in body["down"]["journal_replay"]["error"]
        body = await health_until(
            client, lambda body: body.get("down", {}).get("journal_replay", {}).get("failures", 0) >= 3
        )
        assert body["status"] == "degraded"

        journal.path.rmdir()  # the cause goes: the next round works
        assert (await health_until(client, lambda body: body["status"] != "degraded")) == {"status": "ok"}
    finally:
        replaying.cancel()
        with pytest.raises(asyncio.CancelledError):  # cancellation passes through, never swallowed
            await replaying
    failed = [r for r in caplog.records if "background task journal_replay failed" in r.getMessage()]
    assert [r.levelno for r in failed[:3]] == [logging.ERROR] * 3
    assert all(r.exc_info is not None for r in failed)  # with the traceback: an unexpected failure
    assert "(1 in a row)" in failed[0].getMessage() and "(3 in a row)" in failed[2].getMessage()
    assert any("works again after" in r.getMessage() for r in caplog.records)


async def test_a_database_outage_is_said_once_by_a_background_task_not_once_a_round(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 14, item 5: dialguard.outage logs the outage; each task adds one line, not one a round."""
    failing = 3
    worked = asyncio.Event()

    async def seal() -> None:
        nonlocal failing
        if failing:
            failing -= 1
            raise StoreUnavailable("ConnectionRefusedError: [Errno 111] Connection refused")
        worked.set()

    tasks = Supervisor(first_backoff=0.01, max_backoff=0.02, expected=(StoreUnavailable,))
    caplog.set_level(logging.DEBUG, logger="dialguard.watchdog")
    sealing = asyncio.create_task(tasks.every("sealer", 0.001, seal))
    try:
        async with asyncio.timeout(10):
            await worked.wait()
    finally:
        sealing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sealing
    said = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [m for level, m in said if level >= logging.WARNING] == [
        "background task sealer failed (1 in a row): StoreUnavailable: ConnectionRefusedError: [Errno 111] "
        "Connection refused; again in 0.01 s"
    ]
    assert sum(level == logging.DEBUG for level, _ in said) == 2  # the next rounds: counted, not said
    assert (logging.INFO, "background task sealer works again after 3 failures") in said
    assert not any(r.exc_info for r in caplog.records)
