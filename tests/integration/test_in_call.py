"""In the call, through a fake Asterisk: the notice, an opt-out that is never lost, consent by phone."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dialguard.asterisk.agi_routes import agi_routes
from dialguard.asterisk.agi_server import AgiServer
from dialguard.asterisk.call_routes import CallRoutes
from dialguard.clock import fixed_clock
from dialguard.gate import CheckRequest, Gate
from dialguard.journal import JournalError, OptOutJournal
from dialguard.metrics import Metrics
from dialguard.optouts import OptOutKeeper
from dialguard.policy.model import Purpose
from dialguard.rules.loader import load_rulebook
from dialguard.store import campaigns, consent, dnc
from dialguard.store.calls import events_of
from dialguard.store.db import create_pool
from dialguard.store.sealing import seal, verify
from tests.conftest import as_gateway, as_owner
from tests.fakes.asterisk_agi import Channel, FakeAsterisk
from tests.fakes.proxy import CuttableProxy

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 11:00 in New York and Miami
NEW_YORK = "+12125550142"  # one-party consent to recording
MIAMI = "+13055550142"  # Florida: all-party consent
RULES = load_rulebook()
SOUNDS = Path(__file__).resolve().parents[2] / "asterisk-conf" / "sounds"


def notice(lang: str = "en") -> str:
    return f"dialguard/{lang}/dialguard-notice"


async def decided(pool: asyncpg.Pool, number: str) -> str:
    """A call the gate allowed (informational: no consent or national list needed); its call id."""
    async with pool.acquire() as conn:
        if not await campaigns.get_campaign(conn, "notices"):
            await campaigns.add_campaign(conn, name="notices", purpose=Purpose.INFORMATIONAL)
    gate = Gate(pool=pool, rulebook=RULES, clock=fixed_clock(NOW), default_region="US")
    result = await gate.check(CheckRequest(number, campaign="notices", record=True))
    assert result.decision.reason == "ok", result.to_json()
    return str(result.call_id)


@pytest.fixture
async def gateway(pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[tuple[FakeAsterisk, OptOutJournal]]:
    journal = OptOutJournal(tmp_path / "journal.jsonl")
    journal.check_writable()
    asterisk, server = await start(pool, journal)
    yield asterisk, journal
    await server.close()


async def start(pool: asyncpg.Pool, journal: OptOutJournal) -> tuple[FakeAsterisk, AgiServer]:
    gate = Gate(pool=pool, rulebook=RULES, clock=fixed_clock(NOW), default_region="US")
    keeper = OptOutKeeper(pool=pool, journal=journal, metrics=Metrics(), clock=fixed_clock(NOW))
    calls = CallRoutes(
        pool=pool, keeper=keeper, rulebook=RULES, clock=fixed_clock(NOW), listen_after_ms=300,
        sounds_dir=SOUNDS,
    )  # fmt: skip
    server = AgiServer(routes=agi_routes(gate=gate, calls=calls), host="127.0.0.1", port=0)
    await server.start()
    return FakeAsterisk("127.0.0.1", server.port), server


async def next_check(pool: asyncpg.Pool, number: str) -> str:
    gate = Gate(pool=pool, rulebook=RULES, clock=fixed_clock(NOW), default_region="US")
    return (await gate.check(CheckRequest(number, campaign="notices"))).decision.reason


async def kinds(pool: asyncpg.Pool, call_id: str) -> list[str]:
    """The call's events after the answer claimed its call id (that claim is asserted where it matters)."""
    async with pool.acquire() as conn:
        return [
            e["kind"] for e in await events_of(conn, uuid.UUID(call_id)) if e["kind"] != "announce.claimed"
        ]


def streams(run: Any) -> list[list[str]]:
    """The STREAM FILE commands of a session, in order."""
    return [c for c in run.commands if c[:2] == ["STREAM", "FILE"]]


@pytest.mark.parametrize(
    ("number", "record"),
    [(NEW_YORK, "YES"), (MIAMI, "YES")],  # the notice played in full, nobody objected
)
async def test_no_digit_the_notice_plays_and_recording_is_allowed(
    pool: asyncpg.Pool, gateway: tuple[FakeAsterisk, OptOutJournal], number: str, record: str
) -> None:
    asterisk, _ = gateway
    call_id = await decided(pool, number)
    run = await asterisk.agi("announce", call_id)
    assert run.variables["DIALGUARD_RECORD"] == record
    assert "DIALGUARD_OPTOUT" not in run.variables
    assert ["STREAM", "FILE", notice(), "9"] == streams(run)[0][:4]
    assert run.variables["DIALGUARD_ANNOUNCE"] == "OK" and run.status == "SUCCESS"
    assert await kinds(pool, call_id) == ["notice.played", "recording"]


@pytest.mark.parametrize("when", ["during", "after"])
async def test_the_opt_out_digit_is_stored_before_the_confirmation_and_blocks_the_next_check(
    pool: asyncpg.Pool, gateway: tuple[FakeAsterisk, OptOutJournal], when: str
) -> None:
    asterisk, _ = gateway
    call_id = await decided(pool, NEW_YORK)
    # "during": the key stops the notice; "after": a wrong key first (not armed), then 9 in the wait.
    dtmf = ["9"] if when == "during" else ["4", "9"]
    run = await asterisk.agi("announce", call_id, channel=Channel(dtmf=dtmf))
    assert run.variables["DIALGUARD_OPTOUT"] == "1"
    assert run.variables["DIALGUARD_RECORD"] == "NO"
    played = [c[2] for c in run.commands if c[:2] == ["STREAM", "FILE"]]
    assert played[-1] == "dialguard/en/dialguard-optout-confirmed"
    events = await kinds(pool, call_id)
    assert events.index("optout.stored") < events.index("optout")
    assert await next_check(pool, NEW_YORK) == "dnc.internal"
    async with pool.acquire() as conn:  # the key press also revoked consent, on the same evidence
        revoked = await conn.fetchval("SELECT source FROM consent_revocations WHERE number = $1", NEW_YORK)
    assert revoked == "dtmf"


async def test_a_wrong_digit_is_ignored(
    pool: asyncpg.Pool, gateway: tuple[FakeAsterisk, OptOutJournal]
) -> None:
    asterisk, _ = gateway
    call_id = await decided(pool, NEW_YORK)
    run = await asterisk.agi("announce", call_id, channel=Channel(dtmf=["5"]))
    assert "DIALGUARD_OPTOUT" not in run.variables
    assert run.variables["DIALGUARD_RECORD"] == "YES"
    assert await next_check(pool, NEW_YORK) == "ok"
    assert await kinds(pool, call_id) == ["notice.played", "digit.ignored", "recording"]


async def test_a_hang_up_during_the_notice_leaves_no_half_state(
    pool: asyncpg.Pool, gateway: tuple[FakeAsterisk, OptOutJournal]
) -> None:
    asterisk, _ = gateway
    call_id = await decided(pool, MIAMI)
    run = await asterisk.agi("announce", call_id, channel=Channel(hangup_in_prompt=1))
    assert run.status == "HANGUP"
    # Florida needs all-party consent: the notice did not play in full, so no recording.
    assert run.variables["DIALGUARD_RECORD"] == "NO"
    assert "DIALGUARD_OPTOUT" not in run.variables
    assert await kinds(pool, call_id) == ["notice.failed", "recording"]


async def test_a_missing_prompt_falls_back_to_english_and_still_offers_the_opt_out(
    pool: asyncpg.Pool, gateway: tuple[FakeAsterisk, OptOutJournal]
) -> None:
    asterisk, _ = gateway
    call_id = await decided(pool, "+34612345678")  # Spanish: the notice in "es" is missing here
    english = {notice("en"), "dialguard/en/dialguard-optout-confirmed"}
    run = await asterisk.agi("announce", call_id, channel=Channel(dtmf=["9"], sounds=english))
    # Asked first, never streamed: a STREAM FILE of a missing file would end the step with FAILURE.
    assert [c[2] for c in streams(run)][:1] == [notice("en")]
    assert run.variables["DIALGUARD_OPTOUT"] == "1"
    assert run.status == "SUCCESS"
    async with pool.acquire() as conn:
        events = await events_of(conn, uuid.UUID(call_id))
    heard = next(e["detail"] for e in events if e["kind"] == "notice.interrupted")
    assert (heard["language"], heard["file"], heard["digit"]) == ("en", notice("en"), "9")


async def refused(asterisk: FakeAsterisk, *args: str) -> str:
    """Run announce; it must refuse the call (no prompt, no recording): the reason code."""
    run = await asterisk.agi("announce", *args)
    assert run.variables["DIALGUARD_ANNOUNCE"] == "REFUSED", run.variables
    assert run.variables["DIALGUARD_RECORD"] == "NO"
    assert not streams(run)
    return run.variables["DIALGUARD_REFUSED_REASON"]


async def test_an_answer_without_an_allow_behind_it_is_refused(
    pool: asyncpg.Pool, gateway: tuple[FakeAsterisk, OptOutJournal]
) -> None:
    """Issue 10, item 14: missing, unknown, not an ALLOW, used, too old, another number: refused."""
    asterisk, _ = gateway
    assert await refused(asterisk, "") == "call_id.missing"
    assert await refused(asterisk, "not-a-uuid") == "call_id.invalid"
    assert await refused(asterisk, str(uuid.uuid4())) == "call_id.unknown"
    async with pool.acquire() as conn:
        await dnc.add_dnc(conn, at=NOW, number=MIAMI, source="complaint")
    gate = Gate(pool=pool, rulebook=RULES, clock=fixed_clock(NOW), default_region="US")
    blocked = await gate.check(CheckRequest(MIAMI, campaign="notices", record=True))
    assert await refused(asterisk, str(blocked.call_id)) == "decision.block"
    call_id = await decided(pool, NEW_YORK)
    assert await refused(asterisk, call_id, MIAMI, "notices") == "number.mismatch"
    ok = await asterisk.agi("announce", call_id, NEW_YORK, "notices")
    assert ok.variables["DIALGUARD_ANNOUNCE"] == "OK"
    assert await refused(asterisk, call_id) == "call_id.used"
    async with pool.acquire() as conn:
        assert [e["kind"] for e in await events_of(conn, uuid.UUID(call_id))].count("announce.claimed") == 1
        refusals = [
            e["detail"]["code"]
            for e in await events_of(conn, uuid.UUID(call_id))
            if e["kind"] == "answer.refused"
        ]
    assert refusals == ["number.mismatch", "call_id.used"]


async def test_an_answer_long_after_its_check_is_refused(pool: asyncpg.Pool, tmp_path: Path) -> None:
    call_id = await decided(pool, NEW_YORK)
    journal = OptOutJournal(tmp_path / "journal.jsonl")
    later = fixed_clock(NOW + timedelta(seconds=601))
    keeper = OptOutKeeper(pool=pool, journal=journal, metrics=Metrics(), clock=later)
    calls = CallRoutes(pool=pool, keeper=keeper, rulebook=RULES, clock=later, decision_max_age=600)
    gate = Gate(pool=pool, rulebook=RULES, clock=later, default_region="US")
    server = AgiServer(routes=agi_routes(gate=gate, calls=calls), host="127.0.0.1", port=0)
    await server.start()
    try:
        assert await refused(FakeAsterisk("127.0.0.1", server.port), call_id) == "decision.stale"
    finally:
        await server.close()


async def test_an_opt_out_with_the_database_gone_is_journaled_then_replayed_exactly_once(
    db_dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    call_id = await decided(pool, NEW_YORK)
    journal = OptOutJournal(tmp_path / "journal.jsonl")
    journal.check_writable()
    proxy = CuttableProxy.for_dsn(db_dsn)
    await proxy.start()
    through = await create_pool(proxy.dsn_through(as_gateway(db_dsn)), size=2, command_timeout=1)
    asterisk, server = await start(through, journal)
    try:
        # The call's details are read while the database is there; it goes away while the notice plays.
        channel = Channel(dtmf=["9"], during_prompt=proxy.cut)
        run = await asterisk.agi("announce", call_id, channel=channel)
        assert run.variables["DIALGUARD_OPTOUT"] == "1"  # confirmed: it is on disk
        assert len(journal.pending()) == 1
        assert await next_check(pool, NEW_YORK) == "ok"  # not yet in the database
        # A crash after the database took it but before the journal was rewritten: replay twice.
        proxy.restore()
        assert await journal.replay(pool) == 1
        (tmp_path / "journal.jsonl").write_text((tmp_path / "journal.jsonl").read_text())
        assert await journal.replay(pool) == 0
        assert journal.pending() == []
        assert await next_check(pool, NEW_YORK) == "dnc.internal"
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM optouts") == 1
            assert await conn.fetchval("SELECT via FROM optouts") == "journal"
    finally:
        await server.close()
        through.terminate()
        await proxy.close()


async def test_a_crash_between_storing_and_rewriting_the_journal_stores_nothing_twice(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    from dialguard.store.calls import OptOut

    call_id = await decided(pool, NEW_YORK)
    journal = OptOutJournal(tmp_path / "journal.jsonl")
    optout = OptOut(uuid.uuid4(), NEW_YORK, uuid.UUID(call_id), "notices", "9", NOW)
    await journal.append(optout)
    saved = (tmp_path / "journal.jsonl").read_bytes()
    assert await journal.replay(pool) == 1
    (tmp_path / "journal.jsonl").write_bytes(saved + b'{"torn": ')  # as if the rewrite never happened
    assert await journal.replay(pool) == 0  # the same id: already stored
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM dnc_history WHERE number = $1", NEW_YORK) == 1


async def test_two_gateways_taking_opt_outs_for_one_number_at_once(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    first = await decided(pool, NEW_YORK)
    second = await decided(pool, NEW_YORK)
    a, server_a = await start(pool, OptOutJournal(tmp_path / "a.jsonl"))
    b, server_b = await start(pool, OptOutJournal(tmp_path / "b.jsonl"))
    try:
        runs = await asyncio.gather(
            a.agi("announce", first, channel=Channel(dtmf=["9"])),
            b.agi("announce", second, channel=Channel(dtmf=["9"])),
        )
    finally:
        await server_a.close()
        await server_b.close()
    assert [r.variables["DIALGUARD_OPTOUT"] for r in runs] == ["1", "1"]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM optouts WHERE number = $1", NEW_YORK) == 2
        assert await conn.fetchval("SELECT count(*) FROM dnc_entries WHERE number = $1", NEW_YORK) == 1
    assert await next_check(pool, NEW_YORK) == "dnc.internal"


@pytest.mark.parametrize(
    ("dtmf", "hangup", "granted", "outcome"),
    [
        (["1", "1"], None, True, None),
        (["1"], 2, False, "hung up"),  # one press, then the callee hangs up during the confirmation
        (["1", "2"], None, False, "second key 2"),
        (["3"], None, False, "key 3"),
        ([], None, False, "no answer"),
    ],
)
async def test_consent_by_phone_needs_both_presses(
    pool: asyncpg.Pool,
    gateway: tuple[FakeAsterisk, OptOutJournal],
    dtmf: list[str],
    hangup: int | None,
    granted: bool,
    outcome: str | None,
) -> None:
    asterisk, _ = gateway
    call_id = await decided(pool, NEW_YORK)
    run = await asterisk.agi("consent", call_id, channel=Channel(dtmf=list(dtmf), hangup_in_prompt=hangup))
    assert run.variables["DIALGUARD_CONSENT"] == ("YES" if granted else "NO")
    async with pool.acquire() as conn:
        rows = await consent.list_consents(conn, NEW_YORK)
        events = await events_of(conn, uuid.UUID(call_id))
    assert len(rows) == (1 if granted else 0)
    if granted:
        assert (rows[0]["kind"], rows[0]["source"], rows[0]["purpose"]) == ("verbal", "call", "informational")
        assert rows[0]["evidence"]["call_id"] == call_id
        # Exactly what was heard: both prompts, their language, file, words and the audio's hash.
        ask, confirm = rows[0]["evidence"]["prompts"]
        audio = (SOUNDS / "en" / "dialguard-consent-ask.wav").read_bytes()
        assert (ask["language"], ask["file"]) == ("en", "dialguard/en/dialguard-consent-ask")
        assert ask["sha256"] == hashlib.sha256(audio).hexdigest()
        assert (
            ask["text"] == (SOUNDS / "en" / "dialguard-consent-ask.txt").read_text(encoding="utf-8").strip()
        )
        assert confirm["prompt"] == "consent-confirm"
    else:
        refused = [e for e in events if e["kind"] == "consent.refused"]
        assert refused[0]["detail"]["outcome"] == outcome


def test_an_unwritable_journal_refuses_start(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root): permissions cannot refuse")
        with pytest.raises(JournalError, match="not writable"):
            OptOutJournal(locked / "journal.jsonl").check_writable()
    finally:
        os.chmod(locked, 0o700)


def test_a_journal_path_that_is_a_directory_refuses_start(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="not writable"):
        OptOutJournal(tmp_path).check_writable()


@pytest.mark.parametrize(("number", "record"), [(NEW_YORK, "YES"), (MIAMI, "NO")])
async def test_without_a_notice_only_one_party_states_may_record(
    pool: asyncpg.Pool, gateway: tuple[FakeAsterisk, OptOutJournal], number: str, record: str
) -> None:
    """Fla. Stat. 934.03 needs every party's consent: no notice heard, no recording; New York needs one."""
    asterisk, _ = gateway
    call_id = await decided(pool, number)
    run = await asterisk.agi("announce", call_id, channel=Channel(sounds=set()))  # no prompt installed
    assert run.variables["DIALGUARD_RECORD"] == record
    assert not streams(run)  # nothing to play: asked for, found missing, never streamed
    assert run.status == "SUCCESS"
    assert await kinds(pool, call_id) == ["notice.missing", "recording"]


async def test_serve_refuses_to_start_without_a_writable_journal(db_dsn: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DIALGUARD_DATABASE_DSN": db_dsn,
        "DIALGUARD_CALLS_JOURNAL_PATH": str(tmp_path),  # a directory: no file can be written there
        "DIALGUARD_AGI_PORT": "0",
        "DIALGUARD_HTTP_PORT": "0",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialguard", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "opt-out journal" in err.decode() and "not writable" in err.decode()


async def test_with_the_database_away_at_answer_the_dialplans_number_still_takes_the_opt_out(
    db_dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    call_id = await decided(pool, NEW_YORK)
    journal = OptOutJournal(tmp_path / "journal.jsonl")
    proxy = CuttableProxy.for_dsn(db_dsn)
    await proxy.start()
    through = await create_pool(proxy.dsn_through(as_gateway(db_dsn)), size=2, command_timeout=1)
    asterisk, server = await start(through, journal)
    try:
        proxy.cut()  # gone before the callee even answers
        run = await asterisk.agi("announce", call_id, NEW_YORK, "notices", channel=Channel(dtmf=["9"]))
        assert run.variables["DIALGUARD_OPTOUT"] == "1"
        assert [o.number for o in journal.pending()] == [NEW_YORK]
        without = await asterisk.agi("announce", call_id, channel=Channel(dtmf=["9"]))
        assert without.variables["DIALGUARD_RECORD"] == "NO"  # no number to store an opt-out under
        assert "DIALGUARD_OPTOUT" not in without.variables
    finally:
        proxy.restore()
        await server.close()
        through.terminate()
        await proxy.close()
    assert await journal.replay(pool) == 1
    assert await next_check(pool, NEW_YORK) == "dnc.internal"


async def test_call_events_are_sealed_and_an_altered_or_removed_one_is_found(
    pool: asyncpg.Pool, gateway: tuple[FakeAsterisk, OptOutJournal]
) -> None:
    """The evidence of an opt-out (DESIGN: call events are tamper-evident like decisions)."""
    asterisk, _ = gateway
    call_id = await decided(pool, NEW_YORK)
    await asterisk.agi("announce", call_id, channel=Channel(dtmf=["9"]))
    async with as_owner(pool) as conn:
        # Each event's time, which its hash covers, comes from the gateway's clock (fixed here).
        assert {e["at"] for e in await events_of(conn, uuid.UUID(call_id))} == {NOW}
        for table in ("decisions", "call_events"):  # back-dated: settled, so they can be sealed now
            await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
            await conn.execute(f"UPDATE {table} SET inserted_at = inserted_at - interval '1 minute'")
            await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only")
        sealed = await seal(conn)
        assert (
            sealed is not None and sealed["call_events"] == len(await kinds(pool, call_id)) + 1 >= 4
        )  # + the claim
        assert (await verify(conn)).ok
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM call_events")
        # An owner who bypasses the trigger: the key pressed is rewritten, the stored opt-out removed.
        await conn.execute("ALTER TABLE call_events DISABLE TRIGGER call_events_append_only")
        optout = await conn.fetchval("SELECT id FROM call_events WHERE kind = 'optout'")
        await conn.execute(
            'UPDATE call_events SET detail = detail || \'{"digit": "1"}\' WHERE id = $1', optout
        )
        await conn.execute("DELETE FROM call_events WHERE kind = 'optout.stored'")
        await conn.execute("ALTER TABLE call_events ENABLE TRIGGER call_events_append_only")
        report = await verify(conn)
    assert f"call event {optout} (call {call_id}) was altered" in report.problems
    assert any(p.startswith("call event checkpoint 1") for p in report.problems)
    assert not any(p.startswith("decision") for p in report.problems)  # the decisions log is intact


async def test_a_campaign_sets_the_language_and_the_opt_out_key(
    pool: asyncpg.Pool, gateway: tuple[FakeAsterisk, OptOutJournal]
) -> None:
    asterisk, _ = gateway
    async with pool.acquire() as conn:
        await campaigns.add_campaign(
            conn,
            name="ventas",
            purpose=Purpose.INFORMATIONAL,
            settings={"language": "es", "optout_digit": "7"},
        )
    gate = Gate(pool=pool, rulebook=RULES, clock=fixed_clock(NOW), default_region="US")
    call_id = str((await gate.check(CheckRequest(NEW_YORK, campaign="ventas", record=True))).call_id)
    # After the notice the callee presses 9 (the default key, not this campaign's), then 7.
    run = await asterisk.agi("announce", call_id, channel=Channel(dtmf=["9", "7"]))
    assert ["STREAM", "FILE", notice("es"), "7"] == streams(run)[0][:4]
    assert run.variables["DIALGUARD_LANG"] == "es" and run.variables["DIALGUARD_OPTOUT"] == "1"
    assert await kinds(pool, call_id) == ["notice.played", "digit.ignored", "optout.stored", "optout"]


async def test_an_opt_out_that_cannot_be_kept_still_ends_the_call_and_says_so(
    db_dsn: str, pool: asyncpg.Pool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10, item 11: the database away and the journal unwritable (disk full, a path gone bad)."""
    call_id = await decided(pool, NEW_YORK)
    path = tmp_path / "journal.jsonl"
    journal = OptOutJournal(path)
    journal.check_writable()
    proxy = CuttableProxy.for_dsn(db_dsn)
    await proxy.start()
    through = await create_pool(proxy.dsn_through(as_gateway(db_dsn)), size=2, command_timeout=1)
    metrics = Metrics()
    keeper = OptOutKeeper(pool=through, journal=journal, metrics=metrics, clock=fixed_clock(NOW), within=0.5)
    calls = CallRoutes(pool=through, keeper=keeper, rulebook=RULES, clock=fixed_clock(NOW), db_within=0.5)
    gate = Gate(pool=through, rulebook=RULES, clock=fixed_clock(NOW), default_region="US")
    server = AgiServer(routes=agi_routes(gate=gate, calls=calls), host="127.0.0.1", port=0)
    await server.start()

    def everything_fails() -> None:
        proxy.cut()
        path.unlink()
        path.mkdir()  # the journal's path is now a directory: no line can be written

    try:
        channel = Channel(dtmf=["9"], during_prompt=everything_fails)
        run = await FakeAsterisk("127.0.0.1", server.port).agi("announce", call_id, channel=channel)
    finally:
        await server.close()
        through.terminate()
        await proxy.close()
    assert run.variables["DIALGUARD_OPTOUT"] == "1"  # the call ends: it never reaches an agent
    assert run.status == "FAILURE"
    assert not any(c[2].endswith("optout-confirmed") for c in streams(run))  # nothing confirmed
    lost = [r for r in caplog.records if r.levelname == "CRITICAL"]
    assert len(lost) == 1 and NEW_YORK in lost[0].getMessage() and call_id in lost[0].getMessage()
    assert not any("journaled" in r.getMessage() for r in caplog.records)
    assert b'dialguard_optouts_total{kept="lost"} 1.0' in metrics.render()


async def test_the_journal_loses_nothing_to_a_replay_in_another_process(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """Issue 14, item 1: a gateway journals while `journal status --replay` (another process) replays."""
    call_id = await decided(pool, NEW_YORK)
    path = tmp_path / "journal.jsonl"
    appender = (
        "import asyncio, sys, uuid\n"
        "from datetime import UTC, datetime\n"
        "from pathlib import Path\n"
        "from dialguard.journal import OptOutJournal\n"
        "from dialguard.store.calls import OptOut\n"
        "journal = OptOutJournal(Path(sys.argv[1]))\n"
        "async def main():\n"
        "    for i in range(200):\n"
        "        at = datetime(2026, 11, 23, 16, tzinfo=UTC)\n"
        "        number = f'+1212555{i:04d}'\n"
        "        call = uuid.UUID(sys.argv[2])\n"
        "        await journal.append(OptOut(uuid.uuid4(), number, call, 'notices', '9', at))\n"
        "asyncio.run(main())\n"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", appender, str(path), call_id)
    journal = OptOutJournal(path)
    replays = 0
    while proc.returncode is None:
        await journal.replay(pool)
        replays += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.001)
    assert proc.returncode == 0
    await journal.replay(pool)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(DISTINCT number) FROM optouts") == 200
    assert journal.pending() == [] and replays > 1


async def test_an_unreadable_journal_line_is_kept_aside_not_deleted(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b'{"not": "an opt-out"}\n')
    journal = OptOutJournal(path)
    assert await journal.replay(pool) == 0
    assert path.read_bytes() == b""
    assert (tmp_path / "journal.jsonl.unreadable").read_bytes() == b'{"not": "an opt-out"}\n'


async def test_a_stored_opt_out_key_that_cannot_work_falls_back_to_the_default(
    pool: asyncpg.Pool, gateway: tuple[FakeAsterisk, OptOutJournal]
) -> None:
    """Issue 14, item 10: "79" (or "#*") armed as the key would silently disable the opt-out."""
    asterisk, _ = gateway
    with pytest.raises(campaigns.InvalidCampaignSettings, match="optout_digit"):
        async with pool.acquire() as conn:
            await campaigns.add_campaign(
                conn, name="broken", purpose=Purpose.INFORMATIONAL, settings={"optout_digit": "79"}
            )
    async with pool.acquire() as conn:  # as a row written before settings were validated
        await conn.execute(
            """INSERT INTO campaigns (name, purpose, settings)
               VALUES ('broken', 'informational', '{"optout_digit": "79", "language": "../x"}')"""
        )
    gate = Gate(pool=pool, rulebook=RULES, clock=fixed_clock(NOW), default_region="US")
    call_id = str((await gate.check(CheckRequest(NEW_YORK, campaign="broken", record=True))).call_id)
    run = await asterisk.agi("announce", call_id, channel=Channel(dtmf=["9"]))
    assert ["STREAM", "FILE", notice("en"), "9"] == streams(run)[0][:4]
    assert run.variables["DIALGUARD_OPTOUT"] == "1"


# ------------------------------------------------------------------ the opt-out key during the call


async def test_the_opt_out_key_during_a_call_is_stored_even_after_the_decision_is_old(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    journal = OptOutJournal(tmp_path / "journal.jsonl")
    call_id = await decided(pool, NEW_YORK)
    # Twenty minutes into the call: past calls.decision_max_age, which bounds answering, not stopping.
    later = NOW + timedelta(minutes=20)
    keeper = OptOutKeeper(pool=pool, journal=journal, metrics=Metrics(), clock=fixed_clock(later))
    calls = CallRoutes(pool=pool, keeper=keeper, rulebook=RULES, clock=fixed_clock(later), sounds_dir=SOUNDS)
    gate = Gate(pool=pool, rulebook=RULES, clock=fixed_clock(NOW), default_region="US")
    server = AgiServer(routes=agi_routes(gate=gate, calls=calls), host="127.0.0.1", port=0)
    await server.start()
    try:
        run = await FakeAsterisk("127.0.0.1", server.port).agi("optout", call_id, NEW_YORK, "notices")
    finally:
        await server.close()
    assert run.variables["DIALGUARD_OPTOUT"] == "1"
    assert await next_check(pool, NEW_YORK) == "dnc.internal"
    assert "optout" in await kinds(pool, call_id)


async def test_the_opt_out_key_with_an_unknown_call_id_is_kept_by_the_number_given(
    pool: asyncpg.Pool, gateway: tuple[FakeAsterisk, OptOutJournal]
) -> None:
    asterisk, _ = gateway
    await decided(pool, NEW_YORK)  # the campaign exists; this call id is none of its decisions
    run = await asterisk.agi("optout", str(uuid.uuid4()), MIAMI, "notices")
    assert run.variables["DIALGUARD_OPTOUT"] == "1"
    assert await next_check(pool, MIAMI) == "dnc.internal"


async def test_the_opt_out_key_with_nothing_to_go_on_says_so(
    pool: asyncpg.Pool, gateway: tuple[FakeAsterisk, OptOutJournal]
) -> None:
    asterisk, _ = gateway
    run = await asterisk.agi("optout", str(uuid.uuid4()))
    assert run.variables["DIALGUARD_OPTOUT"] == "NO"
    assert run.variables["DIALGUARD_REFUSED_REASON"] == "call_id.unknown"
