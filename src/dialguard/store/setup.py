"""From the settings to a database a gateway can use: migrated by its owner, granted to the gateway's role.

Three shapes (store/roles.py says why two roles):
- the embedded server: its superuser is the owner, and the gateway logs in as ``dialguard_gateway``;
- ``database.dsn`` with ``database.owner_dsn``: the owner's role migrates and grants to dsn's role;
- ``database.dsn`` alone: one role for both, as before; it can rewrite history, and the start says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from dialguard.config import DatabaseSettings
from dialguard.store.db import DatabaseError, resolve_dsn
from dialguard.store.migrate import MIGRATION_LOCK_ID, Migration, MigrationError, migrate
from dialguard.store.roles import EMBEDDED_GATEWAY_ROLE, ensure_login_role, grant_gateway

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Prepared:
    gateway_dsn: str  # what every pool, command and listener connects with
    applied: list[Migration]  # migrations applied now


async def prepare_database(settings: DatabaseSettings, *, create: bool = True) -> Prepared:
    """Apply what migrations are missing and grant the gateway's role, as the owner; return the DSN the
    gateway uses. ``create``: as :func:`resolve_dsn` (only ``serve`` and ``migrate`` start a fresh
    embedded database)."""
    if settings.dsn is None:
        owner = await resolve_dsn(settings, create=create)
        gateway = with_user(owner, EMBEDDED_GATEWAY_ROLE)
    else:
        gateway = settings.dsn.value
        owner = settings.owner_dsn.value if settings.owner_dsn is not None else gateway
    conn = await _connect(owner, "database.owner_dsn" if settings.owner_dsn else "database.dsn")
    try:
        try:
            applied = await migrate(conn)
        except MigrationError as exc:
            if owner == gateway and isinstance(exc.__cause__, asyncpg.InsufficientPrivilegeError):
                raise DatabaseError(
                    f"{exc}: database.dsn's role may not change the schema (it is the gateway's own); "
                    "set database.owner_dsn to the schema owner's DSN (README: Two database roles)"
                ) from exc
            raise
        if owner != gateway:
            if settings.dsn is None:
                await ensure_login_role(conn, EMBEDDED_GATEWAY_ROLE)
                role = EMBEDDED_GATEWAY_ROLE
            else:
                role = await _role_of(gateway)
            # Under migrate's lock: two gateways granting at once would meet on the same catalog rows.
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
            try:
                await grant_gateway(conn, role, force=bool(applied))
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    finally:
        await conn.close()
    return Prepared(gateway_dsn=gateway, applied=applied)


def with_user(dsn: str, user: str) -> str:
    """The same server and database, as another role (no password: the embedded server trusts its own
    socket)."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, parts.fragment))


async def _role_of(dsn: str) -> str:
    conn = await _connect(dsn, "database.dsn")
    try:
        role: str = await conn.fetchval("SELECT current_user")
        return role
    finally:
        await conn.close()


async def _connect(dsn: str, key: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=10)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.ClientConfigurationError) as exc:
        raise DatabaseError(
            f"cannot connect to PostgreSQL with {key} ({type(exc).__name__}: {exc}); "
            "check it and that the server is running"
        ) from exc
