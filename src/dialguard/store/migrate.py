"""SQL migrations, applied in order under an advisory lock and tracked in a table.

Files are ``migrations/NNNN_name.sql``; each runs in its own transaction. A migration already applied
whose file changed is refused: history is not rewritten. A server older than PostgreSQL 14 is refused
before anything is applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
from asyncpg.types import ServerVersion

from dialguard.store.db import Connection

log = logging.getLogger(__name__)

# Any constant would do; it only has to be the same for every gateway sharing the database.
MIGRATION_LOCK_ID = 0x6469616C  # "dial"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# DETACH PARTITION ... CONCURRENTLY (14+) retires an old national-list version without locking checks out.
MIN_SERVER_MAJOR = 14


class MigrationError(Exception):
    """A migration is missing, changed after it was applied, or failed."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    found = []
    for entry in resources.files("dialguard.store").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number: {versions}")
    return found


def require_supported_server(version: ServerVersion) -> None:
    """Refuse a PostgreSQL too old for dialguard, saying which version it found and why it needs more."""
    if version.major < MIN_SERVER_MAJOR:
        raise MigrationError(
            f"PostgreSQL {version.major}.{version.minor} is too old: dialguard needs PostgreSQL "
            f"{MIN_SERVER_MAJOR} or newer (it retires old do-not-call list versions with DETACH PARTITION "
            "... CONCURRENTLY, so that checks never wait); upgrade the server or point database.dsn "
            "at a newer one"
        )


async def migrate(conn: Connection) -> list[Migration]:
    """Apply what is missing; return what was applied now. Safe to run from several gateways at once."""
    require_supported_server(conn.get_server_version())
    applied_now: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for m in available():
            if m.version in done:
                if done[m.version] != m.checksum:
                    raise MigrationError(
                        f"migration {m.version:04d}_{m.name} changed after it was applied; "
                        "add a new migration instead of editing an old one"
                    )
                continue
            async with conn.transaction():
                try:
                    await conn.execute(m.sql)
                except asyncpg.PostgresError as exc:
                    raise MigrationError(f"migration {m.version:04d}_{m.name} failed: {exc}") from exc
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            log.info("applied migration %04d_%s", m.version, m.name)
            applied_now.append(m)
        if applied_now:
            await analyze_touched(conn, applied_now)
    finally:
        # A session lock: pooled connections are released without a reset query (db.PooledConnection),
        # so one that cannot be unlocked here is ended rather than handed back still holding it.
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
        except (Exception, asyncio.CancelledError):
            conn.terminate()
            raise
    return applied_now


_WORD = re.compile(r"[a-z_][a-z0-9_]*")


async def analyze_touched(conn: Connection, applied: list[Migration]) -> list[str]:
    """ANALYZE the tables the applied migrations name that hold rows, so plans made after an upgrade see
    the data as it is; returns them. An empty table is left alone: analyzed empty, PostgreSQL prices
    reading it at nothing, and plans made on that belief read it whole once it has grown (issue 15)."""
    words = sorted({w for m in applied for w in _WORD.findall(m.sql.lower())})
    named = await conn.fetch(
        """SELECT c.oid::regclass::text FROM pg_class c
            WHERE c.relkind IN ('r', 'p') AND c.relnamespace = current_schema()::regnamespace
              AND c.relname = ANY($1::text[])
            ORDER BY c.relname""",
        words,
    )
    analyzed = []
    for (table,) in named:
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
            await conn.execute(f"ANALYZE {table}")
            analyzed.append(table)
    if analyzed:
        log.info("analyzed after migrating: %s", ", ".join(analyzed))
    return analyzed
