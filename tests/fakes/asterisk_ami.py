"""A fake Asterisk 22 Manager Interface (AMI) server, for tests of our AMI client.

Faithful to the source (asterisk/asterisk, branch 22, commit 69535d48) where a client can tell the
difference; each spot followed is quoted as ``file:line`` next to the code that ports it:

- ``session_do`` (manager.c:7491) sends ``Asterisk Call Manager/11.0.0\\r\\n`` (``AMI_VERSION``,
  include/asterisk/manager.h:57) and then reads messages: ``Key: Value`` lines ended by an empty line.
  ``get_input`` (manager.c:7221) ends a line at ``\\r\\n`` or a lone ``\\n``, holds 1024 bytes, and past
  that drops the buffer but its last byte and answers the message "Failed to parse message: line too long";
  ``do_message`` keeps 128 lines a message (``AST_MAX_MANHEADERS``) and answers more with "Too many lines
  in message or allocation failure". An empty line alone is a message with no ``Action``.
- ``process_message`` (manager.c:7093): "Missing action in request"; before Login every action but
  Login, Logoff and Challenge gets "Permission denied"; an action the user's ``write`` classes do not
  cover, too; an unknown one "Invalid/unknown command: X. Use Action: ListCommands to show available
  commands."
- ``astman_send_response_full`` (manager.c:1889): ``Response:``, ``ActionID:`` (only when the action had
  one), ``Message:``, empty line. ``action_ping``: ``Ping: Pong`` and ``Timestamp: sec.usec``.
- ``action_login`` (manager.c:3407): a failed login sleeps 1 s, answers "Authentication failed" and ends
  the session; a good one answers "Authentication accepted" and, when the session's events include
  ``system``, writes ``FullyBooted`` right after. ``action_logoff``: ``Response: Goodbye`` /
  "Thanks for all the fish." and the session ends. ``authtimeout`` (30 s) ends a session that has not
  logged in, silently. ``send_string`` (manager.c:1791): a write that makes no progress for the user's
  ``writetimeout`` (100 ms) ends the session: Asterisk drops a client that does not read.
- Events (``__manager_event_sessions_va``, manager.c:7624): ``Event:``, ``Privilege: <classes>,all``,
  the body, an empty line; queued per session and written only between actions, so the events a
  synchronous Originate causes come after its response.
- Channel events carry the snapshot (manager_channels.c:539) with one ``ChanVariable: NAME=value`` line
  per ``channelvars`` entry, set or not (channel.c:8012 assigns ``""``); Originate's variables are set
  after the channel exists, so ``Newchannel`` shows them empty and ``VarSet`` shows them set.
- Originate (manager.c:5279 ``action_originate``, manager.c:4443 ``fast_originate``, pbx.c:6002
  ``pbx_outgoing_attempt``, pbx.c:5963 ``pbx_dial_reason``, dial.c): see :class:`CallScript`.

What it does not model: the dialplan (only what a script says happens), Newexten and CEL events,
``Local/`` channels' two halves, ``allowmultiplelogin = no``, event filters, the ``failed`` extension,
Originate's application blacklist, HTTP manager, dialplan functions in Getvar/Setvar.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import math
import random
import re
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from dialguard.clock import Clock, system_clock
from tests.fakes.asterisk_agi import separate_args

AMI_VERSION = "11.0.0"  # include/asterisk/manager.h:57, unchanged from 22.0.0 to 22.x
BANNER = f"Asterisk Call Manager/{AMI_VERSION}\r\n".encode()
MAX_LINE = 1024  # manager.c:289 "char inbuf[1025]"; get_input: maxlen = sizeof(inbuf) - 1
MAX_HEADERS = 128  # include/asterisk/manager.h:100 AST_MAX_MANHEADERS
MAX_PUBLIC_UNIQUEID = 149  # include/asterisk/channel.h:147

# manager.c:704 perms[], in its order (authority_to_str walks it); "none" last and never printed.
_INT_MAX = 2**31 - 1
PERMS: tuple[tuple[str, int], ...] = (
    ("system", 1 << 0),
    ("call", 1 << 1),
    ("log", 1 << 2),
    ("verbose", 1 << 3),
    ("command", 1 << 4),
    ("agent", 1 << 5),
    ("user", 1 << 6),
    ("config", 1 << 7),
    ("dtmf", 1 << 8),
    ("reporting", 1 << 9),
    ("cdr", 1 << 10),
    ("dialplan", 1 << 11),
    ("originate", 1 << 12),
    ("agi", 1 << 13),
    ("cc", 1 << 15),
    ("aoc", 1 << 16),
    ("test", 1 << 17),
    ("security", 1 << 18),
    ("message", 1 << 30),
    ("all", _INT_MAX),
    ("none", 0),
)
SYSTEM, CALL, USER, DTMF, DIALPLAN, ORIGINATE, REPORTING = (
    1 << 0,
    1 << 1,
    1 << 6,
    1 << 8,
    1 << 11,
    1 << 12,
    1 << 9,
)

# main/channel.c:137 causes[] (numbers: include/asterisk/causes.h:98): what Cause-txt says.
CAUSES = {
    1: "Unallocated (unassigned) number",
    2: "No route to specified transmit network",
    3: "No route to destination",
    5: "Misdialed trunk prefix",
    6: "Channel unacceptable",
    7: "Call awarded and being delivered in an established channel",
    8: "Pre-empted",
    14: "Number ported elsewhere",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    22: "Number changed",
    23: "Redirected to new destination",
    26: "Answered elsewhere",
    27: "Destination out of order",
    28: "Invalid number format",
    29: "Facility rejected",
    30: "Response to STATus ENQuiry",
    31: "Normal, unspecified",
    34: "Circuit/channel congestion",
    38: "Network out of order",
    41: "Temporary failure",
    42: "Switching equipment congestion",
    43: "Access information discarded",
    44: "Requested channel not available",
    50: "Facility not subscribed",
    52: "Outgoing call barred",
    54: "Incoming call barred",
    57: "Bearer capability not authorized",
    58: "Bearer capability not available",
    65: "Bearer capability not implemented",
    66: "Channel not implemented",
    69: "Facility not implemented",
    81: "Invalid call reference value",
    88: "Incompatible destination",
    95: "Invalid message unspecified",
    96: "Mandatory information element is missing",
    97: "Message type nonexist.",
    98: "Wrong message",
    99: "Info. element nonexist or not implemented",
    100: "Invalid information element contents",
    101: "Message not compatible with call state",
    102: "Recover on timer expiry",
    103: "Mandatory IE length error",
    111: "Protocol error, unspecified",
    127: "Interworking, unspecified",
}
# main/channel.c:637 ast_state2str (include/asterisk/channelstate.h:36).
STATES = {
    0: "Down",
    1: "Rsrvd",
    2: "OffHook",
    3: "Dialing",
    4: "Ring",
    5: "Ringing",
    6: "Up",
    7: "Busy",
    8: "Dialing Offhook",
    9: "Pre-ring",
}
DOWN, RINGING, UP = 0, 5, 6
# include/asterisk/frame.h:278: the control frames fast_originate reports as OriginateResponse's Reason.
REASON_FAILED, REASON_HANGUP, REASON_RINGING, REASON_ANSWER, REASON_BUSY, REASON_CONGESTION = 0, 1, 3, 4, 5, 8
NORMAL_CLEARING, USER_BUSY, NO_ANSWER, CALL_REJECTED, CONGESTION = 16, 17, 19, 21, 34


# --- small ports of the C helpers --------------------------------------------------------------


def skip_blanks(text: str) -> str:
    """include/asterisk/strings.h:151 ``ast_skip_blanks``: every character below 33 is a blank."""
    i = 0
    while i < len(text) and ord(text[i]) < 33:
        i += 1
    return text[i:]


def ast_true(text: str) -> bool:
    """main/utils.c:2233."""
    return text.lower() in ("yes", "true", "y", "t", "1", "on")


def ast_false(text: str) -> bool:
    """main/utils.c:2250."""
    return text.lower() in ("no", "false", "n", "f", "0", "off")


def _instring(big: str, small: str) -> bool:
    """manager.c:798 ``ast_instring(big, small, ',')``: a segment but the last matches when it is a
    prefix of ``small`` (``strncmp`` over the segment's length); the last must equal it."""
    val = big
    while True:
        nxt = val.find(",")
        if nxt < 0:
            return val == small
        if small[:nxt] == val[:nxt] and len(small) >= nxt:
            return True
        val = val[nxt + 1 :]
        if not val:
            return False


def get_perm(text: str) -> int:
    """manager.c:817: a manager.conf ``read=``/``write=`` list as a mask."""
    mask = 0
    for label, num in PERMS:
        if _instring(text, label):
            mask |= num
    return mask


def strings_to_mask(text: str) -> int:
    """manager.c:838: digits are a mask, false is 0, true is every class, else a list of classes."""
    if not text:
        return -1
    if text.isdigit() and text.isascii():
        return int(text)  # atoi: C's int wraps, a test does not care
    if ast_false(text):
        return 0
    if ast_true(text):
        mask = 0
        for _label, num in PERMS:
            mask |= num
        return mask
    return get_perm(text)


def authority_to_str(authority: int) -> str:
    """manager.c:770: the ``Privilege:`` value, e.g. ``call,all`` (``all`` is INT_MAX, so always there)."""
    labels = [label for label, num in PERMS[:-1] if authority & num]
    return ",".join(labels) or "<none>"


_ESCAPES = {"\a": "a", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", "\v": "v"}
_ESCAPES.update({"\\": "\\", "'": "'", '"': '"', "?": "?"})


def escape_c(text: str) -> str:
    """main/utils.c:2111 ``ast_escape_c`` (escape_sequences at utils.c:2056): what snapshots print."""
    return "".join("\\" + _ESCAPES[ch] if ch in _ESCAPES else ch for ch in text)


def cause_text(cause: int) -> str:
    """main/channel.c:613 ``ast_cause2str``."""
    return CAUSES.get(cause, "Unknown")


def dial_status(cause: int) -> str:
    """main/dial.c:752 ``ast_hangup_cause_to_dial_status``: DialEnd's status when the callee hangs up."""
    if cause == USER_BUSY:
        return "BUSY"
    if cause == CONGESTION:
        return "CONGESTION"
    if cause in (3, 20):  # NO_ROUTE_DESTINATION, UNREGISTERED
        return "CHANUNAVAIL"
    return "NOANSWER"


def _scan_int(text: str) -> int | None:
    """``sscanf(text, "%30d", &n) == 1``: leading blanks, a sign, digits; the rest is ignored."""
    found = re.match(r"[ \t\n\r\f\v]*([+-]?\d{1,30})", text)
    return int(found[1]) if found else None


def _shrink_phone_number(text: str) -> str:
    """main/callerid.c:1101 ``ast_shrink_phone_number``."""
    out, bracketed = [], 0
    for i, ch in enumerate(text):
        if ch == "[":
            bracketed += 1
            out.append(ch)
        elif ch == "]":
            bracketed -= 1
            out.append(ch)
        elif ch == "-":
            if bracketed:
                out.append(ch)
        elif ch == ".":
            if i == len(text) - 1:
                out.append(ch)
        elif ch not in "( )":
            out.append(ch)
    return "".join(out)


def _strip_quoted(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1]
    return text


def parse_callerid(text: str) -> tuple[str | None, str | None]:
    """main/callerid.c:1162 ``ast_callerid_parse`` as action_originate uses it: (name, number), each
    None when absent or empty (``"Agent" <1001>``, ``1001``, ``Agent``)."""
    stripped = text.strip()
    instr = _strip_quoted(stripped)
    quotes_stripped = instr != stripped
    name: str | None
    number: str | None
    if "<" in instr:
        ls = instr.rindex("<")
        location = instr[ls + 1 :]
        if ">" in location:
            location = location[: location.rindex(">")]
        name, number = _strip_quoted(instr[:ls]), location
    else:
        shrunk = _shrink_phone_number(instr)
        if not quotes_stripped and shrunk and all(c in "0123456789*#+" for c in shrunk):
            name, number = None, shrunk
        else:
            name, number = _strip_quoted(instr), None
    if number is not None:
        number = _shrink_phone_number(number) or None
    return name or None, number


# --- sans-IO: messages in and out --------------------------------------------------------------

Fields = Sequence[tuple[str, str]]


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")  # byte-faithful: what comes in goes back out


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def encode(fields: Fields) -> bytes:
    """One message: ``Key: Value\\r\\n`` lines and the empty line that ends it.

    >>> encode([("Response", "Success"), ("Ping", "Pong")])
    b'Response: Success\\r\\nPing: Pong\\r\\n\\r\\n'
    """
    return _bytes("".join(f"{key}: {value}\r\n" for key, value in fields) + "\r\n")


@dataclass(frozen=True)
class Message:
    """One request as manager.c holds it (``struct message``): its header lines, raw, in order."""

    lines: tuple[str, ...]

    def get(self, name: str, *, skip_empty: bool = False) -> str:
        """manager.c:1549 ``__astman_get_header``: the first line starting ``name:`` (any case, no blank
        before the colon), leading blanks of the value skipped; ``""`` when there is none."""
        n = len(name)
        for line in self.lines:
            if line[:n].lower() == name.lower() and line[n : n + 1] == ":":
                value = skip_blanks(line[n + 1 :])
                if skip_empty and not value:
                    continue
                return value
        return ""

    def variables(self) -> list[tuple[str, str]]:
        """manager.c:1672 ``astman_get_variables`` (ORDER_REVERSE): every ``Variable:`` line split at
        commas (app.c's separator, quotes honoured) into ``name=value`` pairs, last one first."""
        pairs: list[tuple[str, str]] = []
        for line in self.lines:
            if line[:9].lower() != "variable:":
                continue
            try:
                items = separate_args(skip_blanks(line[9:]), ",", remove_chars=True, arraylen=64)
            except ValueError:  # a trailing backslash: C reads past the end; we take nothing
                continue
            for item in items:
                name, sep, value = item.partition("=")
                if sep and name:
                    pairs.insert(0, (name, value))
        return pairs

    def fields(self) -> dict[str, str]:
        """Each header's first value, keyed as sent (``Message.get`` is the case-insensitive look-up)."""
        out: dict[str, str] = {}
        for line in self.lines:
            key, sep, value = line.partition(":")
            if sep:
                out.setdefault(key, skip_blanks(value))
        return out


LINE_TOO_LONG = "Failed to parse message: line too long"  # manager.c:7397
TOO_MANY_LINES = "Too many lines in message or allocation failure"  # manager.c:7388


@dataclass(frozen=True)
class Request:
    """A complete message, or the parse error ``do_message`` answers it with instead of running it."""

    message: Message
    error: str | None = None


class Framer:
    """manager.c:7221 ``get_input`` and manager.c:7346 ``do_message``, without the socket.

    >>> framer = Framer()
    >>> framer.feed(b"Action: Ping\\r\\nActionID: 1\\r\\n\\r\\n")
    >>> framer.next()
    Request(message=Message(lines=('Action: Ping', 'ActionID: 1')), error=None)
    """

    def __init__(self) -> None:
        self._inbuf = bytearray()  # session->inbuf: at most MAX_LINE bytes
        self._unread = bytearray()  # bytes the socket has that get_input has not read yet
        self._lines: list[str] = []
        self._too_long = False  # s->parsing == MESSAGE_LINE_TOO_LONG: lives on the session, not the message
        self._hdr_loss = False

    def feed(self, data: bytes) -> None:
        self._unread += data

    def next(self) -> Request | None:
        while (line := self._line()) is not None:
            if not line or line[0] == 0:  # ast_strlen_zero(header_buf): "\0..." is empty too
                lines, self._lines = tuple(self._lines), []
                loss, self._hdr_loss = self._hdr_loss, False
                if loss:
                    return Request(Message(lines), TOO_MANY_LINES)
                if self._too_long:
                    self._too_long = False  # handle_parse_error resets s->parsing
                    return Request(Message(lines), LINE_TOO_LONG)
                return Request(Message(lines))
            if len(self._lines) < MAX_HEADERS:
                self._lines.append(_text(line.split(b"\0", 1)[0]))  # ast_strdup stops at the NUL
            else:
                self._hdr_loss = True
        return None

    def _line(self) -> bytes | None:
        while True:
            end = self._inbuf.find(b"\n")
            if end >= 0:  # "\r\n" or a lone "\n"; a lone "\r" stays in the line
                line = bytes(self._inbuf[: end - 1 if end and self._inbuf[end - 1] == 13 else end])
                del self._inbuf[: end + 1]
                return line
            if len(self._inbuf) >= MAX_LINE:
                # "no crlf found, and buffer full - sorry, too long for us; keep the last character
                # in case we are in the middle of a CRLF" (manager.c:7251)
                del self._inbuf[:-1]
                self._too_long = True
            if not self._unread:
                return None
            take = MAX_LINE - len(self._inbuf)  # ast_iostream_read(..., maxlen - inlen)
            self._inbuf += self._unread[:take]
            del self._unread[:take]


def response(message: Message, resp: str, text: str | None = None) -> bytes:
    """manager.c:1889 ``astman_send_response_full``: ``Response``, the action's ``ActionID`` if it had
    a non-empty one, ``Message`` when given, and the empty line."""
    fields = [("Response", resp)]
    if action_id := message.get("ActionID"):
        fields.append(("ActionID", action_id))
    if text is not None:
        fields.append(("Message", text))
    return encode(fields)


def event(name: str, category: int, body: Fields) -> bytes:
    """manager.c:7656: ``Event``, ``Privilege`` and the body (timestampevents and SystemName unset)."""
    return encode([("Event", name), ("Privilege", authority_to_str(category)), *body])


# --- channels -----------------------------------------------------------------------------------


@dataclass
class Channel:
    """What a channel snapshot tells AMI (include/asterisk/stasis_channels.h)."""

    name: str
    uniqueid: str
    linkedid: str
    state: int = DOWN
    caller_num: str = ""
    caller_name: str = ""
    connected_num: str = ""
    connected_name: str = ""
    language: str = "en"
    accountcode: str = ""
    context: str = "default"
    exten: str = "s"
    priority: int = 1
    # Keyed by the name without its inheritance underscores, as pbx_variables.c:1256 compares them;
    # the value keeps the name as set ("__X") for inheritance.
    variables: dict[str, tuple[str, str]] = field(default_factory=dict)

    def setvar(self, name: str, value: str) -> None:
        """pbx_variables.c:1233 ``pbx_builtin_setvar_helper``."""
        key = name[2:] if name.startswith("__") else name[1:] if name.startswith("_") else name
        self.variables[key] = (name, value)

    def getvar(self, name: str) -> str | None:
        found = self.variables.get(name)
        return found[1] if found else None

    def inherited(self) -> list[tuple[str, str]]:
        """What Dial() copies to the callee: ``__X`` as itself, ``_X`` as ``X`` (channel.c inherit)."""
        seen: dict[str, tuple[str, str]] = {}
        for given, value in self.variables.values():
            if given.startswith("__"):
                seen[given] = (given, value)
            elif given.startswith("_"):
                seen[given] = (given[1:], value)
        return list(seen.values())

    def snapshot(self, channelvars: Sequence[str], prefix: str = "") -> list[tuple[str, str]]:
        """manager_channels.c:539 ``ast_manager_build_channel_state_string_prefix``."""
        fields = [
            (f"{prefix}Channel", self.name),
            (f"{prefix}ChannelState", str(self.state)),
            (f"{prefix}ChannelStateDesc", STATES.get(self.state, f"Unknown ({self.state})")),
            (f"{prefix}CallerIDNum", self.caller_num or "<unknown>"),
            (f"{prefix}CallerIDName", escape_c(self.caller_name) or "<unknown>"),
            (f"{prefix}ConnectedLineNum", self.connected_num or "<unknown>"),
            (f"{prefix}ConnectedLineName", escape_c(self.connected_name) or "<unknown>"),
            (f"{prefix}Language", self.language),
            (f"{prefix}AccountCode", self.accountcode),
            (f"{prefix}Context", self.context),
            (f"{prefix}Exten", self.exten),
            (f"{prefix}Priority", str(self.priority)),
            (f"{prefix}Uniqueid", self.uniqueid),
            (f"{prefix}Linkedid", self.linkedid),
        ]
        for name in channelvars:
            fields.append((f"{prefix}ChanVariable", f"{name}={escape_c(self.getvar(name) or '')}"))
        return fields

    def manager_vars(self, channelvars: Sequence[str]) -> list[tuple[str, str]]:
        """manager.c:7608 ``append_channel_vars``: ``ChanVariable(<channel>): NAME=value``, unescaped."""
        return [(f"ChanVariable({self.name})", f"{name}={self.getvar(name) or ''}") for name in channelvars]


@dataclass
class Bridge:
    uniqueid: str
    channels: list[Channel] = field(default_factory=list)

    def fields(self) -> list[tuple[str, str]]:
        """manager_bridges.c:257 ``ast_manager_build_bridge_state_string_prefix``: a basic bridge."""
        return [
            ("BridgeUniqueid", self.uniqueid),
            ("BridgeType", "basic"),
            ("BridgeTechnology", "simple_bridge"),
            ("BridgeCreator", "<unknown>"),
            ("BridgeName", "<unknown>"),
            ("BridgeNumChannels", str(len(self.channels))),
            ("BridgeVideoSourceMode", "none"),
        ]


# --- what happens to an originated call ---------------------------------------------------------

Outcome = Literal["answer", "busy", "congestion", "no_answer", "rejected", "unavailable"]


@dataclass(frozen=True)
class CallScript:
    """What the called party and the dialplan do with one Originate; times in ms on the loop's clock.

    ``outcome`` and what AMI then reports (pbx.c:5963 ``pbx_dial_reason`` for the Reason):
    - ``answer``: Newstate Ringing, after ``ring_ms`` Newstate Up, DialEnd ANSWER, OriginateResponse
      Success Reason 4; then in the dialplan: ``dtmf`` (DTMFBegin/DTMFEnd per digit, ``dtmf_ms`` each),
      the agent leg ``agent_after_ms`` after the answer (None: never), ``talk_ms`` of talk, and the
      callee hangs up with ``hangup_cause`` (HangupRequest, BridgeLeave, Hangup).
    - ``busy`` / ``congestion``: after ``ring_ms``, DialEnd BUSY / CONGESTION, Hangup 17 / 34, Reason 5 / 8.
    - ``no_answer``: rings until the Originate's ``Timeout`` (default 30000): Hangup 19, no DialEnd
      (dial.c:735), Reason 3.
    - ``rejected``: rings ``ring_ms``, then the callee hangs up with ``reject_cause``: HangupRequest,
      DialEnd by that cause, Hangup, Reason 0 (the dial channel's cause is still AST_CAUSE_NOTDEFINED).
    - ``unavailable``: the channel cannot be requested: no channel events, Reason 0 (as also happens
      when ``ChannelId`` is the uniqueid of a channel still up: channel.c:711 ``do_ids_conflict``).
    Any outcome but ``unavailable`` with ``ring_ms`` past the Timeout becomes ``no_answer``.
    """

    outcome: Outcome = "answer"
    ring_ms: int = 5
    agent_after_ms: int | None = 0
    dtmf: str = ""
    dtmf_ms: int = 2
    talk_ms: int = 5
    hangup_cause: int = NORMAL_CLEARING
    reject_cause: int = CALL_REJECTED
    tech_cause: int = 0  # chan_pjsip's SIP code (e.g. 486); 0: no TechCause line
    agent_endpoint: str = "agent"


@dataclass(frozen=True)
class _Originate:
    """action_originate's parsed arguments (the fast_originate_helper fields)."""

    tech: str
    data: str
    context: str
    exten: str
    priority: int
    app: str
    appdata: str
    cid_name: str | None
    cid_num: str | None
    account: str
    channelid: str
    timeout_ms: int
    variables: list[tuple[str, str]]
    action_id: str
    is_async: bool


class Call:
    """One originated call running its script; its channels live in the fake while it runs."""

    def __init__(self, ami: FakeAmi, request: _Originate, script: CallScript) -> None:
        self.ami = ami
        self.request = request
        self.script = script
        self.customer: Channel | None = None
        self.agent: Channel | None = None
        self.bridge: Bridge | None = None
        self.answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.finished = asyncio.Event()
        self._hangup = asyncio.Event()
        self._hangup_cause = 0
        self._hangup_by: Channel | None = None

    def request_hangup(self, channel: Channel, cause: int) -> None:
        """manager.c:3594 ``action_hangup``: a soft hangup, the cause set when 1..127 was given."""
        if not self._hangup.is_set():
            self._hangup_by, self._hangup_cause = channel, cause
            self._hangup.set()

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if not self.answered.done():
                self.answered.set_result(False)
            for channel in (self.customer, self.agent):
                if channel is not None:
                    self.ami._channels.pop(channel.uniqueid, None)
            self.finished.set()
            self.ami._changed()

    def _publish(self, category: int, name: str, body: Fields) -> None:
        self.ami._publish(category, name, body)

    def _snap(self, channel: Channel, prefix: str = "") -> list[tuple[str, str]]:
        return channel.snapshot(self.ami.channelvars, prefix)

    async def _pause(self, ms: float) -> bool:
        """Wait ``ms`` (inf: until hung up); True when an AMI Hangup came first."""
        if self._hangup.is_set():
            return True
        try:
            async with asyncio.timeout(None if math.isinf(ms) else max(ms, 0) / 1000):
                await self._hangup.wait()
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        o, s = self.request, self.script
        if s.outcome == "unavailable" or (o.channelid and o.channelid in self.ami._channels):
            self._dial_failed(REASON_FAILED)
            return
        c = self.customer = self.ami._new_channel(o.tech, o.data, o.channelid)
        self._publish(CALL, "Newchannel", self._snap(c))  # channel.c:960, before the variables
        for name, value in o.variables:  # pbx.c:6059 ast_set_variables: one VarSet each
            c.setvar(name, value)
            self._publish(
                DIALPLAN, "VarSet", [*self._snap(c), ("Variable", name), ("Value", escape_c(value))]
            )
        if o.account:
            c.accountcode = o.account
            self._publish(CALL, "NewAccountCode", [*self._snap(c), ("OldAccountCode", "")])
        if o.cid_num or o.cid_name:  # pbx.c:6101: caller and connected line both set to the CallerID
            c.caller_num = c.connected_num = o.cid_num or ""
            c.caller_name = c.connected_name = o.cid_name or ""
            self._publish(
                CALL,
                "NewCallerid",
                [*self._snap(c), ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")],
            )
            self._publish(CALL, "NewConnectedLine", self._snap(c))
        # dial.c:472: the originate dial has no caller, so DialBegin has only the Dest fields.
        self._publish(CALL, "DialBegin", [*self._snap(c, "Dest"), ("DialString", o.data)])

        rings = s.outcome in ("answer", "no_answer", "rejected")
        if rings:
            c.state = RINGING
            self._publish(CALL, "Newstate", self._snap(c))
            self._publish(CALL, "DialState", [*self._snap(c, "Dest"), ("DialStatus", "RINGING")])
        limit = math.inf if o.timeout_ms < 0 else o.timeout_ms
        wait = math.inf if s.outcome == "no_answer" else s.ring_ms
        if await self._pause(min(wait, limit)):  # AMI Hangup while dialing: ast_read fails (dial.c:853)
            cause = self._hangup_cause or NORMAL_CLEARING
            self._publish(CALL, "DialEnd", [*self._snap(c, "Dest"), ("DialStatus", dial_status(cause))])
            self._gone(c, cause)
            self._dial_failed(REASON_FAILED)
            return
        if limit <= wait:  # dial.c:733 handle_timeout_trip: hung up with NO_ANSWER, no DialEnd published
            self._gone(c, NO_ANSWER)
            self._dial_failed(REASON_RINGING)
            return
        if s.outcome in ("busy", "congestion"):
            status, cause, reason = (
                ("BUSY", USER_BUSY, REASON_BUSY)
                if s.outcome == "busy"
                else ("CONGESTION", CONGESTION, REASON_CONGESTION)
            )
            self._publish(CALL, "DialEnd", [*self._snap(c, "Dest"), ("DialStatus", status)])
            self._gone(c, cause)
            self._dial_failed(reason)
            return
        if s.outcome == "rejected":
            self._publish(CALL, "HangupRequest", [*self._snap(c), ("Cause", str(s.reject_cause))])
            self._publish(
                CALL, "DialEnd", [*self._snap(c, "Dest"), ("DialStatus", dial_status(s.reject_cause))]
            )
            self._gone(c, s.reject_cause)
            self._dial_failed(REASON_FAILED)
            return

        c.state = UP
        self._publish(CALL, "Newstate", self._snap(c))
        self._publish(CALL, "DialEnd", [*self._snap(c, "Dest"), ("DialStatus", "ANSWER")])
        if o.is_async:
            self._originate_response("Success", REASON_ANSWER, c)
        self.answered.set_result(True)
        if not o.app:  # pbx.c:5915: the answered channel runs the dialplan at Context/Exten/Priority
            c.context, c.exten = o.context or c.context, o.exten or c.exten
            c.priority = o.priority if o.priority > 0 else c.priority
        await self._in_dialplan(c)

    async def _in_dialplan(self, c: Channel) -> None:
        """After the answer: the callee's digits, the agent leg, the talk; then the call ends."""
        s = self.script
        loop = asyncio.get_running_loop()
        answered_at = loop.time()
        hung_up = False
        for digit in s.dtmf:  # manager_channels.c:995 and :1051
            body = [*self._snap(c), ("Digit", digit)]
            self._publish(DTMF, "DTMFBegin", [*body, ("Direction", "Received")])
            if hung_up := await self._pause(s.dtmf_ms):
                break
            self._publish(DTMF, "DTMFEnd", [*body, ("DurationMs", str(s.dtmf_ms)), ("Direction", "Received")])
        if not hung_up and s.agent_after_ms is not None:
            hung_up = await self._pause(s.agent_after_ms - (loop.time() - answered_at) * 1000)
            if not hung_up:
                self._bridge_agent(c)
        if not hung_up:
            await self._pause(s.talk_ms)
        self._end()

    def _bridge_agent(self, c: Channel) -> None:
        """Dial() from the answered channel to an agent, then both in one basic bridge."""
        a = self.agent = self.ami._new_channel("PJSIP", self.script.agent_endpoint, "", linkedid=c.linkedid)
        a.caller_num, a.caller_name = c.caller_num, c.caller_name
        a.connected_num, a.connected_name = c.exten, ""
        for name, value in c.inherited():
            a.setvar(name, value)
        self._publish(CALL, "Newchannel", self._snap(a))
        caller_and_dest = [*self._snap(c), *self._snap(a, "Dest")]
        self._publish(CALL, "DialBegin", [*caller_and_dest, ("DialString", self.script.agent_endpoint)])
        a.state = RINGING
        self._publish(CALL, "Newstate", self._snap(a))
        self._publish(CALL, "DialState", [*self._snap(c), *self._snap(a, "Dest"), ("DialStatus", "RINGING")])
        a.state = UP
        self._publish(CALL, "Newstate", self._snap(a))
        self._publish(CALL, "DialEnd", [*self._snap(c), *self._snap(a, "Dest"), ("DialStatus", "ANSWER")])
        b = self.bridge = Bridge(str(uuid.UUID(int=random.getrandbits(128), version=4)))
        for channel in (c, a):
            b.channels.append(channel)
            self._publish(CALL, "BridgeEnter", [*b.fields(), *self._snap(channel)])

    def _end(self) -> None:
        """The call ends: the channel an AMI Hangup named first, else the callee hanging up."""
        c = self.customer
        assert c is not None
        by = self._hangup_by
        if by is None:  # the callee's BYE: chan_pjsip queues the hangup with a cause (channel.c:1213)
            first, cause = c, self.script.hangup_cause
            self._publish(CALL, "HangupRequest", [*self._snap(c), ("Cause", str(cause))])
        else:
            first, cause = by, self._hangup_cause or NORMAL_CLEARING
        rest = [ch for ch in (c, self.agent) if ch is not None and ch is not first]
        for channel, why in [(first, cause), *((ch, NORMAL_CLEARING) for ch in rest)]:
            if self.bridge is not None and channel in self.bridge.channels:
                self.bridge.channels.remove(channel)
                self._publish(CALL, "BridgeLeave", [*self.bridge.fields(), *self._snap(channel)])
            self._gone(channel, why)

    def _gone(self, channel: Channel, cause: int) -> None:
        """manager_channels.c:648: Hangup with Cause and Cause-txt (and TechCause when the driver set one)."""
        body = [*self._snap(channel), ("Cause", str(cause)), ("Cause-txt", cause_text(cause))]
        if self.script.tech_cause and channel is self.customer:
            body.append(("TechCause", str(self.script.tech_cause)))
        self._publish(CALL, "Hangup", body)
        self.ami._channels.pop(channel.uniqueid, None)

    def _dial_failed(self, reason: int) -> None:
        if self.request.is_async:
            self._originate_response("Failure", reason, None)

    def _originate_response(self, result: str, reason: int, chan: Channel | None) -> None:
        """manager.c:4477: the outcome, to every session; on failure there is no channel any more, so
        ``Channel`` is the requested tech/data and ``Uniqueid`` the ChannelId (or ``<unknown>``)."""
        o = self.request
        body: list[tuple[str, str]] = []
        if o.action_id:
            body.append(("ActionID", o.action_id))
        body += [("Response", result), ("Channel", chan.name if chan else f"{o.tech}/{o.data}")]
        body += (
            [("Application", o.app), ("Data", o.appdata)]
            if o.app
            else [("Context", o.context), ("Exten", o.exten)]
        )
        body += [
            ("Reason", str(reason)),
            ("Uniqueid", chan.uniqueid if chan else (o.channelid or "<unknown>")),
            ("CallerIDNum", o.cid_num or "<unknown>"),
            ("CallerIDName", o.cid_name or "<unknown>"),
        ]
        if chan is not None:
            body += chan.manager_vars(self.ami.channelvars)
        self._publish(CALL, "OriginateResponse", body)


# --- the server ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedAction:
    """A message as the fake received it, in order, with the connection it came on (1, 2, ... by accept)."""

    name: str  # the Action header ("" when none)
    fields: dict[str, str]  # each header's first value, keyed as sent
    lines: tuple[str, ...]
    connection: int

    def get(self, key: str) -> str:
        """The header's value as manager.c reads it (first match, any case)."""
        return Message(self.lines).get(key)

    @property
    def variables(self) -> dict[str, str]:
        return dict(reversed(Message(self.lines).variables()))


@dataclass(frozen=True)
class StormReport:
    events: int  # events generated (each went to every session whose classes take it)
    seconds: float  # loop time it took: more than asked when the clients held the fake back


class _Stalled(Exception):
    """A write made no progress for the user's writetimeout: manager.c:1813 sets write_error."""


def _default_script(action: ReceivedAction) -> CallScript:
    return CallScript()


_Handler = Callable[["_Session", Message], Awaitable[bool]]


class _Session:
    """manager.c:7434 ``session_do`` for one TCP connection: one task reads, runs actions, writes events."""

    def __init__(self, ami: FakeAmi, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int):
        self.ami = ami
        self.reader = reader
        self.writer = writer
        self.number = number
        self.framer = Framer()
        self.authenticated = False
        self.readperm = self.writeperm = self.send_events = 0
        self.challenge = ""
        self.black_holed = ami._silenced  # a half-open link: nothing in or out, ever
        self.muted = False  # dropped before answering: the action runs, its answer goes nowhere
        self.closed = False
        self._events: deque[tuple[int, bytes]] = deque()
        self._drained = asyncio.Event()
        self._drained.set()
        self._wake: asyncio.Future[None] | None = None
        self._read: asyncio.Future[bytes] | None = None
        self._start = asyncio.get_running_loop().time()

    # events

    def queue(self, category: int, data: bytes) -> None:
        """manager.c:7707: queued when the session's classes take it, written by the session itself."""
        if self.closed or self.black_holed or (self.send_events & category) != category:
            return
        self._events.append((category, data))
        self._drained.clear()
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    @property
    def backlog(self) -> int:
        return len(self._events)

    @property
    def unsent(self) -> int:
        """Bytes held for this client: queued events and what the socket has not taken yet."""
        return sum(len(data) for _, data in self._events) + self.writer.transport.get_write_buffer_size()

    async def drained(self) -> None:
        await self._drained.wait()

    async def _flush(self) -> None:
        """manager.c:6463 ``process_events``: the class is checked again as the events go out."""
        while self._events and not self.closed:
            batch = [data for category, data in self._events if (self.send_events & category) == category]
            self._events.clear()
            if batch:
                await self._send(b"".join(batch))
        self._events.clear()
        self._drained.set()

    # the link

    def abort(self) -> None:
        self.closed = True
        self.writer.transport.abort()
        self._drained.set()

    async def _send(self, data: bytes) -> None:
        if self.black_holed or self.muted:
            return
        if self.writer.transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        self.writer.write(data)
        timeout = self.ami.write_timeout
        if timeout is None:
            await self.writer.drain()
            return
        # ast_iostream_set_timeout_inactivity: the timer restarts whenever some of it went out.
        left = self.writer.transport.get_write_buffer_size()
        while True:
            try:
                async with asyncio.timeout(timeout):
                    await self.writer.drain()
                return
            except TimeoutError:
                now = self.writer.transport.get_write_buffer_size()
                if now >= left:
                    raise _Stalled from None
                left = now

    async def run(self) -> None:
        try:
            await self._send(BANNER)
            while (request := await self._next_request()) is not None:
                if not await self._process(request):
                    break
                await self._flush()
        except (ConnectionError, _Stalled):
            pass
        finally:
            self.closed = True
            if self._read is not None:
                if not self._read.done():
                    self._read.cancel()
                elif not self._read.cancelled():
                    self._read.exception()  # a reset link: seen, not an error of the fake's
            self._drained.set()
            if not self.writer.transport.is_closing():
                self.writer.close()
            self.ami._session_ended(self)

    async def _next_request(self) -> Request | None:
        """get_input: the next message; events go out while waiting; None when the session is over."""
        loop = asyncio.get_running_loop()
        while True:
            if not self.black_holed and (request := self.framer.next()) is not None:
                return request
            if self._events:
                await self._flush()
                continue
            timeout = None
            if not self.authenticated and not self.black_holed:
                timeout = self._start + self.ami.auth_timeout - loop.time()
                if timeout <= 0:  # manager.c:7376: "failed to authenticate in %d seconds"
                    return None
            if self._read is None:
                self._read = asyncio.ensure_future(self.reader.read(65536))
            self._wake = loop.create_future()
            try:
                await asyncio.wait(
                    (self._read, self._wake), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                self._wake.cancel()
                self._wake = None
            if self._read.done():
                data = self._read.result()
                self._read = None
                if not data:
                    return None
                if not self.black_holed:
                    self.framer.feed(data)

    # actions

    async def _process(self, request: Request) -> bool:
        """manager.c:7093 ``process_message``; False ends the session."""
        m = request.message
        action = m.get("Action", skip_empty=True)
        self.ami._record(m, action, self.number)
        if request.error is not None:
            await self._send(response(m, "Error", request.error))
            return True
        if not action:
            await self._send(response(m, "Error", "Missing action in request"))
            return True
        if self.ami._take_drop(action):
            self.muted = True
            self.abort()
            if self.ami._drop_performs:
                with contextlib.suppress(ConnectionError, _Stalled):
                    await self._dispatch(m, action)
            return False
        return await self._dispatch(m, action)

    async def _dispatch(self, m: Message, action: str) -> bool:
        if not self.authenticated and action.lower() not in ("login", "logoff", "challenge"):
            await self._send(response(m, "Error", "Permission denied"))
            return True
        spec = _ACTIONS.get(action.lower())
        if spec is None:
            text = f"Invalid/unknown command: {action}. Use Action: ListCommands to show available commands."
            await self._send(response(m, "Error", text[:511]))  # char buf[512]
            return True
        authority, handler = spec
        if authority and not (self.writeperm & authority):
            await self._send(response(m, "Error", "Permission denied"))
            return True
        return await handler(self, m)

    async def _respond(self, m: Message, resp: str, text: str | None = None) -> bool:
        await self._send(response(m, resp, text))
        return True

    def _authenticate(self, m: Message) -> bool:
        """manager.c:2272."""
        ami = self.ami
        username = m.get("Username")
        if not username or ami._refuse_logins or username.lower() != ami.username.lower():
            return False
        if m.get("AuthType").lower() == "md5":
            key = m.get("Key")
            digest = hashlib.md5(_bytes(self.challenge + ami.secret)).hexdigest()  # the protocol's choice
            if not (key and self.challenge and key == digest):
                return False
        elif m.get("Secret") != ami.secret:
            return False
        self.readperm, self.writeperm = get_perm(ami.read), get_perm(ami.write)
        if events := m.get("Events"):
            self._set_eventmask(events)
        else:
            self.send_events = self.readperm
        return True

    def _set_eventmask(self, text: str) -> int:
        """manager.c:2032."""
        mask = strings_to_mask(text)
        if mask >= 0:
            self.send_events = self.readperm & mask
        return mask

    async def _action_login(self, m: Message) -> bool:
        if self.authenticated:
            return await self._respond(m, "Success", "Already authenticated")
        if not self._authenticate(m):
            await asyncio.sleep(self.ami.auth_fail_delay)  # manager.c:3417: sleep(1)
            await self._respond(m, "Error", "Authentication failed")
            return False
        self.authenticated = True
        self.ami._changed()
        await self._respond(m, "Success", "Authentication accepted")
        if self.send_events & SYSTEM and self.ami.fully_booted:
            uptime = str(int(asyncio.get_running_loop().time() - self.ami._booted_at))
            body = [("Uptime", uptime), ("LastReload", uptime), ("Status", "Fully Booted")]
            await self._send(event("FullyBooted", SYSTEM, body))
        return True

    async def _action_logoff(self, m: Message) -> bool:
        await self._respond(m, "Goodbye", "Thanks for all the fish.")
        return False

    async def _action_ping(self, m: Message) -> bool:
        now = self.ami.clock().timestamp()
        fields = [("Response", "Success")]
        if action_id := m.get("ActionID"):
            fields.append(("ActionID", action_id))
        micros = round(now * 1_000_000)  # "%ld.%06lu" of ast_tvnow()
        fields += [("Ping", "Pong"), ("Timestamp", f"{micros // 1_000_000}.{micros % 1_000_000:06d}")]
        await self._send(encode(fields))
        return True

    async def _action_events(self, m: Message) -> bool:
        """manager.c:3357 ``action_events`` (brokeneventsaction off)."""
        mask = self._set_eventmask(m.get("EventMask"))
        if mask < 0:
            return await self._respond(m, "Error", "Invalid event mask")
        fields = [("Response", "Success")]
        if action_id := m.get("ActionID"):
            fields.append(("ActionID", action_id))
        fields.append(("Events", "On" if mask > 0 else "Off"))
        await self._send(encode(fields))
        return True

    async def _action_challenge(self, m: Message) -> bool:
        """manager.c:3455."""
        if m.get("AuthType").lower() != "md5":
            return await self._respond(m, "Error", "Must specify AuthType")
        self.challenge = self.challenge or str(random.randrange(2**31))
        fields = [("Response", "Success")]
        if action_id := m.get("ActionID"):
            fields.append(("ActionID", action_id))
        await self._send(encode([*fields, ("Challenge", self.challenge)]))
        return True

    async def _action_originate(self, m: Message) -> bool:
        """manager.c:5279 ``action_originate``, check by check, in its order."""
        ami = self.ami
        name, exten, context = m.get("Channel"), m.get("Exten"), m.get("Context")
        priority, timeout, app = m.get("Priority"), m.get("Timeout"), m.get("Application")
        channelid = m.get("ChannelId")
        if len(channelid) > MAX_PUBLIC_UNIQUEID or len(m.get("OtherChannelId")) > MAX_PUBLIC_UNIQUEID:
            # astman_send_error_va with a "\n" in the format: the newline is part of the message.
            return await self._respond(
                m, "Error", f"Uniqueid length exceeds maximum of {MAX_PUBLIC_UNIQUEID}\n"
            )
        if not name:
            return await self._respond(m, "Error", "Channel not specified")
        pi = 0
        if priority:
            scanned = _scan_int(priority)
            if scanned is None:  # not a number: a label, and the fake's dialplan has none
                return await self._respond(m, "Error", "Invalid priority")
            pi = scanned
        to = 30000
        if timeout:
            scanned = _scan_int(timeout)
            if scanned is None:
                return await self._respond(m, "Error", "Invalid timeout")
            to = scanned
        tech, slash, data = name[:255].partition("/")  # ast_copy_string(tmp, name, 256)
        if not slash:
            return await self._respond(m, "Error", "Invalid channel")
        cid_name, cid_num = parse_callerid(m.get("CallerID")[:255])
        # "exten && context && pi": the two strings are never NULL, so only the priority decides.
        if pi and not ami._extension_exists(context, exten):
            return await self._respond(m, "Error", "Extension does not exist.")
        is_async = ast_true(m.get("Async"))
        request = _Originate(
            tech=tech,
            data=data,
            context=context,
            exten=exten,
            priority=pi,
            app=app,
            appdata=m.get("Data"),
            cid_name=cid_name,
            cid_num=cid_num,
            account=m.get("Account"),
            channelid=channelid,
            timeout_ms=to,
            variables=m.variables(),
            action_id=m.get("ActionID"),
            is_async=is_async,
        )
        if not is_async and not app and not pi:
            return await self._respond(m, "Error", "Originate with 'Exten' requires 'Context' and 'Priority'")
        received = ReceivedAction("Originate", m.fields(), m.lines, self.number)
        call = ami._start_call(request, ami.on_originate(received))
        if is_async:  # fast_originate runs in its own thread; the answer does not wait for it
            return await self._respond(m, "Success", "Originate successfully queued")
        # AST_OUTGOING_WAIT: this session (and its events) waits until the callee answers or the dial fails.
        if await asyncio.shield(call.answered):
            return await self._respond(m, "Success", "Originate successfully queued")
        return await self._respond(m, "Error", "Originate failed")

    async def _action_hangup(self, m: Message) -> bool:
        """manager.c:3473 ``ast_manager_hangup_helper``."""
        target = m.get("Channel")
        if not target:
            return await self._respond(m, "Error", "No channel specified")
        cause = 0
        if text := m.get("Cause"):
            cause = int(text) if re.fullmatch(r"[+-]?\d+", text) and 0 <= int(text) <= 127 else 0
        if not target.startswith("/"):
            found = self.ami.find_channel(target)
            if found is None:
                return await self._respond(m, "Error", "No such channel")
            self.ami._hang_up(found, cause)
            return await self._respond(m, "Success", "Channel Hungup")
        if len(target) < 2 or not target.endswith("/"):
            return await self._respond(m, "Error", "Regex format invalid, Channel param should be /regex/")
        try:
            pattern = re.compile(target[1:-1])
        except re.error:
            return await self._respond(m, "Error", f"Regex compile failed on: {target}")
        action_id = m.get("ActionID")
        id_line = [("ActionID", action_id)] if action_id else []
        await self._send(
            encode(
                [
                    ("Response", "Success"),
                    *id_line,
                    ("EventList", "start"),
                    ("Message", "Channels hung up will follow"),
                ]
            )
        )
        matched = [c for c in list(self.ami._channels.values()) if pattern.search(c.name)]
        for channel in matched:
            self.ami._hang_up(channel, cause)
            await self._send(encode([("Event", "ChannelHungup"), ("Channel", channel.name), *id_line]))
        complete = [("Event", "ChannelsHungupListComplete"), *id_line, ("EventList", "Complete")]
        await self._send(encode([*complete, ("ListItems", str(len(matched)))]))
        return True

    async def _action_setvar(self, m: Message) -> bool:
        """manager.c:3600 ``action_setvar``."""
        name, varname, value = m.get("Channel"), m.get("Variable"), m.get("Value")
        if not varname:
            return await self._respond(m, "Error", "No variable specified")
        channel = None
        if name and (channel := self.ami.find_channel(name)) is None:
            return await self._respond(m, "Error", "No such channel")
        if varname.endswith(")"):  # a dialplan function: not modelled, as if it refused the write
            return await self._respond(m, "Error", "Variable not set")
        if channel is None:
            self.ami.globals[varname.lstrip("_")] = value
            body = [("Channel", "none"), ("Uniqueid", "none")]  # stasis_channels.c:1255
        else:
            channel.setvar(varname, value)
            body = channel.snapshot(self.ami.channelvars)
        self.ami._publish(DIALPLAN, "VarSet", [*body, ("Variable", varname), ("Value", escape_c(value))])
        return await self._respond(m, "Success", "Variable Set")

    async def _action_getvar(self, m: Message) -> bool:
        """manager.c:3633 ``action_getvar``: ``Response: Success``, ``Variable``, ``Value``."""
        name, varname = m.get("Channel"), m.get("Variable")
        if not varname:
            return await self._respond(m, "Error", "No variable specified")
        channel = None
        if name and (channel := self.ami.find_channel(name)) is None:
            return await self._respond(m, "Error", "No such channel")
        value = ""
        if not varname.endswith(")"):
            builtin = {}
            if channel is not None:
                builtin = {
                    "CHANNEL": channel.name,
                    "UNIQUEID": channel.uniqueid,
                    "CONTEXT": channel.context,
                    "EXTEN": channel.exten,
                }
            value = builtin.get(varname) or (channel.getvar(varname) if channel else None) or ""
            value = value or self.ami.globals.get(varname, "")
        fields = [("Response", "Success")]
        if action_id := m.get("ActionID"):
            fields.append(("ActionID", action_id))
        await self._send(encode([*fields, ("Variable", varname), ("Value", value)]))
        return True

    async def _action_userevent(self, m: Message) -> bool:
        """manager.c:6508: every header but Action and UserEvent goes into the event, as sent."""
        await self._respond(m, "Success", "Event Sent")
        rest = [
            line for line in m.lines if line[:10].lower() != "userevent:" and line[:7].lower() != "action:"
        ]
        head = [
            "Event: UserEvent",
            f"Privilege: {authority_to_str(USER)}",
            f"UserEvent: {m.get('UserEvent')}",
        ]
        self.ami._publish_raw(USER, _bytes("".join(f"{line}\r\n" for line in [*head, *rest]) + "\r\n"))
        return True


# manager.c:9795: the actions the fake knows, with the write classes that may run them.
_ACTIONS: dict[str, tuple[int, _Handler]] = {
    "ping": (0, _Session._action_ping),
    "events": (0, _Session._action_events),
    "logoff": (0, _Session._action_logoff),
    "login": (0, _Session._action_login),
    "challenge": (0, _Session._action_challenge),
    "hangup": (SYSTEM | CALL, _Session._action_hangup),
    "setvar": (CALL, _Session._action_setvar),
    "getvar": (CALL | REPORTING, _Session._action_getvar),
    "originate": (ORIGINATE, _Session._action_originate),
    "userevent": (USER, _Session._action_userevent),
}


class FakeAmi:
    """An Asterisk 22 AMI on 127.0.0.1, port chosen by the system; ``async with FakeAmi(...) as ami``.

    ``read``/``write`` are the user's manager.conf classes. ``channelvars`` is manager.conf's
    ``channelvars``. ``on_originate`` picks each call's :class:`CallScript`. Times: ``auth_timeout``
    (``authtimeout``, 30 s), ``auth_fail_delay`` (the 1 s sleep after a failed login), ``write_timeout``
    (the user's ``writetimeout``, 100 ms; None: wait for the client however long, pure TCP backpressure).
    ``extensions``: the (context, exten) pairs that exist, None for all.
    """

    def __init__(
        self,
        *,
        username: str = "dialguard",
        secret: str = "s3cret",
        read: str = "system,call,dtmf,user",
        write: str = "system,call,originate",
        channelvars: Sequence[str] = (),
        on_originate: Callable[[ReceivedAction], CallScript] = _default_script,
        host: str = "127.0.0.1",
        port: int = 0,
        auth_timeout: float = 30.0,
        auth_limit: int = 50,
        auth_fail_delay: float = 1.0,
        write_timeout: float | None = 0.1,
        fully_booted: bool = True,
        extensions: Collection[tuple[str, str]] | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.username, self.secret, self.read, self.write = username, secret, read, write
        self.channelvars = tuple(channelvars)
        self.on_originate = on_originate
        self.host, self.port = host, port
        self.auth_timeout, self.auth_limit, self.auth_fail_delay = auth_timeout, auth_limit, auth_fail_delay
        self.write_timeout = write_timeout
        self.fully_booted = fully_booted
        self.extensions = extensions
        self.clock = clock
        self.actions: list[ReceivedAction] = []
        self.calls: list[Call] = []
        self.globals: dict[str, str] = {}
        self.connections = 0  # accepted so far
        self._channels: dict[str, Channel] = {}  # live, by uniqueid
        self._sessions: set[_Session] = set()
        self._session_tasks: set[asyncio.Task[None]] = set()
        self._call_tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._silenced = False
        self._refuse_logins = False
        self._drop_action: str | None = None
        self._drop_performs = True
        self._ids = itertools.count(1)
        self._channel_numbers = itertools.count(1)
        self._booted_at = 0.0
        self._change = asyncio.Event()  # replaced on every change: until() waits on the current one

    # lifecycle

    async def __aenter__(self) -> FakeAmi:
        self._booted_at = asyncio.get_running_loop().time()
        await self.server_up()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server_down()
        for task in list(self._call_tasks):
            task.cancel()
        await asyncio.gather(*self._call_tasks, return_exceptions=True)
        # Sessions are not cancelled (asyncio's stream callback reports a cancelled one as an error):
        # their links are aborted, so each one ends by itself.
        await asyncio.gather(*self._session_tasks)

    async def server_up(self) -> None:
        """Listen (again) on the same host and port: Asterisk is back."""
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def server_down(self) -> None:
        """Asterisk is gone: stop listening (connects are refused) and close every connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.drop_connections()

    # fault injection

    def drop_connections(self) -> None:
        """Close every connection now, as a crash does; calls in progress go on."""
        for session in list(self._sessions):
            session.abort()

    def silence(self) -> None:
        """A half-open link: every connection open now, and every one made until :meth:`unsilence`,
        stays open and swallows everything both ways, forever."""
        self._silenced = True
        for session in self._sessions:
            session.black_holed = True

    def unsilence(self) -> None:
        """New connections work again; the silenced ones stay silent until closed."""
        self._silenced = False

    def drop_after(self, action: str, *, perform: bool = True) -> None:
        """Close the connection the next ``action`` arrives on, right after reading it and before any
        answer. ``perform``: Asterisk still does it (a call is placed); else it is lost with the link."""
        self._drop_action, self._drop_performs = action.lower(), perform

    def refuse_logins(self, refuse: bool = True) -> None:
        """Every Login fails as a wrong secret does (a changed secret, an ACL)."""
        self._refuse_logins = refuse

    # test hooks

    async def emit(self, fields: Mapping[str, str] | Fields, *, category: str = "call") -> None:
        """Send an event to the sessions whose classes take ``category``; returns once written.
        ``Privilege`` is added after ``Event`` unless given."""
        pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
        mask = get_perm(category)
        if not any(key.lower() == "privilege" for key, _ in pairs):
            pairs.insert(1, ("Privilege", authority_to_str(mask)))
        targets = self._publish_raw(mask, encode(pairs))
        await asyncio.gather(*(s.drained() for s in targets))

    async def storm(
        self, rate_per_s: float, seconds: float, *, channels: int = 100, backlog: int = 2000
    ) -> StormReport:
        """``rate_per_s * seconds`` Newstate and VarSet events (as a busy system's calls make them), paced
        on the loop's clock. A session with ``backlog`` events unsent holds the storm back until it has
        written them: the fake never buffers without bound, it slows down as TCP pushes back."""
        loop = asyncio.get_running_loop()
        total = round(rate_per_s * seconds)
        pool = [self._new_channel("PJSIP", "trunk", "", register=False) for _ in range(channels)]
        for n, channel in enumerate(pool):
            channel.caller_num = f"+1555{n:07d}"
            for name in self.channelvars:
                channel.setvar(name, str(uuid.UUID(int=n, version=4)))
        start = loop.time()
        sent = 0
        while sent < total:
            due = min(total, int((loop.time() - start) * rate_per_s) + 1)
            while sent < due:
                channel = pool[sent % channels]
                if sent % 2:
                    value = str(sent)
                    body = [
                        *channel.snapshot(self.channelvars),
                        ("Variable", "DIALGUARD_STEP"),
                        ("Value", value),
                    ]
                    self._publish(DIALPLAN, "VarSet", body)
                else:
                    channel.state = RINGING if channel.state != RINGING else UP
                    self._publish(CALL, "Newstate", channel.snapshot(self.channelvars))
                sent += 1
                full = [s for s in self._sessions if s.backlog >= backlog]
                if full:
                    await asyncio.gather(*(s.drained() for s in full))
            # A burst every few milliseconds at most: pacing per event would cost more than the events.
            await asyncio.sleep(max(0.005, start + sent / rate_per_s - loop.time()))
        await asyncio.gather(*(s.drained() for s in list(self._sessions)))
        return StormReport(events=total, seconds=loop.time() - start)

    async def finish_booting(self) -> None:
        """Started with ``fully_booted=False``: now it is, and says so (asterisk.c:1012)."""
        self.fully_booted = True
        uptime = str(int(asyncio.get_running_loop().time() - self._booted_at))
        self._publish(
            SYSTEM, "FullyBooted", [("Status", "Fully Booted"), ("Uptime", uptime), ("LastReload", uptime)]
        )

    async def until(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (checked on every action, login and disconnect)."""
        async with asyncio.timeout(within):
            while not predicate():
                await self._change.wait()

    def originated(self) -> list[ReceivedAction]:
        return [a for a in self.actions if a.name.lower() == "originate"]

    @property
    def unsent_bytes(self) -> int:
        """What the fake holds for its clients, all sessions together (a storm keeps it bounded)."""
        return sum(session.unsent for session in self._sessions)

    @property
    def logged_in(self) -> int:
        """Sessions logged in now."""
        return sum(1 for s in self._sessions if s.authenticated and not s.closed)

    def find_channel(self, name_or_uniqueid: str) -> Channel | None:
        """channel.c:1417 ``ast_channel_get_by_name``: a channel name (any case) or a uniqueid."""
        for channel in self._channels.values():
            if channel.name.lower() == name_or_uniqueid.lower():
                return channel
        return self._channels.get(name_or_uniqueid)

    @property
    def channels(self) -> list[Channel]:
        return list(self._channels.values())

    # internals

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        unauthenticated = sum(1 for s in self._sessions if not s.authenticated)
        if unauthenticated >= self.auth_limit:  # manager.c:7445: closed before the banner
            writer.close()
            return
        session = _Session(self, reader, writer, self.connections)
        self._sessions.add(session)
        task = asyncio.current_task()
        assert task is not None
        self._session_tasks.add(task)
        try:
            await session.run()
        finally:
            self._session_tasks.discard(task)

    def _session_ended(self, session: _Session) -> None:
        self._sessions.discard(session)
        self._changed()

    def _changed(self) -> None:
        self._change.set()
        self._change = asyncio.Event()

    def _record(self, m: Message, action: str, connection: int) -> None:
        self.actions.append(ReceivedAction(action, m.fields(), m.lines, connection))
        self._changed()

    def _take_drop(self, action: str) -> bool:
        if self._drop_action is not None and action.lower() == self._drop_action:
            self._drop_action = None
            return True
        return False

    def _publish(self, category: int, name: str, body: Fields) -> None:
        self._publish_raw(category, event(name, category, body))

    def _publish_raw(self, category: int, data: bytes) -> list[_Session]:
        targets = [
            s
            for s in self._sessions
            if not s.closed and not s.black_holed and (s.send_events & category) == category
        ]
        for session in targets:
            session.queue(category, data)
        return targets

    def _extension_exists(self, context: str, exten: str) -> bool:
        if not context or not exten:
            return False
        return self.extensions is None or (context, exten) in self.extensions

    def _new_channel(
        self, tech: str, data: str, uniqueid: str, *, linkedid: str = "", register: bool = True
    ) -> Channel:
        """A channel as chan_pjsip names it (``PJSIP/<endpoint>-%08x``) with Asterisk's uniqueid form."""
        endpoint = data.split("@", 1)[1] if "@" in data else data.split("/", 1)[0]
        name = f"{tech}/{endpoint}-{next(self._channel_numbers):08x}"
        uniqueid = uniqueid or f"{int(self.clock().timestamp())}.{next(self._ids)}"
        channel = Channel(name=name, uniqueid=uniqueid, linkedid=linkedid or uniqueid)
        if register:
            self._channels[uniqueid] = channel
        return channel

    def _start_call(self, request: _Originate, script: CallScript) -> Call:
        call = Call(self, request, script)
        self.calls.append(call)
        task = asyncio.get_running_loop().create_task(call.run())
        self._call_tasks.add(task)
        task.add_done_callback(self._call_tasks.discard)
        return call

    def _hang_up(self, channel: Channel, cause: int) -> None:
        for call in self.calls:
            if channel in (call.customer, call.agent) and not call.finished.is_set():
                call.request_hangup(channel, cause)
