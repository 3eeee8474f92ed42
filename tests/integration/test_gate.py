"""The gate against a real PostgreSQL: facts are read, the policy runs, the decision is stored."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta

import asyncpg
import pytest

from dialguard.clock import fixed_clock
from dialguard.gate import CheckRequest, Gate, GateDecision
from dialguard.policy.model import Purpose, Verdict
from dialguard.store import campaigns, consent, dnc, sealing
from dialguard.store.db import create_pool
from dialguard.store.sealing import seal, verify
from tests.cli import dialguard
from tests.conftest import as_gateway, as_owner
from tests.fakes.proxy import CuttableProxy
from tests.fakes.rules import simple_rulebook
from tests.fakes.waiting import server_reports

# 15:00 UTC is 16:00 in Warsaw: inside an 8-21 window.
NOON = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
PL_MOBILE = "+48601234567"


def make_gate(pool: asyncpg.Pool, **kw: object) -> Gate:
    rulebook = kw.pop("rulebook", None) or simple_rulebook()
    return Gate(pool=pool, rulebook=rulebook, clock=fixed_clock(NOON), default_region="PL", **kw)  # type: ignore[arg-type]


async def test_dnc_blocks_with_the_list_as_evidence(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await dnc.add_dnc(conn, at=NOON, number=PL_MOBILE, source="complaint")
    result = await make_gate(pool).check(CheckRequest("+48 601 234 567"))
    assert result.verdict is Verdict.BLOCK
    assert result.decision.reason == "dnc.internal"
    dnc_reason = next(r for r in result.decision.reasons if r.code == "dnc.internal")
    assert dnc_reason.detail["source"] == "complaint"
    assert result.decision.next_callable_at is None  # waiting does not cure a DNC entry


async def test_consented_number_inside_hours_is_allowed_and_stored(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        cid = await consent.grant_consent(
            conn,
            at=NOON,
            number=PL_MOBILE,
            kind="express",
            source="web_form",
            purpose=Purpose.MARKETING,
            granted_at=NOON - timedelta(days=3),
        )
    result = await make_gate(pool).check(CheckRequest("0048601234567", record=True, channel="agi"))
    assert result.verdict is Verdict.ALLOW, result.decision.reasons
    assert result.decision.reason == "ok"
    consent_reason = next(r for r in result.decision.reasons if r.code == "consent.valid")
    assert consent_reason.detail["consent_id"] == cid
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM decisions WHERE call_id = $1", result.call_id)
        attempts = await conn.fetchval("SELECT count(*) FROM attempts WHERE call_id = $1", result.call_id)
    assert row["verdict"] == "ALLOW" and row["number"] == PL_MOBILE and row["recorded"]
    assert row["body"]["reasons"][0]["code"] == "number.ok"
    assert attempts == 1


async def test_dry_run_is_stored_but_not_counted(pool: asyncpg.Pool) -> None:
    gate = make_gate(pool, rulebook=simple_rulebook(consent_for=()))
    result = await gate.check(CheckRequest(PL_MOBILE))
    assert result.verdict is Verdict.ALLOW
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM decisions") == 1
        assert await conn.fetchval("SELECT count(*) FROM attempts") == 0


async def test_revoked_consent_blocks_the_next_check(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await consent.grant_consent(
            conn,
            at=NOON,
            number=PL_MOBILE,
            kind="express",
            source="api",
            purpose=Purpose.MARKETING,
            granted_at=NOON - timedelta(days=1),
        )
        await consent.revoke_consent(conn, at=NOON, number=PL_MOBILE, source="dtmf")
    # The revocation happened "now" in database time, which is after NOON only in real life:
    # judge at the real present so the revocation is in the past.
    gate = Gate(
        pool=pool,
        rulebook=simple_rulebook(start=datetime.min.time(), end=datetime.max.time()),
        clock=lambda: datetime.now(UTC),
        default_region="PL",
    )
    result = await gate.check(CheckRequest(PL_MOBILE))
    assert result.decision.reason == "consent.revoked"


async def test_unparsable_number_blocks_and_is_stored(pool: asyncpg.Pool) -> None:
    result = await make_gate(pool).check(CheckRequest("call me maybe"))
    assert result.verdict is Verdict.BLOCK
    assert result.decision.codes == ("number.invalid",)
    assert result.stored


async def test_unknown_campaign_blocks_but_still_shows_every_check(pool: asyncpg.Pool) -> None:
    result = await make_gate(pool).check(CheckRequest(PL_MOBILE, campaign="no-such-campaign"))
    assert result.verdict is Verdict.BLOCK
    assert result.decision.reason == "campaign.unknown"
    assert {"dnc.clear", "hours.within_window"} <= set(result.decision.codes)


async def test_default_campaign_is_marketing_unless_defined(pool: asyncpg.Pool) -> None:
    gate = make_gate(pool)
    assert (await gate.check(CheckRequest(PL_MOBILE))).decision.reason == "consent.missing"
    async with pool.acquire() as conn:
        await campaigns.add_campaign(conn, name="default", purpose=Purpose.INFORMATIONAL)
    assert (await gate.check(CheckRequest(PL_MOBILE))).verdict is Verdict.ALLOW


async def test_frequency_cap_counts_recorded_attempts(pool: asyncpg.Pool) -> None:
    gate = make_gate(pool, rulebook=simple_rulebook(consent_for=(), cap=(2, timedelta(hours=24))))
    verdicts = [(await gate.check(CheckRequest(PL_MOBILE, record=True))).verdict for _ in range(3)]
    assert verdicts == [Verdict.ALLOW, Verdict.ALLOW, Verdict.BLOCK]
    blocked = await gate.check(CheckRequest(PL_MOBILE))
    assert blocked.decision.reason == "frequency.cap"
    assert blocked.decision.next_callable_at == NOON + timedelta(hours=24)


async def test_concurrent_checks_at_the_cap_allow_exactly_the_cap(pool: asyncpg.Pool, db_dsn: str) -> None:
    # Two pools stand in for two gateways: the number's lock lives in PostgreSQL, not in a process.
    other = await create_pool(as_gateway(db_dsn), size=4)
    try:
        rulebook = simple_rulebook(consent_for=(), cap=(3, timedelta(hours=24)))
        gates = [make_gate(pool, rulebook=rulebook), make_gate(other, rulebook=rulebook)]
        results = await asyncio.gather(
            *(gates[i % 2].check(CheckRequest(PL_MOBILE, record=True)) for i in range(8))
        )
    finally:
        await other.close()
    assert sum(r.verdict is Verdict.ALLOW for r in results) == 3


async def test_database_gone_blocks_fail_closed_then_recovers(
    proxied: tuple[CuttableProxy, asyncpg.Pool],
) -> None:
    proxy, pool = proxied
    gate = make_gate(pool, rulebook=simple_rulebook(consent_for=()), fact_timeout=1.0)
    assert (await gate.check(CheckRequest(PL_MOBILE))).verdict is Verdict.ALLOW
    proxy.cut()
    down = await gate.check(CheckRequest(PL_MOBILE, record=True))
    assert down.verdict is Verdict.BLOCK
    assert down.decision.codes == ("gate.unavailable",)
    assert not down.stored
    proxy.restore()
    # The pool replaces broken connections by itself; the first check after may still see one die.
    for _ in range(5):
        back = await gate.check(CheckRequest(PL_MOBILE))
        if back.verdict is Verdict.ALLOW:
            break
    assert back.verdict is Verdict.ALLOW


SLOW_INSERT = """
CREATE FUNCTION slow_decision_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$;
CREATE TRIGGER slow_decision_insert BEFORE INSERT ON decisions
    FOR EACH ROW EXECUTE FUNCTION slow_decision_insert();
"""
INSERTING = "FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE '%INSERT INTO decisions%'"

# Done to the link or the server while a recorded check's insert sleeps in its trigger.
Fault = Callable[[CuttableProxy, asyncpg.Connection], Awaitable[object]]


async def fault_mid_insert(
    pool: asyncpg.Pool, db_dsn: str, fault: Fault
) -> tuple[GateDecision, str | None, int]:
    """A recorded check through a proxy, ``fault`` done while its insert runs: what the gate answered,
    then the verdict and the attempts stored for that call."""
    proxy = CuttableProxy.for_dsn(db_dsn)
    await proxy.start()
    through = await create_pool(proxy.dsn_through(as_gateway(db_dsn)), size=1, command_timeout=1)
    gate = make_gate(through, rulebook=simple_rulebook(consent_for=()), fact_timeout=3.0)
    async with as_owner(pool) as conn:
        await conn.execute(SLOW_INSERT)
    try:
        check = asyncio.create_task(gate.check(CheckRequest(PL_MOBILE, record=True)))
        async with pool.acquire() as conn:
            await server_reports(conn, f"SELECT count(*) > 0 {INSERTING}")
            await fault(proxy, conn)
        heard = await check
    finally:
        async with as_owner(pool) as conn:
            await conn.execute(
                "DROP TRIGGER slow_decision_insert ON decisions; DROP FUNCTION slow_decision_insert()"
            )
        through.terminate()
        await proxy.close()
    async with pool.acquire() as conn:
        stored = await conn.fetchval("SELECT verdict FROM decisions WHERE call_id = $1", heard.call_id)
        attempts = await conn.fetchval("SELECT count(*) FROM attempts WHERE call_id = $1", heard.call_id)
    return heard, stored, attempts


async def hold_replies(proxy: CuttableProxy, _: asyncpg.Connection) -> None:
    proxy.hold_replies()  # the insert goes on and commits; its answer is lost on the way back


async def cut_link(proxy: CuttableProxy, _: asyncpg.Connection) -> None:
    proxy.cut()  # the link dies under the insert, as when the server is killed
    proxy.restore()  # the gate's read-back goes through a new link


async def end_backend(_: CuttableProxy, conn: asyncpg.Connection) -> None:
    await conn.execute(f"SELECT pg_terminate_backend(pid) {INSERTING}")  # the server ends it: rolled back


async def test_the_channel_hears_the_verdict_stored_when_the_inserts_answer_is_lost(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    """Issue 10, item 9: the insert commits, its answer never arrives; the channel must not hear BLOCK
    while the database keeps ALLOW and a counted attempt."""
    heard, stored, attempts = await fault_mid_insert(pool, db_dsn, hold_replies)
    assert (str(heard.verdict), stored, attempts) == ("ALLOW", "ALLOW", 1), heard.decision
    assert heard.stored


@pytest.mark.parametrize("fault", [cut_link, end_backend])
async def test_a_link_lost_during_the_insert_gives_the_verdict_stored_not_a_traceback(
    pool: asyncpg.Pool, db_dsn: str, fault: Fault
) -> None:
    """Seen on CI: a killed PostgreSQL took the link down mid-insert. asyncpg hands a lost connection
    back to its pool at once, so the gate's read of the backend's pid then raised, and the check route
    ended in a traceback instead of a verdict. Now the channel hears what the database holds."""
    heard, stored, attempts = await fault_mid_insert(pool, db_dsn, fault)
    # Either way the insert is still in its trigger when the gate ends that backend: it rolls back, and
    # the call is blocked (a serving gate journals the decision) with nothing counted.
    assert (str(heard.verdict), stored, attempts) == ("BLOCK", None, 0), heard.decision
    assert heard.decision.codes == ("gate.unavailable",)
    assert "decision not stored" in heard.decision.reasons[0].detail["cause"]


@pytest.mark.parametrize("batch", [2, 10_000])  # 2: the sealer's stream crosses fetch batches
async def test_decision_log_is_sealed_and_tampering_is_found(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    monkeypatch.setattr(sealing, "RANGE_BATCH", batch)
    gate = make_gate(pool)
    results = [await gate.check(CheckRequest(PL_MOBILE)) for _ in range(3)]
    async with as_owner(pool) as conn:
        # Back-date the rows so that they are settled and can be sealed now.
        await conn.execute("ALTER TABLE decisions DISABLE TRIGGER decisions_append_only")
        await conn.execute("UPDATE decisions SET inserted_at = inserted_at - interval '1 minute'")
        await conn.execute("ALTER TABLE decisions ENABLE TRIGGER decisions_append_only")
        assert await seal(conn) == {**{log.table: 0 for log in sealing.LOGS}, "decisions": 3}
        report = await verify(conn)
        assert report.ok and report.logs["decisions"] == sealing.LogReport(checkpoints=1, sealed_rows=3)
        # The append-only trigger refuses ordinary edits ...
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE decisions SET verdict = 'ALLOW'")
        # ... and an owner who bypasses it is still caught by the hashes.
        await conn.execute("ALTER TABLE decisions DISABLE TRIGGER decisions_append_only")
        await conn.execute("UPDATE decisions SET reason = 'ok' WHERE call_id = $1", results[1].call_id)
        await conn.execute("DELETE FROM decisions WHERE call_id = $1", results[2].call_id)
        await conn.execute("ALTER TABLE decisions ENABLE TRIGGER decisions_append_only")
        report = await verify(conn)
    assert not report.ok
    assert any("altered" in p for p in report.problems)
    assert any("checkpoint 1" in p for p in report.problems)


async def test_verify_from_the_command_line_exits_1_and_names_an_altered_row(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    result = await make_gate(pool).check(CheckRequest(PL_MOBILE))
    code, out, _ = await dialguard(db_dsn, "verify")
    assert code == 0 and "evidence logs intact" in out
    assert "decisions: sealed now 0;" in out  # too fresh to seal: a transaction may still be writing
    async with as_owner(pool) as conn:
        await conn.execute("ALTER TABLE decisions DISABLE TRIGGER decisions_append_only")
        row = await conn.fetchval("UPDATE decisions SET verdict = 'ALLOW', reason = 'ok' RETURNING id")
        await conn.execute("ALTER TABLE decisions ENABLE TRIGGER decisions_append_only")
    code, out, _ = await dialguard(db_dsn, "verify")
    assert code == 1
    assert f"TAMPERED: decision {row} (call {result.call_id}) was altered" in out


async def test_call_ids_are_unique_uuids(pool: asyncpg.Pool) -> None:
    gate = make_gate(pool)
    ids = {(await gate.check(CheckRequest(PL_MOBILE))).call_id for _ in range(5)}
    assert len(ids) == 5 and all(isinstance(i, uuid.UUID) for i in ids)


async def test_shadow_rules_are_logged_and_counted_but_never_enforced(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    # A candidate rule set that would end calls at 15:00 runs beside the enforced 8-21 window.
    enforced = simple_rulebook(consent_for=())
    candidate = simple_rulebook(consent_for=(), end=time(15))
    gate = make_gate(pool, rulebook=enforced, shadow_rulebook=candidate)
    with caplog.at_level(logging.INFO, logger="dialguard.gate"):
        result = await gate.check(CheckRequest(PL_MOBILE, record=True))
    assert result.verdict is Verdict.ALLOW
    assert gate.shadow_differences == 1
    assert "shadow rules differ: enforced ALLOW (ok), candidate BLOCK (hours.outside_window)" in caplog.text
    async with pool.acquire() as conn:
        body = await conn.fetchval("SELECT body FROM decisions WHERE call_id = $1", result.call_id)
        attempts = await conn.fetchval("SELECT count(*) FROM attempts")
    assert body["verdict"] == "ALLOW"
    assert body["shadow"]["verdict"] == "BLOCK"
    assert "hours.outside_window" in body["shadow"]["codes"]
    assert attempts == 1  # the enforced ALLOW counted, whatever the candidate said

    agreeing = make_gate(pool, rulebook=enforced, shadow_rulebook=simple_rulebook(consent_for=()))
    same = await agreeing.check(CheckRequest(PL_MOBILE))
    assert agreeing.shadow_differences == 0
    assert "shadow" not in same.to_json()


async def test_a_paused_database_is_answered_within_the_fact_deadline(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    """Issue 14, item 6: the channel's answer comes within fact_timeout plus a small margin, even when
    the database stops answering mid-query and the pool's command timeout is long."""
    proxy = CuttableProxy.for_dsn(db_dsn)
    await proxy.start()
    through = await create_pool(proxy.dsn_through(as_gateway(db_dsn)), size=2, command_timeout=30)
    gate = make_gate(through, rulebook=simple_rulebook(consent_for=()), fact_timeout=0.5)
    try:
        assert (await gate.check(CheckRequest(PL_MOBILE))).verdict is Verdict.ALLOW
        proxy.hold_replies()  # the server is there but answers nothing: paused, or blackholed
        loop = asyncio.get_running_loop()
        started = loop.time()
        down = await gate.check(CheckRequest(PL_MOBILE, record=True))
        took = loop.time() - started
    finally:
        through.terminate()
        await proxy.close()
    assert down.decision.codes == ("gate.unavailable",)
    assert took < 10  # fact_timeout and a margin, not the 30 s command timeout of a graceful release
