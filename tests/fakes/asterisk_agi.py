"""A FastAGI client that behaves as Asterisk's ``res/res_agi.c`` does, for tests and benchmarks.

Faithful to the source where it matters to us:
- ``launch_netscript``: ``agi_network: yes``, then ``agi_network_script: <path?query>``;
  ``setup_env``: ``agi_request`` first, the channel's fields, ``agi_arg_N``, and a blank line.
- ``run_agi``: one command line at a time, answered before the next is read; no timeout of its own.
  When the channel hangs up, ``HANGUP`` is sent once, at the top of the loop; from then on only the
  dead-safe commands run (``GET/SET VARIABLE``, ``EXEC``, ``VERBOSE``, ``NOOP``, ``DATABASE *``)
  and every other one is answered ``511``.
- ``parse_args``: words split on blanks, ``"`` toggles quoting, ``\\`` escapes the next character.
- ``EXEC``: ``handle_exec`` runs the application named by word 2 with word 3 alone as its data and
  answers ``200 result=<what it returned>`` (``-2`` when there is no such application); the fake runs
  ``MSet`` (``pbx_builtin_setvar_multiple``) with app.c's ``__ast_app_separate_args`` ported below;
  other applications do nothing and answer ``200 result=0``. AGIEXECFULL is taken to be unset.
- Replies: ``200 result=...`` per handler, ``510`` for an unknown command, a ``520-`` usage block.
  ``GOSUB`` (``apps/app_stack.c``, ``handle_gosub``) sends ``100 result=0 Trying...`` before the routine
  runs and ``200 result=0 Gosub complete`` after it.
- ``AGISTATUS`` as ``run_agi`` decides it and ``agi_exec_full`` sets it: ``SUCCESS``; ``HANGUP`` when the
  channel went away, unless a failure came first; ``FAILURE`` on a line starting ``failure`` (any case:
  ``strncasecmp(buf, "failure", 7)``), and when a command returns ``RESULT_FAILURE`` (a prompt that does
  not exist, a GOSUB label not found) while the channel is still up or already dead, never because of a
  hangup in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

ASTDATADIR = "/var/lib/asterisk"  # ast_config_AST_DATA_DIR, as a default install has it

DEAD_SAFE = {
    ("asyncagi", "break"),
    ("database", "del"),
    ("database", "deltree"),
    ("database", "get"),
    ("database", "put"),
    ("exec",),
    ("get", "full", "variable"),
    ("get", "variable"),
    ("noop",),
    ("set", "variable"),
    ("verbose",),
    ("speech", "destroy"),
    ("speech", "unload", "grammar"),
}
KNOWN = DEAD_SAFE | {
    ("answer",),
    ("channel", "status"),
    ("get", "data"),
    ("get", "option"),
    ("gosub",),
    ("hangup",),
    ("stream", "file"),
    ("control", "stream", "file"),
    ("wait", "for", "digit"),
    ("say", "digits"),
    ("say", "number"),
    ("set", "autohangup"),
    ("record", "file"),
}
LONGEST_FIRST = sorted(KNOWN, key=len, reverse=True)  # "get full variable" before "get ..."
USAGE = {
    (
        "set",
        "variable",
    ): " Usage: SET VARIABLE <variablename> <value>\n Sets a variable to the current channel.",
    ("get", "variable"): " Usage: GET VARIABLE <variablename>\n Returns 0 if <variablename> is not set.",
    ("stream", "file"): " Usage: STREAM FILE <filename> <escape_digits> [sample offset]",
    ("get", "option"): " Usage: GET OPTION <filename> <escape_digits> [timeout]",
    ("wait", "for", "digit"): " Usage: WAIT FOR DIGIT <timeout>",
    ("verbose",): " Usage: VERBOSE <message> <level>",
    ("gosub",): " Usage: GOSUB <context> <extension> <priority> [<optional-argument>]",
}
SAMPLES_PER_PROMPT = 16000  # what endpos reports for a prompt played to its end (2 s at 8 kHz)
_uniqueids = itertools.count(1)


_PLAIN_WORD = re.compile(r'(?:"[^"]*"|[^ \t"])+')


def parse_args(line: str) -> list[str]:
    """res_agi.c's ``parse_args``, character for character (with a fast path for lines without escapes)."""
    if "\\" not in line and line.count('"') % 2 == 0:
        # Without backslashes and with balanced quotes the C loop reduces to: words of quoted or
        # unquoted runs, quotes removed. The unit tests hold both paths to the same answers.
        return [word.replace('"', "") for word in _PLAIN_WORD.findall(line)]
    return _parse_args_slow(line)


def separate_args(buf: str, delim: str, *, remove_chars: bool, arraylen: int) -> list[str]:
    """main/app.c ``__ast_app_separate_args``, step for step: what ``AST_STANDARD_APP_ARGS`` (``,``) and
    ``AST_NONSTANDARD_APP_ARGS`` give an application. ``(``/``)`` and ``[``/``]`` nest and ``"`` quotes
    (removed when ``remove_chars``); ``\\`` is removed and the next character kept as it is. At most
    ``arraylen - 1`` arguments are split; the rest of the buffer, untouched, is the last one."""
    argv: list[str] = []
    paren = bracket = 0
    quote = False
    i, n = 0, len(buf)
    after_delim = False  # "(scan - 1) == wasdelim": the buffer ended right after a delimiter
    while i < n and len(argv) < arraylen - 1:
        cur: list[str] = []
        after_delim = False
        while i < n:
            ch = buf[i]
            if ch == "(":
                paren += 1
            elif ch == ")":
                paren = max(paren - 1, 0)
            elif ch == "[":
                bracket += 1
            elif ch == "]":
                bracket = max(bracket - 1, 0)
            elif ch == '"' and delim != '"':
                quote = not quote
                if remove_chars:
                    i += 1
                    continue
            elif ch == "\\":
                if i + 1 == n:
                    # C removes it and then steps over the terminator: reads past the string's end.
                    raise ValueError("a trailing backslash: Asterisk would read past the end of the data")
                if not remove_chars:
                    cur.append(ch)
                cur.append(buf[i + 1])
                i += 2
                continue
            elif ch == delim and not paren and not quote and not bracket:
                i += 1
                after_delim = True
                break
            cur.append(ch)
            i += 1
        argv.append("".join(cur))
    if i < n or after_delim:
        argv.append(buf[i:])
    return argv


def mset(data: str) -> list[tuple[str, str]]:
    """main/pbx_variables.c ``pbx_builtin_setvar_multiple``: the (name, value) pairs MSet sets."""
    pairs = []
    for item in separate_args(data, ",", remove_chars=True, arraylen=99):
        pair = separate_args(item, "=", remove_chars=True, arraylen=2)
        if len(pair) == 2:  # "ignoring entry with no '='"
            pairs.append((pair[0], pair[1]))
    return pairs


def _parse_args_slow(line: str) -> list[str]:
    argv: list[str] = []
    cur: list[str] | None = None
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                cur = []
                argv.append("")
                whitespace = False
            escaped = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            if cur is not None:
                argv[-1] = "".join(cur)
                cur = None
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            cur = []
            argv.append("")
            whitespace = False
        assert cur is not None
        cur.append(ch)
        escaped = False
    if cur is not None:
        argv[-1] = "".join(cur)
    return argv


@dataclass
class Channel:
    """The channel running ``AGI()``: what ``setup_env`` reports and what the dialplan would see."""

    extension: str = "s"
    context: str = "dialguard-check"
    name: str = ""
    uniqueid: str = ""
    language: str = "en"
    callerid: str = "1001"
    calleridname: str = "Agent 1001"
    variables: dict[str, str] = field(default_factory=dict)
    # Keys the callee will press, consumed by STREAM FILE / GET OPTION / WAIT FOR DIGIT in order.
    dtmf: list[str] = field(default_factory=list)
    # Sound files that exist; None: every file exists.
    sounds: set[str] | None = None
    # Hang up after this many commands have been answered (0: before the first command).
    hangup_after: int | None = None
    # Hang up while the Nth STREAM FILE / GET OPTION is playing (1-based).
    hangup_in_prompt: int | None = None
    # Called as each prompt starts playing: the world may change while the callee listens.
    during_prompt: Callable[[], None] | None = None
    # Awaited as each command arrives, before it runs (argv as parsed): a test looks at the world then.
    on_command: Callable[[list[str]], Awaitable[None]] | None = None
    # The link drops after this many commands were answered: a session cut short (the gate sees EOF).
    cut_after: int | None = None
    # The dialplan GOSUB can run, by context: given the routine's arguments, what it sets GOSUB_RETVAL to.
    subroutines: dict[str, Callable[[list[str]], str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = next(_uniqueids)
        self.uniqueid = self.uniqueid or f"1700000000.{n}"
        self.name = self.name or f"PJSIP/agent-{n:08x}"


@dataclass
class AgiRun:
    """What happened, as Asterisk saw it."""

    status: str  # AGISTATUS: SUCCESS, HANGUP, FAILURE
    channel: Channel
    commands: list[list[str]]  # argv of each command received, in order
    replies: list[str]  # every line sent after the environment block
    verbose: list[str]
    failure_line: str | None = None  # the line that ended the session with AGISTATUS=FAILURE, as received

    @property
    def variables(self) -> dict[str, str]:
        return self.channel.variables


class FakeAsterisk:
    """Runs ``AGI(agi://host:port/script,args...)`` on a fake channel against a real FastAGI server."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    def environment(self, script: str, args: Sequence[str], channel: Channel) -> bytes:
        lines = [
            "agi_network: yes",
            f"agi_network_script: {script}",
            f"agi_request: agi://{self.host}:{self.port}/{script}",
            f"agi_channel: {channel.name}",
            f"agi_language: {channel.language}",
            f"agi_type: {channel.name.split('/', 1)[0]}",
            f"agi_uniqueid: {channel.uniqueid}",
            "agi_version: 22.5.0",
            f"agi_callerid: {channel.callerid}",
            f"agi_calleridname: {channel.calleridname}",
            "agi_callingpres: 0",
            "agi_callingani2: 0",
            "agi_callington: 0",
            "agi_callingtns: 0",
            "agi_dnid: unknown",
            "agi_rdnis: unknown",
            f"agi_context: {channel.context}",
            f"agi_extension: {channel.extension}",
            "agi_priority: 2",
            "agi_enhanced: 0.0",
            "agi_accountcode: ",
            "agi_threadid: 140234567890",
            *(f"agi_arg_{i}: {a}" for i, a in enumerate(args, 1)),
            "",
        ]
        return ("\n".join(lines) + "\n").encode()

    async def agi(
        self,
        script: str,
        *args: str,
        channel: Channel | None = None,
        within: float = 10.0,
    ) -> AgiRun:
        channel = channel or Channel()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return await self.session(reader, writer, script, *args, channel=channel, within=within)

    async def session(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        script: str,
        *args: str,
        channel: Channel | None = None,
        within: float = 10.0,
    ) -> AgiRun:
        """The session on a connection already made (``hagi`` makes its own, target by target)."""
        channel = channel or Channel()
        run = AgiRun(status="SUCCESS", channel=channel, commands=[], replies=[], verbose=[])
        try:
            async with asyncio.timeout(within):
                writer.write(self.environment(script, args, channel))
                await writer.drain()
                await _Dialog(reader, writer, channel, run).loop()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return run


MAX_AGI_CONNECT = 2.0  # res_agi.c: seconds a FastAGI connect may take before the next address is tried


async def hagi(
    targets: Sequence[FakeAsterisk],
    script: str,
    *args: str,
    channel: Channel | None = None,
    within: float = 10.0,
) -> tuple[int, AgiRun]:
    """``AGI(hagi://...)`` as ``launch_ha_netscript`` runs it, the SRV records already in order: each
    target gets a connect of ``MAX_AGI_CONNECT`` seconds, and the first that connects is the session
    (which target: its index). There is no fail-over once connected: Asterisk has no read timeout, so
    a target that accepted and then never answers holds the call (``within`` only bounds a test).
    ConnectionRefusedError when no target connects ("Couldn't reconnect to any of the SRV targets")."""
    for index, target in enumerate(targets):
        try:
            async with asyncio.timeout(MAX_AGI_CONNECT):
                reader, writer = await asyncio.open_connection(target.host, target.port)
        except (OSError, TimeoutError):
            continue  # "AGI request failed for host ...": the next record
        run = await target.session(reader, writer, script, *args, channel=channel, within=within)
        return index, run
    raise ConnectionRefusedError(f"no FastAGI target of {len(targets)} connected")


class _Dialog:
    """``run_agi``'s loop for one session."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, channel: Channel, run: AgiRun
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.channel = channel
        self.run = run
        self.dead = False
        self.needhup = channel.hangup_after == 0
        self.hanging_up = False  # ast_check_hangup(chan): the channel is going, run_agi has not seen it yet
        self.prompts = 0
        self.handlers: dict[tuple[str, ...], Callable[[list[str]], list[str]]] = {
            ("set", "variable"): self.set_variable,
            ("get", "variable"): self.get_variable,
            ("get", "full", "variable"): self.get_full_variable,
            ("verbose",): self.verbose,
            ("answer",): lambda argv: ["200 result=0"],
            ("noop",): lambda argv: ["200 result=0"],
            ("exec",): self.exec_,
            ("hangup",): self.hangup,
            ("stream", "file"): self.stream_file,
            ("get", "option"): self.get_option,
            ("wait", "for", "digit"): self.wait_for_digit,
        }

    async def loop(self) -> None:
        while True:
            if self.needhup:
                self.needhup = False
                self.dead = True
                self.hanging_up = False
                if self.run.status == "SUCCESS":  # "if (!returnstatus) returnstatus = AGI_RESULT_HANGUP"
                    self.run.status = "HANGUP"
                await self.send(["HANGUP"])
            line = await self.reader.readline()
            if not line:
                return  # "AGI Script completed"
            text = line.decode(errors="replace")
            if text[:7].lower() == "failure":
                self.run.status = "FAILURE"
                self.run.failure_line = text.rstrip("\n")
                return
            await self.send(await self.handle(text.rstrip("\n")))
            if self.channel.cut_after is not None and len(self.run.commands) >= self.channel.cut_after:
                return
            if self.channel.hangup_after is not None and len(self.run.commands) >= self.channel.hangup_after:
                self.needhup = self.needhup or not self.dead

    async def send(self, lines: list[str]) -> None:
        self.run.replies.extend(lines)
        self.writer.write("".join(f"{line}\n" for line in lines).encode())
        with contextlib.suppress(ConnectionError):  # Asterisk writes and moves on; so do we
            await self.writer.drain()

    def result_failure(self) -> None:
        """A handler's ``RESULT_FAILURE``: AGISTATUS=FAILURE unless a hangup in progress explains it."""
        if self.dead or not self.hanging_up:
            self.run.status = "FAILURE"

    async def handle(self, text: str) -> list[str]:
        argv = parse_args(text)
        self.run.commands.append(argv)
        if self.channel.on_command is not None:
            await self.channel.on_command(argv)
        words = tuple(a.lower() for a in argv)
        match = next((k for k in LONGEST_FIRST if words[: len(k)] == k), None)
        if match is None:
            return ["510 Invalid or unknown command"]
        if self.dead and match not in DEAD_SAFE:
            return ["511 Command Not Permitted on a dead channel or intercept routine"]
        if match == ("gosub",):
            return await self.gosub(argv)
        handler = self.handlers.get(match)
        if handler is None:
            return ["200 result=0"]
        return handler(argv)

    @staticmethod
    def usage(key: tuple[str, ...]) -> list[str]:
        return [
            "520-Invalid command syntax.  Proper usage follows:",
            *USAGE.get(key, " Usage: see core show agi").split("\n"),
            "520 End of proper usage.",
        ]

    def set_variable(self, argv: list[str]) -> list[str]:
        if len(argv) != 4:
            return self.usage(("set", "variable"))
        self.channel.variables[argv[2]] = argv[3]
        return ["200 result=1"]

    def exec_(self, argv: list[str]) -> list[str]:
        if len(argv) < 2:
            return self.usage(("exec",))
        data = argv[2] if len(argv) > 2 else ""
        if argv[1].lower() == "mset":  # pbx_findapp is case-insensitive
            if data:  # ast_strlen_zero: a warning, nothing set
                for name, value in mset(data):
                    self.channel.variables[name] = value
            return ["200 result=0"]
        return ["200 result=0"]

    def get_variable(self, argv: list[str]) -> list[str]:
        if len(argv) != 3:
            return self.usage(("get", "variable"))
        value = self.channel.variables.get(argv[2])
        return ["200 result=0"] if value is None else [f"200 result=1 ({value})"]

    def get_full_variable(self, argv: list[str]) -> list[str]:
        """handle_getvariablefull: the expression substituted as pbx_substitute_variables_helper does —
        here ``${NAME}``, ``${ASTDATADIR}`` and ``${STAT(e,FILE)}`` (func_env: "1" if the file exists)."""
        if len(argv) not in (4, 5):
            return self.usage(("get", "full", "variable"))
        builtin = {"ASTDATADIR": ASTDATADIR}
        text = re.sub(
            r"\$\{([A-Za-z0-9_]+)\}",
            lambda m: builtin.get(m[1], self.channel.variables.get(m[1], "")),
            argv[3],
        )
        text = re.sub(r"\$\{STAT\(e,([^)]*)\)\}", lambda m: "1" if self._sound_exists(m[1]) else "0", text)
        return [f"200 result=1 ({text})"]

    def _sound_exists(self, path: str) -> bool:
        """A sound file as STAT sees it: <ASTDATADIR>/sounds/<name>.<format>, or an absolute path."""
        name = path.rsplit(".", 1)[0]
        name = name.removeprefix(f"{ASTDATADIR}/sounds/")
        return self.channel.sounds is None or name in self.channel.sounds

    def verbose(self, argv: list[str]) -> list[str]:
        if len(argv) < 2:
            return self.usage(("verbose",))
        self.run.verbose.append(argv[1])
        return ["200 result=1"]

    def hangup(self, argv: list[str]) -> list[str]:
        self.needhup = True
        return ["200 result=1"]

    def _play(self, name: str, escape: str) -> tuple[int, int]:
        """(result, endpos) of playing one file: a key in ``escape`` stops it."""
        self.prompts += 1
        if self.channel.during_prompt is not None:
            self.channel.during_prompt()
        if self.channel.sounds is not None and name not in self.channel.sounds:
            self.result_failure()  # "200 result=-1 endpos=0" and RESULT_FAILURE: the channel is fine
            return -1, 0
        if self.channel.hangup_in_prompt == self.prompts:
            self.needhup = self.hanging_up = True
            self.result_failure()  # the hangup explains the -1: AGISTATUS stays as it was
            return -1, SAMPLES_PER_PROMPT // 3
        if self.channel.dtmf and self.channel.dtmf[0] in escape:
            return ord(self.channel.dtmf.pop(0)), SAMPLES_PER_PROMPT // 2
        return 0, SAMPLES_PER_PROMPT

    def stream_file(self, argv: list[str]) -> list[str]:
        if len(argv) not in (4, 5):
            return self.usage(("stream", "file"))
        result, endpos = self._play(argv[2], argv[3])
        return [f"200 result={result} endpos={endpos}"]

    def get_option(self, argv: list[str]) -> list[str]:
        if len(argv) not in (4, 5):
            return self.usage(("get", "option"))
        result, endpos = self._play(argv[2], argv[3])
        if result == 0 and self.channel.dtmf and self.channel.dtmf[0] in argv[3]:
            result = ord(self.channel.dtmf.pop(0))  # pressed during the wait after the prompt
        return [f"200 result={result} endpos={endpos}"]

    async def gosub(self, argv: list[str]) -> list[str]:
        if len(argv) not in (4, 5):
            return self.usage(("gosub",))
        routine = self.channel.subroutines.get(argv[1])
        if routine is None:
            self.result_failure()
            return ["200 result=-1 Gosub label not found"]
        # The interim line goes out on its own before the routine runs, as handle_gosub writes it.
        await self.send(["100 result=0 Trying..."])
        self.channel.variables["GOSUB_RETVAL"] = routine(argv[4].split(",") if len(argv) == 5 else [])
        return ["200 result=0 Gosub complete"]

    def wait_for_digit(self, argv: list[str]) -> list[str]:
        if len(argv) != 4:
            return self.usage(("wait", "for", "digit"))
        if self.channel.dtmf:
            return [f"200 result={ord(self.channel.dtmf.pop(0))}"]
        return ["200 result=0"]
