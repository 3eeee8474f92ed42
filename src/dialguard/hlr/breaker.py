"""A circuit breaker: after repeated failures stop asking a failing vendor for a while, then try one.

closed -> (``failures`` in a row) -> open -> (``reset_after`` seconds) -> half-open: one trial call;
its success closes the breaker, its failure opens it again. Time comes from the injected clock.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, *, failures: int, reset_after: float, monotonic: Callable[[], float]) -> None:
        self.threshold = failures
        self.reset_after = reset_after
        self.monotonic = monotonic
        self.failures = 0
        self.opened_at: float | None = None
        self.trial_out = False  # half-open admits one call at a time

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self.monotonic() - self.opened_at >= self.reset_after:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self.trial_out:
            self.trial_out = True
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.trial_out = False

    def failure(self) -> None:
        self.failures += 1
        self.trial_out = False
        if self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at = self.monotonic()
