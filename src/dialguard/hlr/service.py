"""Roaming facts for the gate: the PostgreSQL cache first, then the provider under a deadline, a
concurrency limit and a circuit breaker. Never raises and never hangs: a failure is a fact with a cause.

Each failure cause is logged once until a look-up succeeds again, not once per call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from dialguard.clock import Clock
from dialguard.hlr.breaker import CircuitBreaker
from dialguard.hlr.providers import HlrAnswer, HlrError, HlrProvider
from dialguard.numbers import zones_for_country
from dialguard.policy.model import RoamingFact
from dialguard.store.db import StoreUnavailable, connection

log = logging.getLogger(__name__)

_READ = """SELECT number, status, visited_country, provider, fetched_at
                  FROM hlr_cache WHERE number = ANY($1::text[])"""
_WRITE = """INSERT INTO hlr_cache
                (number, status, visited_country, home_network, ported, provider, fetched_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (number) DO UPDATE SET status = EXCLUDED.status,
                visited_country = EXCLUDED.visited_country, home_network = EXCLUDED.home_network,
                ported = EXCLUDED.ported, provider = EXCLUDED.provider, fetched_at = EXCLUDED.fetched_at"""


def _fact(status: str, visited: str | None, provider: str, age: float) -> RoamingFact:
    zones = zones_for_country(visited) if visited else ()
    return RoamingFact(status, visited, provider, age, None, zones)


class RoamingService:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        provider: HlrProvider,
        clock: Clock,
        ttl: float = 3600.0,
        deadline: float = 0.8,
        concurrency: int = 20,
        breaker: CircuitBreaker | None = None,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self.pool = pool
        self.provider = provider
        self.clock = clock
        self.ttl = timedelta(seconds=ttl)
        self.deadline = deadline
        self.limit = asyncio.Semaphore(concurrency)
        self.breaker = breaker or CircuitBreaker(failures=5, reset_after=30.0, monotonic=time.monotonic)
        self.logged_causes: set[str] = set()
        self.observe = observe  # told of each vendor look-up: outcome (answered, timeout, error), seconds

    async def fact(self, e164: str, *, use_cache: bool = True) -> RoamingFact:
        if use_cache and (cached := (await self._cached([e164])).get(e164)) is not None:
            return cached
        return await self._ask(e164)

    async def prefetch(self, numbers: Iterable[str]) -> dict[str, RoamingFact]:
        """Look many numbers up ahead of their calls: the cache in one query, then the vendor for the
        rest, concurrently within the limit, filling the cache."""
        unique = sorted(set(numbers))
        facts = await self._cached(unique)
        missing = [n for n in unique if n not in facts]
        facts.update(zip(missing, await asyncio.gather(*(self._ask(n) for n in missing)), strict=True))
        return facts

    async def _cached(self, numbers: list[str]) -> dict[str, RoamingFact]:
        """The fresh cached answers among ``numbers``; a cache that cannot be read has none."""
        now = self.clock()
        try:
            async with connection(self.pool) as conn:
                rows = await conn.fetch(_READ, numbers)
        except StoreUnavailable as exc:
            self._failed("cache_unavailable", str(exc))
            return {}
        fresh = ((row["number"], self.from_cache(row, now)) for row in rows)
        return {number: fact for number, fact in fresh if fact is not None}

    async def _ask(self, e164: str) -> RoamingFact:
        now = self.clock()
        if not self.breaker.allow():
            return self._unknown("breaker_open")
        started = time.perf_counter()
        try:
            async with self.limit, asyncio.timeout(self.deadline):
                answer = await self.provider.lookup(e164)
        except TimeoutError:
            self._observed("timeout", started)
            self.breaker.failure()
            return self._unknown("timeout", f"no answer within {self.deadline:.3f} s")
        except HlrError as exc:
            self._observed("error", started)
            self.breaker.failure()
            return self._unknown(exc.cause, str(exc))
        self._observed("answered", started)
        self.breaker.success()
        self.logged_causes.clear()
        await self._remember(e164, answer, now)
        return _fact("abroad" if answer.roaming else "home", answer.visited_country, self.provider.name, 0.0)

    def _observed(self, outcome: str, started: float) -> None:
        if self.observe is not None:
            self.observe(outcome, time.perf_counter() - started)

    def from_cache(self, row: Mapping[str, Any] | asyncpg.Record, now: datetime) -> RoamingFact | None:
        """A cached answer, if still fresh (the one place that judges freshness); None: ask the vendor."""
        if row["fetched_at"] <= now - self.ttl:
            return None
        age = (now - row["fetched_at"]).total_seconds()
        return _fact(row["status"], row["visited_country"], row["provider"], age)

    async def _remember(self, e164: str, answer: HlrAnswer, at: datetime) -> None:
        status = "abroad" if answer.roaming else "home"
        try:
            async with connection(self.pool) as conn:
                await conn.execute(
                    _WRITE, e164, status, answer.visited_country, answer.home_network, answer.ported,
                    self.provider.name, at,
                )  # fmt: skip
        except StoreUnavailable as exc:
            self._failed("cache_unavailable", str(exc))  # the answer still serves this call

    def _unknown(self, cause: str, detail: str = "") -> RoamingFact:
        self._failed(cause, detail)
        return RoamingFact("unknown", None, self.provider.name, None, cause)

    def _failed(self, cause: str, detail: str) -> None:
        if cause not in self.logged_causes:
            self.logged_causes.add(cause)
            log.warning("HLR look-up failed (%s): %s; logged once until a look-up succeeds", cause, detail)
