"""Time as the product reads it: one injected clock, no silent "today", evidence that says when things were.

Issue 10, items 1, 2, 8, 10 and 20. Every instant here is explicit, or read from the same clock the
command under test reads (and faketime moves both).
"""

from __future__ import annotations

import re
import shlex
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from dialguard.clock import fixed_clock, system_clock
from dialguard.gate import CheckRequest, Gate
from dialguard.policy.model import Purpose
from dialguard.rules.loader import load_rulebook
from dialguard.store import campaigns, consent, dnc
from dialguard.store.registry import ImportRefused, check_list_date
from tests.cli import dialguard
from tests.integration.test_dnc_lists import load

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 11:00 in New York, a Monday
NUMBER = "+12125550142"
README = Path(__file__).resolve().parents[2] / "README.md"


def gate(pool: asyncpg.Pool, at: datetime = NOW) -> Gate:
    return Gate(pool=pool, rulebook=load_rulebook(), clock=fixed_clock(at), default_region="US")


def reasons_of(result: Any) -> dict[str, dict[str, Any]]:
    return {r["code"]: r["detail"] for r in result.to_json()["reasons"]}


@pytest.fixture
async def spring(pool: asyncpg.Pool) -> asyncpg.Pool:
    async with pool.acquire() as conn:
        await campaigns.add_campaign(conn, name="spring", purpose=Purpose.MARKETING)
    return pool


async def test_a_consent_given_after_the_instant_judged_is_named_in_the_evidence(
    spring: asyncpg.Pool,
) -> None:
    await load(spring, b"3105550100\n", list_date=NOW.date())
    async with spring.acquire() as conn:
        await consent.grant_consent(
            conn, at=NOW + timedelta(hours=1), number=NUMBER, kind="express", source="web_form",
            purpose=Purpose.MARKETING,
        )  # fmt: skip
    before = await gate(spring).check(CheckRequest(NUMBER, campaign="spring"))
    missing = reasons_of(before)["consent.missing"]
    assert missing["granted_after_instant_judged"]["granted_at"] == "2026-11-23T17:00:00+00:00"
    after = await gate(spring, NOW + timedelta(hours=2)).check(CheckRequest(NUMBER, campaign="spring"))
    assert after.decision.reason == "ok"


async def test_a_list_entry_added_after_the_instant_judged_still_blocks_and_says_so(
    spring: asyncpg.Pool,
) -> None:
    async with spring.acquire() as conn:
        await dnc.add_dnc(conn, at=NOW + timedelta(days=1), number=NUMBER, source="complaint")
    result = await gate(spring).check(CheckRequest(NUMBER, campaign="spring"))
    assert result.decision.reason == "dnc.internal"
    assert reasons_of(result)["dnc.internal"]["added_after_instant_judged"] is True


ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")


def _times(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if ISO_TIME.match(value) else []
    if isinstance(value, dict):
        return [t for v in value.values() for t in _times(v)]
    if isinstance(value, list):
        return [t for v in value for t in _times(v)]
    return []


async def test_every_time_in_a_decision_carries_its_offset(spring: asyncpg.Pool) -> None:
    await load(spring, b"2125550142\n", list_date=NOW.date() - timedelta(days=3))
    async with spring.acquire() as conn:
        await consent.grant_consent(
            conn, at=NOW, number=NUMBER, kind="express", source="web_form", purpose=Purpose.MARKETING,
            granted_at=NOW - timedelta(days=10),
        )  # fmt: skip
    late = NOW.replace(hour=3)  # 22:00 in New York: a next_callable_at too
    body = (await gate(spring, late).check(CheckRequest(NUMBER, campaign="spring"))).to_json()
    assert body["reason"] == "dnc.us_national"
    times = _times(body)
    assert len(times) >= 4  # decided_at, next_callable_at, the list hit, the consent
    assert all(datetime.fromisoformat(t).tzinfo is not None for t in times), times


def test_a_list_date_is_a_utc_day_never_in_the_future() -> None:
    evening_in_new_york = datetime(2026, 11, 20, 23, 30, tzinfo=ZoneInfo("America/New_York"))  # 21st, UTC
    check_list_date(date(2026, 11, 21), evening_in_new_york)
    with pytest.raises(ImportRefused, match="after today"):
        check_list_date(date(2026, 11, 22), evening_in_new_york)
    with pytest.raises(ImportRefused, match="before 2000"):
        check_list_date(date(1, 1, 1), evening_in_new_york)


async def test_a_national_list_needs_the_publishers_date(
    pool: asyncpg.Pool, db_dsn: str, tmp_path: Path
) -> None:
    registry = tmp_path / "registry.txt"
    registry.write_text("2125550100\n", encoding="utf-8")
    base = ["dnc", "import", str(registry), "--list", "us_national", "--format", "us-registry"]
    code, _, err = await dialguard(db_dsn, *base)
    assert code == 2 and "give the publisher's date of the data with --date" in err
    assert "━" not in err  # refused before any progress bar is drawn
    code, _, err = await dialguard(db_dsn, *base, "--date", "yesterday")
    assert code == 2 and "'yesterday' is not a date; write YYYY-MM-DD" in err
    tomorrow = (system_clock() + timedelta(days=2)).date().isoformat()
    code, _, err = await dialguard(db_dsn, *base, "--date", tomorrow)
    assert code == 2 and "after today" in err
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM dnc_registry_versions") == 0
    # A company list needs no date: its entries are dated as they are added.
    code, _, err = await dialguard(db_dsn, *base[:4], "internal", "--format", "us-registry")
    assert code == 0, err


async def test_a_recorded_check_cannot_be_back_dated(pool: asyncpg.Pool, db_dsn: str) -> None:
    with pytest.raises(ValueError, match="counts as a call placed now"):
        CheckRequest(NUMBER, record=True, at=NOW)
    code, _, err = await dialguard(db_dsn, "check", NUMBER, "--at", "2026-01-05T15:00:00Z", "--record")
    assert code == 2 and "--at with --record" in err
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM decisions") == 0
        assert await conn.fetchval("SELECT count(*) FROM attempts") == 0


def _quick_start() -> list[tuple[list[str], str]]:
    """The `dialguard ...` lines of the README's quick start, each with the comment that says what it
    prints (a comment on the line below belongs to the line above)."""
    text = README.read_text(encoding="utf-8")
    block = text.split("## Quick start", 1)[1].split("```sh", 2)[2].split("```", 1)[0].replace("\\\n", " ")
    steps: list[tuple[list[str], str]] = []
    for line in block.splitlines():
        command, _, comment = line.partition("#")
        if command.strip().startswith("dialguard "):
            steps.append((shlex.split(command)[1:], comment))
        elif not command.strip() and comment and steps:
            steps[-1] = (steps[-1][0], steps[-1][1] + comment)
    return steps


async def test_the_readme_quick_start_prints_what_it_says_on_any_day(pool: asyncpg.Pool, db_dsn: str) -> None:
    steps = _quick_start()
    assert sum("check" in args[:1] for args, _ in steps) >= 3
    for args, says in steps:
        code, out, err = await dialguard(db_dsn, *args)
        if args[0] != "check":
            assert code == 0, (args, err)
            continue
        verdict = "BLOCK" if "BLOCK" in says else "ALLOW"
        assert code == (10 if verdict == "BLOCK" else 0), (args, out, err)
        assert verdict in out
        for code_word in re.findall(r"\b[a-z]+\.[a-z_]+\b", says):
            assert code_word in out, (args, code_word, out)
