"""A database outage as the log and the evidence see it (issue 14, item 5).

Before: every blocked check logged a WARNING of its own and asyncpg's pools a traceback at each
reconnect (3,257 WARNING lines in a 15 s outage), and the blocks themselves were never stored. Now an
outage is one WARNING and one INFO line with counters, and every decision made during it is journaled
and stored when the database returns — once, marked as stored late, never as an attempt.

The database goes away for real: a TCP proxy between the gate and PostgreSQL cuts every link.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialguard.config import HttpSettings, Settings
from dialguard.gate import CheckRequest, Gate
from dialguard.journal import DecisionJournal
from dialguard.outage import DatabaseOutage, absorb_pool_floor_log, probe
from dialguard.policy.model import Verdict
from dialguard.store.db import create_pool
from dialguard.store.decisions import DecisionRow
from dialguard.store.sealing import seal, verify
from dialguard.store.tokens import Role, create_token
from dialguard.web.app import create_app
from tests.conftest import as_gateway
from tests.fakes.proxy import CuttableProxy
from tests.fakes.rules import simple_rulebook

NOON = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 16:00 in Warsaw: inside the test window
NUMBERS = [f"+4860123{i:04d}" for i in range(40)]
ROOT = Path(__file__).resolve().parents[2]


class MovingClock:
    """A clock the test moves: the outage's length is read from it."""

    def __init__(self) -> None:
        self.now = NOON

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Outaged:
    proxy: CuttableProxy
    through: asyncpg.Pool  # the gate's pool, through the proxy
    gate: Gate
    outage: DatabaseOutage
    journal: DecisionJournal
    clock: MovingClock


@pytest.fixture
async def outaged(db_dsn: str, pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[Outaged]:
    clock = MovingClock()
    outage = DatabaseOutage(clock=clock, first_backoff=0.05, max_backoff=0.2)
    journal = DecisionJournal(tmp_path / "decision-journal.jsonl", clock=clock)
    journal.check_writable()
    proxy = CuttableProxy.for_dsn(db_dsn)
    await proxy.start()
    with absorb_pool_floor_log(outage):  # as serve installs it
        through = await create_pool(proxy.dsn_through(as_gateway(db_dsn)), size=2, command_timeout=1)
        gate = Gate(
            pool=through, rulebook=simple_rulebook(consent_for=()), clock=clock, default_region="PL",
            fact_timeout=0.5, outage=outage, journal=journal,
        )  # fmt: skip
        try:
            yield Outaged(proxy, through, gate, outage, journal, clock)
        finally:
            proxy.restore()
            through.terminate()
            await proxy.close()


async def until(condition: Callable[[], bool], within: float = 10) -> None:
    """Return once ``condition`` holds (state another task changes, with nothing to await)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - asyncpg's pool maintenance sets it, not us
            await asyncio.sleep(0.01)


async def back_again(o: Outaged) -> None:
    """Checks until one is judged on facts again (the pool replaces its broken links by itself)."""
    async with asyncio.timeout(10):
        while (await o.gate.check(CheckRequest(NUMBERS[0]))).decision.reason == "gate.unavailable":  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the pool reconnects in a task of its own: nothing to await


async def test_an_outage_of_forty_checks_is_one_warning_and_one_line_when_it_ends(
    outaged: Outaged, caplog: pytest.LogCaptureFixture
) -> None:
    o = outaged
    caplog.set_level(logging.INFO)
    assert (await o.gate.check(CheckRequest(NUMBERS[0]))).verdict is Verdict.ALLOW
    o.proxy.cut()
    # No check yet: the pools' own reconnect notices the outage (and its traceback is not logged).
    await until(lambda: o.outage.away)
    blocked = [await o.gate.check(CheckRequest(n, record=True, channel="agi")) for n in NUMBERS]
    assert {r.decision.reason for r in blocked} == {"gate.unavailable"}
    assert all(not r.stored and r.journaled for r in blocked)
    o.clock.now += timedelta(seconds=12)
    o.proxy.restore()
    await back_again(o)

    outage_lines = [r for r in caplog.records if r.name != "dialguard.decisions"]
    warnings = [r for r in outage_lines if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].getMessage().startswith("database unavailable (")
    assert not any(r.exc_info for r in caplog.records)  # no traceback
    assert not any(r.name.startswith("asyncpg") for r in caplog.records)
    ended = [r.getMessage() for r in outage_lines if "answers again" in r.getMessage()]
    assert len(ended) == 1
    assert ended[0].startswith("database answers again after 12.0 s: 40 checks blocked meanwhile")
    decisions = [r for r in caplog.records if r.name == "dialguard.decisions"]
    assert sum("(journaled)" in r.getMessage() for r in decisions) == 40  # still one line a decision
    assert not o.outage.away


async def test_a_quiet_gateway_hears_the_database_return_from_its_probe(outaged: Outaged) -> None:
    o = outaged
    watch = asyncio.create_task(o.outage.until_back(lambda: probe(o.through)))
    try:
        o.proxy.cut()
        await until(lambda: o.outage.away)
        await asyncio.sleep(0.3)  # a few probes fail
        assert not watch.done() and o.outage.away
        o.proxy.restore()
        async with asyncio.timeout(10):
            await watch  # the round ends when the probe gets an answer
        assert not o.outage.away
    finally:
        watch.cancel()


async def test_health_shows_the_outage_and_its_counters(outaged: Outaged, aiohttp_client: Any) -> None:
    o = outaged
    client: TestClient[web.Request, web.Application] = await aiohttp_client(
        create_app(settings=Settings(), pool=o.through, gate=o.gate)
    )
    o.proxy.cut()
    for number in NUMBERS[:3]:
        await o.gate.check(CheckRequest(number))
    response = await client.get("/healthz")
    body = await response.json()
    assert response.status == 503 and body["status"] == "unavailable"
    assert body["outage"]["checks_blocked"] == 3
    assert body["outage"]["since"] == NOON.isoformat()


async def test_every_decision_of_an_outage_is_stored_once_when_the_database_returns(
    outaged: Outaged, pool: asyncpg.Pool
) -> None:
    o = outaged
    o.proxy.cut()
    made = [await o.gate.check(CheckRequest(n, record=True, channel="agi")) for n in NUMBERS[:10]]
    made.append(await o.gate.check(CheckRequest("not a number", record=True)))  # decided without facts
    assert all(r.verdict is Verdict.BLOCK and r.journaled for r in made)
    assert len(o.journal.pending()) == 11
    saved = o.journal.path.read_bytes()
    o.proxy.restore()

    assert await o.journal.replay(pool) == 11
    assert o.journal.pending() == []
    o.journal.path.write_bytes(saved)  # as if a crash came between storing and rewriting
    assert await o.journal.replay(pool) == 0
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT call_id, reason, recorded, body FROM decisions ORDER BY decided_at")
        attempts = await conn.fetchval("SELECT count(*) FROM attempts")
        await seal(conn)
        assert (await verify(conn)).ok  # hashed as stored, marks and all: tamper evidence holds
    assert {r["call_id"] for r in rows} == {r.call_id for r in made}
    assert len(rows) == 11  # each once
    assert attempts == 0  # blocks: no cap counts them
    for row in rows:
        body = row["body"]
        assert body["stored_late"] is True
        assert body["journaled_at"] == NOON.isoformat()
        assert body["verdict"] == "BLOCK" and body["call_id"] == str(row["call_id"])  # the contract's fields
    reasons = sorted(r["reason"] for r in rows)
    assert reasons == ["gate.unavailable"] * 10 + ["number.invalid"]


async def test_a_replay_while_the_database_is_still_away_keeps_every_line(
    outaged: Outaged,
) -> None:
    o = outaged
    o.proxy.cut()
    for n in NUMBERS[:5]:
        await o.gate.check(CheckRequest(n))
    saved = o.journal.path.read_bytes()
    assert await o.journal.replay(o.through) == 0
    assert o.journal.path.read_bytes() == saved  # untouched: not even rewritten


def late_row(number: str = NUMBERS[0], **changes: Any) -> dict[str, Any]:
    row = DecisionRow(
        call_id=uuid.uuid4(), number=number, campaign="default", purpose="marketing", verdict="BLOCK",
        reason="gate.unavailable", body={"verdict": "BLOCK"}, rules_version="test", decided_at=NOON,
        recorded=False, writer="test",
    )  # fmt: skip
    return {**row.as_json(), "journaled_at": NOON.isoformat(), **changes}


def journal_lines(*rows: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


async def test_a_journal_line_that_cannot_be_read_is_kept_aside_not_deleted(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    path = tmp_path / "decision-journal.jsonl"
    good = late_row()
    path.write_bytes(b'{"not": "a decision"}\n' + journal_lines(good) + b"not json at all\n")
    journal = DecisionJournal(path)
    assert await journal.replay(pool) == 1
    assert path.read_bytes() == b""
    assert (tmp_path / "decision-journal.jsonl.unreadable").read_bytes() == (
        b'{"not": "a decision"}\nnot json at all\n'
    )


async def test_a_decision_the_database_refuses_is_kept_aside_and_the_others_go_in(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    path = tmp_path / "decision-journal.jsonl"
    refused = late_row("+48\x00601")  # PostgreSQL's text holds no NUL
    path.write_bytes(journal_lines(late_row(NUMBERS[1]), refused, late_row(NUMBERS[2])))
    journal = DecisionJournal(path)
    assert await journal.replay(pool) == 2
    assert path.read_bytes() == b""
    aside = (tmp_path / "decision-journal.jsonl.unreadable").read_bytes()
    assert json.loads(aside)["call_id"] == refused["call_id"]


APPENDER = """
import asyncio, sys
from pathlib import Path
from tests.integration.test_outage import late_row
from dialguard.journal import DecisionJournal

async def main() -> None:
    journal = DecisionJournal(Path(sys.argv[1]))
    for _ in range(int(sys.argv[2])):
        await journal.append_json(late_row())

asyncio.run(main())
"""


async def test_replays_at_once_beside_an_appending_gateway_store_each_decision_once(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Two replays (a gateway's and `journal status --replay`'s, say) race while another process appends."""
    path = tmp_path / "decision-journal.jsonl"
    path.write_bytes(journal_lines(*(late_row() for _ in range(50))))
    journal = DecisionJournal(path)
    appender = await asyncio.create_subprocess_exec(
        sys.executable, "-c", APPENDER, str(path), "300", cwd=ROOT
    )
    stored = 0
    while appender.returncode is None:
        stored += sum(await asyncio.gather(journal.replay(pool), DecisionJournal(path).replay(pool)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(appender.wait(), 0.001)
    assert appender.returncode == 0
    stored += await journal.replay(pool)
    async with pool.acquire() as conn:
        rows = await conn.fetchval("SELECT count(*) FROM decisions")
        distinct = await conn.fetchval("SELECT count(DISTINCT call_id) FROM decisions")
    assert rows == distinct == stored == 350
    assert journal.pending() == []


async def test_the_api_answers_503_not_500_while_the_database_is_away(
    outaged: Outaged, pool: asyncpg.Pool, aiohttp_client: Any
) -> None:
    """Issue 14, item 9: a lost database is no bug of the gateway's: 503 (try again), never 500."""
    o = outaged
    async with pool.acquire() as conn:
        token = await create_token(conn, name="ops", role=Role.ADMIN)
    settings = Settings(http=HttpSettings(token_cache_seconds=0))  # each request asks the database
    client: TestClient[web.Request, web.Application] = await aiohttp_client(
        create_app(settings=settings, pool=o.through, gate=o.gate)
    )
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/v1/dnc/lists", headers=headers)).status == 200
    o.proxy.cut()
    for path in ("/v1/dnc/lists", "/v1/whoami", "/v1/campaigns/default"):
        response = await client.get(path, headers=headers)
        body = await response.json()
        assert (response.status, body["error_id"]) == (503, "database_unavailable"), (path, body)
