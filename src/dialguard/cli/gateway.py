"""The gateway itself: serve, migrate, the local journals (opt-outs and decisions)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dialguard.cli.common import (
    EXIT_OK,
    Parser,
    add,
    database,
)
from dialguard.clock import Clock
from dialguard.config import Settings
from dialguard.logs import mask
from dialguard.store.setup import prepare_database

if TYPE_CHECKING:
    from dialguard.journal import JournaledDecision
    from dialguard.store.calls import OptOut


async def cmd_serve(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    from dialguard.app import serve

    await serve(settings)
    return EXIT_OK


async def cmd_migrate(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    applied = (await prepare_database(settings.database)).applied
    print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m.version:04d}_{m.name}" for m in applied))
    return EXIT_OK


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _optout_entry(optout: OptOut, hide: Callable[[str], str]) -> dict[str, str]:
    return {**optout.as_json(), "number": hide(optout.number)}


def _decision_entry(entry: JournaledDecision, hide: Callable[[str], str]) -> dict[str, str]:
    row = entry.row
    return {
        "call_id": str(row.call_id),
        "number": hide(row.number),
        "campaign": row.campaign,
        "verdict": row.verdict,
        "reason": row.reason,
        "decided_at": row.decided_at.isoformat(),
        "journaled_at": entry.journaled_at.isoformat(),
    }


async def cmd_journal_status(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    """Both journals: opt-outs and decisions made while the database was away, waiting for it."""
    from dialguard.journal import DecisionJournal, OptOutJournal

    optouts = OptOutJournal(settings.calls.journal_path)
    decisions = DecisionJournal(settings.gate.journal_path)
    # Numbers are personal data: masked as the logs mask them unless log.mask_numbers is off.
    hide: Callable[[str], str] = mask if settings.log.mask_numbers else str

    async def look() -> dict[str, Any]:
        waiting_optouts = await asyncio.to_thread(optouts.pending)
        waiting_decisions = await asyncio.to_thread(decisions.pending)
        return {
            "optouts": {
                "path": str(optouts.path),
                "waiting": len(waiting_optouts),
                "entries": [_optout_entry(o, hide) for o in waiting_optouts],
            },
            "decisions": {
                "path": str(decisions.path),
                "waiting": len(waiting_decisions),
                "entries": [_decision_entry(d, hide) for d in waiting_decisions],
            },
        }

    status = await look()
    if args.replay and (status["optouts"]["waiting"] or status["decisions"]["waiting"]):
        async with database(settings) as pool:
            stored = {"optouts": await optouts.replay(pool), "decisions": await decisions.replay(pool)}
        after = await look()
        status["replayed"] = {k: {"stored": stored[k], "still_waiting": after[k]["waiting"]} for k in stored}
    if args.json:
        print(json.dumps(status, ensure_ascii=False))
        return EXIT_OK
    opt, dec = status["optouts"], status["decisions"]
    print(f"{opt['path']}: {opt['waiting']} opt-outs wait for the database")
    for o in opt["entries"]:
        at = _utc(datetime.fromisoformat(o["at"]))
        print(f"  {at} {o['number']} call {o['call_id']} key {o['digit']}")
    print(f"{dec['path']}: {dec['waiting']} decisions made while it was away wait for it")
    for d in dec["entries"]:
        at = _utc(datetime.fromisoformat(d["decided_at"]))
        what = f"{d['verdict']} {d['reason']} {d['number']}"
        print(f"  {at} {what} call {d['call_id']} campaign {d['campaign']}")
    for kind, done in status.get("replayed", {}).items():
        print(f"replayed {kind}: {done['stored']} stored now, {done['still_waiting']} still wait")
    return EXIT_OK


def register(sub: Any) -> None:
    """This group's commands, on the top-level parser's subcommands."""
    s = add(sub, "serve", cmd_serve, "run the gateway: FastAGI, HTTP API, database (migrated at start)")
    s.add_argument("--agi-port", type=int, help="FastAGI port (default 4573)")
    s.add_argument("--http-port", type=int, help="HTTP port (default 8080)")
    add(sub, "migrate", cmd_migrate, "apply the database migrations that are missing")

    jr = sub.add_parser(
        "journal", help="the local journals: opt-outs and decisions taken while the database was away"
    )
    jrs = jr.add_subparsers(dest="sub", metavar="ACTION", required=True, parser_class=Parser)
    js = add(
        jrs,
        "status",
        cmd_journal_status,
        "show the opt-outs and the decisions that wait for the database (calls.journal_path, "
        "gate.journal_path); numbers masked unless log.mask_numbers is off",
    )
    js.add_argument("--replay", action="store_true", help="store them now (serve does this by itself)")
    js.add_argument("--json", action="store_true", help="one JSON object: both journals, counts and entries")
