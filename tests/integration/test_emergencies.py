"""Declared emergencies end to end: entered with the real command, read in the call's fact query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from dialguard.clock import fixed_clock, system_clock
from dialguard.dnc_files import FileFormat
from dialguard.gate import CheckRequest, Gate
from dialguard.policy.model import Purpose
from dialguard.rules.loader import load_rulebook
from dialguard.store import campaigns, consent
from dialguard.store.emergencies import declare_emergency, end_emergency
from dialguard.store.registry import import_registry
from tests.cli import dialguard

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 11:00 in New York, a Monday
BUFFALO, MANHATTAN = "+17165550100", "+12125550100"
RULES = load_rulebook()


async def check(pool: asyncpg.Pool, number: str, at: datetime = NOW) -> tuple[str, str | None]:
    result = await Gate(pool=pool, rulebook=RULES, clock=fixed_clock(at), default_region="US").check(
        CheckRequest(number, campaign="spring")
    )
    after = result.decision.next_callable_at
    return result.decision.reason, after.isoformat() if after else None


@pytest.fixture
async def marketing(pool: asyncpg.Pool) -> asyncpg.Pool:
    async def one_list() -> object:
        yield b"3105550100\n"

    async with pool.acquire() as conn:
        await campaigns.add_campaign(conn, name="spring", purpose=Purpose.MARKETING)
        for number in (BUFFALO, MANHATTAN):
            await consent.grant_consent(
                conn, at=NOW, number=number, kind="express", source="web_form", purpose=Purpose.MARKETING,
                granted_at=NOW - timedelta(days=10),
            )  # fmt: skip
        await import_registry(
            conn, one_list(), registry="us_national", fmt=FileFormat.US_REGISTRY,  # type: ignore[arg-type]
            list_date=NOW.date(), now=NOW, actor="test",
        )  # fmt: skip
    return pool


async def test_a_declared_emergency_blocks_marketing_into_its_area_codes_until_it_ends(
    marketing: asyncpg.Pool, db_dsn: str
) -> None:
    assert await check(marketing, BUFFALO) == ("ok", None)
    code, out, err = await dialguard(
        db_dsn, "emergency", "add", "us-ny", "--prefix", "+1716", "--prefix", "+1 585",
        "--from", "2026-11-23T00:00:00-05:00", "--until", "2026-11-24T17:00:00-05:00",
        "--reason", "Executive Order 27: winter storm, Erie County",
    )  # fmt: skip
    assert code == 0, err
    assert "US-NY (+1716, +1585)" in out and "marketing calls into it are blocked" in out
    assert await check(marketing, BUFFALO) == ("hours.emergency", "2026-11-24T22:00:00+00:00")
    assert await check(marketing, MANHATTAN) == ("ok", None)  # 212 is not under it
    assert await check(marketing, BUFFALO, at=datetime(2026, 11, 24, 22, 0, tzinfo=UTC)) == ("ok", None)

    code, out, _ = await dialguard(db_dsn, "emergency", "list", "--all")
    assert code == 0 and "Executive Order 27" in out and "+1716, +1585" in out
    async with marketing.acquire() as conn:  # lifted early, at 13:00 New York time
        emergency_id = await conn.fetchval("SELECT id FROM emergencies")
        assert await end_emergency(conn, emergency_id, at=NOW + timedelta(hours=2), actor="test")
        assert not await end_emergency(conn, emergency_id, at=NOW + timedelta(hours=3), actor="test")
        audit = await conn.fetch("SELECT action FROM audit_log WHERE subject = 'US-NY' ORDER BY id")
    assert [a["action"] for a in audit] == ["emergency.declare", "emergency.end"]
    assert await check(marketing, BUFFALO, at=NOW + timedelta(hours=2)) == ("ok", None)


# Every case names its start: a declaration without --from begins at the command's "now", and a fixed
# --until would then fall in the past once the calendar passes it (as it once did, failing every CI run).
FROM = ["--from", "2026-11-23T00:00:00Z"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["New York", *FROM, "--until", "2026-11-24T17:00:00Z"], "not a subdivision the packs know"),
        (["US-NY", *FROM, "--until", "2026-11-24T17:00:00"], "no UTC offset"),
        (["US-NY", "--from", "2026-11-25T00:00:00Z", "--until", "2026-11-24T17:00:00Z"], "must come after"),
        (["US-NY", *FROM, "--until", "2026-11-24T17:00:00Z", "--prefix", "716"], "--prefix '716'"),
    ],
)
async def test_a_bad_declaration_is_refused_and_nothing_is_stored(
    marketing: asyncpg.Pool, db_dsn: str, args: list[str], message: str
) -> None:
    code, _, err = await dialguard(db_dsn, "emergency", "add", *args, "--reason", "x")
    assert code == 2 and message in err
    async with marketing.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM emergencies") == 0


async def test_without_from_a_declaration_begins_at_the_commands_now(
    marketing: asyncpg.Pool, db_dsn: str
) -> None:
    # The command's clock is the wall clock: this test reads it too, so it holds on any day (and under
    # faketime, which moves both).
    before = system_clock()
    until = (before + timedelta(days=1)).isoformat()
    code, _, err = await dialguard(db_dsn, "emergency", "add", "US-NY", "--until", until, "--reason", "x")
    after = system_clock()
    assert code == 0, err
    async with marketing.acquire() as conn:
        starts_at = await conn.fetchval("SELECT starts_at FROM emergencies")
    assert before <= starts_at <= after


async def test_one_called_off_before_it_begins_is_never_in_force(marketing: asyncpg.Pool) -> None:
    async with marketing.acquire() as conn:
        emergency_id = await declare_emergency(
            conn, area="US-NY", starts_at=NOW + timedelta(hours=1), ends_at=NOW + timedelta(days=1),
            reason="forecast storm", prefixes=[], actor="test",
        )  # fmt: skip
        assert await end_emergency(conn, emergency_id, at=NOW, actor="test")
    for hours in (0, 1, 2):
        assert await check(marketing, BUFFALO, at=NOW + timedelta(hours=hours)) == ("ok", None)


async def test_ending_an_unknown_emergency_says_so(marketing: asyncpg.Pool, db_dsn: str) -> None:
    code, _, err = await dialguard(db_dsn, "emergency", "end", "41")
    assert code == 2 and "no emergency 41 in force" in err
