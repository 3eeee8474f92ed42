"""The database as the call path sees it: answering, or away. An outage is a state, not a line a call.

While the database is away every check is blocked (``gate.unavailable``). Each block used to log a
WARNING of its own, and asyncpg's pools a traceback at every attempt to reconnect (3,257 WARNING lines
in a 15 s outage under load). Now the first failure logs one WARNING with its cause; later failures and
blocked checks are counted; when the database answers again, one INFO line says how long it was away
and how many checks were blocked meanwhile. ``/healthz`` shows the counters while it lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any

from dialguard.clock import Clock, system_clock
from dialguard.store.db import Pool, StoreUnavailable, connection, describe_failure

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 5.0  # seconds a probe of the database may take


class DatabaseOutage:
    """Whether the database answers, with the counters of the outage in progress.

    ``failed`` and ``answered`` are called on the event loop by whatever meets the database: the gate
    for every check, asyncpg's pool reconnecting (:func:`absorb_pool_floor_log`), and the probe
    :meth:`until_back` runs while no check comes. A success proves the database back only if it began
    after the outage did (``answered(epoch)`` with the :attr:`epoch` read when it began): a query
    that was answered by a backend just before the server died says nothing of the server now.
    """

    def __init__(self, *, clock: Clock = system_clock, first_backoff: float = 1.0, max_backoff: float = 30.0):
        self.clock = clock
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.since: datetime | None = None  # None: the database answers
        self.cause = ""  # the first failure of the outage in progress
        self.failures = 0
        self.blocked = 0
        self.epoch = 0  # outages begun since the gateway started
        self._away = asyncio.Event()

    @property
    def away(self) -> bool:
        return self.since is not None

    def failed(self, cause: str, *, blocked: bool = False) -> None:
        """The database failed someone; ``blocked``: a check was blocked for it."""
        if self.since is None:
            self.since = self.clock()
            self.cause = cause
            self.failures = self.blocked = 0
            self.epoch += 1
            self._away.set()
            log.warning("database unavailable (%s): checks are blocked and journaled until it answers", cause)
        self.failures += 1
        self.blocked += blocked

    def answered(self, epoch: int) -> None:
        """The database did what was asked by work that began at ``epoch``: an outage in progress is over,
        unless it began after that work did."""
        if self.since is None or epoch != self.epoch:
            return
        away = (self.clock() - self.since).total_seconds()
        log.info(
            "database answers again after %.1f s: %d checks blocked meanwhile, %d failures (first: %s)",
            away,
            self.blocked,
            self.failures,
            self.cause,
        )
        self.since = None
        self._away.clear()

    def status(self) -> dict[str, Any] | None:
        """The outage in progress, for /healthz; None when the database answers."""
        if self.since is None:
            return None
        return {
            "since": self.since.isoformat(),
            "cause": self.cause,
            "checks_blocked": self.blocked,
            "failures": self.failures,
        }

    def backoff(self, failures: int) -> float:
        return min(self.max_backoff, self.first_backoff * 2.0 ** min(failures - 1, 64))

    async def until_back(self, probe: Callable[[], Awaitable[object]]) -> None:
        """One round of the watch (run it under the Supervisor, again and again): wait for an outage,
        then ``probe`` the database after 1, 2, 4 … 30 s until it answers — so that the end of an
        outage is noticed, and said, even when no check comes."""
        await self._away.wait()
        failures = 0
        while self.away:
            epoch = self.epoch
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await probe()
            except (StoreUnavailable, TimeoutError) as exc:
                failures += 1
                self.failures += 1  # counted against the outage, never logged
                log.debug("database probe failed (%s)", describe_failure(exc))
                await asyncio.sleep(self.backoff(failures))
            else:
                self.answered(epoch)


async def probe(pool: Pool) -> None:
    """Ask the database the least that proves it answers."""
    async with connection(pool, within=PROBE_TIMEOUT) as conn:
        await conn.fetchval("SELECT 1")


# asyncpg 0.32's pools keep their floor of connections (min_size): after an outage each pool reconnects
# in the background, logging this WARNING with a traceback at every failed attempt (1, 2, 4 … 60 s).
_POOL_FLOOR = "Failed to restore the pool connection floor"


class _PoolFloorLog(logging.Filter):
    def __init__(self, outage: DatabaseOutage) -> None:
        super().__init__()
        self.outage = outage

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(_POOL_FLOOR):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        self.outage.failed(describe_failure(exc) if exc is not None else "a pool could not reconnect")
        return False


@contextlib.contextmanager
def absorb_pool_floor_log(outage: DatabaseOutage) -> Iterator[None]:
    """While inside: asyncpg's pool-reconnect tracebacks become failures of ``outage``, not log lines."""
    pool_log = logging.getLogger("asyncpg.pool")
    absorb = _PoolFloorLog(outage)
    pool_log.addFilter(absorb)
    try:
        yield
    finally:
        pool_log.removeFilter(absorb)
