"""Local journals: what the database could not take, fsynced, and stored when it returns.

Two journals share one mechanism (:class:`Journal`):
- the opt-out journal: an opt-out is appended and fsynced before the callee hears the confirmation;
  replay stores each through the database's idempotent opt-out insert (keyed by the opt-out's id);
- the decision journal: a decision the database could not take (a ``gate.unavailable`` block, or one
  whose insert failed) is appended once the channel has its verdict; replay stores each once per call
  id, marked ``stored_late`` with its ``journaled_at``, and never as an attempt.

One JSON line per entry. Safe across processes (two gateways on one file, or ``dialguard journal status
--replay`` beside a running gateway): every append and every rewrite holds an exclusive ``flock`` on
``<journal>.lock``, and one replay at a time holds ``<journal>.replay.lock`` (another that finds it
held stores nothing and returns). A replay takes a snapshot (the lines and the file's length) under the
lock, stores without it (a slow database never holds up an append), then rewrites under the lock what
it could not store plus whatever was appended after the snapshot — by rename, so a crash at any point
loses nothing and stores nothing twice. A line that cannot be read is moved to ``<journal>.unreadable``,
never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import asyncpg

from dialguard.clock import Clock, system_clock
from dialguard.store.calls import OptOut, store_optout
from dialguard.store.db import Connection, Pool, StoreUnavailable, connection, describe_failure
from dialguard.store.decisions import DecisionRow, insert_late_decision

log = logging.getLogger(__name__)

T = TypeVar("T")

LATE_BATCH = 200  # journaled decisions stored per transaction: progress survives a second outage
# What a database that answers says of a row it will never take: bad data, a constraint (but the unique
# call id, which the insert skips).
REFUSED = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


class JournalError(Exception):
    """The journal file cannot be written: the gateway must not take calls whose record could be lost."""


@dataclass(frozen=True, slots=True)
class Snapshot(Generic[T]):
    """What the journal held at one moment: its readable entries (each with its line) and the bytes
    they came from."""

    entries: list[tuple[T, bytes]]
    length: int  # bytes read; anything after this was appended later
    unreadable: int  # lines moved aside: the rewrite must drop them from the journal


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one replay did with the entries it was given, by their indexes."""

    stored: int  # new to the database
    waiting: list[int]  # not stored now (the database away): they wait for the next replay
    refused: list[int] = field(default_factory=list)  # refused by the database itself: kept aside


class Journal(Generic[T]):
    """An fsynced JSON-lines file of entries waiting for the database (see the module's docstring)."""

    def __init__(self, path: Path, *, what: str, setting: str, decode: Callable[[Any], T]) -> None:
        self.path = path
        self.what = what  # "opt-out", "decision": for messages
        self.setting = setting  # the key that moves the file, for messages
        self.decode = decode  # a line's JSON -> an entry; ValueError, KeyError or TypeError: unreadable
        self.lock_path = path.with_name(path.name + ".lock")
        self.replay_lock_path = path.with_name(path.name + ".replay.lock")
        self.unreadable_path = path.with_name(path.name + ".unreadable")

    def check_writable(self) -> None:
        """At start-up: create the file if needed, prove a write reaches the disk, or refuse to start."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked():
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise JournalError(
                f"the {self.what} journal {self.path} is not writable ({exc.strerror}); set "
                f"{self.setting} to a writable file: {self.what}s must survive a database outage"
            ) from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The journal's cross-process lock (blocking: call it from a worker thread)."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _append(self, line: bytes) -> None:
        with self._locked():
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # a line torn by a crash stays on its own, never glued to this one
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
                os.fsync(fd)
            finally:
                os.close(fd)

    async def append_json(self, data: dict[str, Any]) -> None:
        """Durable on return: the line is on disk. An OSError means it is not."""
        line = (json.dumps(data) + "\n").encode()
        await asyncio.to_thread(self._append, line)

    def depth(self) -> int:
        """How many lines wait for the database, readable or not (a look for the metrics: no lock, no
        parsing, nothing logged). Blocking: call it in a worker thread."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        complete = data[: data.rfind(b"\n") + 1]  # a torn last line is not a line yet
        return sum(1 for line in complete.splitlines() if line.strip())

    def pending(self) -> list[T]:
        """What waits for the database (a read-only look: unreadable lines are logged, not moved)."""
        return [entry for entry, _ in self._read(move_unreadable=False).entries]

    def _read(self, *, move_unreadable: bool) -> Snapshot[T]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return Snapshot([], 0, 0)
        waiting, unreadable = [], []
        complete = data[: data.rfind(b"\n") + 1]  # a torn last line (a crash mid-write) waits for its end
        for n, raw in enumerate(complete.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                waiting.append((self.decode(json.loads(raw)), raw + b"\n"))
            except (ValueError, KeyError, TypeError):
                log.error(
                    "%s journal %s line %d is unreadable, kept aside: %r", self.what, self.path, n, raw[:200]
                )
                unreadable.append(raw + b"\n")
        if move_unreadable and unreadable:
            self._keep_aside(unreadable)
        return Snapshot(waiting, len(complete), len(unreadable))

    def _keep_aside(self, lines: list[bytes]) -> None:
        fd = os.open(self.unreadable_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"".join(lines))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _snapshot(self) -> Snapshot[T]:
        with self._locked():
            return self._read(move_unreadable=True)

    def _rewrite(self, keep: list[bytes], after: int) -> None:
        """Under the lock: the lines still waiting, then every byte appended since the snapshot."""
        with self._locked():
            try:
                with self.path.open("rb") as f:
                    f.seek(after)
                    appended = f.read()
            except FileNotFoundError:
                appended = b""
            tmp = self.path.with_name(self.path.name + ".tmp")
            with tmp.open("wb") as f:
                f.writelines(keep)
                f.write(appended)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the rename itself must survive a crash
            finally:
                os.close(dir_fd)

    def _replay_lock(self) -> int | None:
        """The replay lock's descriptor, or None when another replay (any process) holds it."""
        fd = os.open(self.replay_lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    async def replay_with(self, store: Callable[[list[T]], Awaitable[Outcome]]) -> int:
        """Hand the waiting entries to ``store``; what it could not store waits for the next replay, what
        the database refused is kept aside. Returns how many were new to the database. A replay already
        under way (in any process) holds the replay lock: this one returns 0 at once."""
        lock = await asyncio.to_thread(self._replay_lock)
        if lock is None:
            return 0
        try:
            snapshot = await asyncio.to_thread(self._snapshot)
            if snapshot.length == 0:
                return 0
            outcome = await store([entry for entry, _ in snapshot.entries])
            if len(outcome.waiting) < len(snapshot.entries) or snapshot.unreadable:
                if outcome.refused:
                    await asyncio.to_thread(
                        self._keep_aside, [snapshot.entries[i][1] for i in outcome.refused]
                    )
                left = [snapshot.entries[i][1] for i in outcome.waiting]
                await asyncio.to_thread(self._rewrite, left, snapshot.length)
            # else nothing changed: no rewrite (a long outage must not rewrite a growing file every round)
            return outcome.stored
        finally:
            os.close(lock)


class OptOutJournal(Journal[OptOut]):
    """Opt-outs taken while the database was away."""

    def __init__(self, path: Path, *, clock: Clock = system_clock) -> None:
        super().__init__(path, what="opt-out", setting="calls.journal_path", decode=OptOut.from_json)
        self.clock = clock  # when a replayed opt-out was stored, for its call event

    async def append(self, optout: OptOut) -> None:
        """Durable on return: the line is on disk. An OSError means it is not."""
        await self.append_json(optout.as_json())

    async def replay(self, pool: Pool) -> int:
        """Store every waiting opt-out; returns how many were new to the database."""

        async def store(optouts: list[OptOut]) -> Outcome:
            # Each on its own: one that cannot be stored now waits, the others go in.
            stored, waiting = 0, []
            for i, optout in enumerate(optouts):
                try:
                    async with connection(pool) as conn:
                        stored += await store_optout(conn, optout, via="journal", stored_at=self.clock())
                except StoreUnavailable:
                    waiting.append(i)
            if stored:
                log.info("replayed %d opt-outs from the journal; %d still wait", stored, len(waiting))
            return Outcome(stored, waiting)

        return await self.replay_with(store)


@dataclass(frozen=True, slots=True)
class JournaledDecision:
    row: DecisionRow
    journaled_at: datetime

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JournaledDecision:
        at = datetime.fromisoformat(data["journaled_at"])
        if at.tzinfo is None:
            raise ValueError("journaled_at needs its offset")
        return cls(DecisionRow.from_json(data), at)


class DecisionJournal(Journal[JournaledDecision]):
    """Decisions made while the database could not take them: every decision is stored, some late."""

    def __init__(self, path: Path, *, clock: Clock = system_clock) -> None:
        super().__init__(
            path, what="decision", setting="gate.journal_path", decode=JournaledDecision.from_json
        )
        self.clock = clock
        self._failing = False  # the last append failed: said once, not once a call

    async def keep(self, row: DecisionRow) -> bool:
        """Journal a decision the database did not take; False (said once until one works) when the
        file cannot be written either."""
        try:
            await self.append_json({**row.as_json(), "journaled_at": self.clock().isoformat()})
        except OSError as exc:
            if not self._failing:
                log.error(
                    "decision journal %s is not writable (%s): decisions made while the database is away "
                    "are not kept until it is; first lost: call %s",
                    self.path, exc, row.call_id,
                )  # fmt: skip
            self._failing = True
            return False
        if self._failing:
            log.info("decision journal %s is writable again", self.path)
        self._failing = False
        return True

    async def replay(self, pool: Pool) -> int:
        """Store the journaled decisions, oldest first, until the database fails; returns how many were
        new to it (a call id already stored is skipped, whoever stored it)."""

        async def store(entries: list[JournaledDecision]) -> Outcome:
            stored, done, refused = 0, 0, []
            try:
                async with connection(pool) as conn:
                    while done < len(entries):
                        batch = entries[done : done + LATE_BATCH]
                        try:
                            stored += await _store_late(conn, batch)
                        except REFUSED:
                            # A row the database will never take (a NUL in a number, say): find it, one by
                            # one, and keep it aside; the others go in.
                            for i, entry in enumerate(batch, done):
                                try:
                                    stored += await _store_late(conn, [entry])
                                except REFUSED as exc:
                                    log.error(
                                        "journaled decision %s refused by the database, kept aside: %s",
                                        entry.row.call_id, describe_failure(exc),
                                    )  # fmt: skip
                                    refused.append(i)
                        done += len(batch)
            except StoreUnavailable:
                pass  # the database is away (again): the rest waits for the next round
            if done:
                log.info(
                    "stored %d journaled decisions (%d were already stored, %d refused); %d still wait",
                    stored, done - stored - len(refused), len(refused), len(entries) - done,
                )  # fmt: skip
            return Outcome(stored, list(range(done, len(entries))), refused)

        return await self.replay_with(store)


async def _store_late(conn: Connection, entries: list[JournaledDecision]) -> int:
    """One transaction: how many of ``entries`` were new to the database."""
    stored = 0
    async with conn.transaction():
        for entry in entries:
            stored += await insert_late_decision(conn, entry.row, journaled_at=entry.journaled_at)
    return stored
