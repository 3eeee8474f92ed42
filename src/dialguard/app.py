"""Composition root for ``dialguard serve``: every component is built and wired here, and nowhere else."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from dialguard.anchor import AnchorFile, ensure_seal_key, seal_round
from dialguard.asterisk.agi_routes import agi_routes
from dialguard.asterisk.agi_server import AgiServer
from dialguard.asterisk.ami import AmiClient
from dialguard.asterisk.call_routes import CallRoutes
from dialguard.clock import Clock, system_clock
from dialguard.config import Settings
from dialguard.events import EventAnnouncer, EventHub
from dialguard.gate import Gate
from dialguard.hlr.service import RoamingService
from dialguard.hlr.setup import open_roaming
from dialguard.journal import DecisionJournal, OptOutJournal
from dialguard.listening import cannot_listen
from dialguard.loops import loop_name
from dialguard.metrics import Metrics
from dialguard.optouts import OptOutKeeper
from dialguard.originate import OriginateSettings, Originator
from dialguard.outage import DatabaseOutage, absorb_pool_floor_log, probe
from dialguard.pacing import Pacer
from dialguard.policy.model import Purpose
from dialguard.policy.rulebook import RuleBook
from dialguard.rules.loader import load_rulebook
from dialguard.store.db import StoreUnavailable, connection, create_pool
from dialguard.store.embedded import NAME as EMBEDDED_NAME
from dialguard.store.embedded import EmbeddedKeeper
from dialguard.store.roles import check_role
from dialguard.store.setup import prepare_database
from dialguard.timeline import CallTimeline
from dialguard.watchdog import LoopWatchdog, Supervisor, SystemdNotifier
from dialguard.web.access_log import PathOnlyAccessLogger
from dialguard.web.app import create_app
from dialguard.web.token_cache import TokenCache

log = logging.getLogger(__name__)

SEAL_EVERY = 10.0  # seconds between checkpoints of the decision log
REPLAY_EVERY = 5.0  # seconds between replays of the journals (a no-op when they are empty)
ADMIN_APP_NAME = "dialguard-admin"  # the admin pool's connections, as pg_stat_activity shows them
FEED_RESTART = 0.1  # seconds before the event feed starts (and again after a bug ended it)


def build_rulebook(settings: Settings) -> RuleBook:
    return load_rulebook(settings.rules.overrides, settings.rules.pack_dir)


def build_gate(
    settings: Settings,
    pool: asyncpg.Pool,
    clock: Clock,
    roaming: RoamingService | None = None,
    *,
    rules_of: Gate | None = None,
    on_stored: Callable[[], None] | None = None,
    metrics: Metrics | None = None,
    outage: DatabaseOutage | None = None,
    journal: DecisionJournal | None = None,
) -> Gate:
    """The gate on ``pool``; ``rules_of``: share that gate's rule books rather than load them again;
    ``on_stored``: told after each decision stored (the live feed's announcer); ``metrics``: told of
    every decision; ``outage`` and ``journal``: the one database state and decision journal every gate
    shares."""
    shadow = None
    if rules_of is not None:
        shadow = rules_of.shadow_rulebook
    elif settings.rules.shadow_pack_dir is not None:
        shadow = load_rulebook(settings.rules.overrides, settings.rules.shadow_pack_dir)
    return Gate(
        pool=pool,
        rulebook=rules_of.rulebook if rules_of is not None else build_rulebook(settings),
        clock=clock,
        default_region=settings.numbers.default_region,
        dial_prefix=settings.numbers.dial_prefix,
        default_campaign=settings.campaigns.default,
        default_purpose=Purpose(settings.campaigns.default_purpose),
        fact_timeout=settings.gate.fact_timeout,
        writer=settings.gate.writer or None,
        shadow_rulebook=shadow,
        roaming=roaming,
        on_stored=on_stored,
        observe=metrics.observe_check if metrics is not None else None,
        outage=outage,
        journal=journal,
    )


def build_ami(
    settings: Settings,
    pool: asyncpg.Pool,
    gate: Gate,
    clock: Clock,
    pacer: Pacer,
    on_stored: Callable[[], None] = lambda: None,
) -> tuple[CallTimeline | None, AmiClient | None, Originator]:
    """The AMI half, when ``ami.secret`` is set: the link, the timeline it feeds, and originations.
    Without it the originator still answers (503: no AMI link configured)."""
    a = settings.ami
    timeline = ami = None
    originator = Originator(
        gate=gate,
        pool=pool,
        ami=None,
        timeline=None,
        pacer=pacer,
        clock=clock,
        settings=OriginateSettings(
            a.originate_channel, a.originate_context, a.ring_seconds, a.caller_id, settings.calls.sound_prefix
        ),
    )
    if a.secret is not None:
        timeline = CallTimeline(
            pool=pool, clock=clock, on_call_ended=originator.call_ended, on_stored=on_stored
        )
        ami = AmiClient(
            host=a.host, port=a.port, username=a.username, secret=a.secret.value, on_event=timeline.on_event,
            action_timeout=a.action_timeout, ping_interval=a.ping_interval, ping_timeout=a.ping_timeout,
        )  # fmt: skip
        originator.ami = ami
        originator.timeline = timeline
    return timeline, ami, originator


@dataclass(frozen=True, slots=True)
class Sealer:
    """The sealer's round: every evidence log checkpointed, signed with the seal key, anchored."""

    pool: asyncpg.Pool
    key: bytes
    anchor: AnchorFile
    clock: Clock

    async def once(self) -> None:
        async with connection(self.pool) as conn:
            await seal_round(conn, key=self.key, anchor=self.anchor, clock=self.clock)


# Young collections once per this many new container objects rather than CPython's 700 (see settle_memory).
YOUNG_COLLECTION_EVERY = 10_000


def settle_memory() -> None:
    """Set the garbage collector for a long-running gateway, once everything is loaded.

    What is loaded by now (modules, rule packs, holiday calendars: some 65k objects) lives as long as the
    process. Out of the collector's sight (``gc.freeze``), a full collection takes ~1 ms rather than the
    12-27 ms that every check in flight would wait (a lead-list scrub's garbage brings one every few
    seconds). A check leaves some 30 container objects behind, most dying young: on CPython's defaults
    (a young collection per 700) the collector spent 34.5 µs a check at N = 200; frozen and per 10,000,
    4.9 µs (bench/profile_gate.py --stages, docs/benchmarks.md).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, older, oldest)


async def serve(
    settings: Settings, *, clock: Clock = system_clock, stop: asyncio.Event | None = None
) -> None:
    """Run until SIGINT/SIGTERM (or ``stop`` is set): FastAGI, HTTP, and the background work (the sealer,
    the journal's replay) in one TaskGroup; a loop watchdog, and systemd's notify protocol when
    ``$NOTIFY_SOCKET`` is set."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    dsn = (await prepare_database(settings.database)).gateway_dsn
    db = settings.database
    outage = DatabaseOutage(clock=clock)
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(absorb_pool_floor_log(outage))  # the pools' reconnect tracebacks: the outage
        # Two pools: the call path's (FastAGI checks, POST /v1/checks, opt-outs, the sealer) and one for
        # admin work (imports, scrubs, the admin API), so that no import holds a connection a call needs.
        pool = await create_pool(dsn, size=db.pool_size, command_timeout=db.command_timeout)
        stack.push_async_callback(pool.close)
        admin_pool = await create_pool(
            dsn, size=db.admin_pool_size, command_timeout=db.command_timeout, application_name=ADMIN_APP_NAME
        )
        stack.push_async_callback(admin_pool.close)
        async with admin_pool.acquire() as conn:
            if warning := (await check_role(conn)).warning():
                log.warning("%s", warning)
        journal = OptOutJournal(settings.calls.journal_path, clock=clock)
        journal.check_writable()  # no journal, no calls: an opt-out must survive a database outage
        key = await asyncio.to_thread(ensure_seal_key, settings)
        sealer = Sealer(pool=pool, key=key, anchor=AnchorFile(settings.gate.seal_anchor), clock=clock)
        decisions = DecisionJournal(settings.gate.journal_path, clock=clock)
        decisions.check_writable()  # nor a block: every decision is stored, those of an outage late
        await journal.replay(pool)  # what a crash or an outage left behind goes in first
        await decisions.replay(pool)
        metrics = Metrics(clock=clock)
        metrics.watch_pool("call", pool)
        metrics.watch_pool("admin", admin_pool)
        metrics.watch_journal(journal)
        metrics.watch_national_lists(admin_pool)  # a scrape never takes a connection a call needs
        roaming = await stack.enter_async_context(
            open_roaming(settings.hlr, pool=pool, clock=clock, observe=metrics.observe_hlr_lookup)
        )
        if roaming is not None:
            metrics.watch_breaker(roaming.breaker)
        await _run(
            settings,
            dsn,
            pool,
            admin_pool,
            clock,
            roaming,
            journal,
            metrics,
            sealer,
            stop,
            outage=outage,
            decisions=decisions,
        )


async def _run(
    settings: Settings,
    dsn: str,
    pool: asyncpg.Pool,
    admin_pool: asyncpg.Pool,
    clock: Clock,
    roaming: RoamingService | None,
    journal: OptOutJournal,
    metrics: Metrics,
    sealer: Sealer,
    stop: asyncio.Event,
    *,
    outage: DatabaseOutage,
    decisions: DecisionJournal,
) -> None:
    """The gateway's servers and background work, until ``stop``."""
    # The live feed: writers touch the announcer once a row is committed; the hub (its own connection,
    # not the pools') reads the logs of every gateway and feeds GET /v1/events.
    # API tokens looked up lately, forgotten on the NOTIFY of any change to them, heard on the hub's link.
    tokens = TokenCache(max_age=settings.http.token_cache_seconds)
    events = EventHub(dsn=dsn, watches=[tokens.watch])
    announcer = EventAnnouncer(pool=pool, wake_local=events.wake)
    gate = build_gate(
        settings,
        pool,
        clock,
        roaming,
        on_stored=announcer.touch,
        metrics=metrics,
        outage=outage,
        journal=decisions,
    )
    metrics.watch_abandon_rates(gate.rulebook)  # read with the national lists, at scrape time
    keeper = OptOutKeeper(pool=pool, journal=journal, metrics=metrics, clock=clock)
    # Scrubs judge here (a look-ahead is no decision: it is not counted as a check).
    admin_gate = build_gate(
        settings, admin_pool, clock, roaming, rules_of=gate, metrics=metrics, outage=outage, journal=decisions
    )
    calls = CallRoutes(
        pool=pool,
        keeper=keeper,
        rulebook=gate.rulebook,
        clock=clock,
        optout_digit=settings.calls.optout_digit,
        listen_after_ms=settings.calls.listen_after_ms,
        sound_prefix=settings.calls.sound_prefix,
        sounds_dir=settings.calls.sounds_dir,
        decision_max_age=settings.calls.decision_max_age,
        on_stored=announcer.touch,
    )
    agi = AgiServer(
        routes=agi_routes(gate=gate, calls=calls),
        host=settings.agi.host,
        port=settings.agi.port,
        allow=settings.agi.allow,
        read_timeout=settings.agi.read_timeout,
        session_timeout=settings.agi.session_timeout,
        max_line_bytes=settings.agi.max_line_bytes,
        backlog=settings.agi.backlog,
        max_sessions=settings.agi.max_sessions,
        route_lifetimes={"check": settings.agi.check_lifetime},
        reuse_port=settings.agi.reuse_port,
    )
    tasks = Supervisor(expected=(StoreUnavailable,))  # a database outage is no surprise
    pacer = Pacer(clock)
    timeline, ami, originator = build_ami(settings, pool, gate, clock, pacer, announcer.touch)
    runner = web.AppRunner(
        create_app(
            settings=settings,
            pool=pool,
            gate=gate,
            admin_pool=admin_pool,
            admin_gate=admin_gate,
            metrics=metrics,
            tasks=tasks,
            originator=originator,
            ami=ami,
            events=events,
            token_cache=tokens,
        ),
        access_log_class=PathOnlyAccessLogger,
    )
    # From the moment FastAGI listens, a stalled loop holds calls: the watchdog ends the process then.
    stall_limit = settings.gate.loop_stall_limit
    watchdog = LoopWatchdog(stall_limit) if stall_limit else None
    systemd = SystemdNotifier.from_environment(os.environ, pid=os.getpid())
    await runner.setup()
    settle_memory()
    try:
        if watchdog is not None:
            watchdog.start()
        a, h = settings.agi, settings.http
        try:
            await agi.start()
        except OSError as exc:
            raise cannot_listen("agi", a.host, a.port, a.reuse_port, exc) from exc
        site = web.TCPSite(runner, h.host, h.port, reuse_port=h.reuse_port)
        try:
            await site.start()
        except OSError as exc:
            raise cannot_listen("http", h.host, h.port, h.reuse_port, exc) from exc
        serving = (
            f"FastAGI on {settings.agi.host}:{agi.port}, HTTP on {settings.http.host}:{settings.http.port}"
        )
        loop = loop_name(asyncio.get_running_loop())
        log.info("dialguard ready: %s, rules %s, event loop %s", serving, gate.rulebook.version[:12], loop)
        if systemd is not None:
            systemd.ready(serving)
        async with asyncio.TaskGroup() as tg:
            background = [
                tg.create_task(tasks.every("sealer", SEAL_EVERY, sealer.once)),
                tg.create_task(tasks.every("journal_replay", REPLAY_EVERY, lambda: journal.replay(pool))),
                # Both loop for ever; under the supervisor only so that a bug is logged and restarted.
                tg.create_task(tasks.every("event_feed", FEED_RESTART, events.run)),
                tg.create_task(tasks.every("event_announcer", FEED_RESTART, announcer.run)),
                tg.create_task(tasks.every("decision_replay", REPLAY_EVERY, lambda: decisions.replay(pool))),
                # Notices the database's return, and says so, even when no check comes.
                tg.create_task(
                    tasks.every("database_watch", 0, lambda: outage.until_back(lambda: probe(pool)))
                ),
            ]
            if settings.database.dsn is None:  # our own server: keep it running (someone else's: report it)
                embedded = EmbeddedKeeper(settings.database.data_dir, tasks)
                background.append(tg.create_task(tasks.every(EMBEDDED_NAME, 0, embedded.watch)))
            if ami is not None and timeline is not None:
                background += [tg.create_task(ami.run()), tg.create_task(timeline.run())]
            await stop.wait()
            for task in background:
                task.cancel()
    finally:
        log.info("dialguard stopping")
        if systemd is not None:
            systemd.stopping()
        await agi.close()
        await runner.cleanup()
        if systemd is not None:
            systemd.close()
        if watchdog is not None:
            watchdog.stop()
