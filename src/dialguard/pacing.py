"""A campaign's pace through POST /v1/calls: calls at once, and new calls a second. In memory, per gateway.

A call holds its place from the moment it is admitted until its hang-up (or its failed origination) is
seen on AMI. A hang-up that never comes (the AMI link was down just then) frees the place after
``max_call_seconds``, so a lost event cannot stop a campaign for good.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dialguard.clock import Clock


@dataclass(slots=True)
class _Campaign:
    tokens: float = 0.0
    refilled_at: datetime | None = None
    live: dict[uuid.UUID, datetime] = field(default_factory=dict)  # call id -> admitted at


class Pacer:
    def __init__(self, clock: Clock, *, max_call_seconds: float = 4 * 3600) -> None:
        self._clock = clock
        self._campaigns: dict[str, _Campaign] = {}
        self._campaign_of: dict[uuid.UUID, str] = {}
        self._max_call = timedelta(seconds=max_call_seconds)

    def admit(
        self, campaign: str, call_id: uuid.UUID, *, max_concurrent: int | None, per_second: float | None
    ) -> float | None:
        """None: the call may be placed now, and holds its place; else the seconds to wait first."""
        now = self._clock()
        state = self._campaigns.setdefault(campaign, _Campaign())
        self._expire(state, now)
        if max_concurrent is not None and len(state.live) >= max_concurrent:
            return 1.0
        if per_second is not None:
            burst = max(1.0, per_second)  # a second's worth at once, at least one call
            if state.refilled_at is None:
                state.tokens = burst
            else:
                elapsed = (now - state.refilled_at).total_seconds()
                state.tokens = min(burst, state.tokens + max(0.0, elapsed) * per_second)
            state.refilled_at = now
            if state.tokens < 1.0:
                return math.ceil((1.0 - state.tokens) / per_second * 10) / 10
            state.tokens -= 1.0
        state.live[call_id] = now
        self._campaign_of[call_id] = campaign
        return None

    def release(self, call_id: uuid.UUID) -> None:
        """The call is over (hung up, or never placed): its place is free."""
        campaign = self._campaign_of.pop(call_id, None)
        if campaign is not None:
            self._campaigns[campaign].live.pop(call_id, None)

    def live(self, campaign: str) -> int:
        return len(self._campaigns[campaign].live) if campaign in self._campaigns else 0

    def _expire(self, state: _Campaign, now: datetime) -> None:
        stale = [call_id for call_id, at in state.live.items() if now - at > self._max_call]
        for call_id in stale:
            self.release(call_id)
