"""The connection pool and the hot fact query, as PostgreSQL sees them."""

from __future__ import annotations

import asyncpg

from dialguard.store.migrate import migrate


async def last_query_of(db_dsn: str, pid: int) -> str:
    """What the server says a backend ran last, asked from a connection of its own."""
    other = await asyncpg.connect(db_dsn)
    try:
        return str(await other.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid))
    finally:
        await other.close()


async def test_a_released_connection_is_not_sent_the_reset_query(pool: asyncpg.Pool, db_dsn: str) -> None:
    # asyncpg's default sends "SELECT pg_advisory_unlock_all(); CLOSE ALL; ..." on each release:
    # a round trip per call for state the call path never leaves (db.PooledConnection says why).
    async with pool.acquire() as conn:
        pid = conn.get_server_pid()
        await conn.fetchval("SELECT 'the last thing this call ran'")
    assert await last_query_of(db_dsn, pid) == "SELECT 'the last thing this call ran'"


async def test_migrating_on_a_pooled_connection_leaves_no_advisory_lock(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await migrate(conn)
        pid = conn.get_server_pid()
    async with pool.acquire() as conn:
        held = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", pid
        )
    assert held == 0
