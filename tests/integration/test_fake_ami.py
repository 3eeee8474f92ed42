"""The fake AMI, proved on raw sockets with hand-written bytes: what a client of ours will meet.

Every shape asserted here is one the fake ports from Asterisk 22's source (see its docstring); these
tests hold the fake to them, so a client test that passes against the fake means something.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from dialguard.clock import fixed_clock
from tests.fakes.asterisk_ami import (
    CallScript,
    FakeAmi,
    Framer,
    Message,
    ReceivedAction,
    get_perm,
    parse_callerid,
    strings_to_mask,
)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
CALL_ID = "0b6f3c1e-8d7a-4d3e-9a51-2f0c7b9e4a10"

# uvloop's clock (libuv's) counts whole milliseconds, read at the start of a loop iteration: a 50 ms
# wait measured with loop.time() may show a millisecond or two short. Waiting not at all shows 0.
LOOP_CLOCK_SLACK = 0.002


class Msg:
    """One message as received: its lines in order (a key may repeat, as ChanVariable does)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.pairs = [tuple(line.split(": ", 1)) for line in raw.decode().split("\r\n") if line]

    def __getitem__(self, key: str) -> str:
        for k, *v in self.pairs:
            if k == key:
                return v[0] if v else ""
        raise KeyError(key)

    def get(self, key: str) -> str | None:
        try:
            return self[key]
        except KeyError:
            return None

    def all(self, key: str) -> list[str]:
        return [v[0] for k, *v in self.pairs if k == key and v]

    @property
    def name(self) -> str:
        return self.get("Event") or self.get("Response") or "?"

    def __repr__(self) -> str:
        return f"Msg({self.raw!r})"


class Peer:
    """A hand-written AMI client: lines out, messages in, nothing of ours in between."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, ami: FakeAmi, *, rcvbuf: int | None = None) -> Peer:
        if rcvbuf is None:
            return cls(*await asyncio.open_connection(ami.host, ami.port))
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (ami.host, ami.port))
        return cls(*await asyncio.open_connection(sock=sock))

    def send(self, *lines: str) -> None:
        self.writer.write(("".join(f"{line}\r\n" for line in lines) + "\r\n").encode())

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def banner(self, within: float = 2.0) -> bytes:
        async with asyncio.timeout(within):
            return await self.reader.readline()

    async def raw(self, within: float = 2.0) -> bytes:
        async with asyncio.timeout(within):
            return await self.reader.readuntil(b"\r\n\r\n")

    async def message(self, within: float = 2.0) -> Msg:
        return Msg(await self.raw(within))

    async def event(self, name: str, within: float = 2.0) -> Msg:
        """The next ``name`` event, skipping others."""
        async with asyncio.timeout(within):
            while (msg := await self.message(within)).get("Event") != name:
                pass
        return msg

    async def events_until(self, name: str, within: float = 2.0) -> list[Msg]:
        """Every message up to and including the next ``name`` event."""
        seen: list[Msg] = []
        async with asyncio.timeout(within):
            while True:
                seen.append(await self.message(within))
                if seen[-1].get("Event") == name:
                    return seen

    async def eof(self, within: float = 2.0) -> bytes:
        """What came before the fake closed the connection (fails if it stays open)."""
        async with asyncio.timeout(within):
            return await self.reader.read()

    async def nothing(self, within: float = 0.2) -> None:
        """Nothing arrives, and the link stays open, for ``within`` seconds."""
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(within):
                await self.reader.read(1)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def logged_in(ami: FakeAmi, *extra: str, booted: bool = True) -> Peer:
    """A peer past the banner, the Login answer and (when its classes include system) FullyBooted."""
    peer = await Peer.connect(ami)
    assert await peer.banner() == BANNER
    peer.send("Action: Login", "Username: dialguard", "Secret: s3cret", *extra)
    assert (await peer.message())["Message"] == "Authentication accepted"
    if booted:
        assert (await peer.message())["Event"] == "FullyBooted"
    return peer


def originate(action_id: str = "o1", *extra: str, call_id: str = CALL_ID) -> tuple[str, ...]:
    return (
        "Action: Originate",
        f"ActionID: {action_id}",
        "Channel: PJSIP/+15551230001@trunk",
        "Context: dialguard-originate",
        "Exten: s",
        "Priority: 1",
        'CallerID: "Dialguard" <+15550000000>',
        "Async: true",
        f"ChannelId: {call_id}",
        f"Variable: DIALGUARD_CALL_ID={call_id}",
        "Variable: DIALGUARD_LANG=en",
        *extra,
    )


def names(messages: Sequence[Msg]) -> list[str]:
    return [m.name for m in messages]


# --- the sans-IO parts ---------------------------------------------------------------------------


def test_framer_ends_lines_at_crlf_or_lf_and_messages_at_an_empty_line() -> None:
    framer = Framer()
    framer.feed(b"Action: Ping\nActionID: 7\r\n")
    assert framer.next() is None
    framer.feed(b"\r\nAction: Logoff\r\n\r")
    first = framer.next()
    assert first is not None and first.message.lines == ("Action: Ping", "ActionID: 7")
    assert framer.next() is None  # "\r" alone is not an end of line yet
    framer.feed(b"\n")
    second = framer.next()
    assert second is not None and second.message.lines == ("Action: Logoff",)


def test_a_line_of_1022_bytes_fits_and_one_of_1023_does_not() -> None:
    """inbuf holds 1024 bytes: 1022 + CRLF fit; 1023 + CR fill it with no LF, so it is dropped but its
    last byte, and that CR with the LF that follows makes the empty line that ends the message."""
    framer = Framer()
    framer.feed(b"Action: Ping\r\nX-Pad: " + b"a" * (1022 - 7) + b"\r\n\r\n")
    ok = framer.next()
    assert ok is not None and ok.error is None and len(ok.message.lines[1]) == 1022
    framer.feed(b"Action: Ping\r\nX-Pad: " + b"a" * (1023 - 7) + b"\r\nActionID: 9\r\n\r\n")
    cut = framer.next()
    assert cut is not None and cut.error == "Failed to parse message: line too long"
    assert cut.message.lines == ("Action: Ping",)
    rest = framer.next()  # what followed the cut is a message of its own
    assert rest is not None and rest.message.lines == ("ActionID: 9",) and rest.error is None


def test_header_lookup_is_manager_c_s() -> None:
    m = Message(
        ("action: Ping", "ActionID:   x y ", "Action :Nope", 'Variable: A=1,B="2,3"', "variable: C=4")
    )
    assert m.get("Action") == "Ping"  # any case
    assert m.get("ActionID") == "x y "  # leading blanks skipped, trailing kept
    assert m.get("Channel") == ""
    assert m.variables() == [("C", "4"), ("B", "2,3"), ("A", "1")]  # ORDER_REVERSE, quotes honoured


def test_classes_parse_as_manager_conf_does() -> None:
    assert get_perm("system,call") == 0b11
    assert get_perm("sys,call") == 0b11  # ast_instring: a segment but the last matches as a prefix
    assert get_perm("call,sys") == 0b10  # the last must match whole
    assert strings_to_mask("on") & get_perm("dialplan")
    assert strings_to_mask("off") == 0
    assert strings_to_mask("3") == 3
    assert strings_to_mask("") == -1


@pytest.mark.parametrize(
    ("text", "name", "number"),
    [
        ('"Dialguard" <+1 (555) 000-0000>', "Dialguard", "+15550000000"),
        ("+15550000000", None, "+15550000000"),
        ("Sales", "Sales", None),
        ('"12345"', "12345", None),  # quoted: a name even if it looks like a number
        ("", None, None),
    ],
)
def test_callerid_parse(text: str, name: str | None, number: str | None) -> None:
    assert parse_callerid(text) == (name, number)


# --- connect and log in ----------------------------------------------------------------------------


async def test_banner_then_login_then_fully_booted() -> None:
    async with FakeAmi() as ami:
        peer = await Peer.connect(ami)
        assert await peer.banner() == BANNER
        peer.send("Action: Login", "ActionID: 1", "Username: dialguard", "Secret: s3cret")
        assert (
            await peer.raw()
            == b"Response: Success\r\nActionID: 1\r\nMessage: Authentication accepted\r\n\r\n"
        )
        booted = await peer.message()
        assert booted.pairs[:2] == [("Event", "FullyBooted"), ("Privilege", "system,all")]
        assert [k for k, *_ in booted.pairs] == ["Event", "Privilege", "Uptime", "LastReload", "Status"]
        assert booted["Status"] == "Fully Booted"
        assert ami.logged_in == 1
        await peer.close()


@pytest.mark.parametrize(
    ("read", "events"), [("call,dtmf", "on"), ("system,call", "off"), ("system,call", "call")]
)
async def test_no_fully_booted_without_system_events(read: str, events: str) -> None:
    async with FakeAmi(read=read) as ami:
        peer = await logged_in(ami, f"Events: {events}", booted=False)
        peer.send("Action: Ping", "ActionID: p")
        assert (await peer.message())["Ping"] == "Pong"  # the very next message: no FullyBooted before it
        await peer.close()


async def test_a_failed_login_waits_answers_and_hangs_up() -> None:
    async with FakeAmi(auth_fail_delay=0.05) as ami:
        loop = asyncio.get_running_loop()
        peer = await Peer.connect(ami)
        await peer.banner()
        started = loop.time()
        peer.send("Action: Login", "ActionID: 1", "Username: dialguard", "Secret: wrong")
        assert await peer.eof() == b"Response: Error\r\nActionID: 1\r\nMessage: Authentication failed\r\n\r\n"
        assert loop.time() - started >= 0.05 - LOOP_CLOCK_SLACK


async def test_refused_logins_fail_until_allowed_again() -> None:
    async with FakeAmi(auth_fail_delay=0) as ami:
        ami.refuse_logins(True)
        peer = await Peer.connect(ami)
        await peer.banner()
        peer.send("Action: Login", "Username: DialGuard", "Secret: s3cret")
        assert b"Authentication failed" in await peer.eof()
        ami.refuse_logins(False)
        (await logged_in(ami)).writer.close()  # the user name matches in any case


async def test_md5_challenge_login() -> None:
    async with FakeAmi() as ami:
        peer = await Peer.connect(ami)
        await peer.banner()
        peer.send("Action: Challenge", "ActionID: c", "AuthType: MD5")
        challenge = await peer.message()
        assert challenge.pairs[:2] == [("Response", "Success"), ("ActionID", "c")]
        key = hashlib.md5((challenge["Challenge"] + "s3cret").encode()).hexdigest()
        peer.send("Action: Login", "AuthType: MD5", "Username: dialguard", f"Key: {key}", "Events: off")
        assert (await peer.message())["Message"] == "Authentication accepted"
        await peer.close()


async def test_before_login_only_login_logoff_and_challenge_run() -> None:
    async with FakeAmi() as ami:
        peer = await Peer.connect(ami)
        await peer.banner()
        for action in ("Ping", "Originate", "NoSuchThing"):
            peer.send(f"Action: {action}", "ActionID: a")
            assert await peer.raw() == b"Response: Error\r\nActionID: a\r\nMessage: Permission denied\r\n\r\n"
        peer.send("Action: Logoff")
        assert await peer.eof() == b"Response: Goodbye\r\nMessage: Thanks for all the fish.\r\n\r\n"


async def test_a_session_that_does_not_log_in_in_time_is_closed_silently() -> None:
    async with FakeAmi(auth_timeout=0.05) as ami:
        peer = await Peer.connect(ami)
        assert await peer.banner() == BANNER
        assert await peer.eof() == b""


async def test_unauthenticated_sessions_beyond_the_limit_are_closed_before_the_banner() -> None:
    async with FakeAmi(auth_limit=1) as ami:
        first = await Peer.connect(ami)
        assert await first.banner() == BANNER
        second = await Peer.connect(ami)
        assert await second.eof() == b""
        await first.close()


async def test_login_twice() -> None:
    async with FakeAmi() as ami:
        peer = await logged_in(ami)
        peer.send("Action: Login", "Username: x", "Secret: y")
        assert (await peer.message())["Message"] == "Already authenticated"
        await peer.close()


async def test_fully_booted_arrives_when_asterisk_finishes_booting() -> None:
    async with FakeAmi(fully_booted=False) as ami:
        peer = await logged_in(ami, booted=False)
        await ami.finish_booting()
        booted = await peer.message()
        assert (booted["Event"], booted["Privilege"], booted["Status"]) == (
            "FullyBooted",
            "system,all",
            "Fully Booted",
        )
        await peer.close()


# --- actions -----------------------------------------------------------------------------------


async def test_ping_answers_pong_with_the_clock_s_timestamp() -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    async with FakeAmi(clock=fixed_clock(at)) as ami:
        peer = await logged_in(ami)
        peer.send("Action: Ping", "ActionID: 42")
        stamp = f"{int(at.timestamp())}.678901"
        assert (
            await peer.raw()
            == f"Response: Success\r\nActionID: 42\r\nPing: Pong\r\nTimestamp: {stamp}\r\n\r\n".encode()
        )
        peer.send("Action: Ping")  # no ActionID: none echoed
        assert (await peer.message()).pairs[:2] == [("Response", "Success"), ("Ping", "Pong")]
        await peer.close()


async def test_unknown_missing_and_forbidden_actions() -> None:
    async with FakeAmi(write="call") as ami:
        peer = await logged_in(ami)
        peer.send("Action: Frobnicate", "ActionID: u")
        assert await peer.raw() == (
            b"Response: Error\r\nActionID: u\r\nMessage: Invalid/unknown command: Frobnicate. "
            b"Use Action: ListCommands to show available commands.\r\n\r\n"
        )
        peer.send("ActionID: m")
        assert (await peer.message())["Message"] == "Missing action in request"
        peer.send_raw(b"\r\n")  # an empty line alone is an empty message
        assert await peer.raw() == b"Response: Error\r\nMessage: Missing action in request\r\n\r\n"
        peer.send("Action Ping", "ActionID: n")  # no colon: not a header
        assert (await peer.message())["Message"] == "Missing action in request"
        peer.send("Action : Ping")  # a blank before the colon: not the Action header either
        assert (await peer.message())["Message"] == "Missing action in request"
        peer.send(*originate("w"))  # this user may not originate
        assert await peer.raw() == b"Response: Error\r\nActionID: w\r\nMessage: Permission denied\r\n\r\n"
        peer.send("action: ping", "actionid: lower")  # names in any case
        assert (await peer.message()).pairs[:2] == [("Response", "Success"), ("ActionID", "lower")]
        await peer.close()


async def test_malformed_input_gets_the_parse_errors_and_the_session_goes_on() -> None:
    async with FakeAmi() as ami:
        peer = await logged_in(ami)
        peer.send("Action: Ping", "ActionID: long", "X-Pad: " + "a" * 2000)
        assert await peer.raw() == (
            b"Response: Error\r\nActionID: long\r\nMessage: Failed to parse message: line too long\r\n\r\n"
        )
        peer.send("Action: Ping", "ActionID: many", *(f"X-{i}: {i}" for i in range(130)))
        assert (await peer.message())["Message"] == "Too many lines in message or allocation failure"
        peer.send_raw(b"Action: Ping\nActionID: lf\n\n")  # bare LFs end lines too
        assert (await peer.message())["ActionID"] == "lf"
        await peer.close()


async def test_logoff_says_goodbye_and_closes() -> None:
    async with FakeAmi() as ami:
        peer = await logged_in(ami)
        peer.send("Action: Logoff", "ActionID: bye")
        assert (
            await peer.eof()
            == b"Response: Goodbye\r\nActionID: bye\r\nMessage: Thanks for all the fish.\r\n\r\n"
        )
        await ami.until(lambda: ami.logged_in == 0)


async def test_events_action_switches_events_off_and_on() -> None:
    async with FakeAmi() as ami:
        peer = await logged_in(ami)
        peer.send("Action: Events", "ActionID: e", "EventMask: off")
        assert await peer.raw() == b"Response: Success\r\nActionID: e\r\nEvents: Off\r\n\r\n"
        await ami.emit({"Event": "UserEvent", "UserEvent": "lost"}, category="user")
        peer.send("Action: Events", "EventMask: on")
        assert (await peer.message())["Events"] == "On"
        await ami.emit({"Event": "UserEvent", "UserEvent": "seen"}, category="user")
        assert (await peer.message())["UserEvent"] == "seen"
        await peer.close()


async def test_userevent_action() -> None:
    async with FakeAmi(write="user") as ami:
        peer = await logged_in(ami)
        peer.send("Action: UserEvent", "ActionID: ue", "UserEvent: Dialguard", "Detail: x")
        assert (await peer.message())["Message"] == "Event Sent"
        assert await peer.raw() == (
            b"Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: Dialguard\r\n"
            b"ActionID: ue\r\nDetail: x\r\n\r\n"  # the other headers as sent, ActionID among them
        )
        await peer.close()


async def test_setvar_and_getvar() -> None:
    async with FakeAmi(read="dialplan") as ami:
        peer = await logged_in(ami, booted=False)
        peer.send("Action: Setvar", "ActionID: s", "Variable: GLOBAL_X", "Value: 1")
        # VarSet is queued for the session, so it comes after the answer
        assert (await peer.message())["Message"] == "Variable Set"
        varset = await peer.message()
        assert varset.pairs[2:] == [
            ("Channel", "none"),
            ("Uniqueid", "none"),
            ("Variable", "GLOBAL_X"),
            ("Value", "1"),
        ]
        peer.send("Action: Getvar", "ActionID: g", "Variable: GLOBAL_X")
        assert (
            await peer.raw() == b"Response: Success\r\nActionID: g\r\nVariable: GLOBAL_X\r\nValue: 1\r\n\r\n"
        )
        peer.send("Action: Getvar", "Channel: PJSIP/nobody-00000001", "Variable: X")
        assert (await peer.message())["Message"] == "No such channel"
        peer.send("Action: Getvar")
        assert (await peer.message())["Message"] == "No variable specified"
        await peer.close()


# --- Originate -----------------------------------------------------------------------------------


async def test_async_originate_answered_with_dtmf_and_an_agent() -> None:
    script = CallScript(ring_ms=5, dtmf="19", agent_after_ms=5, talk_ms=5)
    async with FakeAmi(channelvars=("DIALGUARD_CALL_ID",), read="all", on_originate=lambda a: script) as ami:
        peer = await logged_in(ami)
        peer.send(*originate())
        assert (
            await peer.raw()
            == b"Response: Success\r\nActionID: o1\r\nMessage: Originate successfully queued\r\n\r\n"
        )
        seen = await peer.events_until("Hangup")
        while len([m for m in seen if m.name == "Hangup"]) < 2:
            seen += await peer.events_until("Hangup")
        assert names(seen) == [
            "Newchannel", "VarSet", "VarSet", "NewCallerid", "NewConnectedLine", "DialBegin",
            "Newstate", "DialState", "Newstate", "DialEnd", "OriginateResponse",
            "DTMFBegin", "DTMFEnd", "DTMFBegin", "DTMFEnd",
            "Newchannel", "DialBegin", "Newstate", "DialState", "Newstate", "DialEnd",
            "BridgeEnter", "BridgeEnter",
            "HangupRequest", "BridgeLeave", "Hangup", "BridgeLeave", "Hangup",
        ]  # fmt: skip
        new, var_lang, var_id = seen[0], seen[1], seen[2]
        name = new["Channel"]
        assert name.startswith("PJSIP/trunk-") and len(name) == len("PJSIP/trunk-") + 8
        assert (new["Privilege"], new["ChannelState"], new["ChannelStateDesc"]) == ("call,all", "0", "Down")
        assert new["Uniqueid"] == new["Linkedid"] == CALL_ID
        assert new.all("ChanVariable") == ["DIALGUARD_CALL_ID="]  # not set yet when the channel is made
        assert (var_lang["Variable"], var_id["Variable"]) == (
            "DIALGUARD_LANG",
            "DIALGUARD_CALL_ID",
        )  # last first
        assert var_id["Privilege"] == "dialplan,all" and var_id.all("ChanVariable") == [
            f"DIALGUARD_CALL_ID={CALL_ID}"
        ]
        assert seen[5]["DestChannel"] == name and seen[5]["DialString"] == "+15551230001@trunk"
        assert seen[5].get("Channel") is None  # the originate dial has no caller
        assert (seen[8]["ChannelStateDesc"], seen[9]["DialStatus"]) == ("Up", "ANSWER")

        response = seen[10]
        assert response.pairs == [
            ("Event", "OriginateResponse"), ("Privilege", "call,all"), ("ActionID", "o1"),
            ("Response", "Success"), ("Channel", name), ("Context", "dialguard-originate"), ("Exten", "s"),
            ("Reason", "4"), ("Uniqueid", CALL_ID),
            ("CallerIDNum", "+15550000000"), ("CallerIDName", "Dialguard"),
            (f"ChanVariable({name})", f"DIALGUARD_CALL_ID={CALL_ID}"),
        ]  # fmt: skip

        digits = [(m.name, m["Digit"], m["Privilege"]) for m in seen[11:15]]
        assert digits == [(e, d, "dtmf,all") for d in "19" for e in ("DTMFBegin", "DTMFEnd")]
        assert seen[12]["Direction"] == "Received" and seen[12]["Context"] == "dialguard-originate"

        agent = seen[15]
        assert agent["Channel"].startswith("PJSIP/agent-") and agent["Linkedid"] == CALL_ID
        assert agent["Uniqueid"] != CALL_ID
        dial = seen[16]
        assert (dial["Channel"], dial["DestChannel"], dial["DialString"]) == (name, agent["Channel"], "agent")
        enters = seen[21:23]
        assert [m["Channel"] for m in enters] == [name, agent["Channel"]]
        assert [m["BridgeNumChannels"] for m in enters] == ["1", "2"]
        assert enters[0]["BridgeUniqueid"] == enters[1]["BridgeUniqueid"]
        hangups = [m for m in seen if m.name == "Hangup"]
        assert [(m["Channel"], m["Cause"], m["Cause-txt"]) for m in hangups] == [
            (name, "16", "Normal Clearing"),
            (agent["Channel"], "16", "Normal Clearing"),
        ]
        assert ami.channels == []
        assert [a.get("ChannelId") for a in ami.originated()] == [CALL_ID]
        await peer.close()


@pytest.mark.parametrize(
    ("script", "reason", "status", "cause"),
    [
        (CallScript(outcome="busy", tech_cause=486), "5", "BUSY", "17"),
        (CallScript(outcome="congestion"), "8", "CONGESTION", "34"),
        (CallScript(outcome="rejected", reject_cause=21), "0", "NOANSWER", "21"),
        (CallScript(outcome="no_answer"), "3", None, "19"),
        (CallScript(outcome="answer", ring_ms=10_000), "3", None, "19"),  # rings past the Timeout
    ],
)
async def test_async_originate_that_fails(
    script: CallScript, reason: str, status: str | None, cause: str
) -> None:
    async with FakeAmi(channelvars=("DIALGUARD_CALL_ID",), on_originate=lambda a: script) as ami:
        peer = await logged_in(ami)
        peer.send(*originate("f", "Timeout: 30"))
        assert (await peer.message())["Message"] == "Originate successfully queued"
        seen = await peer.events_until("OriginateResponse")
        hangup = next(m for m in seen if m.name == "Hangup")
        assert (hangup["Cause"], hangup["Cause-txt"]) == (
            cause,
            {
                "17": "User busy",
                "34": "Circuit/channel congestion",
                "21": "Call Rejected",
                "19": "User alerting, no answer",
            }[cause],
        )
        assert hangup.get("TechCause") == ("486" if script.tech_cause else None)
        dial_ends = [m["DialStatus"] for m in seen if m.name == "DialEnd"]
        assert dial_ends == ([status] if status else [])
        response = seen[-1]
        assert response["Response"] == "Failure" and response["Reason"] == reason
        # The channel is gone: the requested dial string and the ChannelId stand in for it.
        assert response["Channel"] == "PJSIP/+15551230001@trunk"
        assert response["Uniqueid"] == CALL_ID
        assert not any(k.startswith("ChanVariable") for k, *_ in response.pairs)
        await peer.close()


async def test_unavailable_channel_and_a_uniqueid_in_use() -> None:
    scripts = iter(
        [CallScript(outcome="unavailable"), CallScript(talk_ms=10_000, agent_after_ms=None), CallScript()]
    )
    async with FakeAmi(on_originate=lambda a: next(scripts)) as ami:
        peer = await logged_in(ami)
        peer.send(*originate("u1"))
        assert (await peer.message())["Message"] == "Originate successfully queued"
        response = await peer.message()  # nothing before it: no channel was ever made
        assert (response["Event"], response["Response"], response["Reason"]) == (
            "OriginateResponse",
            "Failure",
            "0",
        )
        peer.send(*originate("u2"))  # the same ChannelId, now up for a while
        await peer.event("OriginateResponse")
        peer.send(*originate("u3"))  # again, while the first is still up: refused
        assert (await peer.message())["Message"] == "Originate successfully queued"
        refused = await peer.event("OriginateResponse")
        assert (refused["ActionID"], refused["Response"], refused["Reason"]) == ("u3", "Failure", "0")
        await peer.close()


async def test_sync_originate_answers_after_the_callee_does_and_events_follow_the_answer() -> None:
    async with FakeAmi(on_originate=lambda a: CallScript(ring_ms=50, agent_after_ms=None)) as ami:
        loop = asyncio.get_running_loop()
        peer = await logged_in(ami)
        sent_at = loop.time()
        peer.send(*(line for line in originate("s") if line != "Async: true"))
        first = await peer.message()
        assert loop.time() - sent_at >= 0.05 - LOOP_CLOCK_SLACK  # the answer waited for the callee
        assert (
            first.raw == b"Response: Success\r\nActionID: s\r\nMessage: Originate successfully queued\r\n\r\n"
        )
        # What happened meanwhile was queued for this session and comes after the answer.
        assert names(await peer.events_until("Hangup")) == [
            "Newchannel", "NewCallerid", "NewConnectedLine", "DialBegin", "Newstate", "DialState",
            "Newstate", "DialEnd", "HangupRequest", "Hangup",
        ]  # fmt: skip
        await peer.close()


async def test_sync_originate_that_fails_and_the_argument_errors() -> None:
    async with FakeAmi(on_originate=lambda a: CallScript(outcome="busy"), extensions={("ctx", "100")}) as ami:
        peer = await logged_in(ami, "Events: off", booted=False)

        async def answer(*lines: str) -> bytes:
            peer.send("Action: Originate", "ActionID: x", *lines)
            return await peer.raw()

        assert await answer("Channel: PJSIP/1@t", "Context: ctx", "Exten: 100", "Priority: 1") == (
            b"Response: Error\r\nActionID: x\r\nMessage: Originate failed\r\n\r\n"
        )
        assert b"Message: Channel not specified\r\n" in await answer("Context: ctx")
        assert b"Message: Invalid channel\r\n" in await answer("Channel: nonsense")
        assert b"Message: Invalid timeout\r\n" in await answer("Channel: PJSIP/1@t", "Timeout: soon")
        assert b"Message: Invalid priority\r\n" in await answer("Channel: PJSIP/1@t", "Priority: start")
        assert b"Message: Extension does not exist.\r\n" in await answer(
            "Channel: PJSIP/1@t", "Context: ctx", "Exten: 999", "Priority: 1", "Async: yes"
        )
        assert b"Message: Originate with 'Exten' requires 'Context' and 'Priority'\r\n" in await answer(
            "Channel: PJSIP/1@t", "Context: ctx", "Exten: 100"
        )
        # astman_send_error_va's format ends in "\n": the message carries it.
        assert await answer("Channel: PJSIP/1@t", f"ChannelId: {'u' * 150}") == (
            b"Response: Error\r\nActionID: x\r\nMessage: Uniqueid length exceeds maximum of 149\n\r\n\r\n"
        )
        await peer.close()


async def test_hangup_action_ends_the_call_with_its_cause() -> None:
    async with FakeAmi(on_originate=lambda a: CallScript(agent_after_ms=None, talk_ms=60_000)) as ami:
        peer = await logged_in(ami)
        peer.send(*originate())
        up = await peer.event("OriginateResponse")
        peer.send(
            "Action: Getvar",
            "ActionID: v",
            f"Channel: {up['Channel'].upper()}",
            "Variable: DIALGUARD_CALL_ID",
        )
        assert (await peer.raw()).endswith(
            f"Variable: DIALGUARD_CALL_ID\r\nValue: {CALL_ID}\r\n\r\n".encode()
        )
        peer.send("Action: Hangup", "ActionID: h", f"Channel: {CALL_ID}", "Cause: 21")
        assert (
            await peer.message()
        ).raw == b"Response: Success\r\nActionID: h\r\nMessage: Channel Hungup\r\n\r\n"
        hangup = await peer.event("Hangup")
        assert (hangup["Uniqueid"], hangup["Cause"], hangup["Cause-txt"]) == (CALL_ID, "21", "Call Rejected")
        peer.send("Action: Hangup", f"Channel: {CALL_ID}")
        assert (await peer.message())["Message"] == "No such channel"
        peer.send("Action: Hangup")
        assert (await peer.message())["Message"] == "No channel specified"
        await peer.close()


async def test_hangup_while_ringing_fails_the_originate() -> None:
    async with FakeAmi(on_originate=lambda a: CallScript(outcome="no_answer")) as ami:
        peer = await logged_in(ami)
        peer.send(*originate())
        ringing = await peer.event("DialState")
        peer.send("Action: Hangup", "Channel: /^PJSIP\\/trunk-/")
        listed = await peer.message()
        assert (listed["EventList"], listed["Message"]) == ("start", "Channels hung up will follow")
        hung = await peer.message()
        assert hung.pairs == [("Event", "ChannelHungup"), ("Channel", ringing["DestChannel"])]
        done = await peer.message()
        assert (done["Event"], done["ListItems"]) == ("ChannelsHungupListComplete", "1")
        response = await peer.event("OriginateResponse")
        assert (response["Response"], response["Reason"]) == ("Failure", "0")
        await peer.close()


# --- test hooks and faults ------------------------------------------------------------------------


async def test_actions_are_recorded_with_their_connection() -> None:
    async with FakeAmi() as ami:
        one = await logged_in(ami)
        two = await logged_in(ami)
        two.send("Action: Ping", "ActionID: on-two")
        await two.message()
        assert [(a.name, a.connection) for a in ami.actions] == [("Login", 1), ("Login", 2), ("Ping", 2)]
        assert ami.actions[2].fields == {"Action": "Ping", "ActionID": "on-two"}
        assert isinstance(ami.actions[0], ReceivedAction) and ami.actions[0].get("username") == "dialguard"
        await one.close()
        await two.close()


async def test_emit_reaches_sessions_that_take_the_event_only() -> None:
    async with FakeAmi() as ami:
        on = await logged_in(ami)
        off = await logged_in(ami, "Events: off", booted=False)
        stranger = await Peer.connect(ami)
        await stranger.banner()
        await ami.emit([("Event", "Newstate"), ("Channel", "PJSIP/x-00000001")])
        assert (
            await on.raw() == b"Event: Newstate\r\nPrivilege: call,all\r\nChannel: PJSIP/x-00000001\r\n\r\n"
        )
        await off.nothing()
        await stranger.nothing()
        for peer in (on, off, stranger):
            await peer.close()


async def test_drop_connections_closes_every_link_and_new_ones_work() -> None:
    async with FakeAmi() as ami:
        peer = await logged_in(ami)
        ami.drop_connections()
        assert await peer.eof() == b""
        again = await logged_in(ami)
        await again.close()


async def test_silence_makes_a_half_open_link() -> None:
    async with FakeAmi() as ami:
        peer = await logged_in(ami)
        ami.silence()
        peer.send("Action: Ping", "ActionID: lost")
        await peer.nothing()  # no answer, and no close either
        late = await Peer.connect(ami)
        await late.nothing()  # silenced too: not even the banner
        ami.unsilence()
        await ami.emit({"Event": "UserEvent", "UserEvent": "x"}, category="user")
        await peer.nothing()  # the silenced links stay silent
        fresh = await logged_in(ami)
        fresh.send("Action: Ping", "ActionID: ok")
        assert (await fresh.message())["ActionID"] == "ok"
        assert [a.fields.get("ActionID") for a in ami.actions if a.name == "Ping"] == ["ok"]
        for p in (peer, late, fresh):
            await p.close()


@pytest.mark.parametrize("perform", [True, False])
async def test_drop_after_originate_cuts_the_link_before_the_answer(perform: bool) -> None:
    async with FakeAmi(on_originate=lambda a: CallScript(agent_after_ms=None)) as ami:
        watcher = await logged_in(ami)
        peer = await logged_in(ami)
        ami.drop_after("originate", perform=perform)
        peer.send(*originate())
        assert await peer.eof() == b""  # no Response at all
        assert len(ami.originated()) == 1
        if perform:  # Asterisk placed the call all the same: the other session sees it
            response = await watcher.event("OriginateResponse")
            assert (response["ActionID"], response["Response"]) == ("o1", "Success")
        else:
            await watcher.nothing()
            assert ami.calls == []
        again = await logged_in(ami)  # the rule fires once
        again.send(*originate("o2"))
        assert (await again.message())["Message"] == "Originate successfully queued"
        for p in (watcher, again):
            await p.close()


async def test_server_down_refuses_connections_and_comes_back_on_the_same_port() -> None:
    async with FakeAmi() as ami:
        peer = await logged_in(ami)
        port = ami.port
        await ami.server_down()
        assert await peer.eof() == b""
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(ami.host, port)
        await ami.server_up()
        assert ami.port == port
        again = await logged_in(ami)
        await again.close()


async def test_a_client_that_does_not_read_is_dropped_after_the_write_timeout() -> None:
    """manager.c:1791 send_string: a write stalled past writetimeout ends the session."""
    async with FakeAmi(write_timeout=0.1) as ami:
        reader = await logged_in(ami)
        stalled = await Peer.connect(ami, rcvbuf=4096)
        await stalled.banner()
        stalled.send("Action: Login", "Username: dialguard", "Secret: s3cret")
        await ami.until(lambda: ami.logged_in == 2)
        report = await asyncio.wait_for(ami.storm(50_000, 0.4), timeout=30)
        received = 0
        async with asyncio.timeout(30):
            while received < report.events // 2:  # every other event is a VarSet, not in its classes
                assert (await reader.message())["Event"] == "Newstate"
                received += 1
        data = await stalled.eof(within=10)  # it got some, then the fake hung up on it
        assert 0 < data.count(b"Event: Newstate") < report.events
        assert ami.logged_in == 1
        await reader.close()


async def test_the_storm_waits_for_a_slow_client_instead_of_buffering() -> None:
    async with FakeAmi(write_timeout=None, read="all") as ami:
        peer = await logged_in(ami)
        storm = asyncio.create_task(ami.storm(50_000, 0.5))
        await asyncio.sleep(1.0)  # the client reads nothing for a while
        assert not storm.done()  # held back: far more than the socket buffers can hold is still to come
        assert ami.unsent_bytes < 4 * 2**20  # 25,000 events are ~17 MB: the fake did not take them all in
        kinds: dict[str, int] = {}
        async with asyncio.timeout(60):
            while sum(kinds.values()) < 25_000:
                msg = await peer.message()
                kinds[msg.name] = kinds.get(msg.name, 0) + 1
        report = await storm
        assert report.events == 25_000 and kinds == {"Newstate": 12_500, "VarSet": 12_500}
        assert report.seconds >= 1.0
        await peer.close()


@pytest.mark.slow
async def test_a_storm_of_ten_thousand_events_a_second_for_ten_seconds() -> None:
    async with FakeAmi(channelvars=("DIALGUARD_CALL_ID",), read="all") as ami:
        peer = await logged_in(ami)
        storm = asyncio.create_task(ami.storm(10_000, 10))
        received = 0
        async with asyncio.timeout(120):
            while received < 100_000:
                msg = await peer.message(within=10)
                assert msg.all("ChanVariable")[0].startswith("DIALGUARD_CALL_ID=")
                received += 1
        report = await storm
        assert report.events == 100_000
        assert report.seconds < 30
        await peer.close()
