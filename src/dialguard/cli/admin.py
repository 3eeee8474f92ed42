"""Operating the gateway: API tokens, declared emergencies, the HLR provider."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import asyncpg

from dialguard.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    Parser,
    UsageError,
    add,
    database,
    normalise_number,
    parse_instant,
    record_id,
)
from dialguard.clock import Clock
from dialguard.config import Settings
from dialguard.hlr.setup import open_roaming
from dialguard.numbers import InvalidNumber, parse_wildcard


async def cmd_token_create(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    from dialguard.store.tokens import Role, create_token

    async with database(settings) as pool, pool.acquire() as conn:
        try:
            token = await create_token(conn, name=args.name, role=Role(args.role))
        except asyncpg.UniqueViolationError:
            raise UsageError(
                f"a token named {args.name!r} exists; revoke it first or pick another name"
            ) from None
        except asyncpg.CheckViolationError:
            raise UsageError("a token name is letters, digits and _ . @ - (at most 64)") from None
    print(token)
    print(
        f"token {args.name!r} ({args.role}): shown once, store it now; dialguard keeps only its hash",
        file=sys.stderr,
    )
    return EXIT_OK


async def cmd_token_revoke(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    from dialguard.store.tokens import revoke_token

    async with database(settings) as pool, pool.acquire() as conn:
        revoked = await revoke_token(conn, name=args.name, at=clock())
    if not revoked:
        raise UsageError(f"no active token named {args.name!r} (token names are case-sensitive)")
    print(f"token {args.name!r} revoked")
    return EXIT_OK


async def cmd_emergency_add(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    from dialguard.app import build_rulebook
    from dialguard.store.emergencies import declare_emergency

    area = args.area.upper()
    layer = build_rulebook(settings).subdivisions.get(area)
    if layer is None:
        raise UsageError(f"{args.area!r} is not a subdivision the packs know; write it as US-NY")
    starts_at = args.start or clock()
    if args.until <= starts_at:
        raise UsageError("--until must come after the start")
    prefixes = [_emergency_prefix(raw) for raw in args.prefix]
    async with database(settings) as pool, pool.acquire() as conn:
        emergency_id = await declare_emergency(
            conn, area=area, starts_at=starts_at, ends_at=args.until, reason=args.reason,
            prefixes=prefixes, actor="cli",
        )  # fmt: skip
    where = f"{area} ({', '.join(prefixes)})" if prefixes else f"all of {area}"
    print(
        f"emergency {emergency_id}: {where}, {starts_at:%Y-%m-%d %H:%M %z} to {args.until:%Y-%m-%d %H:%M %z}"
    )
    if layer.emergency is None:
        print(
            f"  note: no rule pack stops calls in {area} emergencies, so this one blocks nothing",
            file=sys.stderr,
        )
    else:
        stopped = ", ".join(sorted(layer.emergency.purposes))
        print(f"  {stopped} calls into it are blocked with hours.emergency until it ends")
    return EXIT_OK


def _emergency_prefix(raw: str) -> str:
    """``+1716`` or ``+1716*``: the leading digits of the numbers an emergency covers."""
    wildcard = parse_wildcard(raw if raw.endswith("*") else raw + "*")
    if isinstance(wildcard, InvalidNumber):
        raise UsageError(f"--prefix {raw!r}: write + and the leading digits, e.g. +1716 (an area code)")
    return wildcard.removesuffix("*")


async def cmd_emergency_list(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    from dialguard.store.emergencies import list_emergencies

    async with database(settings) as pool, pool.acquire() as conn:
        rows = await list_emergencies(conn, now=clock(), include_ended=args.all)
    for r in rows:
        where = ", ".join(r["prefixes"]) or "whole area"
        during = f"{r['starts_at']:%Y-%m-%d %H:%M %Z} to {r['ends_at']:%Y-%m-%d %H:%M %Z}"
        print(f"{r['id']:<5} {r['area']:<7} {during}  {where}  {r['reason']}")
    if not rows:
        print("no emergencies in force or to come" if not args.all else "no emergencies declared")
    return EXIT_OK


async def cmd_emergency_end(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    from dialguard.store.emergencies import end_emergency

    async with database(settings) as pool, pool.acquire() as conn:
        ended = await end_emergency(conn, args.id, at=clock(), actor="cli")
    if not ended:
        raise UsageError(f"no emergency {args.id} in force (dialguard emergency list --all)")
    print(f"emergency {args.id} lifted now")
    return EXIT_OK


async def cmd_hlr_lookup(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    number = normalise_number(settings, args.number)
    async with (
        database(settings) as pool,
        open_roaming(settings.hlr, pool=pool, clock=clock) as roaming,
    ):
        if roaming is None:
            raise UsageError("no HLR provider configured: set hlr.provider to http or file (README, Roaming)")
        fact = await roaming.fact(number, use_cache=not args.no_cache)
    shown = {
        "number": number,
        "status": fact.status,
        "visited_country": fact.visited_country,
        "provider": fact.provider,
        "age_seconds": fact.age_seconds,
        "cause": fact.cause,
    }
    print(json.dumps(shown, indent=2))
    return EXIT_OK if fact.status != "unknown" else EXIT_ERROR


def register(sub: Any) -> None:
    """This group's commands, on the top-level parser's subcommands."""
    tok = sub.add_parser("token", help="HTTP API bearer tokens").add_subparsers(
        dest="sub", metavar="ACTION", required=True, parser_class=Parser
    )
    tc = add(tok, "create", cmd_token_create, "make a token; it is printed once, only its hash is kept")
    tc.add_argument("name", help="who uses it, e.g. crm or dialer-1 (shown in the audit log)")
    tc.add_argument(
        "--role",
        required=True,
        choices=["admin", "dialer", "supervisor"],
        help="admin: everything; dialer: checks, consent and opt-out writes; supervisor: read-only",
    )
    tr = add(tok, "revoke", cmd_token_revoke, "withdraw a token at once")
    tr.add_argument("name")

    emg = sub.add_parser("emergency", help="declared emergencies (no calls into the area)").add_subparsers(
        dest="sub", metavar="ACTION", required=True, parser_class=Parser
    )
    ea = add(emg, "add", cmd_emergency_add, "enter a declared emergency: the packs say which calls it stops")
    ea.add_argument("area", help="the subdivision, e.g. US-NY")
    ea.add_argument("--until", required=True, type=parse_instant, help="when it ends (ISO-8601 with offset)")
    ea.add_argument("--from", dest="start", type=parse_instant, help="when it begins (default now)")
    ea.add_argument(
        "--prefix", action="append", default=[], help="only these area codes, e.g. --prefix +1716 (repeat)"
    )
    ea.add_argument("--reason", required=True, help="the declaration, e.g. 'Executive Order 27, Erie County'")
    el = add(emg, "list", cmd_emergency_list, "emergencies in force or to come")
    el.add_argument("--all", action="store_true", help="ended ones too")
    ee = add(emg, "end", cmd_emergency_end, "lift an emergency now")
    ee.add_argument("id", type=record_id)

    hlr = sub.add_parser("hlr", help="the roaming (HLR) provider").add_subparsers(
        dest="sub", metavar="ACTION", required=True, parser_class=Parser
    )
    hl = add(
        hlr, "lookup", cmd_hlr_lookup, "ask the configured HLR provider about one number, as the gate would"
    )
    hl.add_argument("number")
    hl.add_argument(
        "--no-cache", action="store_true", help="ask the provider even if a cached answer is fresh"
    )
