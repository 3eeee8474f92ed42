"""The opt-out journal: where an opt-out goes, fsynced, when the database cannot take it.

One JSON line per opt-out, appended and fsynced before the callee hears the confirmation. Replay
stores each line through the database's idempotent opt-out insert (keyed by the opt-out's id), then
rewrites the file without what was stored — atomically, by rename — so a crash at any point between
the two loses nothing and stores nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import asyncpg

from dialguard.clock import Clock, system_clock
from dialguard.store.calls import OptOut, store_optout

log = logging.getLogger(__name__)

STORE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


class JournalError(Exception):
    """The journal file cannot be written: the gateway must not take calls that could lose opt-outs."""


class OptOutJournal:
    def __init__(self, path: Path, *, clock: Clock = system_clock) -> None:
        self.path = path
        self.clock = clock  # when a replayed opt-out was stored, for its call event
        self._lock = asyncio.Lock()  # appends and the replay's rewrite take turns

    def check_writable(self) -> None:
        """At start-up: create the file if needed, prove a write reaches the disk, or refuse to start."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise JournalError(
                f"the opt-out journal {self.path} is not writable ({exc.strerror}); "
                "set journal.path to a writable file: opt-outs must survive a database outage"
            ) from None

    def _append(self, line: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    async def append(self, optout: OptOut) -> None:
        """Durable on return: the line is on disk."""
        line = (json.dumps(optout.as_json()) + "\n").encode()
        async with self._lock:
            await asyncio.to_thread(self._append, line)

    def pending(self) -> list[OptOut]:
        """What waits for the database; a torn last line (a crash mid-write) is skipped and logged."""
        if not self.path.exists():
            return []
        waiting = []
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                waiting.append(OptOut.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                log.error(
                    "opt-out journal %s line %d is unreadable and kept aside: %r", self.path, n, line[:200]
                )
        return waiting

    def _rewrite(self, keep: list[OptOut]) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(o.as_json()) + "\n" for o in keep)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a crash
        finally:
            os.close(dir_fd)

    async def replay(self, pool: asyncpg.Pool) -> int:
        """Store every waiting opt-out; returns how many were new to the database."""
        async with self._lock:
            waiting = await asyncio.to_thread(self.pending)
            if not waiting:
                return 0
            stored, left = 0, []
            for optout in waiting:
                try:
                    async with pool.acquire() as conn:
                        stored += await store_optout(conn, optout, via="journal", stored_at=self.clock())
                except STORE_ERRORS:
                    left.append(optout)
            await asyncio.to_thread(self._rewrite, left)
        if stored:
            log.info("replayed %d opt-outs from the journal; %d still wait", stored, len(left))
        return stored


async def replay_forever(journal: OptOutJournal, pool: asyncpg.Pool, every: float = 5.0) -> None:
    """Keep replaying while anything waits: the database may come back at any time."""
    while True:
        await journal.replay(pool)
        await asyncio.sleep(every)
