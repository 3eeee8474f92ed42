"""The live feed against real PostgreSQL and real HTTP: GET /v1/events streams the decisions and call
events of every gateway on the database, in order, once, resumable, and no client can make it hold
memory without bound or miss a row (out-of-order commits, a dropped database link)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialguard.asterisk.ami_calls import Step
from dialguard.asterisk.call_routes import CallRoutes
from dialguard.clock import fixed_clock
from dialguard.config import HttpSettings, Settings
from dialguard.events import EventAnnouncer, EventHub, FeedEvent, Subscription
from dialguard.gate import CheckRequest, Gate
from dialguard.journal import OptOutJournal
from dialguard.metrics import Metrics
from dialguard.optouts import OptOutKeeper
from dialguard.store.tokens import Role, create_token
from dialguard.timeline import CallTimeline
from dialguard.web.app import create_app
from dialguard.web.supervise import StreamSettings
from tests.decision_rows import SseReader, store_decision, store_event
from tests.fakes.proxy import CuttableProxy
from tests.fakes.rules import simple_rulebook

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 16:00 in Warsaw: inside the test pack's hours
Client = TestClient[web.Request, web.Application]
StartHub = Callable[..., Awaitable[EventHub]]


@pytest.fixture
async def start_hub(db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[StartHub]:
    """Hubs (and announcers) running as the gateway runs them, stopped after the test."""
    tasks: list[asyncio.Task[None]] = []

    async def start(dsn: str | None = None, **kw: Any) -> EventHub:
        hub = EventHub(dsn=dsn or db_dsn, **kw)
        tasks.append(asyncio.create_task(hub.run()))
        await hub.wait_ready(10)
        return hub

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@dataclasses.dataclass
class Gateway:
    hub: EventHub
    announcer: EventAnnouncer
    gate: Gate
    client: Client
    headers: dict[str, str]

    async def stream(self, path: str = "/v1/events", **headers: str) -> SseReader:
        response = await self.client.get(path, headers={**self.headers, **headers})
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "text/event-stream"
        return SseReader(response)


@pytest.fixture
async def gateway(
    pool: asyncpg.Pool, aiohttp_client: Any, start_hub: StartHub
) -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    """A gateway as serve wires one: its hub, its announcer, its gate telling the announcer."""
    tasks: list[asyncio.Task[None]] = []

    async def make(stream: StreamSettings | None = None, **hub_kw: Any) -> Gateway:
        hub = await start_hub(**hub_kw)
        announcer = EventAnnouncer(pool=pool, wake_local=hub.wake)
        tasks.append(asyncio.create_task(announcer.run()))
        gate = Gate(
            pool=pool, rulebook=simple_rulebook(), clock=fixed_clock(NOW), default_region="PL",
            on_stored=announcer.touch,
        )  # fmt: skip
        settings = dataclasses.replace(Settings(), http=HttpSettings(max_body_bytes=4096))
        app = create_app(settings=settings, pool=pool, gate=gate, events=hub, event_stream=stream)
        client = await aiohttp_client(app)
        async with pool.acquire() as conn:
            token = await create_token(conn, name=f"sup-{uuid.uuid4().hex[:6]}", role=Role.SUPERVISOR)
        return Gateway(hub, announcer, gate, client, {"Authorization": f"Bearer {token}"})

    yield make
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def next_event(sub: Subscription, within: float = 3.0) -> FeedEvent:
    async with asyncio.timeout(within):
        return await sub.next()


async def nothing_more(sub: Subscription, within: float = 0.5) -> None:
    with pytest.raises(TimeoutError):
        await next_event(sub, within)


def call_id_of(event: FeedEvent) -> str:
    import json

    return str(json.loads(event.row.data)["call_id"])


# ---------------------------------------------------------------- every gateway, one subscriber


async def test_events_of_two_gateways_reach_one_subscriber_within_a_second(
    gateway: Callable[..., Awaitable[Gateway]], pool: asyncpg.Pool
) -> None:
    # No safety-net read within the test: only the wake-ups (NOTIFY, the local touch) can bring rows.
    a = await gateway(safety_every=60)
    b = await gateway(safety_every=60)
    events = await a.stream()
    checked = await b.gate.check(CheckRequest("+48601234567", campaign="spring"))
    got = await events.event(within=1.0)
    assert got.event == "decision"
    assert got.json["call_id"] == str(checked.call_id) and got.json["verdict"] == str(checked.verdict)
    async with pool.acquire() as conn:
        stored = await conn.fetchrow("SELECT id, body FROM decisions WHERE call_id = $1", checked.call_id)
    assert got.json == {**stored["body"], "id": stored["id"]}  # the decision JSON as stored, with its id
    assert got.id == f"{stored['id']}.0"

    mine = await a.gate.check(CheckRequest("+48601234568", campaign="spring"))
    assert (await events.event(within=1.0)).json["call_id"] == str(mine.call_id)

    async with pool.acquire() as conn:  # a call event written on gateway B (its timeline, say)
        await store_event(conn, checked.call_id, "call.answered", at=NOW + timedelta(seconds=9), channel="x")
    b.announcer.touch()
    call = await events.event(within=1.0)
    assert call.event == "call"
    assert call.json == {
        "call_id": str(checked.call_id), "at": (NOW + timedelta(seconds=9)).isoformat(),
        "kind": "call.answered", "detail": {"channel": "x"}, "id": 1,
    }  # fmt: skip
    assert call.id == f"{stored['id'] + 1}.1"


async def test_the_announcer_sends_one_notify_a_period_however_many_rows(
    pool: asyncpg.Pool, start_hub: StartHub
) -> None:
    announcer = EventAnnouncer(pool=pool, every=0.2)
    task = asyncio.create_task(announcer.run())
    try:
        for _ in range(50):
            announcer.touch()
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert 2 <= announcer.sent <= 5  # about 0.8 s of touches: one NOTIFY each 0.2 s, not fifty


async def test_each_writer_tells_once_its_row_is_committed_and_not_otherwise(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    touches: list[str] = []
    gate = Gate(
        pool=pool, rulebook=simple_rulebook(), clock=fixed_clock(NOW), default_region="PL",
        on_stored=lambda: touches.append("decision"),
    )  # fmt: skip
    checked = await gate.check(CheckRequest("+48601234567"))
    await gate.check(CheckRequest("+48601234567", keep=False))  # a scrub's look-ahead: nothing stored
    await gate.look_ahead([CheckRequest("+48601234567")])
    assert touches == ["decision"]

    keeper = OptOutKeeper(
        pool=pool, journal=OptOutJournal(tmp_path / "j.jsonl"), metrics=Metrics(), clock=fixed_clock(NOW)
    )
    calls = CallRoutes(
        pool=pool, keeper=keeper, rulebook=simple_rulebook(), clock=fixed_clock(NOW),
        on_stored=lambda: touches.append("call event"),
    )  # fmt: skip
    await calls.event(checked.call_id, "notice.played", {})
    timeline = CallTimeline(pool=pool, clock=fixed_clock(NOW), on_stored=lambda: touches.append("timeline"))
    timeline.add([Step(checked.call_id, NOW, "call.answered", {})])
    await timeline.flush()
    assert touches == ["decision", "call event", "timeline"]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM call_events") == 2


# ---------------------------------------------------------------- out-of-order commits


async def _open_insert(conn: asyncpg.Connection, at: datetime) -> tuple[Any, uuid.UUID]:
    tx = conn.transaction()
    await tx.start()
    return tx, await store_decision(conn, at=at)


async def test_two_transactions_committing_in_reverse_order_arrive_in_id_order(
    pool: asyncpg.Pool, start_hub: StartHub
) -> None:
    hub = await start_hub(gap_wait=5.0)
    async with pool.acquire() as first, pool.acquire() as second:
        with await hub.subscribe() as sub:
            tx1, one = await _open_insert(first, NOW)  # takes the lower id, commits last
            tx2, two = await _open_insert(second, NOW)
            await tx2.commit()
            hub.wake()
            await nothing_more(sub)  # the second is held back: the first's id is still in flight
            await tx1.commit()
            hub.wake()
            assert [call_id_of(await next_event(sub)) for _ in range(2)] == [str(one), str(two)]
            await nothing_more(sub)


async def test_a_transaction_slower_than_gap_wait_still_arrives_late_and_once(
    pool: asyncpg.Pool, start_hub: StartHub
) -> None:
    hub = await start_hub(gap_wait=0.3)
    async with pool.acquire() as first, pool.acquire() as second:
        with await hub.subscribe() as sub:
            tx1, slow = await _open_insert(first, NOW)
            tx2, quick = await _open_insert(second, NOW)
            await tx2.commit()
            hub.wake()
            assert call_id_of(await next_event(sub)) == str(quick)  # after gap_wait, past the hole
            await tx1.commit()
            hub.wake()
            late = await next_event(sub)
            assert call_id_of(late) == str(slow)
            assert str(late.position) == str(hub.position)  # a late row does not move the position back
            await nothing_more(sub)


async def test_a_rolled_back_id_holds_the_feed_no_longer_than_gap_wait(
    pool: asyncpg.Pool, start_hub: StartHub
) -> None:
    hub = await start_hub(gap_wait=0.3)
    async with pool.acquire() as first, pool.acquire() as second:
        with await hub.subscribe() as sub:
            tx1, _ = await _open_insert(first, NOW)
            tx2, kept = await _open_insert(second, NOW)
            await tx2.commit()
            await tx1.rollback()
            hub.wake()
            started = asyncio.get_running_loop().time()
            assert call_id_of(await next_event(sub)) == str(kept)
            assert asyncio.get_running_loop().time() - started < 2.0
            await nothing_more(sub)


# ---------------------------------------------------------------- resume, filter, heartbeat


async def test_a_client_resumes_with_last_event_id_and_misses_nothing(
    gateway: Callable[..., Awaitable[Gateway]], pool: asyncpg.Pool
) -> None:
    gw = await gateway()
    events = await gw.stream()
    async with pool.acquire() as conn:
        first = await store_decision(conn, at=NOW)
        await store_event(conn, first, "notice.played", at=NOW)
    gw.announcer.touch()
    seen = await events.events(2)
    assert [e.event for e in seen] == ["decision", "call"]
    events.response.close()  # the link drops

    async with pool.acquire() as conn:  # meanwhile
        second = await store_decision(conn, at=NOW + timedelta(seconds=1))
        await store_event(conn, second, "digit", at=NOW + timedelta(seconds=2), digit="5")
        third = await store_decision(conn, at=NOW + timedelta(seconds=3))
    gw.announcer.touch()

    resumed = await gw.stream(**{"Last-Event-ID": str(seen[-1].id)})
    replayed = await resumed.events(3)
    assert [(e.event, e.json["call_id"]) for e in replayed] == [
        ("decision", str(second)), ("call", str(second)), ("decision", str(third)),
    ]  # fmt: skip
    async with pool.acquire() as conn:
        fourth = await store_decision(conn, at=NOW + timedelta(seconds=4))
    gw.announcer.touch()
    live = await resumed.event()
    assert live.json["call_id"] == str(fourth)
    ids = [e.id for e in [*seen, *replayed, live]]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, str(i).split(".")))) and len(set(ids)) == 6


async def test_a_resume_further_back_than_the_replay_says_so_and_gives_the_newest(
    gateway: Callable[..., Awaitable[Gateway]], pool: asyncpg.Pool
) -> None:
    gw = await gateway(stream=StreamSettings(replay_limit=2))
    async with pool.acquire() as conn:
        made = [await store_decision(conn, at=NOW + timedelta(seconds=i)) for i in range(5)]
    gw.announcer.touch()
    await _until(lambda: gw.hub.position.decision == 5)
    resumed = await gw.stream(**{"Last-Event-ID": "0.0"})
    note = await resumed.event()
    assert note.event == "truncated" and note.json["decision_before"] == 4
    assert [(await resumed.event()).json["call_id"] for _ in range(2)] == [str(made[3]), str(made[4])]


async def test_the_campaign_filter_takes_call_events_by_their_decisions_campaign(
    gateway: Callable[..., Awaitable[Gateway]], pool: asyncpg.Pool
) -> None:
    gw = await gateway(stream=StreamSettings(heartbeat=0.3))
    events = await gw.stream("/v1/events?campaign=spring")
    async with pool.acquire() as conn:
        autumn = await store_decision(conn, at=NOW, campaign="autumn")
        spring = await store_decision(conn, at=NOW, campaign="spring")
        await store_event(conn, autumn, "notice.played", at=NOW)
        await store_event(conn, spring, "notice.played", at=NOW)
        await store_event(conn, uuid.uuid4(), "answer.refused", at=NOW)  # no decision: no campaign
    gw.announcer.touch()
    got = await events.events(2)
    assert [(e.event, e.json["call_id"]) for e in got] == [("decision", str(spring)), ("call", str(spring))]
    # Quiet now for this client: the heartbeat moves its resume point past what it did not want.
    while (block := await events.block()) is not None and not block.comments:
        pass
    assert block is not None and block.comments == ["ping"] and block.id == "2.3"
    assert events.last_id == "2.3"


async def test_hostile_last_event_ids_and_queries_get_a_clear_answer(
    gateway: Callable[..., Awaitable[Gateway]],
) -> None:
    gw = await gateway(stream=StreamSettings(heartbeat=0.2))
    for bad in ("x", "1", "1.2.3", "-1.0", "9" * 30 + ".0", "\u202e1.2"):
        response = await gw.client.get("/v1/events", headers={**gw.headers, "Last-Event-ID": bad})
        assert response.status == 422, bad
        assert (await response.json())["error_id"] == "invalid_event_id"
    response = await gw.client.get("/v1/events?campaign=%00", headers=gw.headers)
    assert response.status == 400
    response = await gw.client.get("/v1/events", headers={})
    assert response.status == 401
    events = await gw.stream("/v1/events?campaign=../../etc/passwd&last_event_id=0.0")
    assert (await events.block()).comments == ["ping"]  # a stream, which nothing matches


async def test_streams_end_when_the_gateway_stops(gateway: Callable[..., Awaitable[Gateway]]) -> None:
    gw = await gateway()
    events = await gw.stream()
    gw.hub.end_streams()
    assert await events.block() is None  # the stream ended: EventSource resumes elsewhere


async def test_no_hub_no_stream(pool: asyncpg.Pool, aiohttp_client: Any) -> None:
    gate = Gate(pool=pool, rulebook=simple_rulebook(), clock=fixed_clock(NOW), default_region="PL")
    client = await aiohttp_client(create_app(settings=Settings(), pool=pool, gate=gate))
    async with pool.acquire() as conn:
        token = await create_token(conn, name="sup", role=Role.SUPERVISOR)
    response = await client.get("/v1/events", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 503 and (await response.json())["error_id"] == "events_unavailable"


# ---------------------------------------------------------------- slow clients, a dropped database link


def _small_buffers(addr_info: Any) -> socket.socket:
    sock = socket.socket(addr_info[0], addr_info[1], addr_info[2])
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that reads nothing, soon full
    sock.setblocking(False)
    return sock


async def test_a_stalled_client_is_dropped_with_its_queue_and_resumes_where_it_stopped(
    gateway: Callable[..., Awaitable[Gateway]], pool: asyncpg.Pool
) -> None:
    gw = await gateway(batch=10, max_queued=20, stream=StreamSettings(write_within=60))
    connector = aiohttp.TCPConnector(socket_factory=_small_buffers)
    async with aiohttp.ClientSession(connector=connector) as session:
        stalled_response = await session.get(gw.client.make_url("/v1/events"), headers=gw.headers)
        stalled = SseReader(stalled_response)  # not read until the hub has let go of it
        await _until(lambda: gw.hub.subscriber_count == 1)
        with await gw.hub.subscribe() as healthy:
            total = 150
            async with pool.acquire() as conn, conn.transaction():
                made = [
                    str(await store_decision(conn, at=NOW, failed=("dnc.internal",), padding="x" * 100_000))
                    for _ in range(total)
                ]
            gw.announcer.touch()
            # The hub goes on for everyone else: it never waits on the stalled stream.
            assert [call_id_of(await next_event(healthy, within=30)) for _ in range(total)] == made
            await _until(lambda: gw.hub.subscriber_count == 1, within=10)  # the stalled one is dropped

        # Its stream still holds what was written before; then it is told, and it ends.
        got: list[str] = []
        while (block := await stalled.event(within=30)).event == "decision":
            got.append(block.json["call_id"])
        assert block.event == "overflow" and block.json["resume"] == stalled.last_id
        assert await stalled.block() is None
        assert got == made[: len(got)] and len(got) < total

        resumed = await gw.stream(**{"Last-Event-ID": str(stalled.last_id)})
        rest = [(await resumed.event(within=30)).json["call_id"] for _ in range(total - len(got))]
        assert got + rest == made


async def test_the_hub_reconnects_after_its_link_drops_and_misses_nothing(
    db_dsn: str, pool: asyncpg.Pool, start_hub: StartHub
) -> None:
    proxy = CuttableProxy.for_dsn(db_dsn)
    await proxy.start()
    try:
        hub = await start_hub(dsn=proxy.dsn_through(db_dsn), retry_max=0.2, safety_every=0.5)
        with await hub.subscribe() as sub:
            async with pool.acquire() as conn:
                before = await store_decision(conn, at=NOW)
            hub.wake()
            assert call_id_of(await next_event(sub)) == str(before)
            proxy.cut()
            async with pool.acquire() as conn:  # written while the hub cannot see the database
                during = [await store_decision(conn, at=NOW) for _ in range(3)]
                await store_event(conn, during[0], "notice.played", at=NOW)
            hub.wake()
            await nothing_more(sub, within=1.0)
            proxy.restore()
            got = [await next_event(sub, within=10) for _ in range(4)]
            assert [call_id_of(e) for e in got] == [str(c) for c in (*during, during[0])]
            assert hub.reconnects >= 1
            await nothing_more(sub)
    finally:
        await proxy.close()


async def _until(condition: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the hub's state has no event of its own to await
            await asyncio.sleep(0.02)
