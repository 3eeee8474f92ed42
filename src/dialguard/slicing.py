"""Long CPU work on the event loop, in slices: between two slices the loop runs whatever else is ready.

The gateway's FastAGI sessions share one event loop with the HTTP API. A lead-list scrub costs about
200 µs of CPU a row (phonenumbers half of it, then the policy, the rules, its JSON line); a batch of 200
rows parsed, judged and written in one go held the loop for 30-60 ms, and each step of every check
waited that long (issue 14: check p99 17 ms -> 200 ms during a 100k-row scrub). A thread would not help:
the GIL holds the loop just the same. So the work hands the loop back itself, whenever it has run for a
slice.
"""

from __future__ import annotations

import asyncio
import time

TURNS = 4


class Slicer:
    """Await :meth:`pause` between the small steps (a row each) of one long computation."""

    def __init__(self, budget: float | None) -> None:
        self.budget = budget  # seconds of running between two turns of the loop; None: never yield
        self._since = time.perf_counter()

    async def pause(self) -> None:
        """Hand the loop back once this slice's budget is spent; go straight on otherwise."""
        if self.budget is None or time.perf_counter() - self._since < self.budget:
            return
        # Two turns of the loop: in the first, what became ready during the slice runs (a check's reply
        # is read, its task woken); in the second, the tasks it woke. Then this work goes on. Not a
        # poll: nothing is waited for.
        for _ in range(TURNS):
            await asyncio.sleep(0)
        self._since = time.perf_counter()
