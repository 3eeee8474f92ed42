"""Shared fixtures: a real PostgreSQL (embedded, or DIALGUARD_TEST_DSN), and a loop that fails tests
which leave unhandled exceptions behind (as asyncpg's own test base does)."""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dialguard.loops import LoopFactory, loop_factory
from dialguard.store.db import create_pool, init_connection, start_embedded, stop_embedded
from dialguard.store.migrate import migrate
from dialguard.store.roles import EMBEDDED_GATEWAY_ROLE, ensure_login_role, grant_gateway
from dialguard.store.setup import with_user
from tests.fakes.proxy import CuttableProxy


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, LoopFactory]:
    """DIALGUARD_TEST_LOOP=uvloop runs every test on the loop `serve` ships with (gate.event_loop);
    unset, on asyncio's own. CI runs the suite on both."""
    name = os.environ.get("DIALGUARD_TEST_LOOP", "asyncio")
    return {name: loop_factory(name) or asyncio.new_event_loop}


TEST_DSN_ENV = "DIALGUARD_TEST_DSN"


def _with_database(dsn: str, name: str) -> str:
    """The same server, another database (asyncpg takes ``database=`` in the query part too)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    query.pop("database", None)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, urlencode(query), ""))


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """A PostgreSQL server: the one DIALGUARD_TEST_DSN names, or the embedded one in a temp dir.

    Not under pytest's own temp root: another pytest run on the machine resets that root to 0700, and
    the embedded server's unprivileged user would lose its way to the data directory mid-run.
    """
    if dsn := os.environ.get(TEST_DSN_ENV):
        _SERVER[:] = [dsn]
        yield dsn
        return
    with tempfile.TemporaryDirectory(prefix="dialguard-test-pg-") as tmp:
        _SERVER[:] = [start_embedded(Path(tmp))]
        yield _SERVER[0]
        stop_embedded(Path(tmp))  # before its directory goes


_SERVER: list[str] = []  # the server's superuser DSN, once server_dsn has it


@asynccontextmanager
async def as_owner(conn: Any) -> AsyncIterator[asyncpg.Connection]:
    """The schema owner's connection to ``conn``'s database, for what a test does that the gateway's
    role may not: tamper with history, slow an insert down with a trigger."""
    database = await conn.fetchval("SELECT current_database()")
    owner = await asyncpg.connect(_with_database(_SERVER[0], database))
    await init_connection(owner)  # jsonb as the gateway reads it: row hashes are computed from it
    try:
        yield owner
    finally:
        await owner.close()


async def _create_database(server: str) -> str:
    name = f"dialguard_test_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = _with_database(server, name)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        # The gateway's role, as the embedded server's gateway has it: tests run with its privileges.
        await ensure_login_role(conn, EMBEDDED_GATEWAY_ROLE)
        await grant_gateway(conn, EMBEDDED_GATEWAY_ROLE)
    finally:
        await conn.close()
    return dsn


def as_gateway(dsn: str) -> str:
    """The same database, as the gateway's role: what a gateway may do and no more."""
    return with_user(dsn, EMBEDDED_GATEWAY_ROLE)


async def _drop_database(server: str, dsn: str) -> None:
    name = dsn.split("?")[0].rsplit("/", 1)[1]
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def db_dsn(server_dsn: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test session, dropped at the end."""
    dsn = await _create_database(server_dsn)
    yield dsn
    await _drop_database(server_dsn, dsn)


@pytest.fixture(scope="session")
async def new_database(server_dsn: str) -> AsyncIterator[Any]:
    """A factory of extra fresh databases, for tests that need to stop or break one."""
    made: list[str] = []

    async def make() -> str:
        dsn = await _create_database(server_dsn)
        made.append(dsn)
        return dsn

    yield make
    for dsn in made:
        await _drop_database(server_dsn, dsn)


@pytest.fixture(scope="session")
async def session_pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """The gateway's pool: the gateway's role, not the owner's."""
    pool = await create_pool(as_gateway(db_dsn), size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def owner_conn(db_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """The schema owner's connection, for what a test does that a gateway may not (tampering)."""
    conn = await asyncpg.connect(db_dsn)
    yield conn
    await conn.close()


_KEEP = {"schema_migrations"}


@pytest.fixture
async def pool(session_pool: asyncpg.Pool, db_dsn: str) -> asyncpg.Pool:
    """The session pool over emptied tables: each test starts from a clean database."""
    conn = await asyncpg.connect(db_dsn)  # the owner: the gateway's role may not truncate
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            if r["tablename"] not in _KEEP
        ]
        # National-list versions live in their own partitions, named by version id: drop them too,
        # since the ids restart.
        versions = [t for t in tables if t.startswith("dnc_registry_numbers_v")]
        if versions:
            await conn.execute(f"DROP TABLE {', '.join(versions)}")
        tables = [t for t in tables if t not in versions]
        if tables:
            await conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    return session_pool


@pytest.fixture(autouse=True)
def _own_seal_files(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gateways and commands a test starts seal under a key and an anchor file of that test's own: never
    the user's data directory's, and never an anchor left by a test on a database emptied since."""
    seal = tmp_path_factory.mktemp("seal")
    monkeypatch.setenv("DIALGUARD_GATE_SEAL_KEY_FILE", str(seal / "seal.key"))
    monkeypatch.setenv("DIALGUARD_GATE_SEAL_ANCHOR", str(seal / "seal-anchor.jsonl"))


@pytest.fixture(autouse=True)
async def _fail_on_unhandled_loop_errors() -> AsyncIterator[None]:
    """Fail the test when the event loop reported an exception nobody handled (a lost task)."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield
        gc.collect()  # a task that died unobserved reports only when collected
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    if errors:
        messages = "; ".join(str(e.get("exception") or e.get("message")) for e in errors)
        pytest.fail(f"the event loop saw unhandled exceptions: {messages}")


@pytest.fixture
async def proxied(db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[tuple[CuttableProxy, asyncpg.Pool]]:
    proxy = CuttableProxy.for_dsn(db_dsn)
    await proxy.start()
    through = await create_pool(proxy.dsn_through(as_gateway(db_dsn)), size=2, command_timeout=1)
    yield proxy, through
    proxy.restore()
    through.terminate()
    await proxy.close()
