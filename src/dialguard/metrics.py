"""The gateway's Prometheus metrics, on a registry of its own (no module globals), served at /metrics.

Counted as they happen: checks by verdict and reason, their latency, decisions stored or not, opt-outs,
HLR look-ups and their latency. Read when Prometheus scrapes (``scrape()``): the database pools' use, the
opt-out journal's depth, the HLR circuit breaker's state, each national do-not-call list's age and each
campaign's abandoned-call rate — read
from the admin pool and cached a few seconds, so that no scrape takes a connection a call needs and a
storm of scrapes is one query.

No number and no secret is in any of it: every label is a code, a list or a pool name.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from dialguard.clock import Clock, system_clock
from dialguard.hlr.breaker import BreakerState, CircuitBreaker
from dialguard.journal import OptOutJournal
from dialguard.policy.abandon import rules_in_force
from dialguard.policy.rulebook import RuleBook
from dialguard.store.abandons import campaign_rates
from dialguard.store.db import DATABASE_FAILURES, Connection, Pool, describe_failure
from dialguard.store.registry import registry_status

if TYPE_CHECKING:
    from dialguard.gate import GateDecision

log = logging.getLogger(__name__)

# Checks take ~1-3 ms on a quiet gateway; a vendor's HLR answer (0.8 s deadline) or the fact deadline (2 s)
# bounds the slow ones.
CHECK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
HLR_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LISTS_TTL = 5.0  # seconds the national lists' dates are reused across scrapes
LISTS_WITHIN = 1.0  # seconds a scrape waits for them, at most: a busy admin pool keeps the last ones


class Metrics:
    def __init__(
        self,
        *,
        clock: Clock = system_clock,
        monotonic: Callable[[], float] = time.monotonic,
        lists_ttl: float = LISTS_TTL,
    ) -> None:
        self.registry = CollectorRegistry()
        self.clock = clock  # "today", for the lists' ages
        self.monotonic = monotonic  # the lists' cache
        self.lists_ttl = lists_ttl
        self.optouts = Counter(
            "dialguard_optouts",
            "Opt-out keys pressed, by where they were kept: stored, journaled, or lost (neither written)",
            ["kept"],
            registry=self.registry,
        )
        self.checks = Counter(
            "dialguard_checks",
            "Checks decided (FastAGI, HTTP, CLI) by verdict and reason: the first failed code, or ok",
            ["verdict", "reason"],
            registry=self.registry,
        )
        self.check_seconds = Histogram(
            "dialguard_check_seconds",
            "Time to decide a check, from the request to its stored decision",
            buckets=CHECK_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "dialguard_decisions",
            "Decisions by outcome: stored, or not_stored (the database could not take it: gate.unavailable)",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("stored", "not_stored"):
            self.decisions.labels(outcome=outcome)  # both at 0 from the start: rate() needs a first sample
        self.hlr_lookups = Histogram(
            "dialguard_hlr_lookup_seconds",
            "HLR vendor look-ups by outcome (answered, timeout, error) and their time; no cache hits",
            ["outcome"],
            buckets=HLR_BUCKETS,
            registry=self.registry,
        )
        self._pools: dict[str, Pool] = {}
        self._journal: OptOutJournal | None = None
        self._journal_lines: int | None = None
        self._breaker: CircuitBreaker | None = None
        self._lists_pool: Pool | None = None
        self._list_dates: dict[str, date] = {}
        self._lists_read_at: float | None = None
        self._lists_lock = asyncio.Lock()
        self._rulebook: RuleBook | None = None
        self._abandon: list[tuple[str, str, float]] = []  # campaign, layer, rate as the governor measures it
        self.registry.register(self)  # collect(): the values read at scrape time

    # ---------------------------------------------------------------- what the composition root wires

    def watch_pool(self, name: str, pool: Pool) -> None:
        """Report the pool's size and connections in use, as ``pool="name"``."""
        self._pools[name] = pool

    def watch_journal(self, journal: OptOutJournal) -> None:
        self._journal = journal

    def watch_breaker(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker

    def watch_abandon_rates(self, rulebook: RuleBook) -> None:
        """Each campaign's abandoned-call rate under each rule in force, read with the national lists."""
        self._rulebook = rulebook

    def watch_national_lists(self, pool: Pool) -> None:
        """Read the national lists' dates on ``pool`` (the admin pool: never one a call needs)."""
        self._lists_pool = pool

    # ---------------------------------------------------------------- what happens, counted

    def observe_check(self, result: GateDecision, seconds: float) -> None:
        """One decision of the gate (its ``observe`` callback)."""
        self.checks.labels(verdict=str(result.verdict), reason=result.decision.reason).inc()
        self.check_seconds.observe(seconds)
        self.decisions.labels(outcome="stored" if result.stored else "not_stored").inc()

    def observe_hlr_lookup(self, outcome: str, seconds: float) -> None:
        """One vendor look-up (the roaming service's ``observe`` callback)."""
        self.hlr_lookups.labels(outcome=outcome).observe(seconds)

    # ---------------------------------------------------------------- the exposition

    async def scrape(self) -> bytes:
        """Read what is read at scrape time, then render everything."""
        if self._journal is not None:
            try:
                self._journal_lines = await asyncio.to_thread(self._journal.depth)
            except OSError:
                self._journal_lines = None  # left out; /healthz reports the journal's replay failing
        if self._lists_pool is not None:
            await self._read_lists(self._lists_pool)
        return self.render()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (the scrape-time values as last read)."""
        data: bytes = generate_latest(self.registry)
        return data

    async def _read_lists(self, pool: Pool) -> None:
        async with self._lists_lock:  # concurrent scrapes: one query, the others reuse its answer
            now = self.monotonic()
            if self._lists_read_at is not None and now - self._lists_read_at < self.lists_ttl:
                return
            self._lists_read_at = now
            try:
                async with asyncio.timeout(LISTS_WITHIN), pool.acquire() as conn:
                    rows = await registry_status(conn)
                    abandon = await self._abandon_rates(conn) if self._rulebook is not None else []
            except DATABASE_FAILURES as exc:
                log.warning(
                    "metrics: national lists not read (%s); their last ages stand", describe_failure(exc)
                )
                return
            self._list_dates = {r["name"]: r["list_date"] for r in rows if r["list_date"] is not None}
            self._abandon = abandon

    async def _abandon_rates(self, conn: Connection) -> list[tuple[str, str, float]]:
        assert self._rulebook is not None
        now = self.clock()
        out = []
        for layer, rule in rules_in_force(self._rulebook, now.astimezone(UTC).date()):
            for campaign, counts in sorted((await campaign_rates(conn, window=rule.window, now=now)).items()):
                out.append((campaign, layer, counts.abandoned / max(counts.answered, rule.min_answered, 1)))
        return out

    def collect(self) -> Iterator[Metric]:
        """The values read at scrape time (prometheus_client calls this on each render)."""
        size = GaugeMetricFamily(
            "dialguard_db_pool_size", "Connections each database pool holds: call (the call path) and admin",
            labels=["pool"],
        )  # fmt: skip
        in_use = GaugeMetricFamily(
            "dialguard_db_pool_in_use", "Connections of each pool lent out now; at the size, the next waits",
            labels=["pool"],
        )  # fmt: skip
        for name, pool in self._pools.items():
            size.add_metric([name], pool.get_max_size())
            in_use.add_metric([name], pool.get_size() - pool.get_idle_size())
        yield size
        yield in_use
        if self._journal_lines is not None:
            yield GaugeMetricFamily(
                "dialguard_optout_journal_lines",
                "Opt-outs waiting in the local journal for the database (replayed every few seconds)",
                value=self._journal_lines,
            )
        if self._breaker is not None:
            state = GaugeMetricFamily(
                "dialguard_hlr_breaker_state",
                "The HLR circuit breaker: 1 for its state now",
                labels=["state"],
            )
            now = self._breaker.state
            for each in BreakerState:
                state.add_metric([str(each)], 1.0 if each is now else 0.0)
            yield state
        if self._lists_pool is not None:
            ages = GaugeMetricFamily(
                "dialguard_dnc_list_age_days",
                "Days since the date of each national do-not-call list's live version (UTC days, as the "
                "freshness rule counts them)",
                labels=["list"],
            )
            today = self.clock().astimezone(UTC).date()
            for name, day in sorted(self._list_dates.items()):
                # A date no calendar has (infinity) is the oldest, as the facts read it: never fresh.
                ages.add_metric([name], (today - (date.min if day == date.max else day)).days)
            yield ages
        if self._rulebook is not None:
            rates = GaugeMetricFamily(
                "dialguard_campaign_abandon_rate",
                "Each campaign's abandoned calls over its answered ones in the rule's window, as the "
                "governor measures it (against at least the rule's min_answered); held at the limit",
                labels=["campaign", "layer"],
            )
            for campaign, layer, rate in self._abandon:
                rates.add_metric([campaign, layer], rate)
            yield rates
