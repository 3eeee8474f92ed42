"""The gateway itself: serve, migrate, the opt-out journal."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from dialguard.cli.common import (
    EXIT_OK,
    Parser,
    add,
    database,
)
from dialguard.clock import Clock
from dialguard.config import Settings
from dialguard.store.setup import prepare_database


async def cmd_serve(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    from dialguard.app import serve

    await serve(settings)
    return EXIT_OK


async def cmd_migrate(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    applied = (await prepare_database(settings.database)).applied
    print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m.version:04d}_{m.name}" for m in applied))
    return EXIT_OK


async def cmd_journal_status(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    from dialguard.journal import OptOutJournal

    journal = OptOutJournal(settings.calls.journal_path)
    waiting = await asyncio.to_thread(journal.pending)
    print(f"{settings.calls.journal_path}: {len(waiting)} opt-outs wait for the database")
    for optout in waiting:
        print(f"  {optout.at:%Y-%m-%d %H:%M:%S} {optout.number} call {optout.call_id} key {optout.digit}")
    if waiting and args.replay:
        async with database(settings) as pool:
            stored = await journal.replay(pool)
        print(f"replayed: {stored} stored now, {len(await asyncio.to_thread(journal.pending))} still wait")
    return EXIT_OK


def register(sub: Any) -> None:
    """This group's commands, on the top-level parser's subcommands."""
    s = add(sub, "serve", cmd_serve, "run the gateway: FastAGI, HTTP API, database (migrated at start)")
    s.add_argument("--agi-port", type=int, help="FastAGI port (default 4573)")
    s.add_argument("--http-port", type=int, help="HTTP port (default 8080)")
    add(sub, "migrate", cmd_migrate, "apply the database migrations that are missing")

    jr = sub.add_parser("journal", help="the opt-out journal (opt-outs taken while the database was away)")
    jrs = jr.add_subparsers(dest="sub", metavar="ACTION", required=True, parser_class=Parser)
    js = add(jrs, "status", cmd_journal_status, "show the opt-outs that wait for the database")
    js.add_argument("--replay", action="store_true", help="store them now (serve does this by itself)")
