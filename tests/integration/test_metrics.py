"""GET /metrics as a supervisor's Prometheus reads it: real checks through FastAGI and POST /v1/checks, a
real HLR vendor over HTTP, real pools and a real journal; the exposition parsed as Prometheus would.

/metrics needs no token (it never did: no number and no secret is in it), like /healthz.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from dialguard.asterisk.agi_routes import agi_routes
from dialguard.asterisk.agi_server import AgiServer
from dialguard.clock import fixed_clock
from dialguard.config import Settings
from dialguard.dnc_files import FileFormat
from dialguard.gate import CheckRequest, Gate
from dialguard.hlr.breaker import CircuitBreaker
from dialguard.hlr.providers import HttpProvider
from dialguard.hlr.service import RoamingService
from dialguard.journal import OptOutJournal
from dialguard.metrics import Metrics
from dialguard.optouts import OptOutKeeper
from dialguard.rules.loader import load_rulebook
from dialguard.store import dnc
from dialguard.store.abandons import Outcome, record_outcomes
from dialguard.store.calls import OptOut
from dialguard.store.db import create_pool
from dialguard.store.registry import import_registry
from dialguard.store.tokens import Role, create_token
from dialguard.web.app import create_app
from tests.conftest import as_gateway
from tests.decision_rows import store_decision
from tests.fakes.asterisk_agi import FakeAsterisk
from tests.fakes.hlr_server import API_KEY, MAPPING, FakeHlr
from tests.fakes.proxy import CuttableProxy
from tests.fakes.rules import simple_rulebook

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 16:00 in Warsaw, inside the test rules' 8-21 window
TODAY = NOW.date()
PL_MOBILE = "+48601234567"
PL_OTHER = "+48601234568"
PL_LISTED = "+48601234569"

Client = TestClient[web.Request, web.Application]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Ticks:
    """A monotonic clock the test moves by hand (the lists' cache, the breaker's reset)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_gate(pool: asyncpg.Pool, metrics: Metrics) -> Gate:
    rules = simple_rulebook(consent_for=())  # no consent asked: a clean number is allowed
    return Gate(
        pool=pool, rulebook=rules, clock=fixed_clock(NOW), default_region="PL", observe=metrics.observe_check
    )


async def scrape(client: Client) -> Samples:
    """/metrics without a token, parsed as Prometheus parses it: (sample name, labels) -> value."""
    response = await client.get("/metrics")
    assert response.status == 200, await response.text()
    assert response.content_type == "text/plain"
    text = await response.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def of(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


def labels(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


def buckets(samples: Samples, name: str) -> dict[str, float]:
    """An unlabelled histogram's buckets: upper bound -> count."""
    return {dict(ls)["le"]: v for ls, v in of(samples, f"{name}_bucket").items()}


async def lines(text: bytes) -> AsyncIterator[bytes]:
    yield text


async def load_list(pool: asyncpg.Pool, registry: str, day: date, numbers: Iterable[str]) -> None:
    async with pool.acquire() as conn:
        await import_registry(
            conn, lines(b"number\n" + b"".join(n.encode() + b"\n" for n in numbers)), registry=registry,
            fmt=FileFormat.CSV,
            list_date=day, now=NOW, actor="test", default_region="PL",
        )  # fmt: skip


@pytest.fixture
async def admin_pool(db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    admin = await create_pool(as_gateway(db_dsn), size=2, application_name="dialguard-admin")
    yield admin
    await admin.close()


@pytest.fixture
async def hlr() -> AsyncIterator[FakeHlr]:
    fake = FakeHlr()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def agi() -> AsyncIterator[list[AgiServer]]:
    servers: list[AgiServer] = []
    yield servers
    for server in servers:
        await server.close()


async def test_checks_pools_lists_and_the_hlr_as_a_scrape_sees_them(
    pool: asyncpg.Pool,
    admin_pool: asyncpg.Pool,
    aiohttp_client: Any,
    hlr: FakeHlr,
    agi: list[AgiServer],
    tmp_path: Path,
) -> None:
    ticks = Ticks()
    metrics = Metrics(clock=fixed_clock(NOW), monotonic=ticks, lists_ttl=5)
    metrics.watch_pool("call", pool)
    metrics.watch_pool("admin", admin_pool)
    metrics.watch_national_lists(admin_pool)
    gate = make_gate(pool, metrics)
    admin_gate = make_gate(admin_pool, metrics)
    app = create_app(
        settings=Settings(),
        pool=pool,
        gate=gate,
        admin_pool=admin_pool,
        admin_gate=admin_gate,
        metrics=metrics,
    )
    client: Client = await aiohttp_client(app)
    server = AgiServer(routes=agi_routes(gate=gate), host="127.0.0.1", port=0)
    await server.start()
    agi.append(server)
    async with pool.acquire() as conn:
        token = await create_token(conn, name="crm", role=Role.DIALER)
        await dnc.add_dnc(conn, at=NOW, number=PL_LISTED, source="complaint")
    await load_list(admin_pool, "pl_national", TODAY - timedelta(days=10), ["+48221234567"])

    # Two calls through FastAGI (allowed), two checks over HTTP (a listed number, an unparsable one).
    asterisk = FakeAsterisk("127.0.0.1", server.port)
    for number in (PL_MOBILE, PL_OTHER):
        assert (await asterisk.agi("check", number)).variables["DIALGUARD_VERDICT"] == "ALLOW"
    headers = {"Authorization": f"Bearer {token}"}
    for number, reason in ((PL_LISTED, "dnc.internal"), ("call me maybe", "number.invalid")):
        answer = await client.post("/v1/checks", json={"number": number}, headers=headers)
        assert (await answer.json())["reason"] == reason
    # A look-ahead (a lead-list scrub) is no decision: not a check.
    await admin_gate.look_ahead([CheckRequest(PL_MOBILE, at=NOW)])

    samples = await scrape(client)
    assert of(samples, "dialguard_checks_total") == {
        labels(verdict="ALLOW", reason="ok"): 2,
        labels(verdict="BLOCK", reason="dnc.internal"): 1,
        labels(verdict="BLOCK", reason="number.invalid"): 1,
    }
    assert of(samples, "dialguard_decisions_total") == {
        labels(outcome="stored"): 4,
        labels(outcome="not_stored"): 0,
    }
    assert samples[("dialguard_check_seconds_count", labels())] == 4
    latency = buckets(samples, "dialguard_check_seconds")
    assert list(latency) == ["0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0",
                             "2.5", "5.0", "+Inf"]  # fmt: skip
    assert latency["+Inf"] == 4 and list(latency.values()) == sorted(latency.values())
    assert 0 < samples[("dialguard_check_seconds_sum", labels())] < 4 * 5

    # Pools, read as the scrape runs: a connection held of each shows as in use.
    assert of(samples, "dialguard_db_pool_size") == {labels(pool="call"): 4, labels(pool="admin"): 2}
    assert of(samples, "dialguard_db_pool_in_use") == {labels(pool="call"): 0, labels(pool="admin"): 0}
    async with pool.acquire(), pool.acquire(), admin_pool.acquire():
        held = await scrape(client)
    assert of(held, "dialguard_db_pool_in_use") == {labels(pool="call"): 2, labels(pool="admin"): 1}

    # National lists: their age in days by the injected clock, read again only once the cache expires.
    assert of(samples, "dialguard_dnc_list_age_days") == {labels(list="pl_national"): 10}
    await load_list(admin_pool, "pl_national", TODAY - timedelta(days=1), ["+48221234567"])
    await load_list(admin_pool, "gb_tps", TODAY - timedelta(days=3), ["+441632960001"])
    assert of(await scrape(client), "dialguard_dnc_list_age_days") == {labels(list="pl_national"): 10}
    ticks.now += 5
    assert of(await scrape(client), "dialguard_dnc_list_age_days") == {
        labels(list="pl_national"): 1,
        labels(list="gb_tps"): 3,
    }
    # Nothing watched, nothing said: no journal, no breaker in this app yet.
    assert not of(samples, "dialguard_optout_journal_lines")
    assert not of(samples, "dialguard_hlr_breaker_state")

    # The HLR: each vendor look-up timed by outcome; the breaker's state read at scrape time.
    breaker = CircuitBreaker(failures=2, reset_after=30, monotonic=ticks)
    metrics.watch_breaker(breaker)
    async with aiohttp.ClientSession() as session:
        provider = HttpProvider(session=session, url=hlr.url, mapping=MAPPING, auth_header="X-Api-Key",
                                auth_value=API_KEY, name="fake")  # fmt: skip
        roaming = RoamingService(
            pool=pool, provider=provider, clock=fixed_clock(NOW), deadline=5.0, breaker=breaker,
            observe=metrics.observe_hlr_lookup,
        )  # fmt: skip
        assert (await roaming.fact(PL_MOBILE, use_cache=False)).status == "home"
        state = of(await scrape(client), "dialguard_hlr_breaker_state")
        assert state == {labels(state="closed"): 1, labels(state="open"): 0, labels(state="half_open"): 0}
        hlr.mode = "500"
        for _ in range(3):  # two failures open the breaker; the third is not asked at all
            assert (await roaming.fact(PL_MOBILE, use_cache=False)).status == "unknown"
        samples = await scrape(client)
        assert of(samples, "dialguard_hlr_breaker_state")[labels(state="open")] == 1
        ticks.now += 30
        samples_later = await scrape(client)
    assert of(samples_later, "dialguard_hlr_breaker_state")[labels(state="half_open")] == 1
    assert of(samples, "dialguard_hlr_lookup_seconds_count") == {
        labels(outcome="answered"): 1,
        labels(outcome="error"): 2,
    }
    assert hlr.hits == 3


async def test_with_the_database_away_a_scrape_still_answers_and_says_what_was_not_stored(
    proxied: tuple[CuttableProxy, asyncpg.Pool], aiohttp_client: Any, tmp_path: Path
) -> None:
    proxy, through = proxied
    ticks = Ticks()
    metrics = Metrics(clock=fixed_clock(NOW), monotonic=ticks, lists_ttl=5)
    journal = OptOutJournal(tmp_path / "optouts.jsonl", clock=fixed_clock(NOW))
    metrics.watch_pool("call", through)
    metrics.watch_journal(journal)
    metrics.watch_national_lists(through)
    gate = make_gate(through, metrics)
    keeper = OptOutKeeper(pool=through, journal=journal, metrics=metrics, clock=fixed_clock(NOW), within=0.5)
    client: Client = await aiohttp_client(
        create_app(settings=Settings(), pool=through, gate=gate, metrics=metrics)
    )
    await load_list(through, "pl_national", TODAY - timedelta(days=10), ["+48221234567"])
    samples = await scrape(client)
    assert of(samples, "dialguard_dnc_list_age_days") == {labels(list="pl_national"): 10}
    assert samples[("dialguard_optout_journal_lines", labels())] == 0

    proxy.cut()
    blocked = await gate.check(CheckRequest(PL_MOBILE, record=True, channel="agi"))
    assert blocked.decision.reason == "gate.unavailable" and not blocked.stored
    optout = OptOut(uuid.uuid4(), PL_MOBILE, blocked.call_id, "default", "9", NOW)
    assert str(await keeper.keep(optout)) == "journaled"
    ticks.now += 5  # the lists' cache has expired: the scrape tries, fails, and keeps the last ages
    samples = await scrape(client)
    assert of(samples, "dialguard_checks_total") == {labels(verdict="BLOCK", reason="gate.unavailable"): 1}
    assert of(samples, "dialguard_decisions_total") == {
        labels(outcome="stored"): 0,
        labels(outcome="not_stored"): 1,
    }
    assert samples[("dialguard_optout_journal_lines", labels())] == 1
    assert samples[("dialguard_optouts_total", labels(kept="journaled"))] == 1
    assert of(samples, "dialguard_dnc_list_age_days") == {labels(list="pl_national"): 10}

    proxy.restore()
    assert await journal.replay(through) == 1
    samples = await scrape(client)
    assert samples[("dialguard_optout_journal_lines", labels())] == 0


async def test_the_journal_depth_counts_whole_lines_only(tmp_path: Path) -> None:
    """A line torn by a crash is no opt-out yet; a blank line is none; an unreadable one still waits."""
    journal = OptOutJournal(tmp_path / "optouts.jsonl", clock=fixed_clock(NOW))
    assert journal.depth() == 0  # no file yet
    for _ in range(2):
        await journal.append(OptOut(uuid.uuid4(), PL_MOBILE, uuid.uuid4(), "default", "9", NOW))
    with journal.path.open("ab") as f:
        f.write(b'\nnot json\n{"id": "torn')
    assert journal.depth() == 3


async def test_each_campaigns_abandon_rate_as_the_governor_measures_it(
    pool: asyncpg.Pool, admin_pool: asyncpg.Pool, aiohttp_client: Any
) -> None:
    us = load_rulebook()  # the shipped packs: the US rule, 3 % over 30 days, measured against >= 34 answered
    metrics = Metrics(clock=fixed_clock(NOW), monotonic=Ticks(), lists_ttl=5)
    metrics.watch_national_lists(admin_pool)
    metrics.watch_abandon_rates(us)
    gate = Gate(pool=pool, rulebook=us, clock=fixed_clock(NOW), default_region="US")
    client: Client = await aiohttp_client(
        create_app(settings=Settings(), pool=pool, gate=gate, metrics=metrics)
    )
    async with pool.acquire() as conn:
        hour_ago, month_ago = NOW - timedelta(hours=1), NOW - timedelta(days=31)
        outcomes = []
        for n in range(40):  # 40 answered calls of one campaign an hour ago, 2 of them abandoned
            call_id = await store_decision(conn, at=hour_ago, number=f"+1212555{n:04d}", campaign="spring")
            outcomes.append(Outcome(call_id, hour_ago, None if n < 2 else hour_ago, abandoned=n < 2))
        # Another campaign, 31 days ago: outside the window.
        call_id = await store_decision(conn, at=month_ago, number="+12125559999", campaign="old")
        outcomes.append(Outcome(call_id, month_ago, None, abandoned=True))
        assert await record_outcomes(conn, outcomes) == 41
    rates = of(await scrape(client), "dialguard_campaign_abandon_rate")
    # Under each rule in force: the US's 30 days and GB's 24 hours both hold the hour-old calls.
    assert rates == {
        labels(campaign="spring", layer="US"): 2 / 40,
        labels(campaign="spring", layer="GB"): 2 / 40,
    }
