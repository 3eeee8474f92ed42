"""Composition root for ``dialguard serve``: every component is built and wired here, and nowhere else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import asyncpg
from aiohttp import web

from dialguard.asterisk.agi_routes import agi_routes
from dialguard.asterisk.agi_server import AgiServer
from dialguard.asterisk.call_routes import CallRoutes
from dialguard.clock import Clock, system_clock
from dialguard.config import Settings
from dialguard.gate import Gate
from dialguard.hlr.service import RoamingService
from dialguard.hlr.setup import open_roaming
from dialguard.journal import OptOutJournal, replay_forever
from dialguard.policy.model import Purpose
from dialguard.policy.rulebook import RuleBook
from dialguard.rules.loader import load_rulebook
from dialguard.store.db import create_pool, resolve_dsn
from dialguard.store.migrate import migrate
from dialguard.store.sealing import seal
from dialguard.web.access_log import PathOnlyAccessLogger
from dialguard.web.app import create_app

log = logging.getLogger(__name__)

SEAL_EVERY = 10.0  # seconds between checkpoints of the decision log


def build_rulebook(settings: Settings) -> RuleBook:
    return load_rulebook(settings.rules.overrides, settings.rules.pack_dir)


def build_gate(
    settings: Settings, pool: asyncpg.Pool, clock: Clock, roaming: RoamingService | None = None
) -> Gate:
    shadow = None
    if settings.rules.shadow_pack_dir is not None:
        shadow = load_rulebook(settings.rules.overrides, settings.rules.shadow_pack_dir)
    return Gate(
        pool=pool,
        rulebook=build_rulebook(settings),
        clock=clock,
        default_region=settings.numbers.default_region,
        dial_prefix=settings.numbers.dial_prefix,
        default_campaign=settings.campaigns.default,
        default_purpose=Purpose(settings.campaigns.default_purpose),
        fact_timeout=settings.gate.fact_timeout,
        writer=settings.gate.writer or None,
        shadow_rulebook=shadow,
        roaming=roaming,
    )


async def seal_forever(pool: asyncpg.Pool, every: float = SEAL_EVERY) -> None:
    """Checkpoint the decision and call-event logs in the background; a database outage only delays it."""
    while True:
        await asyncio.sleep(every)
        try:
            async with pool.acquire() as conn:
                await seal(conn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("could not seal the evidence logs now (will retry): %s", exc)


async def serve(
    settings: Settings, *, clock: Clock = system_clock, stop: asyncio.Event | None = None
) -> None:
    """Run until SIGINT/SIGTERM (or ``stop`` is set): FastAGI, HTTP, and the sealer, in one TaskGroup."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    dsn = await resolve_dsn(settings.database)
    pool = await create_pool(
        dsn, size=settings.database.pool_size, command_timeout=settings.database.command_timeout
    )
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        journal = OptOutJournal(settings.calls.journal_path, clock=clock)
        journal.check_writable()  # no journal, no calls: an opt-out must survive a database outage
        await journal.replay(pool)  # what a crash or an outage left behind goes in first
        async with open_roaming(settings.hlr, pool=pool, clock=clock) as roaming:
            await _run(settings, pool, clock, roaming, journal, stop)
    finally:
        await pool.close()


async def _run(
    settings: Settings,
    pool: asyncpg.Pool,
    clock: Clock,
    roaming: RoamingService | None,
    journal: OptOutJournal,
    stop: asyncio.Event,
) -> None:
    """The gateway's servers and background work, until ``stop``."""
    gate = build_gate(settings, pool, clock, roaming)
    calls = CallRoutes(
        pool=pool,
        journal=journal,
        rulebook=gate.rulebook,
        clock=clock,
        optout_digit=settings.calls.optout_digit,
        listen_after_ms=settings.calls.listen_after_ms,
        sound_prefix=settings.calls.sound_prefix,
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
    )
    runner = web.AppRunner(
        create_app(settings=settings, pool=pool, gate=gate), access_log_class=PathOnlyAccessLogger
    )
    await runner.setup()
    try:
        await agi.start()
        site = web.TCPSite(runner, settings.http.host, settings.http.port)
        await site.start()
        log.info(
            "dialguard ready: FastAGI on %s:%d, HTTP on %s:%d, rules %s",
            settings.agi.host,
            agi.port,
            settings.http.host,
            settings.http.port,
            gate.rulebook.version[:12],
        )
        async with asyncio.TaskGroup() as tg:
            sealer = tg.create_task(seal_forever(pool))
            replayer = tg.create_task(replay_forever(journal, pool))
            await stop.wait()
            sealer.cancel()
            replayer.cancel()
    finally:
        log.info("dialguard stopping")
        await agi.close()
        await runner.cleanup()
