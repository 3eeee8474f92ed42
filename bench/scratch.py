"""A scratch database for a benchmark: on $DIALGUARD_TEST_DSN's server, else an embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from dialguard.store.db import start_embedded
from dialguard.store.migrate import migrate
from dialguard.store.roles import EMBEDDED_GATEWAY_ROLE, ensure_login_role


@asynccontextmanager
async def scratch_database() -> AsyncIterator[tuple[str, Path]]:
    """(DSN of a fresh migrated database, a temporary directory); both are gone afterwards."""
    tmp = tempfile.TemporaryDirectory(prefix="dialguard-bench-")
    server_dsn = os.environ.get("DIALGUARD_TEST_DSN")
    if server_dsn is None:
        server_dsn = await asyncio.to_thread(start_embedded, Path(tmp.name) / "pg")
    name = f"dialguard_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(server_dsn, name)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            await ensure_login_role(conn, EMBEDDED_GATEWAY_ROLE)  # for a gateway started as deployed
        finally:
            await conn.close()
        yield dsn, Path(tmp.name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        tmp.cleanup()


def with_database(dsn: str, name: str) -> str:
    """The same server, another database; the embedded server's socket (?host=...) is kept."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


# The durable baselines' record (gate_latency.py, http_checks.py): one row an answer, a primary key only.
ANSWERS_TABLE = (
    "CREATE TABLE bench_answers (id bigserial PRIMARY KEY, number text NOT NULL, hit bool NOT NULL)"
)


async def store_answer(conn: asyncpg.Connection, number: str, hit: bool) -> None:
    """Store a baseline's answer; autocommit, so this returns once the commit is durable."""
    await conn.execute("INSERT INTO bench_answers (number, hit) VALUES ($1, $2)", number, hit)
