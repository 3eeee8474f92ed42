"""The opt-out journal: where an opt-out goes, fsynced, when the database cannot take it.

One JSON line per opt-out, appended and fsynced before the callee hears the confirmation. Replay
stores each line through the database's idempotent opt-out insert (keyed by the opt-out's id).

Safe across processes (two gateways on one file, or ``dialguard journal status --replay`` beside a
running gateway): every append and every rewrite holds an exclusive ``flock`` on ``<journal>.lock``.
A replay takes a snapshot (the lines and the file's length) under the lock, stores without it (a slow
database never holds up an append), then rewrites under the lock what it could not store plus whatever
was appended after the snapshot — by rename, so a crash at any point loses nothing and stores nothing
twice. A line that cannot be read is moved to ``<journal>.unreadable``, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dialguard.clock import Clock, system_clock
from dialguard.store.calls import OptOut, store_optout
from dialguard.store.db import Pool, StoreUnavailable, connection

log = logging.getLogger(__name__)


class JournalError(Exception):
    """The journal file cannot be written: the gateway must not take calls that could lose opt-outs."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the journal held at one moment: its readable opt-outs and the bytes they came from."""

    optouts: list[OptOut]
    length: int  # bytes read; anything after this was appended later


class OptOutJournal:
    def __init__(self, path: Path, *, clock: Clock = system_clock) -> None:
        self.path = path
        self.clock = clock  # when a replayed opt-out was stored, for its call event
        self.lock_path = path.with_name(path.name + ".lock")
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
                f"the opt-out journal {self.path} is not writable ({exc.strerror}); "
                "set calls.journal_path to a writable file: opt-outs must survive a database outage"
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

    async def append(self, optout: OptOut) -> None:
        """Durable on return: the line is on disk. An OSError means it is not."""
        line = (json.dumps(optout.as_json()) + "\n").encode()
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

    def pending(self) -> list[OptOut]:
        """What waits for the database (a read-only look: unreadable lines are logged, not moved)."""
        return self._read(move_unreadable=False).optouts

    def _read(self, *, move_unreadable: bool) -> Snapshot:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return Snapshot([], 0)
        waiting, unreadable = [], []
        complete = data[: data.rfind(b"\n") + 1]  # a torn last line (a crash mid-write) waits for its end
        for n, raw in enumerate(complete.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                waiting.append(OptOut.from_json(json.loads(raw)))
            except (ValueError, KeyError, TypeError):
                log.error("opt-out journal %s line %d is unreadable, kept aside: %r", self.path, n, raw[:200])
                unreadable.append(raw + b"\n")
        if move_unreadable and unreadable:
            self._keep_aside(unreadable)
        return Snapshot(waiting, len(complete))

    def _keep_aside(self, lines: list[bytes]) -> None:
        fd = os.open(self.unreadable_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"".join(lines))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _snapshot(self) -> Snapshot:
        with self._locked():
            return self._read(move_unreadable=True)

    def _rewrite(self, keep: list[OptOut], after: int) -> None:
        """Under the lock: the opt-outs still waiting, then every byte appended since the snapshot."""
        with self._locked():
            try:
                with self.path.open("rb") as f:
                    f.seek(after)
                    appended = f.read()
            except FileNotFoundError:
                appended = b""
            tmp = self.path.with_name(self.path.name + ".tmp")
            with tmp.open("wb") as f:
                f.writelines((json.dumps(o.as_json()) + "\n").encode() for o in keep)
                f.write(appended)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the rename itself must survive a crash
            finally:
                os.close(dir_fd)

    async def replay(self, pool: Pool) -> int:
        """Store every waiting opt-out; returns how many were new to the database."""
        snapshot = await asyncio.to_thread(self._snapshot)
        if snapshot.length == 0:
            return 0
        stored, left = 0, []
        for optout in snapshot.optouts:
            try:
                async with connection(pool) as conn:
                    stored += await store_optout(conn, optout, via="journal", stored_at=self.clock())
            except StoreUnavailable:
                left.append(optout)
        await asyncio.to_thread(self._rewrite, left, snapshot.length)
        if stored:
            log.info("replayed %d opt-outs from the journal; %d still wait", stored, len(left))
        return stored
