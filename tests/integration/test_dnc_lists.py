"""National do-not-call lists against a real PostgreSQL: versions, freshness, exemptions, wildcards."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from dialguard.clock import fixed_clock
from dialguard.dnc_files import FileFormat
from dialguard.gate import CheckRequest, Gate
from dialguard.policy.model import Purpose, Verdict
from dialguard.rules.loader import load_rulebook
from dialguard.store import campaigns, consent, dnc
from dialguard.store.db import create_pool
from dialguard.store.registry import ImportRefused, import_registry, registry_status
from tests.cli import dialguard
from tests.conftest import as_gateway, as_owner
from tests.fakes.waiting import server_reports

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 11:00 in New York, a Monday
TODAY = NOW.date()
LISTED = "+12125550100"
CLEAN = "+12125550111"
RULES = load_rulebook()


def gate(pool: asyncpg.Pool) -> Gate:
    return Gate(pool=pool, rulebook=RULES, clock=fixed_clock(NOW), default_region="US")


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def load(
    pool: asyncpg.Pool,
    text: bytes,
    *,
    list_date: date = TODAY - timedelta(days=1),
    fmt: FileFormat = FileFormat.US_REGISTRY,
    registry: str = "us_national",
) -> int:
    async with pool.acquire() as conn:
        report = await import_registry(
            conn,
            chunks(text),
            registry=registry,
            fmt=fmt,
            list_date=list_date,
            now=NOW,
            actor="test",
            max_reject_ratio=0.5,
        )
    assert report.version_id is not None
    return report.version_id


async def check(pool: asyncpg.Pool, number: str, campaign: str = "spring") -> tuple[str, dict[str, object]]:
    result = await gate(pool).check(CheckRequest(number, campaign=campaign))
    reasons = {r["code"]: r["detail"] for r in result.to_json()["reasons"]}
    return result.decision.reason, reasons


async def only_this_version_is_left(pool: asyncpg.Pool, live: int) -> None:
    """The version live before a failed import is still live, and its table is the only one."""
    async with pool.acquire() as conn:
        status = await registry_status(conn)
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'dnc_registry_numbers_v%'"
        )
    assert [(r["name"], r["version_id"]) for r in status] == [("us_national", live)]
    assert tables == 1
    assert (await check(pool, LISTED))[0] == "dnc.us_national"


@pytest.fixture
async def marketing(pool: asyncpg.Pool) -> asyncpg.Pool:
    async with pool.acquire() as conn:
        await campaigns.add_campaign(conn, name="spring", purpose=Purpose.MARKETING)
        await campaigns.add_campaign(conn, name="notices", purpose=Purpose.INFORMATIONAL)
        for number in (LISTED, CLEAN):
            await consent.grant_consent(
                conn, at=NOW, number=number, kind="express", source="call", purpose=Purpose.MARKETING,
                granted_at=NOW - timedelta(days=10),
            )  # fmt: skip
    return pool


async def test_a_listed_number_blocks_marketing_with_the_list_version(marketing: asyncpg.Pool) -> None:
    version = await load(marketing, b"2125550100\n212,5550101\nbroken line\n")
    reason, reasons = await check(marketing, LISTED)
    assert reason == "dnc.us_national"
    detail = reasons["dnc.us_national"]
    assert detail["list_version"] == (TODAY - timedelta(days=1)).isoformat()
    assert detail["entry_id"] == version
    assert (await check(marketing, CLEAN))[0] == "ok"


async def test_a_written_agreement_exempts_from_the_national_list_but_never_from_the_company_list(
    marketing: asyncpg.Pool,
) -> None:
    await load(marketing, b"2125550100\n")
    async with marketing.acquire() as conn:
        cid = await consent.grant_consent(
            conn, at=NOW, number=LISTED, kind="written_agreement", source="paper", purpose=Purpose.MARKETING,
            granted_at=NOW - timedelta(days=1), evidence={"document": "contract-17.pdf"},
        )  # fmt: skip
    reason, reasons = await check(marketing, LISTED)
    assert reason == "ok"
    assert reasons["dnc.clear"]["exemptions"] == [  # type: ignore[index]
        {**reasons["dnc.clear"]["exemptions"][0], "list": "us_national", "consent_id": cid}  # type: ignore[index]
    ]
    async with marketing.acquire() as conn:
        await dnc.add_dnc(conn, at=NOW, number=LISTED, source="complaint")
    assert (await check(marketing, LISTED))[0] == "dnc.internal"


async def test_the_national_list_does_not_bind_informational_calls(marketing: asyncpg.Pool) -> None:
    await load(marketing, b"2125550100\n")
    assert (await check(marketing, LISTED, campaign="notices"))[0] == "ok"


@pytest.mark.parametrize(("age", "stale"), [(30, False), (31, True)])
async def test_a_list_is_stale_at_31_days_and_not_at_30(
    marketing: asyncpg.Pool, age: int, stale: bool
) -> None:
    """16 CFR 310.4(b)(3)(iv): a registry copy no older than 31 days (blocking from day 31, the safe side)."""
    await load(marketing, b"2125550199\n", list_date=TODAY - timedelta(days=age))
    reason, reasons = await check(marketing, CLEAN)
    assert reason == ("dnc.list_stale" if stale else "ok")
    if stale:
        assert reasons["dnc.list_stale"]["age_days"] == 31
        assert reasons["dnc.list_stale"]["max_age_days"] == 31


async def test_no_list_loaded_is_no_list(marketing: asyncpg.Pool) -> None:
    reason, reasons = await check(marketing, CLEAN)
    assert reason == "dnc.list_stale"
    assert reasons["dnc.list_stale"]["loaded"] is False


async def test_a_change_file_makes_the_next_version_from_the_live_one(marketing: asyncpg.Pool) -> None:
    first = await load(marketing, b"2125550100\n2125550101\n")
    second = await load(
        marketing, b"212,5550100,D\n212,5550111,A\n", fmt=FileFormat.US_REGISTRY_CHANGES, list_date=TODAY
    )
    async with marketing.acquire() as conn:
        numbers = await conn.fetch("SELECT number FROM dnc_registry_numbers ORDER BY number")
        based_on = await conn.fetchval("SELECT based_on FROM dnc_registry_versions WHERE id = $1", second)
        partitions = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'dnc_registry_numbers'::regclass"
        )
    assert [r["number"] for r in numbers] == [12125550101, 12125550111]
    assert based_on == first
    assert partitions == 1  # the retired version is gone
    assert (await check(marketing, LISTED))[0] == "ok"
    assert (await check(marketing, CLEAN))[0] == "dnc.us_national"


async def test_a_refused_import_leaves_the_live_version_and_nothing_behind(marketing: asyncpg.Pool) -> None:
    live = await load(marketing, b"2125550100\n")
    async with marketing.acquire() as conn:
        with pytest.raises(ImportRefused, match="2 of 10 lines are broken"):
            await import_registry(
                conn, chunks(b"2125550111\n" * 8 + b"xx\nyy\n"), registry="us_national",
                fmt=FileFormat.US_REGISTRY, list_date=TODAY, now=NOW, actor="test",
            )  # fmt: skip
    await only_this_version_is_left(marketing, live)


async def test_an_import_killed_half_way_leaves_the_old_version_live(
    marketing: asyncpg.Pool, db_dsn: str, tmp_path: Path
) -> None:
    live = await load(marketing, b"2125550100\n")
    fifo = tmp_path / "registry.txt"
    os.mkfifo(fifo)
    # As the gateway's role, whose own sessions' COPY progress it may read.
    env = {**os.environ, "DIALGUARD_DATABASE_DSN": as_gateway(db_dsn)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialguard", "dnc", "import", str(fifo), "--list", "us_national",
        "--format", "us-registry", "--date", "2026-11-20", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    writer = await asyncio.to_thread(fifo.open, "wb")
    # More than one 4 MiB read, and no end of file: the importer is mid-COPY, waiting for the rest.
    half = b"".join(b"212%07d\n" % n for n in range(2_000_000, 2_500_000))
    await asyncio.to_thread(writer.write, half)
    await asyncio.to_thread(writer.flush)
    # Wait until PostgreSQL itself reports the COPY under way, then kill the importer outright.
    async with marketing.acquire() as conn:
        await server_reports(
            conn, "SELECT count(*) > 0 FROM pg_stat_progress_copy WHERE tuples_processed > 9"
        )
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    writer.close()
    async with marketing.acquire() as conn:
        # The server notices the dead client and rolls its transaction back.
        await server_reports(conn, "SELECT count(*) = 0 FROM pg_stat_progress_copy")
    await only_this_version_is_left(marketing, live)


async def test_a_wildcard_blocks_a_whole_area_code(marketing: asyncpg.Pool) -> None:
    await load(marketing, b"3105550100\n")
    async with marketing.acquire() as conn:
        assert await dnc.add_dnc(conn, at=NOW, number="+1212*", source="admin")
    reason, reasons = await check(marketing, CLEAN)
    assert reason == "dnc.prefix"
    assert reasons["dnc.prefix"]["prefix"] == "+1212"
    async with marketing.acquire() as conn:
        assert await dnc.remove_dnc(conn, at=NOW, number="+1212*")
    assert (await check(marketing, CLEAN))[0] == "ok"


async def test_a_campaign_list_binds_only_its_campaign(marketing: asyncpg.Pool) -> None:
    await load(marketing, b"3105550100\n")
    async with marketing.acquire() as conn:
        await dnc.add_dnc(conn, at=NOW, number=CLEAN, list_name="campaign:spring")
    assert (await check(marketing, CLEAN, campaign="spring"))[0] == "dnc.internal"
    assert (await check(marketing, CLEAN, campaign="notices"))[0] == "ok"


async def test_an_expired_entry_no_longer_blocks(marketing: asyncpg.Pool) -> None:
    await load(marketing, b"3105550100\n")
    async with marketing.acquire() as conn:
        await dnc.add_dnc(
            conn, at=NOW, number=CLEAN, list_name="campaign:spring", expires_at=NOW - timedelta(minutes=1)
        )
        await dnc.add_dnc(
            conn, at=NOW, number=LISTED, list_name="campaign:spring", expires_at=NOW + timedelta(days=1)
        )
    assert (await check(marketing, CLEAN))[0] == "ok"
    assert (await check(marketing, LISTED))[0] == "dnc.internal"  # the company's own list, of this campaign


async def test_a_national_list_is_never_written_one_number_at_a_time(
    marketing: asyncpg.Pool, db_dsn: str
) -> None:
    """Issue 11: `dnc add --list us_national` made an entry that survived the list's next full version."""
    with pytest.raises(dnc.NotACompanyList):
        async with marketing.acquire() as conn:
            await dnc.add_dnc(conn, at=NOW, number=CLEAN, list_name="us_national")
    code, _, err = await dialguard(db_dsn, "dnc", "add", CLEAN, "--list", "us_national")
    assert code == 2 and "changes only by importing" in err
    async with marketing.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM dnc_entries") == 0


@pytest.mark.parametrize(("inquired", "exempt"), [(date(2026, 8, 22), False), (date(2026, 8, 24), True)])
async def test_an_inquiry_exempts_for_three_months(
    marketing: asyncpg.Pool, inquired: date, exempt: bool
) -> None:
    """16 CFR 310.2(q): an established business relationship lasts 3 months after an inquiry."""
    await load(marketing, b"2125550100\n")
    async with marketing.acquire() as conn:
        await consent.grant_consent(
            conn, at=NOW, number=LISTED, kind="ebr_inquiry", source="web_form", purpose=Purpose.MARKETING,
            granted_at=datetime.combine(inquired, datetime.min.time(), UTC),
        )  # fmt: skip
    assert (await check(marketing, LISTED))[0] == ("ok" if exempt else "dnc.us_national")


async def test_consent_revoked_on_one_gateway_blocks_the_next_check_on_another(
    marketing: asyncpg.Pool, db_dsn: str
) -> None:
    await load(marketing, b"3105550100\n")
    other = await create_pool(as_gateway(db_dsn), size=2)
    try:
        assert (await check(other, CLEAN))[0] == "ok"
        async with marketing.acquire() as conn:
            await consent.revoke_consent(conn, at=NOW, number=CLEAN, source="api")
        result = await gate(other).check(CheckRequest(CLEAN, campaign="spring"))
    finally:
        await other.close()
    assert result.verdict is Verdict.BLOCK
    assert result.decision.reason == "consent.revoked"


async def test_an_import_runs_past_the_per_command_timeout_meant_for_calls(
    db_dsn: str, pool: asyncpg.Pool
) -> None:
    # The pool's command timeout is sized for a call's facts; 300,000 rows take far longer than 50 ms.
    impatient = await create_pool(as_gateway(db_dsn), size=1, command_timeout=0.05)
    try:
        async with impatient.acquire() as conn:
            report = await import_registry(
                conn, chunks(b"".join(b"212%07d\n" % n for n in range(2_000_000, 2_300_000))),
                registry="us_national", fmt=FileFormat.US_REGISTRY, list_date=TODAY, now=NOW, actor="test",
            )  # fmt: skip
    finally:
        await impatient.close()
    assert report.rows == 300_000


async def test_a_second_import_of_the_same_list_is_refused_while_one_runs(marketing: asyncpg.Pool) -> None:
    live = await load(marketing, b"2125550100\n")
    async with marketing.acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM dnc_registries WHERE name = 'us_national' FOR UPDATE")
        async with marketing.acquire() as conn:
            with pytest.raises(ImportRefused, match="another import of us_national is running"):
                await import_registry(
                    conn, chunks(b"2125550111\n"), registry="us_national", fmt=FileFormat.US_REGISTRY,
                    list_date=TODAY, now=NOW, actor="test",
                )  # fmt: skip
    await only_this_version_is_left(marketing, live)


async def test_the_texas_list_skips_lapsed_registrations_and_binds_texas_numbers(
    marketing: asyncpg.Pool, db_dsn: str, tmp_path: Path
) -> None:
    """The US pack says a Texas registration lasts 3 years: the import reads that, not a flag."""
    await load(marketing, b"2125550100\n")  # the national list, fresh
    listed, lapsed = "+15125550100", "+15125550101"  # Austin
    async with marketing.acquire() as conn:
        for number in (listed, lapsed):
            await consent.grant_consent(
                conn, at=NOW, number=number, kind="express", source="call", purpose=Purpose.MARKETING,
                granted_at=NOW - timedelta(days=10),
            )  # fmt: skip
    tx = tmp_path / "texas.csv"
    tx.write_text("number,registered_on\n5125550100,2025-03-01\n5125550101,2023-11-21\n", encoding="utf-8")
    code, out, err = await dialguard(
        db_dsn, "dnc", "import", str(tx), "--list", "us_tx", "--format", "csv", "--date", "2026-11-22"
    )
    assert code == 0, err
    assert "us_tx: 1 numbers live" in out and "1 lapsed registrations skipped (older than 1095 days)" in out
    assert (await check(marketing, listed))[0] == "dnc.us_tx"
    assert (await check(marketing, lapsed))[0] == "ok"
    # A file without registration dates cannot say what has lapsed: refused, the live version stands.
    code, _, err = await dialguard(
        db_dsn, "dnc", "import", str(tx), "--list", "us_tx", "--format", "us-registry", "--date", "2026-11-22"
    )
    assert code != 0 and "import refused, nothing changed" in err and "registered_on" in err
    assert (await check(marketing, listed))[0] == "dnc.us_tx"


async def test_a_company_list_import_adds_entries_to_the_internal_list(
    marketing: asyncpg.Pool, db_dsn: str, tmp_path: Path
) -> None:
    await load(marketing, b"3105550100\n")  # the national list, fresh: only the company list blocks
    optouts = tmp_path / "optouts.csv"
    optouts.write_text(
        "number,name\n+1 212 555 0100,Ann\n(212) 555-0100,Ann again\nnope,Bob\n", encoding="utf-8"
    )
    code, out, err = await dialguard(
        db_dsn, "dnc", "import", str(optouts), "--list", "internal", "--format", "csv", "--max-broken", "50"
    )
    assert code == 0, err
    assert "internal: 1 numbers added" in out and "1 broken lines" in out and "line 4" in err
    assert (await check(marketing, LISTED))[0] == "dnc.internal"
    assert (await check(marketing, CLEAN))[0] == "ok"
    code, out, _ = await dialguard(
        db_dsn, "dnc", "import", str(optouts), "--list", "internal", "--format", "csv", "--max-broken", "50"
    )
    assert code == 0 and "internal: 0 numbers added" in out  # already there: nothing added twice
    async with marketing.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM dnc_history WHERE list_name = 'internal'") == 1


async def test_a_list_dated_infinity_in_the_database_is_stale_not_a_crash(marketing: asyncpg.Pool) -> None:
    """Issue 14, item 8: ?date=9999-12-31 was stored as infinity and every check failed after it."""
    await load(marketing, b"3105550100\n")
    async with as_owner(marketing) as conn:  # as written before the edge refused such dates
        await conn.execute("UPDATE dnc_registry_versions SET list_date = 'infinity'")
        await conn.execute(
            "INSERT INTO consent_grants (number, purpose, kind, source, granted_at, expires_at)"
            " VALUES ($1, 'marketing', 'express', 'paper', $2, 'infinity')",
            CLEAN, NOW - timedelta(days=1),
        )  # fmt: skip
    reason, reasons = await check(marketing, CLEAN)
    assert reason == "dnc.list_stale"
    assert reasons["consent.valid"]["expires_at"].startswith("9999-12-31")
