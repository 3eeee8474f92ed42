"""The roaming gate against a fake HLR vendor over real HTTP and a real PostgreSQL cache."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from dialguard.clock import fixed_clock
from dialguard.gate import CheckRequest, Gate
from dialguard.hlr.breaker import BreakerState, CircuitBreaker
from dialguard.hlr.providers import FileProvider, HttpProvider
from dialguard.hlr.service import RoamingService
from dialguard.policy.model import Purpose
from dialguard.rules.loader import load_rulebook
from dialguard.store import campaigns, consent, dnc
from tests.cli import dialguard
from tests.fakes.hlr_server import API_KEY, MAPPING, FakeHlr

NOW = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)  # 12:00 in Warsaw, a Monday
PL_MOBILE = "+48601234567"
PL_LANDLINE = "+48221234567"


class Ticks:
    """A monotonic clock the test moves by hand (for the breaker's reset)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def hlr() -> AsyncIterator[FakeHlr]:
    fake = FakeHlr()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def service(
    pool: asyncpg.Pool,
    hlr: FakeHlr,
    session: aiohttp.ClientSession,
    *,
    now: datetime = NOW,
    key: str = API_KEY,
    ticks: Ticks | None = None,
    deadline: float = 5.0,  # generous: only the timeout case is about time, and CI machines are loaded
) -> RoamingService:
    provider = HttpProvider(
        session=session, url=hlr.url, mapping=MAPPING, auth_header="X-Api-Key", auth_value=key, name="fake"
    )
    breaker = CircuitBreaker(failures=3, reset_after=30, monotonic=ticks or Ticks())
    return RoamingService(
        pool=pool, provider=provider, clock=fixed_clock(now), ttl=3600, deadline=deadline, breaker=breaker
    )


async def test_an_answer_is_mapped_and_cached_with_its_age(
    pool: asyncpg.Pool, hlr: FakeHlr, session: aiohttp.ClientSession
) -> None:
    hlr.roaming["48601234567"] = "214"  # in Spain
    first = await service(pool, hlr, session).fact(PL_MOBILE)
    assert (first.status, first.visited_country, first.age_seconds) == ("abroad", "ES", 0.0)
    assert "Europe/Madrid" in first.visited_zones
    later = await service(pool, hlr, session, now=NOW + timedelta(minutes=10)).fact(PL_MOBILE)
    assert (later.status, later.age_seconds, hlr.hits) == ("abroad", 600.0, 1)  # from the cache
    expired = await service(pool, hlr, session, now=NOW + timedelta(hours=1, seconds=1)).fact(PL_MOBILE)
    assert (expired.age_seconds, hlr.hits) == (0.0, 2)  # older than the TTL: asked again
    home = await service(pool, hlr, session).fact(PL_LANDLINE)
    assert (home.status, home.visited_country) == ("home", None)


@pytest.mark.parametrize(
    ("mode", "key", "cause"),
    [
        ("500", API_KEY, "http_500"),
        ("429", API_KEY, "http_429"),
        ("bad_json", API_KEY, "bad_json"),
        ("missing_field", API_KEY, "missing_field:data.roaming"),
        ("unknown_country", API_KEY, "unknown_country"),
        ("ok", "wrong-key", "unauthorized"),
        ("ok", API_KEY, "timeout"),  # with a 2 s delay against a 0.2 s deadline
    ],
)
async def test_every_vendor_failure_is_unknown_with_its_cause_logged_once(
    pool: asyncpg.Pool,
    hlr: FakeHlr,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    key: str,
    cause: str,
) -> None:
    hlr.mode, hlr.delay = mode, 2.0 if cause == "timeout" else 0.0
    svc = service(pool, hlr, session, key=key, deadline=0.2 if cause == "timeout" else 5.0)
    with caplog.at_level(logging.WARNING, logger="dialguard.hlr.service"):
        facts = [await svc.fact(PL_MOBILE) for _ in range(2)]
    assert [(f.status, f.cause) for f in facts] == [("unknown", cause)] * 2
    assert len([r for r in caplog.records if cause in r.getMessage()]) == 1


async def test_the_breaker_opens_then_lets_one_trial_through(
    pool: asyncpg.Pool, hlr: FakeHlr, session: aiohttp.ClientSession
) -> None:
    ticks = Ticks()
    svc = service(pool, hlr, session, ticks=ticks)
    hlr.mode = "500"
    assert [(await svc.fact(PL_MOBILE)).cause for _ in range(4)] == ["http_500"] * 3 + ["breaker_open"]
    assert (hlr.hits, svc.breaker.state) == (3, BreakerState.OPEN)
    ticks.now = 31.0
    assert svc.breaker.state is BreakerState.HALF_OPEN
    hlr.mode = "ok"
    assert (await svc.fact(PL_MOBILE)).status == "home"
    assert (hlr.hits, svc.breaker.state) == (4, BreakerState.CLOSED)


async def test_a_failed_trial_opens_the_breaker_again() -> None:
    ticks = Ticks()
    breaker = CircuitBreaker(failures=2, reset_after=10, monotonic=ticks)
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert not breaker.allow()
    ticks.now = 10.0
    assert breaker.allow()  # the one trial
    assert not breaker.allow()  # and no second one while it runs
    breaker.failure()
    assert breaker.state is BreakerState.OPEN
    ticks.now = 15.0
    assert not breaker.allow()


async def prepared(pool: asyncpg.Pool, **settings: object) -> None:
    async with pool.acquire() as conn:
        await campaigns.add_campaign(conn, name="spring", purpose=Purpose.MARKETING, settings=dict(settings))
        for number in (PL_MOBILE, PL_LANDLINE, "+4915123456789"):
            await consent.grant_consent(
                conn, at=NOW, number=number, kind="express", source="web_form", purpose=Purpose.MARKETING,
                granted_at=NOW - timedelta(days=3),
            )  # fmt: skip


def gate(
    pool: asyncpg.Pool, roaming: RoamingService | None, now: datetime = NOW, **overrides: object
) -> Gate:
    rulebook = load_rulebook(overrides or None)
    return Gate(pool=pool, rulebook=rulebook, clock=fixed_clock(now), default_region="PL", roaming=roaming)


async def test_a_polish_mobile_abroad_is_blocked_with_the_visited_country(
    pool: asyncpg.Pool, hlr: FakeHlr, session: aiohttp.ClientSession
) -> None:
    await prepared(pool)
    hlr.roaming["48601234567"] = "214"
    result = await gate(pool, service(pool, hlr, session)).check(CheckRequest(PL_MOBILE, campaign="spring"))
    reasons = {r.code: r for r in result.decision.reasons}
    assert result.decision.reason == "roaming.abroad"
    assert reasons["roaming.abroad"].detail["visited_country"] == "ES"
    landline = await gate(pool, service(pool, hlr, session)).check(
        CheckRequest(PL_LANDLINE, campaign="spring")
    )
    assert "roaming.not_mobile" in landline.decision.codes
    assert landline.decision.reason == "ok"
    german = await gate(pool, service(pool, hlr, session)).check(
        CheckRequest("+4915123456789", campaign="spring")
    )
    assert "roaming.not_required" in german.decision.codes  # the EU pack does not ask
    assert hlr.hits == 1


async def test_at_home_the_call_goes_and_the_answer_is_evidence(
    pool: asyncpg.Pool, hlr: FakeHlr, session: aiohttp.ClientSession
) -> None:
    await prepared(pool)
    result = await gate(pool, service(pool, hlr, session)).check(CheckRequest(PL_MOBILE, campaign="spring"))
    assert result.decision.reason == "ok"
    home = next(r for r in result.decision.reasons if r.code == "roaming.home")
    assert home.detail["provider"] == "fake"


async def test_no_answer_allows_where_the_rule_is_policy_and_blocks_where_it_is_law(
    pool: asyncpg.Pool, hlr: FakeHlr, session: aiohttp.ClientSession
) -> None:
    await prepared(pool)
    hlr.mode = "500"
    policy = await gate(pool, service(pool, hlr, session)).check(CheckRequest(PL_MOBILE, campaign="spring"))
    unknown = next(r for r in policy.decision.reasons if r.code == "roaming.unknown")
    assert (policy.decision.reason, unknown.passed, unknown.detail["cause"]) == ("ok", True, "http_500")
    law = {"roaming": {"required_for": ["marketing"], "on_unknown": "block", "source": "a statute"}}
    strict = await gate(pool, service(pool, hlr, session), PL=law).check(
        CheckRequest(PL_MOBILE, campaign="spring")
    )
    assert strict.decision.reason == "roaming.unknown"
    unconfigured = await gate(pool, None, PL=law).check(CheckRequest(PL_MOBILE, campaign="spring"))
    blocked = next(r for r in unconfigured.decision.reasons if r.code == "roaming.unknown")
    assert blocked.detail["cause"] == "no_provider"


@pytest.mark.parametrize(("utc_hour", "allowed"), [(9, True), (15, False)])
async def test_a_campaign_that_allows_roamers_keeps_the_window_where_they_are(
    pool: asyncpg.Pool, hlr: FakeHlr, session: aiohttp.ClientSession, utc_hour: int, allowed: bool
) -> None:
    # The PL window (9-20) must now hold in Warsaw (UTC+1) and Tokyo (MCC 440, UTC+9): 08-11 UTC.
    # 09:00 UTC is 10:00 and 18:00: inside both. 15:00 UTC is 16:00 in Warsaw but midnight in Tokyo.
    await prepared(pool, allow_roamers=True)
    hlr.roaming["48601234567"] = "440"
    at = NOW.replace(hour=utc_hour)
    result = await gate(pool, service(pool, hlr, session, now=at), now=at).check(
        CheckRequest(PL_MOBILE, campaign="spring")
    )
    abroad = next(r for r in result.decision.reasons if r.code == "roaming.abroad")
    assert abroad.passed
    assert result.decision.reason == ("ok" if allowed else "hours.outside_window")
    if not allowed:
        assert result.decision.next_callable_at is not None
        # 08:00 UTC next morning: 09:00 in Warsaw, 17:00 in Tokyo.
        assert result.decision.next_callable_at == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


async def test_prefetch_asks_concurrently_up_to_the_limit_and_fills_the_cache(
    pool: asyncpg.Pool, hlr: FakeHlr, session: aiohttp.ClientSession
) -> None:
    hlr.delay = 0.05
    svc = service(pool, hlr, session)
    svc.limit = asyncio.Semaphore(5)
    numbers = [f"+4860123{i:04d}" for i in range(20)]
    facts = await svc.prefetch(numbers + numbers[:3])  # duplicates are asked once
    assert {f.status for f in facts.values()} == {"home"} and len(facts) == 20
    assert (hlr.hits, hlr.most_in_flight) == (20, 5)
    await svc.prefetch(numbers)
    assert hlr.hits == 20  # all from the cache now
    later = service(pool, hlr, session, now=NOW + timedelta(minutes=10))
    fresh_and_new = await later.prefetch([*numbers[:5], "+48601239998", "+48601239999"])
    assert hlr.hits == 22  # only the two never asked
    assert [fresh_and_new[n].age_seconds for n in numbers[:5]] == [600.0] * 5
    stale = await service(pool, hlr, session, now=NOW + timedelta(hours=2)).prefetch(numbers[:5])
    assert (hlr.hits, {f.age_seconds for f in stale.values()}) == (27, {0.0})  # past the TTL: asked again


async def test_hlr_lookup_from_the_command_line_with_a_file_provider(db_dsn: str, tmp_path: Path) -> None:
    answers = tmp_path / "hlr.csv"
    answers.write_text("number,status,visited_country\n+48601234567,abroad,ES\n", encoding="utf-8")
    settings = {"hlr_provider": "file", "hlr_file": str(answers)}
    code, out, err = await dialguard(db_dsn, "hlr", "lookup", "+48 601 234 567", "--no-cache", **settings)
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["status"], shown["visited_country"], shown["provider"]) == ("abroad", "ES", "file")
    code, out, _ = await dialguard(db_dsn, "hlr", "lookup", "+48 601 234 568", "--no-cache", **settings)
    assert (code, json.loads(out)["cause"]) == (1, "not_found")


async def test_an_opt_out_that_arrives_while_the_vendor_answers_still_blocks(
    pool: asyncpg.Pool, hlr: FakeHlr, session: aiohttp.ClientSession
) -> None:
    await prepared(pool)

    async def opt_out_meanwhile() -> None:
        async with pool.acquire() as conn:
            await dnc.add_dnc(conn, at=NOW, number=PL_MOBILE, source="dtmf")

    hlr.while_answering = opt_out_meanwhile
    result = await gate(pool, service(pool, hlr, session)).check(CheckRequest(PL_MOBILE, campaign="spring"))
    assert hlr.hits == 1  # the vendor was asked, and the opt-out came in during that
    assert result.decision.reason == "dnc.internal"


async def test_an_hlr_file_with_an_unknown_country_is_a_configuration_error(
    db_dsn: str, tmp_path: Path
) -> None:
    answers = tmp_path / "hlr.csv"
    answers.write_text("number,status,visited_country\n+48601234567,abroad,Narnia\n", encoding="utf-8")
    code, _, err = await dialguard(
        db_dsn, "hlr", "lookup", "+48601234567", hlr_provider="file", hlr_file=str(answers)
    )
    assert code == 2 and "configuration error: hlr.file" in err and "unknown_country" in err


async def test_an_hlr_file_reads_roaming_words_as_abroad_and_any_unknown_word_as_no_answer(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    # The file speaks the HTTP provider's words: "roaming" is abroad, as "abroad" is; a word it does not
    # know is no answer at all (roaming.unknown), never "at home".
    at_home, nonsense = "+48601234001", "+48601234002"
    await prepared(pool)
    async with pool.acquire() as conn:
        for number in (at_home, nonsense):
            await consent.grant_consent(
                conn, at=NOW, number=number, kind="express", source="web_form", purpose=Purpose.MARKETING,
                granted_at=NOW - timedelta(days=3),
            )  # fmt: skip
    answers = tmp_path / "hlr.csv"
    answers.write_text(
        f"number,status,visited_country\n{PL_MOBILE},roaming,DE\n{at_home},home,\n{nonsense},xyz,\n",
        encoding="utf-8",
    )
    svc = RoamingService(pool=pool, provider=FileProvider(answers), clock=fixed_clock(NOW))
    roamer = await gate(pool, svc).check(CheckRequest(PL_MOBILE, campaign="spring"))
    assert roamer.decision.reason == "roaming.abroad"
    assert {r.code: r.detail for r in roamer.decision.reasons}["roaming.abroad"]["visited_country"] == "DE"
    home = await gate(pool, svc).check(CheckRequest(at_home, campaign="spring"))
    assert home.decision.reason == "ok" and "roaming.home" in home.decision.codes
    law = {"roaming": {"required_for": ["marketing"], "on_unknown": "block", "source": "a statute"}}
    unknown = await gate(pool, svc, PL=law).check(CheckRequest(nonsense, campaign="spring"))
    assert unknown.decision.reason == "roaming.unknown"
    cause = {r.code: r.detail for r in unknown.decision.reasons}["roaming.unknown"]["cause"]
    assert cause == f"unrecognised status 'xyz' in {answers} line 4"
