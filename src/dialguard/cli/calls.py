"""``dialguard calls tail``: the live feed in a terminal, one line a decision, its call's events indented.

It reads the database with the gateways' own feed (events.EventHub, on a connection of its own), so
it follows every gateway: a decision shows as soon as its gateway's NOTIFY wakes it, or at the hub's
next safety-net read. Numbers are masked as the logs mask them (``log.mask_numbers``, on by default:
a terminal's scrollback is a log too); ``--json`` prints each event whole, as GET /v1/events sends it
to a supervisor, numbers included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from dialguard.cli.common import EXIT_ERROR, Parser, add
from dialguard.clock import Clock
from dialguard.config import Settings
from dialguard.events import EventHub, FeedClosed, FeedEvent, FeedUnavailable, Interest, Overflowed
from dialguard.logs import mask
from dialguard.store.event_feed import Kind
from dialguard.store.setup import prepare_database

CONNECT_WITHIN = 10.0  # seconds for the feed to reach the database before the command gives up


def _when(text: str) -> str:
    return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _detail(detail: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v}" for k, v in detail.items() if v not in (None, "", [], {}))


def format_event(event: FeedEvent, *, mask_numbers: bool) -> str:
    """One line: a decision (time, verdict, number, campaign, reason, call), or a call event under it."""
    data = json.loads(event.row.data)
    call = str(data["call_id"])[:8]
    if event.row.kind is Kind.DECISION:
        line = (
            f"{_when(data['decided_at'])}  {data['verdict']:<5}  {data['number']:<16}  {data['campaign']}"
            f"  {data['reason']}  call {call}"
        )
    else:
        line = f"    {_when(data['at'])}  {data['kind']}  call {call}  {_detail(data['detail'])}".rstrip()
    return mask(line) if mask_numbers else line


def as_json(event: FeedEvent) -> str:
    return json.dumps(
        {"event": str(event.row.kind), "id": str(event.position), "data": json.loads(event.row.data)},
        ensure_ascii=False,
    )


async def cmd_calls_tail(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    # The usual checks (the database is there, and migrated), and the gateway's own role to listen as.
    dsn = (await prepare_database(settings.database, create=False)).gateway_dsn
    hub = EventHub(dsn=dsn, application_name="dialguard-tail")
    interest = Interest(campaign=args.campaign, verdict=args.verdict)
    feed = asyncio.create_task(hub.run())
    follow = asyncio.create_task(
        _follow(hub, interest, json_lines=args.json, mask_numbers=settings.log.mask_numbers)
    )
    # Not a TaskGroup: its ExceptionGroup would hide a closed pipe (`| head`) from main's plain handling.
    try:
        done, _ = await asyncio.wait({feed, follow}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (feed, follow):
            task.cancel()
        await asyncio.wait({feed, follow})
    if follow in done:
        return follow.result()
    feed.result()  # the feed ended by itself: only a bug does, and its error says which
    return EXIT_ERROR


async def _follow(hub: EventHub, interest: Interest, *, json_lines: bool, mask_numbers: bool) -> int:
    while True:
        try:
            sub = await hub.subscribe(interest, within=CONNECT_WITHIN)
        except FeedUnavailable as exc:
            print(f"dialguard: {exc}", file=sys.stderr)
            return EXIT_ERROR
        scope = [f"campaign {interest.campaign}" if interest.campaign else "every campaign"]
        scope += [f"verdict {interest.verdict}"] if interest.verdict else []
        print(f"dialguard: following calls ({', '.join(scope)}); Ctrl-C to stop", file=sys.stderr, flush=True)
        with sub:
            try:
                while True:
                    event = await sub.next()
                    text = as_json(event) if json_lines else format_event(event, mask_numbers=mask_numbers)
                    print(text, flush=True)
            except Overflowed:
                # Only when the terminal reads slower than calls are decided: say so, and go on from now.
                print("dialguard: the terminal fell behind; some events were not shown", file=sys.stderr)
            except FeedClosed:
                return EXIT_ERROR


def register(sub: Any) -> None:
    """This group's commands, on the top-level parser's subcommands."""
    calls = sub.add_parser("calls", help="follow the calls of every gateway").add_subparsers(
        dest="sub", metavar="ACTION", required=True, parser_class=Parser
    )
    tail = add(
        calls,
        "tail",
        cmd_calls_tail,
        "follow decisions and call events live, from every gateway on the database (Ctrl-C to stop)",
    )
    tail.add_argument("--campaign", help="only this campaign's calls")
    tail.add_argument("--verdict", choices=("ALLOW", "BLOCK"), help="only calls with this verdict")
    tail.add_argument("--json", action="store_true", help="one JSON object a line: {event, id, data}")
