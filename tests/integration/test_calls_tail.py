"""`dialguard calls tail` as a supervisor runs it: a real process following the database while a
gateway (here, this test's gate and announcer) decides calls; its lines read as they are printed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from dialguard.clock import fixed_clock
from dialguard.events import EventAnnouncer
from dialguard.gate import CheckRequest, Gate
from dialguard.policy.model import Purpose
from dialguard.store import campaigns, dnc
from tests.cli import dialguard
from tests.decision_rows import store_event
from tests.fakes.rules import simple_rulebook

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 16:00 in Warsaw
ALLOWED, LISTED = "+48601234567", "+48601234568"


@pytest.fixture
async def gate(pool: asyncpg.Pool) -> AsyncIterator[Gate]:
    """A gateway's gate, its announcer waking whoever follows the database."""
    announcer = EventAnnouncer(pool=pool, every=0.05)
    task = asyncio.create_task(announcer.run())
    async with pool.acquire() as conn:
        await dnc.add_dnc(conn, at=NOW, number=LISTED, source="complaint")
        for name in ("spring", "autumn"):  # no consent needed to inform: allowed unless listed
            await campaigns.add_campaign(conn, name=name, purpose=Purpose.INFORMATIONAL)
    yield Gate(
        pool=pool, rulebook=simple_rulebook(), clock=fixed_clock(NOW), default_region="PL",
        on_stored=announcer.touch,
    )  # fmt: skip
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def tail(db_dsn: str, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``dialguard calls tail ARGS``, once it says it follows; interrupted (Ctrl-C) afterwards."""
    env = {**os.environ, "DIALGUARD_DATABASE_DSN": db_dsn}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialguard", "calls", "tail", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(30):
            while b"following calls" not in (line := await proc.stderr.readline()):
                assert line, "calls tail ended before it followed anything"
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            await proc.wait()


async def line_of(proc: asyncio.subprocess.Process, within: float = 5.0) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(within):
        line = await proc.stdout.readline()
    assert line, "calls tail stopped printing"
    return line.decode().rstrip("\n")


async def test_each_decision_is_a_line_as_it_happens_and_its_events_indented_under_it(
    db_dsn: str, gate: Gate, pool: asyncpg.Pool
) -> None:
    async with tail(db_dsn) as proc:
        allowed = await gate.check(CheckRequest(ALLOWED, campaign="spring"))
        assert await line_of(proc) == (
            f"2026-11-23 15:00:00Z  ALLOW  +4860*****67      spring  ok  call {str(allowed.call_id)[:8]}"
        )  # the number masked, as in the logs
        async with pool.acquire() as conn:
            await store_event(conn, allowed.call_id, "digit", at=NOW + timedelta(seconds=7), digit="5")
        assert gate.on_stored is not None
        gate.on_stored()
        assert (
            await line_of(proc)
            == f"    2026-11-23 15:00:07Z  digit  call {str(allowed.call_id)[:8]}  digit=5"
        )
        blocked = await gate.check(CheckRequest(LISTED, campaign="autumn"))
        line = await line_of(proc)
        assert line.split() == ["2026-11-23", "15:00:00Z", "BLOCK", "+4860*****68", "autumn", "dnc.internal",
                                "call", str(blocked.call_id)[:8]]  # fmt: skip
    assert proc.returncode == 130  # interrupted, as Ctrl-C ends it


async def test_json_lines_of_one_campaign_and_verdict_with_full_numbers(db_dsn: str, gate: Gate) -> None:
    async with tail(db_dsn, "--json", "--campaign", "autumn", "--verdict", "BLOCK") as proc:
        await gate.check(CheckRequest(LISTED, campaign="spring"))  # another campaign
        await gate.check(CheckRequest(ALLOWED, campaign="autumn"))  # allowed
        wanted = await gate.check(CheckRequest(LISTED, campaign="autumn"))
        got = json.loads(await line_of(proc))
        assert got["event"] == "decision" and got["data"]["call_id"] == str(wanted.call_id)
        assert got["data"]["number"] == LISTED and got["data"]["reason"] == "dnc.internal"
        assert got["id"] == "3.0"  # the position after it: what GET /v1/events would call it
        assert proc.stdout is not None
        with pytest.raises(TimeoutError):  # and nothing else came
            await line_of(proc, within=0.5)


async def test_an_unreachable_database_is_said_plainly(db_dsn: str) -> None:
    code, out, err = await dialguard("postgresql://nobody@127.0.0.1:1/none", "calls", "tail")
    assert code == 1 and out == ""
    assert "cannot connect to PostgreSQL" in err and "database.dsn" in err


async def test_a_bad_verdict_is_a_usage_error(db_dsn: str) -> None:
    code, _, err = await dialguard(db_dsn, "calls", "tail", "--verdict", "MAYBE")
    assert code == 2 and "invalid choice" in err
