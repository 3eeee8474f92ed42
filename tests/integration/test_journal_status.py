"""`dialguard journal status`: both local journals, the opt-outs and the decisions of an outage, as an
operator reads them (numbers masked as the logs mask them) and as a script reads them (--json)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from dialguard.journal import DecisionJournal, OptOutJournal
from dialguard.store.calls import OptOut
from dialguard.store.decisions import DecisionRow
from tests.cli import dialguard

PRESSED = datetime(2026, 11, 23, 16, 0, 5, tzinfo=UTC)
DECIDED = datetime(2026, 11, 23, 15, 59, 30, tzinfo=UTC)
OPTED_OUT = "+12125550143"
BLOCKED = "+48601234567"


def _row(number: str, reason: str) -> DecisionRow:
    return DecisionRow(
        call_id=uuid.uuid4(), number=number, campaign="spring", purpose="marketing", verdict="BLOCK",
        reason=reason, body={"verdict": "BLOCK"}, rules_version="test", decided_at=DECIDED, recorded=False,
        writer="test",
    )  # fmt: skip


async def _journals(tmp_path: Path) -> tuple[dict[str, str], OptOut, list[DecisionRow]]:
    """An opt-out and two decisions waiting; the settings that point the CLI at them."""
    optouts, decisions = tmp_path / "optouts.jsonl", tmp_path / "decisions.jsonl"
    optout = OptOut(uuid.uuid4(), OPTED_OUT, uuid.uuid4(), "spring", "9", PRESSED)
    await OptOutJournal(optouts).append(optout)
    rows = [_row(BLOCKED, "gate.unavailable"), _row(OPTED_OUT, "gate.unavailable")]
    journal = DecisionJournal(decisions, clock=lambda: PRESSED)
    for row in rows:
        assert await journal.keep(row)
    settings = {"calls_journal_path": str(optouts), "gate_journal_path": str(decisions)}
    return settings, optout, rows


async def test_status_lists_the_waiting_opt_outs_and_decisions_with_numbers_masked(
    db_dsn: str, tmp_path: Path
) -> None:
    settings, optout, rows = await _journals(tmp_path)
    code, out, err = await dialguard(db_dsn, "journal", "status", **settings)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"{tmp_path / 'optouts.jsonl'}: 1 opt-outs wait for the database"
    assert lines[1] == f"  2026-11-23 16:00:05Z +1212*****43 call {optout.call_id} key 9"
    assert lines[2] == f"{tmp_path / 'decisions.jsonl'}: 2 decisions made while it was away wait for it"
    decision = f"  2026-11-23 15:59:30Z BLOCK gate.unavailable +4860*****67 call {rows[0].call_id}"
    assert lines[3] == f"{decision} campaign spring"
    assert lines[4].endswith(f"+1212*****43 call {rows[1].call_id} campaign spring")
    assert len(lines) == 5
    assert OPTED_OUT not in out and BLOCKED not in out


async def test_status_as_json_and_unmasked_when_the_logs_are(db_dsn: str, tmp_path: Path) -> None:
    settings, optout, rows = await _journals(tmp_path)
    unmasked = {**settings, "log_mask_numbers": "false"}
    code, out, _ = await dialguard(db_dsn, "journal", "status", "--json", **unmasked)
    assert code == 0
    status = json.loads(out)
    assert status["optouts"]["waiting"] == 1
    assert status["optouts"]["entries"] == [optout.as_json()]
    assert status["decisions"]["waiting"] == 2
    assert status["decisions"]["entries"][0] == {
        "call_id": str(rows[0].call_id),
        "number": BLOCKED,
        "campaign": "spring",
        "verdict": "BLOCK",
        "reason": "gate.unavailable",
        "decided_at": DECIDED.isoformat(),
        "journaled_at": PRESSED.isoformat(),
    }
    assert "replayed" not in status


async def test_status_replay_stores_both_journals_and_says_what_is_left(
    db_dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    settings, optout, rows = await _journals(tmp_path)
    code, out, _ = await dialguard(db_dsn, "journal", "status", "--replay", "--json", **settings)
    assert code == 0
    status = json.loads(out)
    assert status["decisions"]["entries"][1]["number"] == "+1212*****43"  # masked in JSON too
    assert status["replayed"] == {
        "optouts": {"stored": 1, "still_waiting": 0},
        "decisions": {"stored": 2, "still_waiting": 0},
    }
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT number FROM optouts WHERE id = $1", optout.id) == OPTED_OUT
        late = await conn.fetch("SELECT call_id FROM decisions WHERE (body->>'stored_late')::boolean")
    assert {r["call_id"] for r in late} == {r.call_id for r in rows}

    code, out, _ = await dialguard(db_dsn, "journal", "status", "--replay", **settings)
    assert out.splitlines()[0].endswith(": 0 opt-outs wait for the database")
    assert out.splitlines()[1].endswith(": 0 decisions made while it was away wait for it")
    assert len(out.splitlines()) == 2  # nothing waits: nothing replayed, nothing said of it
