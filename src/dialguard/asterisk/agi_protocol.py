"""The AGI protocol from bytes, with no sockets (sans-IO, as h11 and asyncpg's protocol core do).

What Asterisk's ``res/res_agi.c`` sends, in order, on a FastAGI connection::

    agi_network: yes
    agi_network_script: check?tenant=a      <- the path after host:port, query included
    agi_request: agi://127.0.0.1:4573/check?tenant=a
    agi_channel: PJSIP/alice-00000001
    ...                                       <- one "agi_<key>: <value>" line each
    agi_arg_1: +48601234567
    <blank line>

Then it waits for one command line at a time and answers each::

    200 result=1                    SET VARIABLE, VERBOSE, ANSWER ...
    200 result=1 (the value)        GET VARIABLE
    200 result=49 endpos=8000       STREAM FILE interrupted by "1" (ASCII 49)
    200 result=0 (timeout)          WAIT FOR DIGIT / GET DATA when nobody pressed anything
    510 Invalid or unknown command
    511 Command Not Permitted on a dead channel or intercept routine
    520-Invalid command syntax.  Proper usage follows:
    <usage text, several lines>
    520 End of proper usage.
    100 result=0 Trying...          GOSUB, before the routine runs (apps/app_stack.c); then:
    200 result=0 Gosub complete

When the caller hangs up, ``HANGUP`` arrives on a line of its own while Asterisk waits for a command;
the reply to the command in flight, if any, still follows. :class:`CommandExchange` puts these
together into one final reply per command.

The gate may end the session with a line starting ``failure``: ``run_agi`` stops reading and the
channel gets ``AGISTATUS=FAILURE`` (``strncasecmp(buf, "failure", 7)``; a plain end is ``SUCCESS``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

HANGUP_LINE = "HANGUP"
# What res_agi's launch_script itself writes when a script cannot run; run_agi matches the first 7 bytes.
FAILURE_LINE = b"failure\n"
USAGE_START = re.compile(r"^520-")
REPLY = re.compile(r"^(?P<code>\d{3}) ?(?P<rest>.*)$")
RESULT = re.compile(r"^result=(?P<result>-?\S*)\s*(?:\((?P<data>.*)\))?\s*(?P<extras>.*)$")


class ProtocolError(Exception):
    """The peer sent something AGI does not allow: the session must end."""


class LineTooLong(ProtocolError):
    """A line longer than the bound: the peer is not Asterisk, or something is very wrong."""


class ChannelHungUp(Exception):
    """Asterisk answered 511: the channel is gone and this command cannot run on a dead channel."""


class AgiCommandError(Exception):
    """Asterisk answered 510 (unknown command) or 520 (bad syntax): a bug on our side, never the caller's."""

    def __init__(self, command: str, reply: Reply) -> None:
        super().__init__(f"{command!r} -> {reply.text}")
        self.reply = reply


class LineSplitter:
    """Bytes in, complete lines out; refuses a line longer than ``max_line_bytes`` (newline excluded).

    >>> s = LineSplitter(max_line_bytes=64)
    >>> s.feed(b"agi_network: yes\\nagi_net")
    ['agi_network: yes']
    >>> s.feed(b"work_script: check\\r\\n")
    ['agi_network_script: check']
    """

    def __init__(self, *, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._buffer = bytearray()

    @property
    def pending(self) -> bytes:
        return bytes(self._buffer)

    def feed(self, data: bytes) -> list[str]:
        self._buffer += data
        lines: list[str] = []
        if b"\n" in data:  # split once: an environment block is some 25 lines in one read
            *complete, rest = self._buffer.split(b"\n")
            self._buffer = bytearray(rest)
            for raw in complete:
                if len(raw) > self.max_line_bytes:
                    raise LineTooLong(
                        f"line of {len(raw)} bytes exceeds the {self.max_line_bytes}-byte bound"
                    )
                lines.append(raw.rstrip(b"\r").decode("utf-8", errors="replace"))
        if len(self._buffer) > self.max_line_bytes:
            raise LineTooLong(f"unterminated line exceeds the {self.max_line_bytes}-byte bound")
        return lines


# ---------------------------------------------------------------- the environment block


@dataclass(frozen=True, slots=True)
class AgiRequest:
    """One FastAGI session's opening: the route, its arguments, and the whole environment."""

    route: str  # "check" for agi://host:4573/check?x=1
    args: tuple[str, ...]  # agi_arg_1, agi_arg_2, ... in order
    query: Mapping[str, str]  # ?x=1 on the script path
    env: Mapping[str, str] = field(repr=False)

    @property
    def uniqueid(self) -> str:
        return self.env.get("agi_uniqueid", "")

    @property
    def channel(self) -> str:
        return self.env.get("agi_channel", "")


class EnvironmentReader:
    """Collects ``agi_*`` lines up to the blank line that ends the block.

    >>> r = EnvironmentReader(max_lines=16)
    >>> r.feed_line("agi_network_script: check?tenant=a")
    >>> r.feed_line("agi_arg_1: +48 601 234 567")
    >>> r.feed_line("")
    >>> r.request().route, r.request().args, dict(r.request().query)
    ('check', ('+48 601 234 567',), {'tenant': 'a'})
    """

    def __init__(self, *, max_lines: int) -> None:
        self.max_lines = max_lines
        self.env: dict[str, str] = {}
        self.done = False
        self._lines = 0

    def feed_line(self, line: str) -> None:
        if self.done:
            raise ProtocolError("environment block already complete")
        if line == "":
            self.done = True
            return
        self._lines += 1
        if self._lines > self.max_lines:
            raise ProtocolError(f"environment block longer than {self.max_lines} lines")
        key, sep, value = line.partition(":")
        if not sep or not key.startswith("agi_") or " " in key:
            raise ProtocolError(f"not an AGI environment line: {line[:80]!r}")
        self.env[key] = value[1:] if value.startswith(" ") else value

    def request(self) -> AgiRequest:
        if not self.done:
            raise ProtocolError("environment block not complete")
        return request_from_env(self.env)


def request_from_env(env: Mapping[str, str]) -> AgiRequest:
    script = env.get("agi_network_script")
    if script is None:
        # Older Asterisk or a hand-written client: fall back on the request URL's path.
        request = env.get("agi_request", "")
        parts = urlsplit(request)
        script = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
    path, _, query_text = script.partition("?")
    route = unquote(path.strip("/"))
    query = {k: v[-1] for k, v in parse_qs(query_text, keep_blank_values=True).items()}
    args: list[str] = []
    n = 1
    while (arg := env.get(f"agi_arg_{n}")) is not None:
        args.append(arg)
        n += 1
    return AgiRequest(route=route, args=tuple(args), query=query, env=dict(env))


# ---------------------------------------------------------------- commands


def quote(arg: str) -> str:
    """Quote one argument the way res_agi's ``parse_args`` reads it back: quotes and backslashes escaped.

    >>> quote('He said "hi"')
    '"He said \\\\"hi\\\\""'
    """
    if "\n" in arg or "\r" in arg:
        # A newline would end the command and start another one: never let data do that.
        raise ValueError("AGI arguments cannot hold line breaks")
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_command(command: str, args: Iterable[str] = ()) -> bytes:
    """``SET VARIABLE`` + ("X", "a b") -> ``b'SET VARIABLE "X" "a b"\\n'``."""
    if "\n" in command or "\r" in command:
        raise ValueError("AGI commands cannot hold line breaks")
    words = [command, *(quote(a) for a in args)]
    return (" ".join(words) + "\n").encode()


# ---------------------------------------------------------------- many variables in one command

# ``EXEC MSet name=value,name=value`` sets them all in one round trip. Each value passes two parsers
# (Asterisk, main/ and res/):
# 1. res_agi.c ``parse_args`` splits the command line into words: :func:`quote` makes the whole
#    ``name=value,...`` list one word, and ``handle_exec`` hands word 3 (``argv[2]``) alone to MSet;
# 2. pbx_variables.c ``pbx_builtin_setvar_multiple`` (MSet) splits it with ``AST_STANDARD_APP_ARGS``,
#    i.e. app.c ``__ast_app_separate_args(buf, ',', remove_chars=1, ...)``: a ``,`` outside quotes,
#    parentheses and brackets ends a pair; ``"`` toggles quoting and is removed; ``(``/``)`` and
#    ``[``/``]`` nest (so an unbalanced one in a value would swallow the next pairs); ``\`` is removed
#    and the character after it is taken literally. Each pair is then split at its first ``=`` by
#    ``AST_NONSTANDARD_APP_ARGS(pair, ..., '=')`` with room for two parts, which leaves the value
#    exactly as step 2 made it (no second unescaping): only the name is parsed twice.
# So a value is escaped once, a backslash before each of ``\ " , ( ) [ ]``, then quoted for step 1.
# Variables are not substituted (``${...}``) unless the channel sets AGIEXECFULL=yes; we never do.
MSET_SPECIAL = frozenset('\\",()[]')
_MSET_ESCAPES = str.maketrans({ch: "\\" + ch for ch in MSET_SPECIAL})  # one C pass, not a loop per char
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MSET_MAX_PAIRS = 98  # MSet parses 99 arguments; the 99th would hold the rest of the list unsplit


def mset_escape(value: str) -> str:
    """One value for MSet's argument parser (before :func:`quote` adds AGI's layer).

    >>> mset_escape("dnc.internal,consent.missing")
    'dnc.internal\\\\,consent.missing'
    """
    if "\0" in value:
        raise ValueError("a channel variable cannot hold a NUL (Asterisk's strings end there)")
    return value.translate(_MSET_ESCAPES)


def mset_data(variables: Mapping[str, str]) -> str:
    """The argument of ``EXEC MSet``: ``A=1,B=x\\,y`` for {"A": "1", "B": "x,y"}."""
    if not 0 < len(variables) <= MSET_MAX_PAIRS:
        raise ValueError(f"MSet sets 1 to {MSET_MAX_PAIRS} variables, not {len(variables)}")
    for name in variables:
        if not VARIABLE_NAME.match(name):
            raise ValueError(f"not a plain channel variable name: {name!r}")
    return ",".join(f"{name}={mset_escape(value)}" for name, value in variables.items())


# ---------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer from Asterisk: ``200 result=49 (dtmf) endpos=8000`` or ``510 ...``."""

    code: int
    result: str | None = None  # the text after result=, as sent
    data: str | None = None  # the parenthesised part
    extras: Mapping[str, str] = field(default_factory=dict)  # endpos=..., etc.
    text: str = ""  # the whole reply, usage block included

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def interim(self) -> bool:
        """1xx: Asterisk is still at work on the command (GOSUB's routine runs); the final reply follows."""
        return 100 <= self.code < 200

    @property
    def result_int(self) -> int:
        try:
            return int(self.result or "")
        except ValueError:
            raise ProtocolError(f"non-numeric result in {self.text!r}") from None


@dataclass(frozen=True, slots=True)
class HangupNotice:
    """The ``HANGUP`` line: the channel is gone; the reply to the command in flight still follows."""


class ReplyReader:
    """Lines in, :class:`Reply` or :class:`HangupNotice` out; ``None`` while a 520 usage block is open.

    One line, one event: a ``100`` interim comes out as a :class:`Reply` like any other, and
    :class:`CommandExchange` decides what it means for the command in flight.

    >>> r = ReplyReader()
    >>> r.feed_line("200 result=1 (PJSIP/alice)")
    Reply(code=200, result='1', data='PJSIP/alice', extras={}, text='200 result=1 (PJSIP/alice)')
    >>> r.feed_line("520-Invalid command syntax.  Proper usage follows:") is None
    True
    >>> r.feed_line(" Usage: SET VARIABLE <variablename> <value>") is None
    True
    >>> r.feed_line("520 End of proper usage.").code
    520
    """

    MAX_USAGE_LINES = 200

    def __init__(self) -> None:
        self._usage: list[str] | None = None

    def feed_line(self, line: str) -> Reply | HangupNotice | None:
        if self._usage is not None:
            self._usage.append(line)
            if line.startswith("520 "):
                text = "\n".join(self._usage)
                self._usage = None
                return Reply(code=520, text=text)
            if len(self._usage) > self.MAX_USAGE_LINES:
                raise ProtocolError("520 usage block never ended")
            return None
        if line == HANGUP_LINE:
            return HangupNotice()
        if USAGE_START.match(line):
            self._usage = [line]
            return None
        return parse_reply(line)


def parse_reply(line: str) -> Reply:
    """Parse one complete reply line.

    >>> parse_reply("200 result=49 endpos=12960")
    Reply(code=200, result='49', data=None, extras={'endpos': '12960'}, text='200 result=49 endpos=12960')
    >>> parse_reply("200 result=0 (timeout)").data
    'timeout'
    >>> parse_reply("511 Command Not Permitted on a dead channel or intercept routine").code
    511
    >>> parse_reply("100 result=0 Trying...").interim
    True
    """
    m = REPLY.match(line)
    if m is None:
        raise ProtocolError(f"not an AGI reply: {line[:80]!r}")
    code = int(m["code"])
    rest = m["rest"]
    # 200 always carries result=; 100 and app_stack.c's 503 do too; 510/511/520 carry only text.
    r = RESULT.match(rest)
    if r is None:
        if code == 200:
            raise ProtocolError(f"200 reply without result=: {line[:80]!r}")
        return Reply(code=code, text=line)
    extras = dict(kv.split("=", 1) for kv in r["extras"].split() if "=" in kv)
    return Reply(code=code, result=r["result"], data=r["data"], extras=extras, text=line)


class CommandExchange:
    """One command's reply, line by line: ``None`` while more is needed, then the final :class:`Reply`.

    Every shape res_agi.c answers a command with, after the gate has sent it:

    - ``HANGUP`` first (sent at the top of run_agi's loop), then the real reply: :attr:`hung_up` is set;
    - ``100 result=0 Trying...`` (GOSUB) then the real reply: kept in :attr:`interim`;
    - a ``520-`` usage block up to ``520 End of proper usage.``, or one ``520`` line;
    - ``511`` (not on a dead channel): :class:`ChannelHungUp`; ``510``/``520``: :class:`AgiCommandError`;
      any other code (``503 result=-2 Memory allocation failure``): :class:`ProtocolError`.

    >>> x = CommandExchange("GOSUB")
    >>> x.feed_line("100 result=0 Trying...") is None
    True
    >>> x.feed_line("200 result=0 Gosub complete").result
    '0'
    >>> x = CommandExchange("SET VARIABLE")
    >>> x.feed_line("HANGUP") is None, x.hung_up
    (True, True)
    >>> x.feed_line("200 result=1").ok
    True
    """

    MAX_INTERIM = 16  # GOSUB sends one; a peer that keeps saying "trying" is not Asterisk

    def __init__(self, command: str) -> None:
        self.command = command
        self.hung_up = False
        self.interim: list[Reply] = []
        self.final: Reply | None = None
        self._lines = ReplyReader()

    def feed_line(self, line: str) -> Reply | None:
        if self.final is not None:
            raise ProtocolError(f"{self.command!r} already had its reply; got {line[:80]!r}")
        event = self._lines.feed_line(line)
        if event is None:
            return None  # inside a usage block
        if isinstance(event, HangupNotice):
            self.hung_up = True  # the real reply still follows
            return None
        if event.interim:
            if len(self.interim) >= self.MAX_INTERIM:
                raise ProtocolError(f"more than {self.MAX_INTERIM} interim replies to {self.command!r}")
            self.interim.append(event)
            return None
        self.final = event
        if event.code == 511:
            self.hung_up = True
            raise ChannelHungUp(self.command)
        if event.code in (510, 520):
            raise AgiCommandError(self.command, event)
        if not event.ok:
            raise ProtocolError(f"unexpected reply to {self.command!r}: {event.text!r}")
        return event


def digit_of(result: int) -> str | None:
    """STREAM FILE / GET OPTION / WAIT FOR DIGIT return the ASCII code of the key: 49 -> "1"; 0 -> None."""
    if result <= 0:
        return None
    char = chr(result)
    return char if char in "0123456789*#ABCD" else None
