"""Retiring an old national-list version never locks the checks out (issue 10, item 12).

Deterministic: a reader holds a transaction on the checking side (as a check in flight does), and
PostgreSQL's own views say what the retirement waits on; no sleeps stand in for timing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from dialguard.dnc_files import FileFormat
from dialguard.policy.model import Purpose
from dialguard.store import campaigns, consent
from dialguard.store.db import create_pool
from dialguard.store.registry import ImportReport, drop_retired, import_registry
from tests.conftest import as_gateway
from tests.fakes.waiting import server_reports
from tests.integration.test_dnc_lists import CLEAN, LISTED, NOW, TODAY, check, chunks, load

LATE = "+12125550122"  # listed only by the version imported last


def digits(*numbers: str) -> bytes:
    """A registry file listing ``numbers``."""
    return b"".join(n.removeprefix("+1").encode() + b"\n" for n in numbers)


@pytest.fixture(autouse=True)
async def marketing(pool: asyncpg.Pool) -> None:
    """A marketing campaign, and consent for each number: only the national list can block them."""
    async with pool.acquire() as conn:
        await campaigns.add_campaign(conn, name="spring", purpose=Purpose.MARKETING)
        for number in (LISTED, CLEAN, LATE):
            await consent.grant_consent(
                conn, at=NOW, number=number, kind="express", source="call", purpose=Purpose.MARKETING,
                granted_at=NOW - timedelta(days=10),
            )  # fmt: skip


@pytest.fixture
async def admin(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """The admin pool of one connection: the import, and its retirement, run here."""
    pool = await create_pool(as_gateway(db_dsn), size=1)
    yield pool
    await pool.close()


@pytest.fixture
async def observer(db_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of neither pool, to read pg_locks and pg_stat_activity."""
    conn = await asyncpg.connect(db_dsn)
    yield conn
    await conn.close()


async def hold_a_read(pool: asyncpg.Pool) -> tuple[asyncpg.Connection, asyncpg.transaction.Transaction]:
    """A call-pool connection mid-transaction after reading the national list: a check in flight."""
    conn = await pool.acquire()
    tx = conn.transaction()
    await tx.start()
    await conn.fetchval(
        """SELECT count(*) FROM dnc_registries r
             JOIN dnc_registry_numbers n ON n.version_id = r.live_version"""
    )
    return conn, tx


async def import_on(conn: asyncpg.Connection, *numbers: str) -> ImportReport:
    return await import_registry(
        conn, chunks(digits(*numbers)), registry="us_national", fmt=FileFormat.US_REGISTRY,
        list_date=TODAY, now=NOW, actor="test",
    )  # fmt: skip


async def stop(task: asyncio.Task[object]) -> None:
    """A task the test no longer needs (it failed early): cancelled and awaited, never left behind."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def waits_on_a_lock(observer: asyncpg.Connection, pid: int) -> None:
    await server_reports(observer, f"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = {pid}")


async def version_tables(observer: asyncpg.Connection) -> list[str]:
    rows = await observer.fetch(
        "SELECT tablename FROM pg_tables WHERE tablename LIKE 'dnc_registry_numbers_v%' ORDER BY 1"
    )
    return [r["tablename"] for r in rows]


async def access_exclusive_on_the_parent(observer: asyncpg.Connection) -> int:
    return int(
        await observer.fetchval(
            """SELECT count(*) FROM pg_locks
                WHERE database = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND relation = 'dnc_registry_numbers'::regclass AND mode = 'AccessExclusiveLock'"""
        )
    )


async def test_a_check_is_neither_blocked_nor_queued_while_an_old_version_is_retired(
    pool: asyncpg.Pool, admin: asyncpg.Pool, observer: asyncpg.Connection
) -> None:
    old = await load(pool, digits(LISTED))
    in_flight, tx = await hold_a_read(pool)
    conn = await admin.acquire()
    importing = asyncio.create_task(import_on(conn, CLEAN))
    try:
        # The new version went live; its import now retires the old one, and must wait for the check
        # in flight that may still read it: waiting is fine, but never with or for ACCESS EXCLUSIVE on
        # the parent, which every later check would queue behind.
        await waits_on_a_lock(observer, conn.get_server_pid())
        assert await observer.fetchval("SELECT live_version FROM dnc_registries") != old
        assert await access_exclusive_on_the_parent(observer) == 0
        # A check now, through the call pool, reads the new version within the gate's fact deadline.
        assert (await check(pool, CLEAN))[0] == "dnc.us_national"
        assert (await check(pool, LISTED))[0] == "ok"
        assert not importing.done()  # it really ran while the retirement waited
        # A check that starts reading after the retirement began is never waited for.
        later, later_tx = await hold_a_read(pool)
        try:
            await tx.commit()
            async with asyncio.timeout(60):  # a hang guard, not a measure
                report = await importing
            assert await access_exclusive_on_the_parent(observer) == 0
        finally:
            await later_tx.rollback()
            await pool.release(later)
    finally:
        await stop(importing)
        if in_flight.is_in_transaction():
            await tx.rollback()
        await pool.release(in_flight)
        await admin.release(conn)
    assert await version_tables(observer) == [f"dnc_registry_numbers_v{report.version_id}"]


@pytest.mark.parametrize("detached", [False, True], ids=["cut-during-detach", "cut-before-drop"])
async def test_a_retirement_cut_short_leaves_the_checks_right_and_the_next_import_finishes_it(
    pool: asyncpg.Pool, admin: asyncpg.Pool, observer: asyncpg.Connection, detached: bool
) -> None:
    old = await load(pool, digits(LISTED))
    in_flight, tx = await hold_a_read(pool)
    conn = await admin.acquire()
    importing = asyncio.create_task(import_on(conn, CLEAN))
    try:
        await waits_on_a_lock(observer, conn.get_server_pid())
        # The gateway dies mid-retirement (its connection is cut): the import itself is committed.
        await observer.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        async with asyncio.timeout(60):  # a hang guard, not a measure
            report = await importing
    finally:
        await stop(importing)
        await tx.rollback()
        await pool.release(in_flight)
        await admin.release(conn)
    pending = await observer.fetchval(
        """SELECT inhdetachpending FROM pg_inherits
            WHERE inhrelid = $1::regclass AND inhparent = 'dnc_registry_numbers'::regclass""",
        f"dnc_registry_numbers_v{old}",
    )
    assert pending is True  # half done: the old version is on its way out, and still on disk
    if detached:  # the other half-way state: detached, not yet dropped
        await observer.execute(
            f"ALTER TABLE dnc_registry_numbers DETACH PARTITION dnc_registry_numbers_v{old} FINALIZE"
        )
    assert len(await version_tables(observer)) == 2
    # Nothing inconsistent meanwhile: the checks read the new version only.
    assert (await check(pool, CLEAN))[0] == "dnc.us_national"
    assert (await check(pool, LISTED))[0] == "ok"
    # The next import retires both the half-retired version and the one it replaces.
    last = await load(pool, digits(LATE))
    assert await version_tables(observer) == [f"dnc_registry_numbers_v{last}"]
    assert report.version_id != last
    assert (await check(pool, LATE))[0] == "dnc.us_national"
    assert (await check(pool, CLEAN))[0] == "ok"


async def test_retiring_with_nothing_to_retire_does_nothing(
    pool: asyncpg.Pool, observer: asyncpg.Connection
) -> None:
    live = await load(pool, digits(LISTED))
    async with pool.acquire() as conn:
        assert await drop_retired(conn) == []
    assert await version_tables(observer) == [f"dnc_registry_numbers_v{live}"]
