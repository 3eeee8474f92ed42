"""An asyncio FastAGI server: sockets, deadlines and bounds around the sans-IO protocol. No rules here.

Asterisk never times a FastAGI session out itself, so every read has a deadline and every session a
lifetime; a peer outside the CIDR allow-list is closed before a byte is read; lines and the
environment block are bounded. One bad session is logged and closed and never stalls the others.
A session that ends for a reason of ours (a route's bug, a rejected command, a deadline, shutdown)
says so with a ``failure`` line, so the dialplan sees ``AGISTATUS=FAILURE`` rather than ``SUCCESS``.
What the replies mean is decided in agi_protocol; this module only moves bytes and keeps time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import resource
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from dialguard.asterisk.agi_protocol import (
    FAILURE_LINE,
    AgiCommandError,
    AgiRequest,
    ChannelHungUp,
    CommandExchange,
    EnvironmentReader,
    LineSplitter,
    ProtocolError,
    Reply,
    digit_of,
    encode_command,
    mset_data,
)

# Routes catch these from here; they are protocol facts, so they live in agi_protocol.
__all__ = [
    "AgiCommandError",
    "AgiServer",
    "AgiSession",
    "ChannelHungUp",
    "Handler",
    "PeerClosed",
    "PlaybackResult",
]

log = logging.getLogger(__name__)

READ_CHUNK = 4096
ACCEPT_BATCH = 16  # connections asyncio accepts per wake-up of the listening socket (see start)
SOMAXCONN_PATH = "/proc/sys/net/core/somaxconn"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Outcomes that are ours to own: Asterisk should not take them for a clean end (AGISTATUS=SUCCESS).
# Not "unknown_route": that session ends on purpose with a VERBOSE, as it always has.
ENDS_IN_FAILURE = frozenset({"timeout", "protocol_error", "command_error", "error"})


def somaxconn(path: str = SOMAXCONN_PATH) -> int | None:
    """The kernel's cap on any listen backlog (Linux), or None where it cannot be read."""
    try:
        with open(path, encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


class PeerClosed(Exception):
    """The connection closed before the reply we were waiting for."""


@dataclass(frozen=True, slots=True)
class PlaybackResult:
    """What STREAM FILE / GET OPTION / WAIT FOR DIGIT reported."""

    digit: str | None  # the key pressed, if any
    failed: bool  # result=-1: the file could not play or the channel went away
    endpos: int | None = None  # sample offset where playback stopped


class AgiSession:
    """One FastAGI conversation: send a command, read its reply, one at a time (never pipelined)."""

    def __init__(
        self,
        request: AgiRequest,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        lines: LineSplitter,
        *,
        read_timeout: float,
        peer: str,
        pending: Iterable[str] = (),
    ) -> None:
        self.request = request
        self.peer = peer
        self.hung_up = False
        self.failed = False  # a failure line went out: Asterisk reads nothing more
        self._reader = reader
        self._writer = writer
        self._lines = lines
        self._pending: list[str] = list(pending)  # lines that came in behind the environment block
        self._read_timeout = read_timeout
        self._peer_gone = False
        self._unanswered = False  # a command went out and its reply was not read yet

    async def execute(self, command: str, *args: str, reply_within: float | None = None) -> Reply:
        """Send one command and return its final reply; raise :class:`ChannelHungUp` on 511.

        ``reply_within`` (seconds) overrides the deadline for the whole reply (interim lines included)
        for commands that wait on a person.
        """
        return await self.reply_to(self.send(command, *args), reply_within=reply_within)

    def send(self, command: str, *args: str) -> CommandExchange:
        """Write one command now; its reply is read by :meth:`reply_to`, before any other command is
        sent (FastAGI takes one command at a time). Apart from ``execute`` so that a route may let a
        command travel while it awaits something else: the check route's MSet while the decision commits.
        """
        if self.failed:
            raise PeerClosed("the session already ended with a failure line")
        if self._unanswered:
            raise RuntimeError("FastAGI is one command at a time: the last one's reply was not read")
        self._writer.write(encode_command(command, args))
        self._unanswered = True
        return CommandExchange(command)

    async def reply_to(self, exchange: CommandExchange, *, reply_within: float | None = None) -> Reply:
        """The final reply to the command :meth:`send` wrote; raise :class:`ChannelHungUp` on 511."""
        try:
            # One deadline for the whole exchange: a peer dribbling interim lines cannot stretch it.
            async with asyncio.timeout(reply_within if reply_within is not None else self._read_timeout):
                await self._writer.drain()
                while (reply := exchange.feed_line(await self._next_line())) is None:
                    pass
        except (PeerClosed, ConnectionError):
            self._peer_gone = True
            raise
        finally:
            self._unanswered = False
            self.hung_up = self.hung_up or exchange.hung_up
        return reply

    def fail(self, reason: str) -> bool:
        """End the session with a ``failure`` line, so that the dialplan sees ``AGISTATUS=FAILURE``.

        For failures of our own (a route's bug, a rejected command, a deadline). Nothing is sent once
        the channel hung up (``AGISTATUS=HANGUP`` says more) or the peer has gone; returns whether the
        line went out. Synchronous so it can run while the session is being cancelled: the transport
        flushes it before the connection closes.
        """
        if self.failed or self.hung_up or self._peer_gone or self._writer.is_closing():
            return False
        self.failed = True
        log.info("FastAGI %s: ending with AGISTATUS=FAILURE (%s)", self.peer, reason)
        self._writer.write(FAILURE_LINE)
        return True

    async def _next_line(self) -> str:
        while not self._pending:
            data = await self._reader.read(READ_CHUNK)
            if not data:
                raise PeerClosed("Asterisk closed the connection before replying")
            self._pending.extend(self._lines.feed(data))
        return self._pending.pop(0)

    # ------------------------------------------------------------ the commands we use

    async def set_variable(self, name: str, value: str) -> None:
        await self.execute("SET VARIABLE", name, value)

    async def set_variables(self, variables: Mapping[str, str]) -> None:
        """Set several variables in one round trip: ``EXEC MSet`` (see agi_protocol.mset_data)."""
        await self.variables_set(self.send_variables(variables))

    def send_variables(self, variables: Mapping[str, str]) -> CommandExchange:
        """Send the ``EXEC MSet`` of :meth:`set_variables` now; :meth:`variables_set` reads its reply."""
        return self.send("EXEC", "MSet", mset_data(variables))

    async def variables_set(self, exchange: CommandExchange) -> None:
        reply = await self.reply_to(exchange)
        if reply.result != "0":  # MSet answers 0; -2: no such application (pbx_findapp failed)
            raise AgiCommandError("EXEC MSet", reply)

    async def get_variable(self, name: str) -> str | None:
        reply = await self.execute("GET VARIABLE", name)
        return reply.data if reply.result == "1" else None

    async def get_full_variable(self, expression: str) -> str | None:
        """``GET FULL VARIABLE``: an expression with ``${...}`` and functions, evaluated by Asterisk."""
        reply = await self.execute("GET FULL VARIABLE", expression)
        return reply.data if reply.result == "1" else None

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.execute("VERBOSE", message, str(level))

    async def answer(self) -> bool:
        return (await self.execute("ANSWER")).result == "0"

    async def hangup(self) -> None:
        await self.execute("HANGUP")

    async def stream_file(self, name: str, escape_digits: str = "", *, reply_within: float) -> PlaybackResult:
        reply = await self.execute("STREAM FILE", name, escape_digits, reply_within=reply_within)
        return self._playback(reply)

    async def get_option(
        self, name: str, escape_digits: str, wait_ms: int, *, reply_within: float
    ) -> PlaybackResult:
        reply = await self.execute("GET OPTION", name, escape_digits, str(wait_ms), reply_within=reply_within)
        return self._playback(reply)

    async def wait_for_digit(self, wait_ms: int) -> PlaybackResult:
        within = self._read_timeout + wait_ms / 1000
        return self._playback(await self.execute("WAIT FOR DIGIT", str(wait_ms), reply_within=within))

    @staticmethod
    def _playback(reply: Reply) -> PlaybackResult:
        result = reply.result_int
        endpos = reply.extras.get("endpos")
        return PlaybackResult(
            digit=digit_of(result),
            failed=result < 0,
            endpos=int(endpos) if endpos and endpos.lstrip("-").isdigit() else None,
        )


Handler = Callable[[AgiSession], Awaitable[None]]


def default_max_sessions() -> int:
    """Sessions at once when agi.max_sessions is 0: what the open-file limit leaves after room for the
    database pools, the HTTP API and the journal (256), at most 2,000."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 2000
    return max(16, min(2000, soft - 256))


class AgiServer:
    """Accepts FastAGI connections and hands each session to the handler for its route."""

    def __init__(
        self,
        *,
        routes: Mapping[str, Handler],
        host: str = "127.0.0.1",
        port: int = 4573,
        allow: Iterable[str | Network] = ("127.0.0.0/8", "::1/128"),
        read_timeout: float = 5.0,
        session_timeout: float = 120.0,
        max_line_bytes: int = 8192,
        max_env_lines: int = 200,
        backlog: int = 1024,
        max_sessions: int = 0,
        route_lifetimes: Mapping[str, float] | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.routes = dict(routes)
        self.host = host
        self._port = port
        self.allow: tuple[Network, ...] = tuple(ipaddress.ip_network(c, strict=False) for c in allow)
        self.read_timeout = read_timeout
        self.session_timeout = session_timeout
        self.max_line_bytes = max_line_bytes
        self.max_env_lines = max_env_lines
        # Connections the kernel may hold finished but not yet accepted. asyncio's default (100)
        # overflowed in a 600-call burst on a real Asterisk: each overflow is a call held up by a
        # SYN retransmit (1 s, then 3 s...) before its check even starts.
        self.backlog = backlog
        # Sessions at once; beyond it a call is refused at once (AGISTATUS=FAILURE) rather than let
        # the process run out of file descriptors and lose its database connections and journal.
        self.max_sessions = max_sessions or default_max_sessions()
        # How long a session of a route may live: a check needs seconds, a notice with prompts minutes.
        self.route_lifetimes = dict(route_lifetimes or {})
        # Several processes on one port (SO_REUSEPORT): the kernel spreads the connections among them.
        self.reuse_port = reuse_port
        self.stats: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        cap = somaxconn()
        if cap is not None and cap < self.backlog:
            log.warning(
                "agi.backlog is %d but the kernel caps listen backlogs at net.core.somaxconn = %d: "
                "a burst of calls beyond that overflows; raise it (sysctl -w net.core.somaxconn=%d)",
                self.backlog,
                cap,
                self.backlog,
            )
        # asyncio accepts as many connections per wake-up as its backlog says before handling any: with
        # the kernel's queue full (1,024) that is 1,024 descriptors at once, past what max_sessions leaves
        # free under a low open-file limit, and accept() fails with EMFILE. So asyncio gets a small batch,
        # and the kernel its full queue again (listen() may be called again on a listening socket).
        self._server = await asyncio.start_server(
            self._accept,
            self.host,
            self._port,
            limit=self.max_line_bytes,
            backlog=ACCEPT_BATCH,
            reuse_port=self.reuse_port,
        )
        for listening in self._server.sockets:
            with socket.socket(fileno=os.dup(listening.fileno())) as same:  # the same socket, our own fd
                same.listen(self.backlog)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._closing = True
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.gather(*self._sessions, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    @staticmethod
    def _loop_time() -> float:
        return asyncio.get_running_loop().time()

    def allowed(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allow)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            # Our own close() cancelled it: end normally, since 3.11's start_server callback calls
            # task.exception() on a cancelled task and the loop reports that as an error (fixed in 3.12).
            if not self._closing:
                raise
        finally:
            self._sessions.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        host = str(peername[0]) if peername else "?"
        peer = f"{host}:{peername[1]}" if peername else "?"
        if not self.allowed(host):
            self.stats["refused"] += 1
            log.warning("FastAGI connection from %s refused: not in agi.allow", peer)
            return
        if len(self._sessions) > self.max_sessions:
            self.stats["over_capacity"] += 1
            if self.stats["over_capacity"] % 100 == 1:  # a flood is logged, not echoed line by line
                log.warning(
                    "FastAGI at agi.max_sessions (%d): call from %s refused with AGISTATUS=FAILURE "
                    "(%d refused so far)", self.max_sessions, peer, self.stats["over_capacity"],
                )  # fmt: skip
            writer.write(FAILURE_LINE)
            return
        self.stats["sessions"] += 1
        lines = LineSplitter(max_line_bytes=self.max_line_bytes)
        outcome = "error"  # stays so for a handler's bug, and for a session cancelled by close()
        session: AgiSession | None = None
        try:
            async with asyncio.timeout(self.session_timeout) as lifetime:
                session = await self._open(reader, writer, lines, peer)
                if (limit := self.route_lifetimes.get(session.request.route)) is not None:
                    lifetime.reschedule(min(lifetime.when() or float("inf"), self._loop_time() + limit))
                handler = self.routes.get(session.request.route)
                if handler is None:
                    outcome = "unknown_route"
                    log.warning("FastAGI %s asked for unknown route %r", peer, session.request.route)
                    await session.verbose(
                        f"dialguard: no route {session.request.route!r}; "
                        f"routes: {', '.join(sorted(self.routes))}"
                    )
                    return
                await handler(session)
                outcome = "hung_up" if session.hung_up else "failed" if session.failed else "ok"
        except TimeoutError:
            outcome = "timeout"
            log.warning("FastAGI %s timed out (no answer within the deadline); session closed", peer)
        except PeerClosed as exc:
            outcome = "peer_closed"
            log.info("FastAGI %s: %s", peer, exc)
        except ChannelHungUp:
            outcome = "hung_up"
            log.info("FastAGI %s: channel hung up; session ended", peer)
        except ProtocolError as exc:
            outcome = "protocol_error"
            log.warning("FastAGI %s sent malformed input: %s; session closed", peer, exc)
        except AgiCommandError as exc:
            outcome = "command_error"
            log.error("FastAGI %s rejected a command (a dialguard bug): %s", peer, exc)
        except (ConnectionError, OSError) as exc:
            outcome = "peer_closed"
            log.info("FastAGI %s connection lost: %s", peer, exc)
        except Exception:
            log.exception("FastAGI %s: handler failed; session closed", peer)
        finally:
            # In finally, so a session cut short by close() tells Asterisk too.
            if session is not None and outcome in ENDS_IN_FAILURE:
                session.fail("server shutting down" if self._closing and outcome == "error" else outcome)
            self.stats[outcome] += 1

    async def _open(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lines: LineSplitter, peer: str
    ) -> AgiSession:
        env = EnvironmentReader(max_lines=self.max_env_lines)
        leftover: list[str] = []
        # One deadline for the whole block, not one per read: Asterisk writes it at once, and a peer
        # trickling a line every few seconds would otherwise hold a session (of agi.max_sessions) until
        # session_timeout, before any route's own lifetime applies.
        async with asyncio.timeout(self.read_timeout):
            while not env.done:
                data = await reader.read(READ_CHUNK)
                if not data:
                    raise PeerClosed("connection closed inside the environment block")
                for line in lines.feed(data):
                    if env.done:
                        leftover.append(line)  # Asterisk sends nothing unasked; keep it for the reply reader
                    else:
                        env.feed_line(line)
        return AgiSession(
            env.request(), reader, writer, lines, read_timeout=self.read_timeout, peer=peer, pending=leftover
        )
