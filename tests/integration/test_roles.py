"""Issue 14, item 11: with the gateway's own credentials, history cannot be rewritten.

Every attack the fault run made with the app's DSN, made again with the gateway's role: each is refused
by PostgreSQL itself. What the gateway must still do (add to lists, renew an expired entry, take an entry
off with its history, import a national list, ask for statistics) still works.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dialguard.clock import fixed_clock
from dialguard.config import DatabaseSettings, Secret, Settings
from dialguard.gate import Gate
from dialguard.rules.loader import load_rulebook
from dialguard.store import dnc
from dialguard.store.db import DatabaseError, create_pool, stop_embedded
from dialguard.store.migrate import available
from dialguard.store.roles import EMBEDDED_GATEWAY_ROLE, UnknownTable, check_role, grant_gateway
from dialguard.store.setup import prepare_database, with_user
from dialguard.web.app import create_app
from tests.conftest import as_gateway, as_owner

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
RULES = load_rulebook()
NUMBER = "+12125550142"

ATTACKS = [
    "TRUNCATE decisions, decision_checkpoints",
    "TRUNCATE attempts",
    "DELETE FROM attempts",
    "DELETE FROM dnc_entries",
    "UPDATE dnc_entries SET expires_at = '2000-01-01'",
    "DELETE FROM optouts",
    "UPDATE decisions SET verdict = 'ALLOW'",
    "DELETE FROM decision_checkpoints",
    "ALTER TABLE decisions DISABLE TRIGGER decisions_append_only",
    "DROP TRIGGER decisions_append_only ON decisions",
    "ALTER TABLE decisions OWNER TO CURRENT_USER",
    "SET session_replication_role = replica",
    "DROP FUNCTION dialguard_append_only() CASCADE",
    "CREATE OR REPLACE FUNCTION dialguard_append_only() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN RETURN NEW; END $$",
    "DELETE FROM consent_revocations",
    "DELETE FROM dnc_history",
]


@pytest.mark.parametrize("attack", ATTACKS)
async def test_the_gateways_role_cannot_rewrite_history(pool: asyncpg.Pool, attack: str) -> None:
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_user") == EMBEDDED_GATEWAY_ROLE
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(attack)


async def test_an_analyze_it_may_not_run_is_refused_not_skipped(pool: asyncpg.Pool) -> None:
    """PostgreSQL skips a non-owner's ANALYZE with a mere warning: the function says no outright."""
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.RaiseError, match="not a table the gateway may analyze"):
            await conn.execute("SELECT dialguard_analyze('decisions')")
        await conn.execute("SELECT dialguard_analyze('dnc_entries')")


async def test_a_list_entry_comes_off_only_with_its_history(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await dnc.add_dnc(conn, number=NUMBER, at=NOW, source="optout")
        assert await dnc.add_dnc(conn, number="+1212*", at=NOW, source="admin")
        assert await dnc.remove_dnc(conn, number=NUMBER, at=NOW + timedelta(hours=1), actor="ann")
        assert await dnc.remove_dnc(conn, number="+1212*", at=NOW + timedelta(hours=1), actor="ann")
        assert not await dnc.remove_dnc(conn, number=NUMBER, at=NOW + timedelta(hours=2))
        history = await conn.fetch("SELECT number, action, actor FROM dnc_history ORDER BY id")
        assert [tuple(r) for r in history] == [
            (NUMBER, "add", "cli"),
            ("+1212*", "add", "cli"),
            (NUMBER, "remove", "ann"),
            ("+1212*", "remove", "ann"),
        ]
        assert await conn.fetchval("SELECT count(*) FROM dnc_entries") == 0


async def test_an_expired_entry_is_renewed_and_a_live_one_is_left_as_it_is(pool: asyncpg.Pool) -> None:
    expires = NOW + timedelta(days=1)
    async with pool.acquire() as conn:
        assert await dnc.add_dnc(conn, number=NUMBER, at=NOW, expires_at=expires)
        # Live: a second add neither shortens nor lengthens it (the renewal touches expired entries only).
        assert not await dnc.add_dnc(conn, number=NUMBER, at=NOW, expires_at=NOW + timedelta(minutes=1))
        assert await conn.fetchval("SELECT expires_at FROM dnc_entries") == expires
        later = NOW + timedelta(days=2)
        assert await dnc.add_dnc(conn, number=NUMBER, at=later, expires_at=later + timedelta(days=30))
        assert await conn.fetchval("SELECT expires_at FROM dnc_entries") == later + timedelta(days=30)
        # And the renewal function cannot be turned on a live entry to cut it short.
        assert not await conn.fetchval(
            "SELECT dialguard_dnc_renew('internal', $1, 'x', '{}', 'x', $2, $3)", NUMBER, later, later
        )


async def test_a_table_nobody_classified_stops_the_grant(pool: asyncpg.Pool) -> None:
    async with as_owner(pool) as owner:
        await owner.execute("CREATE TABLE side_notes (id int)")
        try:
            with pytest.raises(UnknownTable, match="side_notes"):
                await grant_gateway(owner, EMBEDDED_GATEWAY_ROLE)
        finally:
            await owner.execute("DROP TABLE side_notes")
            await grant_gateway(owner, EMBEDDED_GATEWAY_ROLE)


async def test_the_role_check_tells_a_shared_role_from_the_gateways(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        gateway = await check_role(conn)
    async with as_owner(pool) as owner:
        shared = await check_role(owner)
    assert gateway.warning() is None
    assert shared.can_rewrite_history and "database.owner_dsn" in (shared.warning() or "")


async def test_an_owner_dsn_migrates_and_grants_the_dsns_role(new_database: Any) -> None:
    """database.owner_dsn with database.dsn: a fresh database is migrated by the owner, and the dsn's
    role can work but not rewrite."""
    owner = await new_database()
    gateway = as_gateway(owner)
    settings = DatabaseSettings(dsn=Secret(gateway), owner_dsn=Secret(owner))
    prepared = await prepare_database(settings)
    assert prepared.gateway_dsn == gateway and prepared.applied == []  # new_database migrated it
    conn = await asyncpg.connect(gateway)
    try:
        assert (await check_role(conn)).warning() is None
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("TRUNCATE decisions")
    finally:
        await conn.close()


async def test_the_embedded_server_runs_its_gateway_as_a_role_of_its_own(tmp_path: Path) -> None:
    settings = DatabaseSettings(data_dir=tmp_path)
    prepared = await prepare_database(settings)
    try:
        assert [m.version for m in prepared.applied] == [m.version for m in available()]
        assert prepared.gateway_dsn.startswith(f"postgresql://{EMBEDDED_GATEWAY_ROLE}@")
        conn = await asyncpg.connect(prepared.gateway_dsn)
        try:
            assert (await check_role(conn)).role == EMBEDDED_GATEWAY_ROLE
            assert (await check_role(conn)).warning() is None
        finally:
            await conn.close()
        # A second start (or any command) finds the role made and grants again, unchanged.
        assert (await prepare_database(settings)).applied == []
    finally:
        stop_embedded(tmp_path)


def test_with_user_keeps_the_server_database_and_query() -> None:
    assert (
        with_user("postgresql://postgres:@/postgres?host=/tmp/x", "gw")
        == "postgresql://gw@/postgres?host=/tmp/x"
    )
    assert with_user("postgresql://u:p@db:5432/d", "gw") == "postgresql://gw@db:5432/d"


async def test_healthz_warns_when_the_gateways_role_could_rewrite_history(
    pool: asyncpg.Pool, db_dsn: str, aiohttp_client: Any
) -> None:
    bodies = []
    for dsn in (as_gateway(db_dsn), db_dsn):  # its own role, then the owner's (one role for both)
        gateways_pool = await create_pool(dsn, size=1)
        try:
            gate = Gate(
                pool=gateways_pool, rulebook=load_rulebook(), clock=fixed_clock(NOW), default_region="US"
            )
            client = await aiohttp_client(create_app(settings=Settings(), pool=gateways_pool, gate=gate))
            response = await client.get("/healthz")
            assert response.status == 200
            bodies.append(await response.json())
        finally:
            await gateways_pool.close()
    own, shared = bodies
    assert own["status"] == shared["status"] == "ok"  # a warning, never a failure
    assert "roles" not in own.get("warnings", {})
    assert "database.owner_dsn" in shared["warnings"]["roles"]


async def test_grants_in_force_are_left_alone_and_a_missing_one_is_put_back(pool: asyncpg.Pool) -> None:
    """Every start and command checks the grants; only a difference (or new migrations) writes them."""
    async with as_owner(pool) as owner:
        assert not await grant_gateway(owner, EMBEDDED_GATEWAY_ROLE)  # conftest granted them
        await owner.execute(f"REVOKE INSERT ON decisions FROM {EMBEDDED_GATEWAY_ROLE}")
        await owner.execute(f"GRANT UPDATE ON attempts TO {EMBEDDED_GATEWAY_ROLE}")
        assert await grant_gateway(owner, EMBEDDED_GATEWAY_ROLE)
        assert not await grant_gateway(owner, EMBEDDED_GATEWAY_ROLE)
        assert await grant_gateway(owner, EMBEDDED_GATEWAY_ROLE, force=True)
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE attempts SET campaign = 'x'")
        assert await conn.fetchval("SELECT has_table_privilege('decisions', 'INSERT')")


async def test_a_migration_the_gateways_role_may_not_apply_says_to_set_the_owners_dsn(
    new_database: Any,
) -> None:
    """An upgrade run with only the gateway's DSN: refused with what to set, not a bare permission error."""
    owner = await new_database()
    conn = await asyncpg.connect(owner)
    try:  # as if 0012 had not been applied yet: the gateway's role would have to make a trigger
        await conn.execute("DROP TRIGGER api_tokens_changed ON api_tokens")
        await conn.execute("DROP FUNCTION dialguard_tokens_changed()")
        await conn.execute("DELETE FROM schema_migrations WHERE version = 12")
    finally:
        await conn.close()
    with pytest.raises(DatabaseError, match=r"0012_token_notify failed.*database\.owner_dsn"):
        await prepare_database(DatabaseSettings(dsn=Secret(as_gateway(owner))))
    both = DatabaseSettings(dsn=Secret(as_gateway(owner)), owner_dsn=Secret(owner))
    prepared = await prepare_database(both)
    assert [m.version for m in prepared.applied] == [12]
