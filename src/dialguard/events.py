"""The live feed of decisions and call events, from every gateway on the database.

The tables are the source of truth; LISTEN/NOTIFY is only a wake-up.

Writers call :meth:`EventAnnouncer.touch` once a row is stored (committed): a cheap synchronous call
that wakes this process's hub at once and, at most once every ``every`` seconds, has one
``NOTIFY dialguard_events`` sent so that the other gateways' hubs wake too. There is no NOTIFY per
row: the call path never waits for one.

One :class:`EventHub` per process holds one dedicated connection (not a pooled one: a LISTEN belongs
to its connection), and after each wake-up, or every ``safety_every`` seconds should a wake-up be
lost, reads the rows after its position in each log and fans them out to its subscribers. A dropped
connection is made again; the position is kept, so nothing is missed meanwhile.

Ids come from a sequence when a row is inserted, but a row becomes visible when its transaction
commits: id 8 may be seen before id 7 commits, and "id > last" would then skip 7 for ever. So a log's
position only moves over ids seen: a row after a hole is held back until the hole fills (its
transaction commits) or ``gap_wait`` passes (it rolled back, or is very slow). A hole given up on is
still looked for during ``late_keep`` seconds, and a row that turns up there goes out late, out of
order. Subscribers thus get each log's rows in id order, once, each with the hub's position after it
(``"<decision id>.<call event id>"``), from which a stream resumes. This relies on the sequences
handing out ids one at a time (CACHE 1, PostgreSQL's default).

A subscriber that cannot keep up is dropped, never waited for: past ``max_queued`` events its queue
is emptied and it is told it overflowed (the stream says so and ends; the client resumes from its last
event id). Neither the hub nor the call path ever waits on a subscriber.

Other channels may be heard on the same connection (:class:`ChannelWatch`: the token cache's), rather
than each opening one of its own; a watch is told when the link is up, LISTENing, and when it is lost,
since a NOTIFY sent meanwhile is never delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Self

import asyncpg

from dialguard.store.db import DATABASE_FAILURES, Pool, StoreUnavailable, connection, describe_failure
from dialguard.store.event_feed import FeedRow, Kind, last_ids, rows_after, rows_between

log = logging.getLogger(__name__)

CHANNEL = "dialguard_events"
MAX_LATE_RANGES = 1000  # holes given up on and still looked for; past it the oldest are forgotten


@dataclass(frozen=True, slots=True)
class Position:
    """How far the feed has gone in each log: every id up to these was published (or given up on)."""

    decision: int = 0
    call: int = 0

    def of(self, kind: Kind) -> int:
        return self.decision if kind is Kind.DECISION else self.call

    def moved(self, kind: Kind, to: int) -> Position:
        if kind is Kind.DECISION:
            return Position(max(self.decision, to), self.call)
        return Position(self.decision, max(self.call, to))

    def joined(self, other: Position) -> Position:
        """The later of the two in each log."""
        return Position(max(self.decision, other.decision), max(self.call, other.call))

    def __str__(self) -> str:
        return f"{self.decision}.{self.call}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """``"12.40"``, as an event id says; ValueError otherwise."""
        decision, dot, call = text.strip().partition(".")
        if not (dot and _count(decision) and _count(call)):
            raise ValueError(f"{text[:40]!r} is not an event id of this feed (DECISION_ID.CALL_EVENT_ID)")
        return cls(int(decision), int(call))


def _count(text: str) -> bool:
    # ASCII digits only ("²".isdigit() is True), and within bigint.
    return text.isascii() and text.isdigit() and len(text) <= 18


@dataclass(frozen=True, slots=True)
class Interest:
    """What a subscriber wants; a call event counts as its decision's campaign and verdict."""

    campaign: str | None = None
    verdict: str | None = None

    def matches(self, row: FeedRow) -> bool:
        return (self.campaign is None or row.campaign == self.campaign) and (
            self.verdict is None or row.verdict == self.verdict
        )


@dataclass(frozen=True, slots=True)
class FeedEvent:
    row: FeedRow
    position: Position  # the hub's position once this event is out: the stream's event id


class Overflowed(Exception):
    """The subscriber fell more than its queue behind: it was dropped, and resumes from its last event id."""


class FeedClosed(Exception):
    """The hub stopped (the gateway is stopping, or its feed failed): resume from the last event id."""


class FeedUnavailable(Exception):
    """The hub has not reached the database: no position to start a subscriber from."""


class Subscription:
    """One subscriber's bounded queue. The hub offers, never waits; the subscriber takes with :meth:`next`."""

    def __init__(
        self,
        *,
        interest: Interest,
        start: Position,
        max_queued: int,
        on_close: Callable[[Subscription], None],
    ) -> None:
        self.interest = interest
        self.start = start  # the hub's position when it subscribed: later events go past it (or are late)
        self.position = start  # the hub's position at its last publish: what a heartbeat may say
        self.overflowed = False
        self._max_queued = max_queued
        self._queue: deque[FeedEvent] = deque()
        self._wake = asyncio.Event()
        self._ended = False
        self._on_close = on_close

    @property
    def queued(self) -> int:
        return len(self._queue)

    def offer(self, event: FeedEvent) -> bool:
        """Queue ``event``; False when the subscriber is (now) overflowed and must be dropped."""
        if self.overflowed or self._ended:
            return False
        if len(self._queue) >= self._max_queued:
            self.overflowed = True
            self._queue.clear()  # the memory goes now: what it missed is replayed from the table
            self._wake.set()
            return False
        self._queue.append(event)
        self._wake.set()
        return True

    def end(self) -> None:
        """The hub stops: what is queued is still taken, then :class:`FeedClosed`."""
        self._ended = True
        self._wake.set()

    async def next(self) -> FeedEvent:
        while True:
            if self.overflowed:
                raise Overflowed(f"more than {self._max_queued} events behind")
            if self._queue:
                return self._queue.popleft()
            if self._ended:
                raise FeedClosed("the event feed stopped")
            self._wake.clear()
            await self._wake.wait()

    def close(self) -> None:
        """Unsubscribe (a stream that ends)."""
        self._ended = True
        self._queue.clear()
        self._on_close(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass(slots=True)
class _Hole:
    lo: int
    hi: int
    until: float  # loop time after which it is no longer looked for


@dataclass(slots=True)
class _Log:
    """One log's place in the feed: its position, the rows held behind a hole, the holes given up on."""

    kind: Kind
    position: int
    held_since: dict[int, float] = field(default_factory=dict)  # id -> when first seen past a hole
    late: list[_Hole] = field(default_factory=list)

    def take(
        self, rows: list[FeedRow], now: float, *, gap_wait: float, late_keep: float
    ) -> tuple[list[FeedRow], bool]:
        """Of ``rows`` (read after the position, in id order), those that may go out now, in order;
        and True when some are held back behind a hole younger than ``gap_wait``."""
        for r in rows:
            self.held_since.setdefault(r.id, now)
        out: list[FeedRow] = []
        held = False
        for r in rows:
            if r.id <= self.position:
                continue
            if r.id > self.position + 1:
                if now - self.held_since[r.id] < gap_wait:
                    held = True
                    break
                self.late.append(_Hole(self.position + 1, r.id - 1, now + late_keep))
                del self.late[:-MAX_LATE_RANGES]
            out.append(r)
            self.position = r.id
        self.held_since = {i: t for i, t in self.held_since.items() if i > self.position}
        return out, held

    def holes(self, now: float) -> list[tuple[int, int]]:
        self.late = [h for h in self.late if h.until > now]
        return [(h.lo, h.hi) for h in self.late]

    def found_late(self, rows: list[FeedRow]) -> list[FeedRow]:
        """The rows that turned up in holes given up on: each goes out once, late."""
        out = []
        for r in rows:
            for i, h in enumerate(self.late):
                if h.lo <= r.id <= h.hi:
                    rest = [_Hole(h.lo, r.id - 1, h.until), _Hole(r.id + 1, h.hi, h.until)]
                    self.late[i : i + 1] = [p for p in rest if p.lo <= p.hi]
                    out.append(r)
                    break
        return out


@dataclass(frozen=True, slots=True)
class ChannelWatch:
    """A channel heard on the hub's connection. ``linked`` runs once its LISTEN is in force on a (new)
    connection, ``unlinked`` as soon as the connection is lost: notifications may have been missed from
    then until the next ``linked``. The callbacks run on the loop and must not block."""

    channel: str
    notified: Callable[[], None]
    linked: Callable[[], None]
    unlinked: Callable[[], None]


class EventHub:
    """One per process: one LISTENing connection, reading the logs, fanning out to subscribers."""

    def __init__(
        self,
        *,
        dsn: str,
        batch: int = 500,
        gap_wait: float = 2.0,
        late_keep: float = 60.0,
        safety_every: float = 2.0,
        recheck_every: float = 0.05,
        min_interval: float = 0.02,
        query_timeout: float = 5.0,
        max_queued: int = 1000,
        retry_max: float = 5.0,
        application_name: str = "dialguard-events",
        watches: Sequence[ChannelWatch] = (),
    ) -> None:
        self.dsn = dsn
        self.batch = batch
        self.gap_wait = gap_wait  # how long a row waits for a hole before it
        self.late_keep = late_keep  # how long a hole given up on is still looked for
        self.safety_every = safety_every  # a read at least this often, should a wake-up be lost
        self.recheck_every = recheck_every  # while a row is held behind a hole
        self.min_interval = min_interval  # between reads: a burst of wake-ups is one read
        self.query_timeout = query_timeout
        self.max_queued = max_queued
        self.retry_max = retry_max
        self.application_name = application_name
        self.watches = tuple(watches)
        self._logs: dict[Kind, _Log] | None = None
        self._published = Position()
        self._subscribers: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()  # connected, with a position
        self.reconnects = 0

    @property
    def position(self) -> Position:
        return self._published

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def wake(self) -> None:
        """Read now: a row was stored in this process (EventAnnouncer), or a NOTIFY came."""
        self._wake.set()

    async def subscribe(self, interest: Interest = Interest(), *, within: float = 5.0) -> Subscription:
        """A subscriber from now on; FeedUnavailable when the hub has not reached the database within
        ``within`` seconds. Its ``start`` is the position it starts after (replay up to there)."""
        await self.wait_ready(within)
        sub = Subscription(
            interest=interest, start=self._published, max_queued=self.max_queued, on_close=self._drop
        )
        self._subscribers.add(sub)
        return sub

    async def wait_ready(self, within: float) -> None:
        """Return once the hub is connected with a position; FeedUnavailable after ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                await self._ready.wait()
        except TimeoutError:
            raise FeedUnavailable("the event feed cannot reach the database") from None

    def _drop(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    async def run(self) -> None:
        """Follow the logs until cancelled, connecting again after any database failure. Subscribers
        are ended when it stops, so that their streams end with it."""
        failures = 0
        try:
            while True:
                try:
                    conn = await asyncpg.connect(
                        self.dsn,
                        timeout=self.query_timeout,
                        server_settings={"application_name": self.application_name, "timezone": "UTC"},
                    )
                except DATABASE_FAILURES as exc:
                    failures += 1
                    self._failed(exc, failures)
                else:
                    try:
                        if failures:
                            log.info("event feed: connected again after %d failures", failures)
                            self.reconnects += 1
                        failures = 0
                        await self._follow(conn)
                    except DATABASE_FAILURES as exc:
                        failures += 1
                        self._failed(exc, failures)
                    finally:
                        self._ready.clear()
                        self._unlinked()
                        conn.terminate()
                await asyncio.sleep(min(self.retry_max, 0.1 * 2 ** min(failures, 16)))
        finally:
            self._ready.clear()
            self._unlinked()
            self.end_streams()

    def end_streams(self) -> None:
        """End every subscriber (each takes what it has queued, then FeedClosed): the gateway stops."""
        for sub in list(self._subscribers):
            sub.end()
        self._subscribers.clear()

    def _unlinked(self) -> None:
        for watch in self.watches:
            watch.unlinked()

    def _lost(self) -> None:
        self._unlinked()  # at once: the watches stop trusting what they keep before the read loop notices
        self._wake.set()

    def _failed(self, exc: BaseException, failures: int) -> None:
        level = logging.WARNING if failures == 1 else logging.DEBUG
        log.log(level, "event feed: database connection lost (%s); connecting again", describe_failure(exc))

    async def _follow(self, conn: asyncpg.Connection) -> None:
        conn.add_termination_listener(lambda _conn: self._lost())  # a dead link: find out at once
        await conn.add_listener(CHANNEL, lambda *_: self._wake.set())
        for watch in self.watches:
            await conn.add_listener(watch.channel, _notifies(watch))
        for watch in self.watches:
            watch.linked()  # every LISTEN is in force: from here no NOTIFY is missed while linked
        if self._logs is None:
            last = await last_ids(conn, within=self.query_timeout)
            self._logs = {kind: _Log(kind, last[kind]) for kind in Kind}
            self._published = Position(last[Kind.DECISION], last[Kind.CALL])
        self._ready.set()
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            self._wake.clear()
            holding, more = await self._read(conn, started)
            if more:
                continue  # a backlog: read on at once
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.recheck_every if holding else self.safety_every):
                    await self._wake.wait()
            if conn.is_closed():
                raise ConnectionError("the event feed's connection closed")
            # A burst of wake-ups (a busy gateway touches for every call) is one read per interval.
            await asyncio.sleep(max(0.0, started + self.min_interval - loop.time()))

    async def _read(self, conn: asyncpg.Connection, now: float) -> tuple[bool, bool]:
        """One read of each log: publish what may go out. (held behind a hole, a full batch read)"""
        assert self._logs is not None
        fresh: list[FeedRow] = []
        late: list[FeedRow] = []
        holding = more = False
        for kind, place in self._logs.items():
            rows = await rows_after(conn, kind, place.position, limit=self.batch, within=self.query_timeout)
            taken, held = place.take(rows, now, gap_wait=self.gap_wait, late_keep=self.late_keep)
            fresh += taken
            holding |= held
            more |= len(rows) == self.batch and not held
            if holes := place.holes(now):
                found = await rows_between(conn, kind, holes, within=self.query_timeout)
                late += place.found_late(found)
        # Both logs merged as they were written: a decision before the events of its call.
        fresh.sort(key=lambda r: (r.inserted_at, r.kind is Kind.CALL, r.id))
        events = []
        for row in fresh:
            self._published = self._published.moved(row.kind, row.id)
            events.append(FeedEvent(row, self._published))
        events += [FeedEvent(row, self._published) for row in late]
        self._publish(events)
        return holding, more

    def _publish(self, events: list[FeedEvent]) -> None:
        subscribers = list(self._subscribers)
        for event in events:
            for sub in subscribers:
                if sub.interest.matches(event.row) and not sub.offer(event):
                    if sub.overflowed:
                        log.info("event feed: a subscriber fell %d events behind; dropped", self.max_queued)
                    self._subscribers.discard(sub)
            subscribers = [s for s in subscribers if s in self._subscribers]
        for sub in self._subscribers:
            sub.position = self._published


def _notifies(watch: ChannelWatch) -> Callable[..., None]:
    return lambda *_: watch.notified()


class EventAnnouncer:
    """Writers' side: :meth:`touch` after a decision or call event is stored (committed). The local hub
    wakes at once; other gateways hear one NOTIFY per ``every`` seconds at most, however many rows."""

    def __init__(
        self,
        *,
        pool: Pool,
        every: float = 0.2,
        wake_local: Callable[[], None] | None = None,
        within: float = 0.5,
    ) -> None:
        self.pool = pool
        self.every = every
        self.wake_local = wake_local
        self.within = within  # seconds to wait for a pooled connection: a lost NOTIFY costs only latency
        self._touched = asyncio.Event()
        self.sent = 0

    def touch(self) -> None:
        self._touched.set()
        if self.wake_local is not None:
            self.wake_local()

    async def run(self) -> None:
        """Send the NOTIFYs, until cancelled."""
        while True:
            await self._touched.wait()
            self._touched.clear()
            await self._announce()
            await asyncio.sleep(self.every)  # touches meanwhile share the next NOTIFY

    async def _announce(self) -> None:
        try:
            async with connection(self.pool, within=self.within) as conn:
                await conn.execute(f"NOTIFY {CHANNEL}")
            self.sent += 1
        except StoreUnavailable as exc:
            # The other hubs' safety-net reads find the rows anyway, a few seconds later.
            log.debug("event feed: NOTIFY not sent (%s)", exc)
