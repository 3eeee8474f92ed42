"""Lead-list scrub: every row judged as a call would be, in order, nothing counted or stored."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from dialguard.clock import fixed_clock
from dialguard.gate import CheckRequest, Gate
from dialguard.policy.model import Purpose
from dialguard.rules.loader import load_rulebook
from dialguard.scrub import OUT_COLUMNS, Scrubber, ScrubError
from dialguard.store import campaigns, consent, dnc
from dialguard.store.emergencies import declare_emergency
from tests.cli import dialguard
from tests.fakes.proxy import CuttableProxy

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 11:00 in New York, 08:00 in Los Angeles


async def rows_of(*rows: list[str]) -> AsyncIterator[list[str]]:
    for row in rows:
        yield row


@pytest.fixture
async def notices(pool: asyncpg.Pool) -> asyncpg.Pool:
    async with pool.acquire() as conn:
        await campaigns.add_campaign(conn, name="notices", purpose=Purpose.INFORMATIONAL)
        await dnc.add_dnc(conn, at=NOW, number="+12125550199", source="complaint")
    return pool


async def test_every_row_gets_a_verdict_in_order_and_nothing_is_stored(notices: asyncpg.Pool) -> None:
    gate = Gate(pool=notices, rulebook=load_rulebook(), clock=fixed_clock(NOW), default_region="US")
    out: list[list[str]] = []

    async def emit(row: list[str]) -> None:
        out.append(row)

    at = NOW - timedelta(hours=10)  # 01:00 in New York: outside every window
    summary = await Scrubber(gate=gate, campaign="notices", batch=2).run(
        rows_of(
            ["name", "Phone", "state"],
            ["Ann", "(212) 555-0142", "NY"],
            ["Bob", "+1 212 555 0199", ""],
            ["Eve", "not a number", ""],
            ["Tim"],  # a short row: no number at all
            ["Zoe", "+1 305 555 0100", "FL"],
        ),
        emit,
    )
    assert out[0] == ["name", "Phone", "state", *OUT_COLUMNS]
    verdicts = {row[0]: row[3:] for row in out[1:]}
    assert [row[0] for row in out[1:]] == ["Ann", "Bob", "Eve", "Tim", "Zoe"]
    assert verdicts["Ann"][:2] == ["ALLOW", "ok"]
    assert verdicts["Bob"][:2] == ["BLOCK", "dnc.internal"]
    assert verdicts["Eve"][:2] == ["BLOCK", "number.invalid"]
    assert verdicts["Tim"][:2] == ["BLOCK", "number.invalid"]
    assert summary.as_json() == {
        "rows": 5,
        "allowed": 2,
        "blocked": 3,
        "by_reason": {"number.invalid": 2, "ok": 2, "dnc.internal": 1},
    }
    late = []

    async def keep(row: list[str]) -> None:
        late.append(row)

    await Scrubber(gate=gate, campaign="notices", at=at).run(rows_of(["number"], ["+12125550142"]), keep)
    assert late[1][1:3] == ["BLOCK", "hours.outside_window"]
    assert late[1][4] == "2026-11-23T13:00:00+00:00"  # 08:00 in New York
    async with notices.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM decisions") == 0
        assert await conn.fetchval("SELECT count(*) FROM attempts") == 0


async def test_a_file_without_a_number_column_is_refused(notices: asyncpg.Pool) -> None:
    gate = Gate(pool=notices, rulebook=load_rulebook(), clock=fixed_clock(NOW), default_region="US")

    async def emit(row: list[str]) -> None:
        raise AssertionError("nothing may be written")

    with pytest.raises(ScrubError, match="no number column"):
        await Scrubber(gate=gate, campaign="notices").run(rows_of(["name", "email"], ["Ann", "a@b"]), emit)


async def test_scrub_from_the_command_line(notices: asyncpg.Pool, db_dsn: str, tmp_path: Path) -> None:
    async with notices.acquire() as conn:
        await consent.grant_consent(
            conn,
            at=NOW,
            number="+48601234567",
            kind="express",
            source="web_form",
            purpose=Purpose.INFORMATIONAL,
        )
    leads = tmp_path / "leads.csv"
    leads.write_text('number,note\n+48 601 234 567,"two\nlines"\n+1 212 555 0199,x\n', encoding="utf-8")
    at = "2026-11-23T12:00:00+01:00"
    code, _, err = await dialguard(
        db_dsn, "scrub", str(leads), "-o", str(tmp_path / "out.csv"), "--campaign", "notices", "--at", at,
        numbers_default_region="US",
    )  # fmt: skip
    assert code == 0, err
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as f:
        out = list(csv.reader(f))
    assert [row[2:4] for row in out[1:]] == [["ALLOW", "ok"], ["BLOCK", "dnc.internal"]]
    assert out[1][1] == "two\nlines"  # a quoted newline stays one field
    assert "2 rows: 1 allowed, 1 blocked" in err

    leads.write_text("name\nAnn\n", encoding="utf-8")
    code, _, err = await dialguard(db_dsn, "scrub", str(leads), "--campaign", "notices")
    assert code == 2
    assert "no number column" in err


async def test_the_batched_look_ahead_agrees_with_single_checks(notices: asyncpg.Pool) -> None:
    # Every kind of fact the single query reads, for several numbers at once.
    async with notices.acquire() as conn:
        await campaigns.add_campaign(conn, name="spring", purpose=Purpose.MARKETING)
        await dnc.add_dnc(conn, at=NOW, number="+1305*", source="admin")
        await dnc.add_dnc(conn, at=NOW, number="+13125550100", list_name="campaign:spring")
        await consent.grant_consent(
            conn,
            at=NOW,
            number="+12125550142",
            kind="written_agreement",
            source="paper",
            purpose=Purpose.MARKETING,
        )
        await consent.grant_consent(
            conn, at=NOW, number="+48601234567", kind="express", source="web_form", purpose=Purpose.MARKETING
        )
        await declare_emergency(
            conn, area="US-NY", starts_at=NOW - timedelta(days=1), ends_at=NOW + timedelta(days=1),
            reason="storm", prefixes=["+1716"], actor="test",
        )  # fmt: skip
    numbers = [
        "+12125550142",
        "+12125550199",
        "+17165550100",
        "+13055550100",
        "+13125550100",
        "+48601234567",
        "nope",
        "+4420",
    ]
    gate = Gate(pool=notices, rulebook=load_rulebook(), clock=fixed_clock(NOW), default_region="US")
    for campaign in ("spring", "notices"):
        requests = [CheckRequest(n, campaign=campaign, keep=False) for n in numbers]
        batched = await gate.look_ahead(requests)
        single = [await gate.check(r) for r in requests]
        assert [b.decision.codes for b in batched] == [s.decision.codes for s in single]
        assert [b.decision.reason for b in batched] == [s.decision.reason for s in single]
    assert {b.decision.reason for b in batched} >= {"dnc.internal", "dnc.prefix", "number.invalid", "ok"}
    spring = await gate.look_ahead([CheckRequest("+17165550100", campaign="spring", keep=False)])
    assert "hours.emergency" in spring[0].decision.codes


async def test_a_database_gone_blocks_every_row_fail_closed(
    proxied: tuple[CuttableProxy, asyncpg.Pool],
) -> None:
    proxy, pool = proxied
    gate = Gate(
        pool=pool, rulebook=load_rulebook(), clock=fixed_clock(NOW), default_region="US", fact_timeout=1
    )
    requests = [CheckRequest("+12125550142", campaign="default"), CheckRequest("garbage")]
    assert (await gate.look_ahead(requests))[0].decision.reason != "gate.unavailable"
    proxy.cut()
    results = await gate.look_ahead(requests)
    assert [r.decision.reason for r in results] == ["gate.unavailable", "number.invalid"]
    assert not any(r.stored for r in results)
    proxy.restore()
    # The pool replaces broken connections by itself; the first batch after may still see one die.
    for _ in range(5):
        back = await gate.look_ahead(requests)
        if back[0].decision.reason != "gate.unavailable":
            break
    assert back[0].decision.reason != "gate.unavailable"
