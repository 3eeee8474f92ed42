"""A small AMI client: one long-lived, reconnecting link to Asterisk's Manager Interface.

Why our own rather than panoramisk's ``Manager`` behind a wrapper: panoramisk keeps the actions in
flight when a link drops and sends them again after it reconnects. For ``Originate`` that is a second
call to a consumer, itself a violation, and turning it off means reaching into its internals; its
actions have no deadline, and it has no ping watchdog for a half-open link. What remains once those
are taken out is this module: connect, log in, a reader, one future per ActionID, a ping.

What it promises:
- nothing is ever sent twice: an action whose answer is lost (the link drops, the deadline passes)
  fails with :class:`AmiOutcomeUnknown`; an action asked for while the link is down fails with
  :class:`AmiUnavailable` and was not sent;
- every action has a deadline; a ``Ping`` every ``ping_interval`` seconds finds a half-open link,
  which is dropped and dialled again with a backoff;
- events are handed to ``on_event`` as they are read, never queued here: the reader keeps pace with
  Asterisk, and the consumer bounds its own work;
- a refused login is a state (``auth_failed``) for ``/healthz`` and one log line, retried slowly, not a
  crash loop; the secret is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from dialguard.asterisk.ami_protocol import AmiMessage, AmiParser, AmiProtocolError, Banner, encode_action

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024


class AmiUnavailable(Exception):
    """The AMI link is not up: the action was not sent."""


class AmiOutcomeUnknown(Exception):
    """The action was sent but its answer never came (the link dropped or the deadline passed); it is
    not sent again."""


class AmiActionFailed(Exception):
    """Asterisk answered the action with ``Response: Error``."""

    def __init__(self, response: AmiMessage) -> None:
        super().__init__(response.get("Message") or "Response: Error")
        self.response = response


class AmiLoginRefused(Exception):
    """Asterisk refused the AMI user's name or secret."""


class LinkState(StrEnum):
    STARTING = "starting"
    UP = "up"
    DOWN = "down"
    AUTH_FAILED = "auth_failed"


@dataclass(frozen=True, slots=True)
class LinkStatus:
    state: LinkState
    error: str = ""
    reconnects: int = 0

    def as_json(self) -> dict[str, object]:
        return {"state": str(self.state), "error": self.error, "reconnects": self.reconnects}


class AmiClient:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        secret: str,
        on_event: Callable[[AmiMessage], None],
        action_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        ping_interval: float = 10.0,
        ping_timeout: float = 5.0,
        first_backoff: float = 0.5,
        max_backoff: float = 30.0,
        login_retry: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret
        self._on_event = on_event
        self.action_timeout = action_timeout
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.login_retry = login_retry
        # A fresh prefix per client: an answer meant for another process's action can never match ours.
        self._ids = (f"dg-{secrets.token_hex(4)}-{n}" for n in itertools.count(1))
        self._pending: dict[str, asyncio.Future[AmiMessage]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._status = LinkStatus(LinkState.STARTING)
        self._up = asyncio.Event()
        self._events_on = True

    def __repr__(self) -> str:
        return f"<AmiClient {self.username}@{self.host}:{self.port} {self._status.state}>"

    @property
    def status(self) -> LinkStatus:
        return self._status

    @property
    def is_up(self) -> bool:
        return self._status.state is LinkState.UP

    async def wait_up(self, within: float) -> bool:
        """True once the link is up (logged in), False if it is not within ``within`` seconds."""
        try:
            await asyncio.wait_for(self._up.wait(), within)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Keep the link up until cancelled: connect, log in, read; after a drop, again with a backoff."""
        failures = 0
        while True:
            try:
                await self._session()
            except AmiLoginRefused as exc:
                failures = 0
                self._set(LinkState.AUTH_FAILED, str(exc))
                log.error(
                    "AMI login as %r to %s:%s refused (%s): check ami.username and ami.secret against "
                    "manager.conf; trying again in %g s",
                    self.username, self.host, self.port, exc, self.login_retry,
                )  # fmt: skip
                await asyncio.sleep(self.login_retry)
                continue
            except (OSError, EOFError, TimeoutError, AmiProtocolError, AmiOutcomeUnknown) as exc:
                error = _describe(exc)
            failures += 1
            delay = min(self.max_backoff, self.first_backoff * 2.0 ** min(failures - 1, 32))
            if self._status.state is not LinkState.DOWN or failures == 1:
                log.warning("AMI link to %s:%s down (%s); again in %g s", self.host, self.port, error, delay)
            self._set(LinkState.DOWN, error)
            await asyncio.sleep(delay)

    async def action(
        self, name: str, headers: Iterable[tuple[str, str]] = (), *, within: float | None = None
    ) -> AmiMessage:
        """Send one action and wait for its response, under a deadline. Sent at most once, ever."""
        writer = self._writer
        if writer is None or not self.is_up:
            raise AmiUnavailable(f"the AMI link is {self._status.state}: {name} not sent")
        return await self._send(writer, name, headers, within)

    async def originate(self, headers: Iterable[tuple[str, str]]) -> AmiMessage:
        """``Originate``, always ``Async: true``: Asterisk answers at once and reports the call's fate in
        an ``OriginateResponse`` event. A lost answer is :class:`AmiOutcomeUnknown`, never a retry."""
        fields = [(k, v) for k, v in headers if k.lower() != "async"]
        return await self.action("Originate", [*fields, ("Async", "true")])

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        name: str,
        headers: Iterable[tuple[str, str]],
        within: float | None,
    ) -> AmiMessage:
        action_id = next(self._ids)
        data = encode_action(name, action_id, headers)  # a bad header is refused before anything is sent
        answer: asyncio.Future[AmiMessage] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = answer
        try:
            writer.write(data)
            async with asyncio.timeout(within if within is not None else self.action_timeout):
                await writer.drain()
                response = await answer
        except (TimeoutError, OSError, AmiOutcomeUnknown) as exc:
            raise AmiOutcomeUnknown(f"{name} sent, no answer: {_describe(exc)}") from exc
        finally:
            self._pending.pop(action_id, None)
        if response.get("Response").lower() == "error":
            raise AmiActionFailed(response)
        return response

    async def _session(self) -> None:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.connect_timeout
        )
        parser = AmiParser()
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._read_banner(reader, parser)
            reading = asyncio.create_task(self._read(reader, parser))
            tasks.append(reading)
            await self._login(writer)
            self._writer = writer
            self._set(LinkState.UP, "")
            log.info("AMI link up: %s@%s:%s", self.username, self.host, self.port)
            tasks.append(asyncio.create_task(self._ping(writer)))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a dead ping or a broken stream raises here
            raise EOFError("Asterisk closed the AMI link")
        finally:
            self._writer = None
            self._up.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._fail_pending("the AMI link dropped")
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    def _fail_pending(self, why: str) -> None:
        """Actions sent and never answered: their outcome is unknown, and they are not sent again."""
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(AmiOutcomeUnknown(why))

    async def _read_banner(self, reader: asyncio.StreamReader, parser: AmiParser) -> None:
        async with asyncio.timeout(self.connect_timeout):
            while True:
                data = await reader.read(READ_CHUNK)
                if not data:
                    raise EOFError("the AMI peer closed before its banner")
                items = parser.feed(data)
                if items:
                    banner = items[0]
                    if not isinstance(banner, Banner) or not banner.is_asterisk:
                        raise AmiProtocolError(f"not an Asterisk manager: {banner!r:.80}")
                    for item in items[1:]:
                        self._dispatch(item)
                    return

    async def _login(self, writer: asyncio.StreamWriter) -> None:
        headers = [("Username", self.username), ("Secret", self._secret), ("Events", "on")]
        try:
            await self._send(writer, "Login", headers, self.action_timeout)
        except AmiActionFailed as exc:
            raise AmiLoginRefused(str(exc)) from None

    async def _read(self, reader: asyncio.StreamReader, parser: AmiParser) -> None:
        try:
            while data := await reader.read(READ_CHUNK):
                for item in parser.feed(data):
                    self._dispatch(item)
        finally:
            self._fail_pending("the AMI link closed")  # at once, not after each action's deadline

    def _dispatch(self, item: Banner | AmiMessage) -> None:
        if isinstance(item, Banner):
            return
        if item.is_response:
            answer = self._pending.get(item.get("ActionID"))
            if answer is not None and not answer.done():
                answer.set_result(item)
            return
        try:
            self._on_event(item)
        except Exception:  # a consumer's bug must not cut the link the calls depend on
            log.exception("AMI event %s could not be handled", item.event)

    async def _ping(self, writer: asyncio.StreamWriter) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            try:
                await self._send(writer, "Ping", (), self.ping_timeout)
            except AmiOutcomeUnknown:
                raise TimeoutError(
                    f"no answer to Ping within {self.ping_timeout} s: a half-open link"
                ) from None

    def _set(self, state: LinkState, error: str) -> None:
        reconnects = self._status.reconnects + (
            state is LinkState.UP and self._status.state is not LinkState.STARTING
        )
        self._status = LinkStatus(state, error, reconnects)
        if state is LinkState.UP:
            self._up.set()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace("\n", " ")[:200]
