"""Issue 15: stale statistics must not collapse the gate.

The trap, reproduced deterministically: a fresh database whose ``attempts`` was analyzed while empty
(autovacuum off for it), a statement planned then (generically, as a pooled connection's statement ends
up), and many attempts of other numbers inserted afterwards. PostgreSQL prices a scan of a table it
believes empty at nothing, and nothing plans the statement again until the table is analyzed: a query
written the old way then reads the whole table on every check. The gate's plans are watched as they run
(auto_explain, nested statements and actual loops included), so a test sees which scans really happened.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from dialguard.clock import fixed_clock
from dialguard.config import Settings
from dialguard.dnc_files import FileFormat
from dialguard.gate import CheckRequest, Gate, GateDecision
from dialguard.policy.model import Purpose
from dialguard.rules.loader import load_rulebook
from dialguard.store.db import PooledConnection, create_pool
from dialguard.store.migrate import Migration, analyze_touched, migrate
from dialguard.store.registry import import_list
from dialguard.web.app import create_app, statistics_warnings
from tests.conftest import as_gateway

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # a Monday, 11:00 in New York and Miami
NEW_YORK = "+12125550142"
MIAMI = "+13055550142"
OTHER_ATTEMPTS = 20_000
RULES = load_rulebook()
SCANS = {"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan", "Tid Scan", "Tid Range Scan"}

# The plan listener lives as long as its connection on purpose; asyncpg warns at each release, then drops it.
pytestmark = pytest.mark.filterwarnings("ignore:.*active log listener:asyncpg.InterfaceWarning")

# The attempts subquery as the fact query had it before: the control that shows the trap is armed.
BEFORE = """SELECT coalesce(jsonb_agg(jsonb_build_object('at', at, 'campaign', campaign, 'purpose', purpose)),
                            '[]')
              FROM attempts WHERE number = $1 AND $2::timestamptz IS NOT NULL AND at > $2"""

WATCHED = {
    "application_name": "dialguard",
    "timezone": "UTC",
    "plan_cache_mode": "force_generic_plan",  # what a long-lived pooled statement ends up with
    "session_preload_libraries": "auto_explain",
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_nested_statements": "on",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_timing": "off",
    "auto_explain.log_format": "json",
    "auto_explain.log_level": "notice",
}


@pytest.fixture
async def stale(new_database: Any) -> str:
    """A fresh database whose attempts table was analyzed while empty, with autovacuum off for it."""
    dsn: str = await new_database()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ALTER TABLE attempts SET (autovacuum_enabled = off)")
        await conn.execute("ANALYZE attempts")
        await conn.execute(
            """INSERT INTO campaigns (name, purpose)
               VALUES ('collect', 'debt_collection'), ('notify', 'informational')"""
        )
    finally:
        await conn.close()
    return dsn


async def add_attempts(
    conn: asyncpg.Connection, number: str, campaign: str, purpose: str, ages: list[float]
) -> None:
    """Allowed, recorded calls to ``number``, ``ages`` days before NOW."""
    await conn.executemany(
        """INSERT INTO attempts (number, campaign, purpose, call_id, at)
           VALUES ($1, $2, $3, gen_random_uuid(), $4)""",
        [(number, campaign, purpose, NOW - timedelta(days=age)) for age in ages],
    )


async def add_other_attempts(conn: asyncpg.Connection) -> None:
    """Many attempts of other numbers, all inside the caps' periods."""
    await conn.execute(
        """INSERT INTO attempts (number, campaign, purpose, call_id, at)
           SELECT '+1646555' || lpad((g % 5000)::text, 4, '0'), 'collect', 'debt_collection',
                  gen_random_uuid(), $1::timestamptz - g * interval '10 seconds'
             FROM generate_series(1, $2) g""",
        NOW,
        OTHER_ATTEMPTS,
    )


@asynccontextmanager
async def watched_gate(dsn: str, **kw: Any) -> AsyncIterator[tuple[Gate, list[dict[str, Any]]]]:
    """A gate on a one-connection pool that reports the plan of every statement it runs, as it ran."""
    plans: list[dict[str, Any]] = []

    def heard(_conn: object, message: asyncpg.PostgresLogMessage) -> None:
        text = message.message
        if "plan:" in text:
            plans.append(json.loads(text[text.index("{") :])["Plan"])

    async def init(conn: asyncpg.Connection) -> None:
        await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")

    async def setup(conn: Any) -> None:
        conn.add_log_listener(heard)  # asyncpg drops listeners at each release

    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=1,
        init=init,
        setup=setup,
        connection_class=PooledConnection,
        server_settings=WATCHED,
    )
    try:
        yield Gate(pool=pool, rulebook=RULES, clock=fixed_clock(NOW), default_region="US", **kw), plans
    finally:
        await pool.close()


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def reads_of_attempts(plans: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(node type, index) of every node that read the attempts table, among the nodes that ran."""
    found = []
    for plan in plans:
        for node in nodes(plan):
            if node.get("Relation Name") != "attempts" or node["Node Type"] not in SCANS:
                continue
            if node.get("Actual Loops", 1) == 0:  # in the plan, never run
                continue
            index = node.get("Index Name")
            if node["Node Type"] == "Bitmap Heap Scan":
                index = node["Plans"][0].get("Index Name")
            found.append((node["Node Type"], index))
    return found


async def check(gate: Gate, plans: list[dict[str, Any]], request: CheckRequest) -> GateDecision:
    plans.clear()
    result = await gate.check(request)
    await asyncio.sleep(0)  # the last notices' listeners
    return result


def frequency(result: GateDecision) -> dict[str, Any]:
    reason = next(r for r in result.decision.reasons if r.code.startswith("frequency."))
    return {"code": reason.code, **reason.detail}


async def test_the_trap_is_armed_the_query_as_it_was_reads_the_whole_table(stale: str) -> None:
    """The control: in this database a statement planned while attempts was empty scans it whole."""
    conn = await asyncpg.connect(stale, server_settings={"plan_cache_mode": "force_generic_plan"})
    try:
        since = NOW - timedelta(days=7)
        await conn.execute(f"PREPARE before_issue_15 (text, timestamptz) AS {BEFORE}")
        execute = f"EXECUTE before_issue_15('{NEW_YORK}', '{since.isoformat()}')"
        await conn.execute(execute)  # planned now, while attempts is empty
        await add_other_attempts(conn)
        explained = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {execute}")
    finally:
        await conn.close()
    scans = [(n["Node Type"], n.get("Relation Name")) for n in nodes(json.loads(explained)[0]["Plan"])]
    assert ("Seq Scan", "attempts") in scans


async def test_a_capped_check_reads_attempts_through_the_index_whatever_the_statistics(stale: str) -> None:
    async with watched_gate(stale) as (gate, plans):
        first = await check(gate, plans, CheckRequest(NEW_YORK, campaign="collect"))  # planned while empty
        assert frequency(first)["code"] == "frequency.ok"
        async with gate.pool.acquire() as conn:
            await add_other_attempts(conn)
            # Reg F: 7 calls in 7 days per debt; the one 8 days ago no longer counts.
            await add_attempts(conn, NEW_YORK, "collect", "debt_collection", [0.5, 1, 2, 3, 4, 5, 6, 8])
        result = await check(gate, plans, CheckRequest(NEW_YORK, campaign="collect"))
    assert frequency(result)["code"] == "frequency.cap"
    assert frequency(result)["attempts"] == 7
    reads = reads_of_attempts(plans)
    assert reads, "the attempts were counted without reading the table?"
    assert {index for _, index in reads} == {"attempts_number_at"}, reads
    assert all(node != "Seq Scan" for node, _ in reads), reads


async def test_a_check_no_cap_counts_does_not_read_attempts_at_all(stale: str) -> None:
    """US caps count debt collection (and marketing in a few states): an informational call needs none."""
    async with watched_gate(stale) as (gate, plans):
        await check(gate, plans, CheckRequest(NEW_YORK, campaign="notify"))
        async with gate.pool.acquire() as conn:
            await add_other_attempts(conn)
            await add_attempts(conn, NEW_YORK, "notify", "informational", [0.5, 1, 2, 3, 4, 5, 6, 8])
        result = await check(gate, plans, CheckRequest(NEW_YORK, campaign="notify", record=True))
    assert result.decision.reason == "ok"
    assert frequency(result) == {"code": "frequency.ok", "caps": []}  # as before: no cap, no count
    assert plans, "no plan was reported: the watch is broken"
    assert reads_of_attempts(plans) == []


@pytest.mark.parametrize(
    ("campaign", "default_purpose", "reads"),
    [
        ("default", Purpose.MARKETING, True),  # the implicit default campaign's purpose: Florida caps it
        ("nobody-made-this", Purpose.INFORMATIONAL, True),  # unknown: judged as the strictest, marketing
        ("default", Purpose.INFORMATIONAL, False),  # an informational default: nothing to count
    ],
)
async def test_a_campaign_with_no_row_reads_attempts_by_the_purpose_it_is_judged_as(
    stale: str, campaign: str, default_purpose: Purpose, reads: bool
) -> None:
    async with watched_gate(stale, default_purpose=default_purpose) as (gate, plans):
        async with gate.pool.acquire() as conn:
            await add_attempts(conn, MIAMI, campaign, "marketing", [0.1, 0.2, 0.3])
        result = await check(gate, plans, CheckRequest(MIAMI, campaign=campaign))
    if reads:
        # Fla. Stat. 501.616(7): 3 marketing calls in 24 hours.
        assert frequency(result)["code"] == "frequency.cap", result.decision.reasons
        assert {index for _, index in reads_of_attempts(plans)} == {"attempts_number_at"}
    else:
        assert frequency(result) == {"code": "frequency.ok", "caps": []}
        assert reads_of_attempts(plans) == []


async def test_a_scrub_counts_attempts_through_the_index_too(stale: str) -> None:
    async with watched_gate(stale) as (gate, plans):
        await gate.look_ahead([CheckRequest(NEW_YORK, campaign="collect", at=NOW)])  # planned while empty
        async with gate.pool.acquire() as conn:
            await add_other_attempts(conn)
            await add_attempts(conn, NEW_YORK, "collect", "debt_collection", [0.5, 1, 2, 3, 4, 5, 6])
        plans.clear()
        judged = await gate.look_ahead(
            [CheckRequest(n, campaign="collect", at=NOW) for n in (NEW_YORK, "+12125550143")]
        )
        await asyncio.sleep(0)
    assert [frequency(r)["code"] for r in judged] == ["frequency.cap", "frequency.ok"]
    reads = reads_of_attempts(plans)
    assert reads and {index for _, index in reads} == {"attempts_number_at"}, reads


async def test_migrations_leave_empty_tables_unanalyzed_and_analyze_the_ones_they_name(
    new_database: Any,
) -> None:
    dsn = await new_database()
    conn = await asyncpg.connect(dsn)
    try:
        reltuples = "SELECT reltuples FROM pg_class WHERE oid = $1::regclass"
        # A fresh install: analyzed empty, a table would look empty to every plan made while it grows.
        assert await conn.fetchval(reltuples, "attempts") == -1
        await add_attempts(conn, NEW_YORK, "collect", "debt_collection", [1, 2, 3])
        # An upgrade that names attempts (and hlr_cache, empty): the first is analyzed, the second not.
        upgrade = Migration(999, "upgrade", "ALTER TABLE attempts ADD COLUMN note text; -- and hlr_cache")
        assert await analyze_touched(conn, [upgrade]) == ["attempts"]
        assert await conn.fetchval(reltuples, "attempts") == 3
        assert await conn.fetchval(reltuples, "hlr_cache") == -1
        # Through migrate() itself: the last migration applied again analyzes what it names.
        await conn.execute("DROP FUNCTION dialguard_recent_attempts")
        await conn.execute("DELETE FROM schema_migrations WHERE version = 9")
        await add_attempts(conn, NEW_YORK, "collect", "debt_collection", [4])
        assert [m.version for m in await migrate(conn)] == [9]
        assert await conn.fetchval(reltuples, "attempts") == 4
    finally:
        await conn.close()


async def test_a_company_list_import_analyzes_the_entries(new_database: Any) -> None:
    pool = await create_pool(as_gateway(await new_database()), size=1)  # the gateway asks the owner

    async def lines() -> AsyncIterator[bytes]:
        yield b"".join(b"212555%04d\n" % n for n in range(250))

    try:
        async with pool.acquire() as conn:
            report = await import_list(
                conn, lines(), list_name="internal", fmt=FileFormat.US_REGISTRY, list_date=None, now=NOW,
                actor="test",
            )  # fmt: skip
            assert report.rows == 250
            entries = await conn.fetchval(
                "SELECT reltuples FROM pg_class WHERE oid = 'dnc_entries'::regclass"
            )
        assert entries == 250
    finally:
        await pool.close()


def test_healthz_warns_when_nothing_keeps_statistics_fresh() -> None:
    assert statistics_warnings(autovacuum="on", track_counts="on") == {}
    off = statistics_warnings(autovacuum="off", track_counts="on")
    assert list(off) == ["autovacuum"] and "autovacuum is off" in off["autovacuum"]
    assert "track_counts off" in statistics_warnings(autovacuum="on", track_counts="off")["autovacuum"]


async def test_healthz_reports_the_servers_autovacuum_as_a_warning_not_a_failure(
    pool: asyncpg.Pool, aiohttp_client: Any
) -> None:
    gate = Gate(pool=pool, rulebook=RULES, clock=fixed_clock(NOW), default_region="US")
    client = await aiohttp_client(create_app(settings=Settings(), pool=pool, gate=gate))
    response = await client.get("/healthz")
    body = await response.json()
    async with pool.acquire() as conn:
        autovacuum, track_counts = await conn.fetchval(
            "SELECT ARRAY[current_setting('autovacuum'), current_setting('track_counts')]"
        )
    assert response.status == 200 and body["status"] == "ok"
    assert body.get("warnings", {}) == statistics_warnings(autovacuum=autovacuum, track_counts=track_counts)
