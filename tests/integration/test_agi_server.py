"""The FastAGI server on a real socket, driven by a fake Asterisk that behaves as res_agi.c does."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from dialguard.asterisk.agi_routes import agi_routes
from dialguard.asterisk.agi_server import AgiServer, AgiSession, Handler, somaxconn
from dialguard.clock import fixed_clock
from dialguard.gate import Gate
from dialguard.policy.model import Purpose
from dialguard.store import consent, dnc
from tests.conftest import as_owner
from tests.fakes.asterisk_agi import Channel, FakeAsterisk
from tests.fakes.proxy import CuttableProxy
from tests.fakes.rules import simple_rulebook
from tests.fakes.waiting import server_reports

NOON = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 16:00 in Warsaw
PL_MOBILE = "+48601234567"

ServerFactory = Callable[..., Awaitable[AgiServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[ServerFactory]:
    servers: list[AgiServer] = []

    async def start(routes: Mapping[str, Handler], **kw: object) -> AgiServer:
        server = AgiServer(routes=routes, host="127.0.0.1", port=0, **kw)  # type: ignore[arg-type]
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def gate_for(pool: asyncpg.Pool) -> Gate:
    return Gate(pool=pool, rulebook=simple_rulebook(), clock=fixed_clock(NOON), default_region="PL")


async def test_check_allows_a_consented_number_and_sets_every_variable(
    pool: asyncpg.Pool, start_server: ServerFactory
) -> None:
    async with pool.acquire() as conn:
        await consent.grant_consent(
            conn, at=NOON, number=PL_MOBILE, kind="express", source="web_form", purpose=Purpose.MARKETING,
            granted_at=NOON - timedelta(days=1),
        )  # fmt: skip
    server = await start_server(agi_routes(gate=gate_for(pool)))
    run = await FakeAsterisk("127.0.0.1", server.port).agi("check", "0048 601 234 567", "default")
    v = run.variables
    assert run.status == "SUCCESS"
    assert v["DIALGUARD_VERDICT"] == "ALLOW"
    assert v["DIALGUARD_REASON"] == "ok"
    assert v["DIALGUARD_NUMBER"] == PL_MOBILE
    assert v["DIALGUARD_LANG"] == "pl"
    assert v["DIALGUARD_NEXT_CALLABLE"] == ""
    assert "consent.valid" in v["DIALGUARD_REASONS"].split(",")
    # The verdict is the last thing set: a session cut short leaves it empty and the dialplan blocks.
    assert run.commands[-1][:3] == ["SET", "VARIABLE", "DIALGUARD_VERDICT"]
    async with pool.acquire() as conn:
        stored = await conn.fetchrow(
            "SELECT verdict, body->>'channel' AS channel FROM decisions WHERE call_id = $1",
            uuid.UUID(v["DIALGUARD_CALL_ID"]),
        )
    assert stored is not None and stored["verdict"] == "ALLOW" and stored["channel"] == "agi"


async def test_check_blocks_a_number_on_the_internal_list(
    pool: asyncpg.Pool, start_server: ServerFactory
) -> None:
    async with pool.acquire() as conn:
        await dnc.add_dnc(conn, at=NOON, number=PL_MOBILE, source="complaint")
    server = await start_server(agi_routes(gate=gate_for(pool)))
    run = await FakeAsterisk("127.0.0.1", server.port).agi("check", PL_MOBILE)
    assert run.variables["DIALGUARD_VERDICT"] == "BLOCK"
    assert run.variables["DIALGUARD_REASON"] == "dnc.internal"


async def test_number_defaults_to_the_extension_dialled(
    pool: asyncpg.Pool, start_server: ServerFactory
) -> None:
    server = await start_server(agi_routes(gate=gate_for(pool)))
    run = await FakeAsterisk("127.0.0.1", server.port).agi(
        "check", "", channel=Channel(extension="601234567")
    )
    assert run.variables["DIALGUARD_NUMBER"] == PL_MOBILE
    assert run.variables["DIALGUARD_REASON"] == "consent.missing"


async def test_unparsable_number_blocks_with_number_invalid(
    pool: asyncpg.Pool, start_server: ServerFactory
) -> None:
    server = await start_server(agi_routes(gate=gate_for(pool)))
    run = await FakeAsterisk("127.0.0.1", server.port).agi("check", "call-me-maybe")
    assert (run.variables["DIALGUARD_VERDICT"], run.variables["DIALGUARD_REASON"]) == (
        "BLOCK",
        "number.invalid",
    )
    assert run.variables["DIALGUARD_NUMBER"] == ""


async def test_unknown_campaign_blocks(pool: asyncpg.Pool, start_server: ServerFactory) -> None:
    server = await start_server(agi_routes(gate=gate_for(pool)))
    run = await FakeAsterisk("127.0.0.1", server.port).agi("check", PL_MOBILE, "no-such-campaign")
    assert run.variables["DIALGUARD_REASON"] == "campaign.unknown"


async def test_database_gone_blocks_with_gate_unavailable_then_recovers(
    proxied: tuple[CuttableProxy, asyncpg.Pool], start_server: ServerFactory
) -> None:
    proxy, through = proxied
    gate = Gate(
        pool=through,
        rulebook=simple_rulebook(),
        clock=fixed_clock(NOON),
        default_region="PL",
        fact_timeout=1.0,
    )
    asterisk = FakeAsterisk("127.0.0.1", (await start_server(agi_routes(gate=gate))).port)
    proxy.cut()
    run = await asterisk.agi("check", PL_MOBILE)
    assert (run.variables["DIALGUARD_VERDICT"], run.variables["DIALGUARD_REASON"]) == (
        "BLOCK",
        "gate.unavailable",
    )
    proxy.restore()
    for _ in range(5):  # the pool replaces broken connections by itself
        run = await asterisk.agi("check", PL_MOBILE)
        if run.variables["DIALGUARD_REASON"] != "gate.unavailable":
            break
    assert run.variables["DIALGUARD_REASON"] == "consent.missing"


async def test_hangup_mid_session_still_sets_the_verdict(
    pool: asyncpg.Pool, start_server: ServerFactory
) -> None:
    """SET VARIABLE is dead-safe in res_agi: after HANGUP the dialplan's h extension can still read it."""
    server = await start_server(agi_routes(gate=gate_for(pool)))
    run = await FakeAsterisk("127.0.0.1", server.port).agi(
        "check",
        PL_MOBILE,
        channel=Channel(hangup_after=1),  # after the MSet, before the verdict
    )
    assert run.status == "HANGUP"
    assert "HANGUP" in run.replies
    assert run.variables["DIALGUARD_VERDICT"] == "BLOCK"
    assert server.stats["hung_up"] == 1


# ---------------------------------------------------------------- protocol edge cases, with plain handlers


async def noop(session: AgiSession) -> None:
    await session.set_variable("SEEN", session.request.route)


async def test_unknown_route_answers_with_verbose_and_ends(start_server: ServerFactory) -> None:
    server = await start_server({"check": noop})
    run = await FakeAsterisk("127.0.0.1", server.port).agi("chekc")
    assert run.status == "SUCCESS"
    assert len(run.verbose) == 1 and "chekc" in run.verbose[0] and "check" in run.verbose[0]
    assert run.variables == {}
    assert server.stats["unknown_route"] == 1


async def test_511_after_hangup_ends_the_session_cleanly(start_server: ServerFactory) -> None:
    async def prompt_after_hangup(session: AgiSession) -> None:
        await session.set_variable("A", "1")
        await session.stream_file("dialguard/notice", "1", reply_within=5)

    server = await start_server({"r": prompt_after_hangup})
    run = await FakeAsterisk("127.0.0.1", server.port).agi("r", channel=Channel(hangup_after=1))
    assert run.replies[-1].startswith("511 ")
    assert server.stats["hung_up"] == 1


async def test_hangup_while_the_prompt_plays(start_server: ServerFactory) -> None:
    seen: list[object] = []

    async def prompt(session: AgiSession) -> None:
        seen.append(await session.stream_file("dialguard/notice", "1", reply_within=5))
        # res_agi sends HANGUP at the top of its loop, after the reply: it is seen with the next command.
        seen.append(session.hung_up)
        await session.set_variable("AFTER", "yes")  # dead-safe: still works
        seen.append(session.hung_up)

    server = await start_server({"r": prompt})
    run = await FakeAsterisk("127.0.0.1", server.port).agi("r", channel=Channel(hangup_in_prompt=1))
    result = seen[0]
    assert result.failed and result.digit is None  # type: ignore[attr-defined]
    assert seen[1:] == [False, True]
    assert run.variables["AFTER"] == "yes" and run.status == "HANGUP"


async def test_digit_pressed_during_a_prompt(start_server: ServerFactory) -> None:
    seen: list[object] = []

    async def prompt(session: AgiSession) -> None:
        seen.append(await session.stream_file("dialguard/notice", "19", reply_within=5))
        seen.append(await session.wait_for_digit(3000))

    server = await start_server({"r": prompt})
    await FakeAsterisk("127.0.0.1", server.port).agi("r", channel=Channel(dtmf=["9"]))
    assert seen[0].digit == "9" and not seen[0].failed  # type: ignore[attr-defined]
    assert seen[1].digit is None  # type: ignore[attr-defined]


async def test_520_usage_block_is_a_logged_command_error(start_server: ServerFactory) -> None:
    async def wrong(session: AgiSession) -> None:
        await session.execute("SET VARIABLE", "ONLY_A_NAME")

    server = await start_server({"r": wrong})
    run = await FakeAsterisk("127.0.0.1", server.port).agi("r")
    assert run.replies[0].startswith("520-") and run.replies[-1] == "520 End of proper usage."
    assert server.stats["command_error"] == 1
    # Our bug, not the caller's: the dialplan learns it from AGISTATUS, not from a clean-looking end.
    assert (run.status, run.failure_line) == ("FAILURE", "failure")


async def test_510_unknown_command_ends_with_agistatus_failure(start_server: ServerFactory) -> None:
    async def typo(session: AgiSession) -> None:
        await session.execute("SET VARIABEL", "X", "1")

    server = await start_server({"r": typo})
    run = await FakeAsterisk("127.0.0.1", server.port).agi("r")
    assert run.replies == ["510 Invalid or unknown command"]
    assert (run.status, server.stats["command_error"]) == ("FAILURE", 1)


async def test_gosub_interim_100_then_the_real_reply(start_server: ServerFactory) -> None:
    """handle_gosub (app_stack.c) answers ``100 result=0 Trying...``, the 200 when the routine returns."""
    seen: list[object] = []

    async def gosub(session: AgiSession) -> None:
        reply = await session.execute("GOSUB", "sub-tag", "s", "1", "spring,2026")
        seen.append((reply.code, reply.result))
        seen.append(await session.get_variable("GOSUB_RETVAL"))

    server = await start_server({"r": gosub})
    channel = Channel(subroutines={"sub-tag": lambda args: "|".join(args)})
    run = await FakeAsterisk("127.0.0.1", server.port).agi("r", channel=channel)
    assert run.replies[:2] == ["100 result=0 Trying...", "200 result=0 Gosub complete"]
    assert seen == [(200, "0"), "spring|2026"]
    assert (run.status, server.stats["ok"]) == ("SUCCESS", 1)


async def test_a_command_that_fails_on_a_live_channel_sets_agistatus_failure_by_itself(
    start_server: ServerFactory,
) -> None:
    """res_agi's RESULT_FAILURE (a missing prompt, a GOSUB label not found): FAILURE though we end cleanly."""

    async def missing(session: AgiSession) -> None:
        await session.execute("GOSUB", "no-such-context", "s", "1")
        await session.set_variable("AFTER", "yes")

    server = await start_server({"r": missing})
    run = await FakeAsterisk("127.0.0.1", server.port).agi("r")
    assert run.replies[0] == "200 result=-1 Gosub label not found"
    assert (run.status, run.failure_line, run.variables["AFTER"]) == ("FAILURE", None, "yes")
    assert server.stats["ok"] == 1


async def test_a_handler_bug_ends_with_agistatus_failure(start_server: ServerFactory) -> None:
    async def buggy(session: AgiSession) -> None:
        await session.set_variable("BEFORE", "1")
        raise RuntimeError("a bug in a route")

    server = await start_server({"r": buggy})
    run = await FakeAsterisk("127.0.0.1", server.port).agi("r")
    assert (run.status, run.failure_line) == ("FAILURE", "failure")
    assert run.variables == {"BEFORE": "1"}
    assert server.stats["error"] == 1


async def test_no_failure_line_once_the_channel_hung_up(start_server: ServerFactory) -> None:
    """After HANGUP, AGISTATUS=HANGUP says what happened; a failure line would hide it."""

    async def buggy_after_hangup(session: AgiSession) -> None:
        await session.set_variable("A", "1")
        await session.set_variable("B", "2")  # HANGUP comes before this reply
        raise RuntimeError("a bug in a route")

    server = await start_server({"r": buggy_after_hangup})
    run = await FakeAsterisk("127.0.0.1", server.port).agi("r", channel=Channel(hangup_after=1))
    assert (run.status, run.failure_line) == ("HANGUP", None)
    assert server.stats["error"] == 1


async def test_a_session_past_its_lifetime_ends_with_agistatus_failure(start_server: ServerFactory) -> None:
    stuck = asyncio.Event()  # never set: a route waiting on something that never comes

    async def slow(session: AgiSession) -> None:
        await session.set_variable("BEFORE", "1")
        await stuck.wait()

    server = await start_server({"r": slow}, session_timeout=0.5)
    run = await FakeAsterisk("127.0.0.1", server.port).agi("r")
    assert (run.status, run.failure_line) == ("FAILURE", "failure")
    assert server.stats["timeout"] == 1


async def test_shutting_down_mid_route_ends_with_agistatus_failure(start_server: ServerFactory) -> None:
    started, stuck = asyncio.Event(), asyncio.Event()

    async def slow(session: AgiSession) -> None:
        started.set()
        await stuck.wait()

    server = await start_server({"r": slow})
    call = asyncio.create_task(FakeAsterisk("127.0.0.1", server.port).agi("r"))
    await started.wait()
    await server.close()
    run = await call
    assert (run.status, run.failure_line) == ("FAILURE", "failure")


async def test_get_variable_set_and_unset(start_server: ServerFactory) -> None:
    seen: list[str | None] = []

    async def read(session: AgiSession) -> None:
        seen.append(await session.get_variable("CAMPAIGN"))
        seen.append(await session.get_variable("MISSING"))

    server = await start_server({"r": read})
    await FakeAsterisk("127.0.0.1", server.port).agi(
        "r", channel=Channel(variables={"CAMPAIGN": "spring (2026)"})
    )
    assert seen == ["spring (2026)", None]


async def raw_session(port: int, payload: bytes, *, then_wait: float = 5.0) -> bytes:
    """Send raw bytes as a misbehaving peer would, and return what the server sent before closing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    try:
        async with asyncio.timeout(then_wait):
            return await reader.read()
    except ConnectionResetError:
        return b""  # the server closed with our bytes unread: the kernel answers with a reset
    finally:
        writer.close()


async def test_silent_peer_times_out_without_stalling_others(start_server: ServerFactory) -> None:
    server = await start_server({"check": noop}, read_timeout=1.0)
    silent = asyncio.create_task(raw_session(server.port, b""))
    half = asyncio.create_task(raw_session(server.port, b"agi_network: yes\nagi_network_script: check\n"))
    await asyncio.sleep(0.1)
    run = await FakeAsterisk("127.0.0.1", server.port).agi("check")  # served while the others hang
    assert run.variables == {"SEEN": "check"}
    assert not silent.done() and not half.done()
    assert await silent == b"" and await half == b""  # closed by the server's deadline
    assert server.stats["timeout"] == 2 and server.stats["ok"] == 1


async def test_a_peer_trickling_its_environment_is_closed_at_one_deadline_for_the_block(
    start_server: ServerFactory,
) -> None:
    """Each line within read_timeout of the last, the block as a whole far past it: closed at the
    block's deadline, so slow peers cannot hold every session until session_timeout (issue 14)."""
    server = await start_server({"check": noop}, read_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    sent = 0
    try:
        for n in range(40):  # 40 lines, one each 0.1 s: 4 s in all, 8 times the deadline
            writer.write(b"agi_arg_%d: x\n" % n)
            await writer.drain()
            sent += 1
            await asyncio.sleep(0.1)
            if reader.at_eof() or server.stats["timeout"]:
                break
    except ConnectionError:
        pass  # the server closed first: what this test wants
    finally:
        writer.close()
    assert server.stats["timeout"] == 1 and sent < 40


async def test_peer_closing_inside_the_environment_block(start_server: ServerFactory) -> None:
    server = await start_server({"check": noop})
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_network: yes\nagi_network_scr")
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    for _ in range(50):
        if server.stats["peer_closed"]:
            break
        await asyncio.sleep(0.02)
    assert server.stats["peer_closed"] == 1
    assert (await FakeAsterisk("127.0.0.1", server.port).agi("check")).variables == {"SEEN": "check"}


async def test_overlong_line_is_refused(start_server: ServerFactory) -> None:
    server = await start_server({"check": noop}, max_line_bytes=256)
    sent = await raw_session(server.port, b"agi_network: yes\nagi_arg_1: " + b"9" * 10_000 + b"\n\n")
    assert sent == b""
    assert server.stats["protocol_error"] == 1


async def test_garbage_instead_of_an_environment_is_refused(start_server: ServerFactory) -> None:
    server = await start_server({"check": noop})
    sent = await raw_session(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sent == b""
    assert server.stats["protocol_error"] == 1


async def test_malformed_reply_ends_the_session(start_server: ServerFactory) -> None:
    server = await start_server({"check": noop})
    env = FakeAsterisk("127.0.0.1", server.port).environment("check", [], Channel())
    sent = await raw_session(server.port, env + b"200 result=1\n")  # a reply before any command...
    assert sent.startswith(b"SET VARIABLE")  # ...is read as the reply to our first command: harmless
    server2 = await start_server({"check": noop})
    sent = await raw_session(server2.port, env + b"OK then\n")
    assert server2.stats["protocol_error"] == 1
    assert sent == b'SET VARIABLE "SEEN" "check"\nfailure\n'  # AGISTATUS=FAILURE on a real Asterisk


async def test_no_failure_line_to_a_peer_that_closed(start_server: ServerFactory) -> None:
    server = await start_server({"check": noop})
    env = FakeAsterisk("127.0.0.1", server.port).environment("check", [], Channel())
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(env)
    writer.write_eof()  # Asterisk gone: nothing more comes, and nothing should be sent after the command
    async with asyncio.timeout(5):
        sent = await reader.read()
    writer.close()
    assert sent == b'SET VARIABLE "SEEN" "check"\n'
    assert server.stats["peer_closed"] == 1


async def test_peer_outside_the_allow_list_is_closed_unread(start_server: ServerFactory) -> None:
    server = await start_server({"check": noop}, allow=["10.0.0.0/8"])
    env = FakeAsterisk("127.0.0.1", server.port).environment("check", [], Channel())
    assert await raw_session(server.port, env) == b""
    assert server.stats["refused"] == 1 and server.stats["sessions"] == 0


def test_allow_list_matches_ipv4_mapped_ipv6() -> None:
    server = AgiServer(routes={}, allow=["192.0.2.0/24"])
    assert server.allowed("::ffff:192.0.2.7")
    assert server.allowed("192.0.2.7")
    assert not server.allowed("198.51.100.1")
    assert not server.allowed("not-an-address")


async def test_many_concurrent_sessions(pool: asyncpg.Pool, start_server: ServerFactory) -> None:
    server = await start_server(agi_routes(gate=gate_for(pool)))
    asterisk = FakeAsterisk("127.0.0.1", server.port)
    runs = await asyncio.gather(*(asterisk.agi("check", f"+4860123{i:04d}") for i in range(40)))
    assert all(r.variables["DIALGUARD_VERDICT"] == "BLOCK" for r in runs)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM decisions") == 40


def listen_backlog(port: int) -> int:
    """The listening socket's backlog as the kernel holds it: ``ss`` shows it as Send-Q."""
    ss = shutil.which("ss")
    if ss is None:
        pytest.skip("needs ss (iproute2) to read a listening socket's backlog")
    out = subprocess.run(
        [ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[2])  # State Recv-Q Send-Q Local Peer


async def test_the_listen_backlog_is_the_configured_one_not_asyncios_100(
    start_server: ServerFactory,
) -> None:
    cap = somaxconn()
    assert cap is not None and cap >= 1024, "this test needs net.core.somaxconn >= 1024"
    default = await start_server({})
    assert listen_backlog(default.port) == 1024
    chosen = await start_server({}, backlog=300)
    assert listen_backlog(chosen.port) == 300


async def test_a_backlog_above_somaxconn_is_capped_by_the_kernel_and_says_so(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    cap = somaxconn()
    assert cap is not None
    with caplog.at_level(logging.WARNING, logger="dialguard.asterisk.agi_server"):
        server = await start_server({}, backlog=cap + 1)
    assert listen_backlog(server.port) == cap
    assert any("net.core.somaxconn" in r.getMessage() for r in caplog.records)


INFORMATIONAL = {
    "DIALGUARD_CALL_ID",
    "DIALGUARD_NUMBER",
    "DIALGUARD_REASONS",
    "DIALGUARD_REASON",
    "DIALGUARD_LANG",
    "DIALGUARD_NEXT_CALLABLE",
}


async def test_on_the_wire_one_mset_then_the_verdict_alone_after_the_decision_is_stored(
    pool: asyncpg.Pool, start_server: ServerFactory
) -> None:
    async with pool.acquire() as conn:
        await dnc.add_dnc(conn, at=NOON, number=PL_MOBILE, source="complaint")
    channel = Channel()
    stored_when_asked: list[str | None] = []

    async def look_in_the_database(argv: list[str]) -> None:
        # From another connection: only a committed decision is visible here.
        call_id = channel.variables.get("DIALGUARD_CALL_ID")
        async with pool.acquire() as conn:
            stored_when_asked.append(
                await conn.fetchval("SELECT verdict FROM decisions WHERE call_id = $1", uuid.UUID(call_id))
                if call_id
                else None
            )

    channel.on_command = look_in_the_database
    server = await start_server(agi_routes(gate=gate_for(pool)))
    run = await FakeAsterisk("127.0.0.1", server.port).agi("check", PL_MOBILE, "default", channel=channel)
    assert run.status == "SUCCESS"
    assert [argv[:2] for argv in run.commands] == [["EXEC", "MSet"], ["SET", "VARIABLE"]]
    assert run.commands[1][2:] == ["DIALGUARD_VERDICT", "BLOCK"]
    assert set(run.variables) == INFORMATIONAL | {"DIALGUARD_VERDICT"}
    # The decision was durable before the verdict's command reached Asterisk.
    assert stored_when_asked[1] == "BLOCK"
    async with pool.acquire() as conn:
        body = await conn.fetchval(
            "SELECT body FROM decisions WHERE call_id = $1", uuid.UUID(run.variables["DIALGUARD_CALL_ID"])
        )
    # The comma-separated list survived MSet's own comma splitting.
    codes = [r["code"] for r in body["reasons"]]
    assert len(codes) > 1 and run.variables["DIALGUARD_REASONS"] == ",".join(codes)
    assert run.variables["DIALGUARD_REASON"] == "dnc.internal"


async def test_the_mset_travels_while_the_decision_commits_and_the_verdict_waits_for_it(
    pool: asyncpg.Pool, start_server: ServerFactory
) -> None:
    """Issue 15: the six informational variables go out before the insert's answer; the verdict only
    after it. Held deterministically: the decisions table is locked until Asterisk has the MSet."""
    seen: list[tuple[str, str | None]] = []
    call_id: list[uuid.UUID] = []
    channel = Channel()
    async with pool.acquire() as conn, as_owner(conn) as owner:
        blocker = owner.transaction()
        await blocker.start()
        await owner.execute("LOCK TABLE decisions IN SHARE MODE")  # the gate's INSERT waits for it

        async def observe(argv: list[str]) -> None:  # called as each command arrives, before it runs
            if argv[0] == "EXEC":
                call_id.append(uuid.UUID(argv[2].split(",")[0].removeprefix("DIALGUARD_CALL_ID=")))
            stored = await conn.fetchval("SELECT verdict FROM decisions WHERE call_id = $1", call_id[0])
            seen.append((argv[0], stored))
            if argv[0] == "EXEC":
                await blocker.commit()  # only now may the insert land

        channel.on_command = observe
        server = await start_server(agi_routes(gate=gate_for(pool)))
        run = await FakeAsterisk("127.0.0.1", server.port).agi("check", PL_MOBILE, "default", channel=channel)
    assert seen == [("EXEC", None), ("SET", "BLOCK")]  # PL_MOBILE has no consent: blocked, and stored
    assert run.variables["DIALGUARD_VERDICT"] == "BLOCK"


async def test_an_insert_that_fails_after_the_mset_sets_the_variables_again_and_blocks(
    pool: asyncpg.Pool, start_server: ServerFactory
) -> None:
    """The MSet announced the judged decision; its insert then failed: the channel hears the
    ``gate.unavailable`` block the gate answered instead."""
    async with as_owner(pool) as owner:
        await owner.execute(
            """CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
               $$BEGIN RAISE EXCEPTION 'disk full' USING ERRCODE = '53100'; END$$;
               CREATE TRIGGER refuse BEFORE INSERT ON decisions FOR EACH ROW EXECUTE FUNCTION refuse()"""
        )
        try:
            server = await start_server(agi_routes(gate=gate_for(pool)))
            run = await FakeAsterisk("127.0.0.1", server.port).agi("check", PL_MOBILE, "default")
        finally:
            await owner.execute("DROP TRIGGER refuse ON decisions; DROP FUNCTION refuse()")
    assert [argv[:2] for argv in run.commands] == [["EXEC", "MSet"], ["EXEC", "MSet"], ["SET", "VARIABLE"]]
    assert "gate.unavailable" not in run.commands[0][2]  # the first MSet announced the judged decision
    assert run.variables["DIALGUARD_REASON"] == "gate.unavailable"
    assert run.variables["DIALGUARD_VERDICT"] == "BLOCK"


async def test_a_session_cut_after_the_mset_leaves_the_verdict_empty(
    pool: asyncpg.Pool, start_server: ServerFactory
) -> None:
    server = await start_server(agi_routes(gate=gate_for(pool)))
    channel = Channel(cut_after=1)
    run = await FakeAsterisk("127.0.0.1", server.port).agi("check", PL_MOBILE, "default", channel=channel)
    assert set(run.variables) == INFORMATIONAL  # the dialplan blocks on an empty verdict
    call_id = uuid.UUID(run.variables["DIALGUARD_CALL_ID"])
    async with pool.acquire() as conn:
        # The MSet went out while the decision committed: the insert goes on after the cut.
        await server_reports(conn, f"SELECT EXISTS (SELECT FROM decisions WHERE call_id = '{call_id}')", 5)
        stored = await conn.fetchval("SELECT verdict FROM decisions WHERE call_id = $1", call_id)
    assert stored == "BLOCK"  # stored all the same: the channel just never heard it


async def test_a_check_lives_as_long_as_a_check_needs_not_as_long_as_a_notice(
    start_server: ServerFactory,
) -> None:
    """Issue 14, item 3: a check session need not live the 120 s a notice with prompts may take."""
    stuck = asyncio.Event()

    async def slow(session: AgiSession) -> None:
        await stuck.wait()

    server = await start_server(
        {"check": slow, "announce": slow}, session_timeout=60, route_lifetimes={"check": 0.3}
    )
    run = await asyncio.wait_for(FakeAsterisk("127.0.0.1", server.port).agi("check"), 10)
    assert (run.status, server.stats["timeout"]) == ("FAILURE", 1)
    announce = asyncio.create_task(FakeAsterisk("127.0.0.1", server.port).agi("announce"))
    await asyncio.sleep(0.6)  # twice the check's lifetime: the announce session still lives
    assert not announce.done()
    announce.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await announce


async def test_beyond_max_sessions_a_call_is_refused_at_once_with_agistatus_failure(
    start_server: ServerFactory,
) -> None:
    """Issue 14, item 3: slow connections beyond the cap cannot take the process's descriptors."""
    stuck = asyncio.Event()
    entered = asyncio.Semaphore(0)

    async def hold(session: AgiSession) -> None:
        entered.release()
        await stuck.wait()

    server = await start_server({"r": hold}, max_sessions=2)
    held = [asyncio.create_task(FakeAsterisk("127.0.0.1", server.port).agi("r")) for _ in range(2)]
    for _ in held:
        await asyncio.wait_for(entered.acquire(), 10)
    run = await asyncio.wait_for(FakeAsterisk("127.0.0.1", server.port).agi("r"), 10)
    assert (run.status, run.failure_line) == ("FAILURE", "failure")
    assert server.stats["over_capacity"] == 1
    stuck.set()
    await asyncio.gather(*held)
    again = await asyncio.wait_for(FakeAsterisk("127.0.0.1", server.port).agi("r"), 10)
    assert again.status == "SUCCESS"  # room again once they ended
