"""Waiting for another process's work to show in PostgreSQL's own statistics (there is no event to await)."""

from __future__ import annotations

import asyncio

import asyncpg


async def server_reports(conn: asyncpg.Connection, query: str, within: float = 30) -> None:
    """Return once ``query`` (a boolean) is true, or fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not await conn.fetchval(query):  # noqa: ASYNC110 - the state is another process's
            await asyncio.sleep(0.05)
