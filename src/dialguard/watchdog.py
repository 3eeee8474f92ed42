"""What keeps a stalled or broken gateway from holding calls.

Asterisk never times out a FastAGI read, and a gateway whose event loop has stopped still completes
TCP handshakes from its listen backlog: every ``AGI()`` would connect and then wait, and ``hagi://``,
which moves to the next SRV target only when a connection *fails*, would not move either. So:

- :class:`LoopWatchdog`, a thread that ends the process (exit 70) when the event loop has not run its
  heartbeat for ``gate.loop_stall_limit`` seconds. The kernel then closes every socket: each held
  ``AGI()`` fails at once, new connections are refused, and ``hagi://`` fails over.
- :class:`SystemdNotifier`, ``sd_notify(3)`` spoken by the loop itself (``READY=1``, ``WATCHDOG=1``,
  ``STOPPING=1``), so that systemd's ``WatchdogSec`` ends a gateway that cannot end itself: a stopped
  process, or a loop stuck in C code that holds the GIL, which stops the watchdog thread too.
- :class:`Supervisor`, background work (the sealer, the opt-out journal's replay) run in rounds,
  started again with a capped backoff after a round fails, and reported by ``/healthz`` while down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

log = logging.getLogger(__name__)

BEAT_EVERY = 0.5  # seconds between the event loop's heartbeats
EXIT_STALLED = 70  # EX_SOFTWARE: systemd's Restart=on-failure starts the gateway again
_WRITE_GRACE = 1.0  # seconds the last log line may take to reach stderr before the process ends anyway


class LoopWatchdog:
    """Ends the process when the event loop stops running its heartbeat for ``stall_limit`` seconds.

    The loop schedules the heartbeat itself (``call_later``), so a beat proves the loop runs callbacks;
    a thread, which needs no loop, watches the time of the last one. ``start`` and ``stop`` are called
    on the loop's thread.
    """

    def __init__(self, stall_limit: float, *, beat_every: float = BEAT_EVERY) -> None:
        if not stall_limit >= 2 * beat_every:
            raise ValueError(f"a stall limit of {stall_limit} s would fire between heartbeats")
        self.stall_limit = stall_limit
        self.beat_every = beat_every
        self._last_beat = time.monotonic()  # a float, replaced whole: safe to read from the thread
        self._beat_handle: asyncio.TimerHandle | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop_thread = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._last_beat = time.monotonic()
        self._beat_handle = loop.call_later(self.beat_every, self._beat, loop)
        self._thread = threading.Thread(target=self._watch, name="dialguard-loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._beat_handle is not None:
            self._beat_handle.cancel()
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        self._last_beat = time.monotonic()
        self._beat_handle = loop.call_later(self.beat_every, self._beat, loop)

    def _watch(self) -> None:
        """The thread: wake when the limit would be reached if no beat came, and look."""
        wait = self.stall_limit
        while not self._stopped.wait(wait):
            stalled = time.monotonic() - self._last_beat
            if stalled >= self.stall_limit:
                self._end_process(stalled)
            wait = self.stall_limit - stalled

    def _end_process(self, stalled: float) -> NoReturn:
        _log_critical(
            f"the event loop has not run for {stalled:.1f} s (gate.loop_stall_limit is "
            f"{self.stall_limit:g} s){_where(self._loop_thread)}: ending the process (exit "
            f"{EXIT_STALLED}) so that its sockets close and Asterisk's AGI() fails at once"
        )
        os._exit(EXIT_STALLED)


def _where(thread_id: int) -> str:
    """Where the loop's thread is now, innermost first, on one line."""
    frame = sys._current_frames().get(thread_id)
    if frame is None:
        return ""
    stack = traceback.extract_stack(frame)[-3:]
    return "; the loop is in " + " <- ".join(
        f"{f.name} ({Path(f.filename).name}:{f.lineno})" for f in reversed(stack)
    )


def _log_critical(message: str) -> None:
    """One CRITICAL line on stderr, formatted as the root logger's handler would, without its lock.

    The stalled loop may hold that lock (a write to a full stderr pipe is one way to stall), and the
    line must not keep the process alive: it is written from a thread of its own, given a second.
    """
    record = log.makeRecord(log.name, logging.CRITICAL, __file__, 0, message, (), None)
    handlers = logging.getLogger().handlers
    formatter = handlers[0].formatter if handlers and handlers[0].formatter else None
    text = (formatter or logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")).format(record)
    line = text.replace("\n", " ").encode(errors="replace") + b"\n"

    def write() -> None:
        view = memoryview(line)
        while view:
            view = view[os.write(2, view) :]

    writer = threading.Thread(target=write, name="dialguard-last-words", daemon=True)
    writer.start()
    writer.join(_WRITE_GRACE)


class SystemdNotifier:
    """``sd_notify(3)`` over the datagram socket systemd names in ``$NOTIFY_SOCKET``, no libsystemd.

    Every message is sent from the event loop: a ``WATCHDOG=1`` proves the loop runs. A send never
    blocks and never raises (systemd may be restarting); a failure is logged once until one succeeds.
    """

    def __init__(self, address: str, *, watchdog_every: float | None = None) -> None:
        # "@name" is a name in Linux's abstract namespace: a leading NUL byte on the wire.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_every = watchdog_every
        self._ping_handle: asyncio.TimerHandle | None = None
        self._failing = False

    @classmethod
    def from_environment(cls, env: Mapping[str, str], *, pid: int) -> SystemdNotifier | None:
        """The notifier systemd asks for (``Type=notify``), or None when not run by it."""
        address = env.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        if not address.startswith(("/", "@")):
            log.warning("NOTIFY_SOCKET=%r is not a Unix socket: systemd will not hear from us", address)
            return None
        return cls(address, watchdog_every=watchdog_interval(env, pid=pid))

    def send(self, state: str) -> None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(state.encode(), self.address)
        except OSError as exc:
            if not self._failing:
                log.warning("could not notify systemd (%s): %s", state.split("\n", 1)[0], exc)
            self._failing = True
        else:
            self._failing = False

    def ready(self, status: str) -> None:
        """Serving: tell systemd, and start the watchdog pings it asked for (``WatchdogSec``)."""
        self.send(f"READY=1\nSTATUS={status}")
        if self.watchdog_every is not None and self._ping_handle is None:
            self._ping(asyncio.get_running_loop(), self.watchdog_every)

    def _ping(self, loop: asyncio.AbstractEventLoop, every: float) -> None:
        self.send("WATCHDOG=1")
        self._ping_handle = loop.call_later(every, self._ping, loop, every)

    def stopping(self) -> None:
        self.send("STOPPING=1\nSTATUS=stopping")

    def close(self) -> None:
        if self._ping_handle is not None:
            self._ping_handle.cancel()
            self._ping_handle = None


def watchdog_interval(env: Mapping[str, str], *, pid: int) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``, as ``sd_watchdog_enabled(3)``
    reads it; None when systemd set no watchdog, or set it for another process (``$WATCHDOG_PID``)."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None
    try:
        value = int(usec)
    except ValueError:
        value = 0
    if value <= 0:
        log.warning("WATCHDOG_USEC=%r is not a positive number of microseconds: no watchdog pings", usec)
        return None
    return value / 2_000_000


@dataclass(frozen=True, slots=True)
class Down:
    """A background task between a failed round and its next good one."""

    error: str  # the last failure, on one line
    failures: int  # rounds failed in a row


class Supervisor:
    """Runs the gateway's background work in rounds and keeps it going.

    A round that raises (any ``Exception``; cancellation passes through untouched) is logged, the task
    is marked down, and the round runs again after a backoff that doubles from ``first_backoff`` up to
    ``max_backoff``; the first round that succeeds marks it up again. ``expected`` failures (the
    database away) are logged without a traceback, and only the first of a run (the rest at DEBUG: the
    outage itself is logged once, by dialguard.outage).
    """

    def __init__(
        self,
        *,
        first_backoff: float = 1.0,
        max_backoff: float = 60.0,
        expected: tuple[type[Exception], ...] = (),
    ) -> None:
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.expected = expected
        self._down: dict[str, Down] = {}

    def down(self) -> dict[str, Down]:
        """The tasks down now, by name."""
        return dict(self._down)

    def report(self, name: str, down: Down | None) -> None:
        """Mark ``name`` down, or up again (None): for work kept outside :meth:`every` (the embedded
        PostgreSQL's keeper), so that /healthz names it too."""
        if down is None:
            self._down.pop(name, None)
        else:
            self._down[name] = down

    def backoff(self, failures: int) -> float:
        """Seconds before the next round after ``failures`` failed rounds in a row."""
        return min(self.max_backoff, self.first_backoff * 2.0 ** min(failures - 1, 64))

    async def every(self, name: str, period: float, work: Callable[[], Awaitable[object]]) -> None:
        """Run ``work`` every ``period`` seconds (the first time after one period), forever."""
        failures = 0
        delay = period
        while True:
            await asyncio.sleep(delay)
            try:
                await work()
            except Exception as exc:  # a failed round must not end the gateway: it is retried
                failures += 1
                delay = self.backoff(failures)
                error = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:200]
                self._down[name] = Down(error, failures)
                expected = isinstance(exc, self.expected)
                log.log(
                    (logging.WARNING if failures == 1 else logging.DEBUG) if expected else logging.ERROR,
                    "background task %s failed (%d in a row): %s; again in %g s",
                    name,
                    failures,
                    error,
                    delay,
                    exc_info=None if expected else exc,
                )
            else:
                if failures:
                    log.info("background task %s works again after %d failures", name, failures)
                failures = 0
                delay = period
                self._down.pop(name, None)
