"""Every call's timeline from AMI: events read off the link, written to call_events in batches.

The AMI reader hands each event to :meth:`CallTimeline.on_event`, which must never block it: the
tracker turns the event into steps in microseconds, and they wait in a bounded buffer for the writer.
The writer stores a batch in one transaction; while the database is away the batch waits and is
retried. Past ``max_pending`` steps the newest are dropped and counted (said once in the log, and in
``status``), so an outage under an event storm costs memory that is bounded, never the AMI link.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from dialguard.asterisk.ami_calls import Answered, CallTracker, Step
from dialguard.asterisk.ami_protocol import AmiMessage
from dialguard.clock import Clock
from dialguard.store import timeline as store
from dialguard.store.db import DATABASE_FAILURES, Pool, describe_failure

log = logging.getLogger(__name__)

MAX_PENDING = 50_000
BATCH = 500
AGENT_WITHIN = timedelta(seconds=2)  # TSR 310.4(b)(1)(iv); Ofcom's policy: an agent within 2 s of the answer


def is_abandoned(call: Answered, within: timedelta = AGENT_WITHIN) -> bool:
    """Abandoned: answered, and no agent within ``within`` of the answer. Measured from the answer, not
    from the end of the callee's greeting (which the switch cannot hear): stricter than the rule by the
    greeting's length. A callee who hangs up before the seconds ran out was not abandoned."""
    if call.agent_at is not None:
        return call.agent_at - call.answered_at > within
    if call.abandon_message:
        return True
    return call.ended_at is None or call.ended_at - call.answered_at > within


@dataclass(frozen=True, slots=True)
class TimelineStatus:
    pending: int
    dropped: int
    failing: str  # the database failure holding the writer back, if any

    def as_json(self) -> dict[str, object]:
        return {"pending": self.pending, "dropped": self.dropped, "failing": self.failing}


class CallTimeline:
    def __init__(
        self,
        *,
        pool: Pool,
        clock: Clock,
        on_call_ended: Callable[[uuid.UUID], None] = lambda _call_id: None,
        max_pending: int = MAX_PENDING,
        retry_every: float = 1.0,
        on_stored: Callable[[], None] = lambda: None,
    ) -> None:
        self.tracker = CallTracker()
        self._pool = pool
        self._clock = clock
        self._on_call_ended = on_call_ended
        self._steps: deque[Step] = deque()
        self._answered: deque[Answered] = deque()
        self._max_pending = max_pending
        self._retry_every = retry_every
        self._on_stored = on_stored  # told once a batch is committed (the live feed's wake-up)
        self._wake = asyncio.Event()
        self._writing = asyncio.Lock()  # run() and flush() never write the same batch twice
        self._dropped = 0
        self._failing = ""

    @property
    def status(self) -> TimelineStatus:
        return TimelineStatus(len(self._steps) + len(self._answered), self._dropped, self._failing)

    def expect(self, call_id: uuid.UUID) -> None:
        self.tracker.expect(call_id)

    def add(self, steps: Iterable[Step]) -> None:
        """Steps of the gateway's own (an origination sent) into the same timeline."""
        for step in steps:
            self._keep(self._steps, step)

    def on_event(self, event: AmiMessage) -> None:
        tracked = self.tracker.feed(event, received_at=self._clock())
        for step in tracked.steps:
            self._keep(self._steps, step)
            if step.kind == "call.hangup" or (
                step.kind == "call.originate_response" and step.detail.get("reason") != "answered"
            ):
                self._on_call_ended(step.call_id)
        for answered in tracked.answered:
            self._keep(self._answered, answered)

    def _keep(self, queue: deque[Step] | deque[Answered], item: Step | Answered) -> None:
        if len(self._steps) + len(self._answered) >= self._max_pending:
            if not self._dropped:
                log.error(
                    "call timeline: %d steps wait for the database; dropping new ones", len(self._steps)
                )
            self._dropped += 1
            return
        queue.append(item)  # type: ignore[arg-type]  # each deque gets its own kind, as called above
        self._wake.set()

    async def run(self) -> None:
        """Write what arrives, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._steps or self._answered:
                await self._write_batch()

    async def flush(self) -> None:
        """Write everything waiting now (tests, and a clean stop)."""
        while self._steps or self._answered:
            await self._write_batch()

    async def _write_batch(self) -> None:
        async with self._writing:
            await self._write_locked()

    async def _write_locked(self) -> None:
        if not (self._steps or self._answered):
            return
        steps = [self._steps[i] for i in range(min(BATCH, len(self._steps)))]
        answered = [self._answered[i] for i in range(min(BATCH, len(self._answered)))]
        try:
            async with self._pool.acquire() as conn:
                await store.write(conn, steps, [(a, is_abandoned(a)) for a in answered])
        except DATABASE_FAILURES as exc:
            failing = describe_failure(exc)
            if not self._failing:
                log.warning(
                    "call timeline: cannot write (%s); trying again every %g s", failing, self._retry_every
                )
            self._failing = failing
            await asyncio.sleep(self._retry_every)
            return
        if steps:
            self._on_stored()
        if self._failing:
            log.info("call timeline: writing again")
            self._failing = ""
        for _ in steps:
            self._steps.popleft()
        for _ in answered:
            self._answered.popleft()


def step(call_id: uuid.UUID, at: datetime, kind: str, **detail: object) -> Step:
    return Step(call_id, at, kind, dict(detail))
