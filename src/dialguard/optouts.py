"""The one owner of a pressed opt-out, with an explicit outcome: stored, journaled, or lost.

Stored: in PostgreSQL (the number on the internal list, consent revoked) and effective for the next
check. Journaled: the database could not take it, so it is fsynced to the local journal and replayed
when the database returns. Lost: neither could be written (the database away and the journal's disk
full or unwritable) — said at CRITICAL with the number and the call id, counted, and reported to the
caller so that the call still ends and the session ends with AGISTATUS=FAILURE. No log line claims a
write before it happened.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from dialguard.clock import Clock
from dialguard.journal import OptOutJournal
from dialguard.metrics import Metrics
from dialguard.store.calls import OptOut, store_optout
from dialguard.store.db import Pool, StoreUnavailable, connection

log = logging.getLogger(__name__)


class Kept(StrEnum):
    STORED = "stored"
    JOURNALED = "journaled"
    LOST = "lost"


class OptOutKeeper:
    def __init__(
        self, *, pool: Pool, journal: OptOutJournal, metrics: Metrics, clock: Clock, within: float = 2.0
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.journal = journal
        self.metrics = metrics
        self.within = within  # seconds to wait for a pooled connection before journaling instead

    async def keep(self, optout: OptOut) -> Kept:
        kept = await self._keep(optout)
        self.metrics.optouts.labels(kept=str(kept)).inc()
        return kept

    async def _keep(self, optout: OptOut) -> Kept:
        try:
            async with connection(self.pool, within=self.within) as conn:
                await store_optout(conn, optout, via="database", stored_at=self.clock())
            return Kept.STORED
        except StoreUnavailable as exc:
            database = str(exc)
        try:
            await self.journal.append(optout)
        except OSError as exc:
            log.critical(
                "OPT-OUT LOST: number %s pressed %r on call %s (campaign %s) and it could not be kept: "
                "database: %s; journal %s: %s. Put the number on the internal list by hand: "
                "dialguard dnc add %s --source dtmf",
                optout.number, optout.digit, optout.call_id, optout.campaign, database,
                self.journal.path, exc, optout.number,
                extra={"unmasked": True},  # the one line that must name the number in full
            )  # fmt: skip
            return Kept.LOST
        log.warning(
            "call %s: database away (%s); opt-out journaled in %s",
            optout.call_id,
            database,
            self.journal.path,
        )
        return Kept.JOURNALED
