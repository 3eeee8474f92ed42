"""Checking a number as a call would be checked, and the rule packs behind the answer."""

from __future__ import annotations

import argparse
import json
from typing import Any

from dialguard.cli.common import (
    EXIT_BLOCK,
    EXIT_OK,
    PURPOSES,
    Parser,
    UsageError,
    add,
    database,
    lead_state_of,
    parse_instant,
)
from dialguard.clock import Clock
from dialguard.config import Settings
from dialguard.hlr.setup import open_roaming
from dialguard.numbers import InvalidLeadState, InvalidNumber, parse_lead_state
from dialguard.policy.model import Purpose
from dialguard.store import campaigns as campaign_store


async def cmd_check(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    from dialguard.app import build_gate
    from dialguard.gate import CheckRequest

    try:
        request = CheckRequest(
            number=args.number,
            campaign=args.campaign,
            record=args.record,
            at=args.at,
            lead_subdivision=lead_state_of(settings, args.number, args.lead_state),
            channel="cli",
        )
    except ValueError as exc:
        raise UsageError(f"--at with --record: {exc}") from None
    async with (
        database(settings) as pool,
        open_roaming(settings.hlr, pool=pool, clock=clock) as roaming,
    ):
        gate = build_gate(settings, pool, clock, roaming)
        result = await gate.check(request)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    else:
        print(format_decision(result.to_json()))
    return EXIT_OK if str(result.verdict) == "ALLOW" else EXIT_BLOCK


def format_decision(d: dict[str, Any]) -> str:
    lines = [
        f"{d['verdict']}  {d['number']}  campaign {d['campaign']}"
        f"  ({'recorded' if d['recorded'] else 'dry run'})",
        f"  call id {d['call_id']}, decided {d['decided_at']}, rules {d['rules_version'][:12] or '-'}",
    ]
    for r in d["reasons"]:
        mark = "ok  " if r["passed"] else "FAIL"
        detail = ", ".join(f"{k}={v}" for k, v in r["detail"].items() if v not in (None, [], {}, ""))
        lines.append(f"  {mark} {r['code']:<22} {detail}")
    if d.get("next_callable_at"):
        lines.append(f"  next callable at {d['next_callable_at']}")
    if d.get("shadow"):
        lines.append(f"  shadow rules would say {d['shadow']['verdict']} ({d['shadow']['reason']})")
    return "\n".join(lines)


async def cmd_rules_show(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    import phonenumbers

    from dialguard.app import build_rulebook
    from dialguard.rules.explain import show

    if args.country and args.country.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise UsageError(f"{args.country!r} is not a country code; write two letters, e.g. US, GB, PL")
    print(show(build_rulebook(settings), args.country))
    return EXIT_OK


async def cmd_rules_explain(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    from dialguard.app import build_rulebook
    from dialguard.numbers import parse_number
    from dialguard.rules.explain import explain

    number = parse_number(
        args.number, default_region=settings.numbers.default_region, dial_prefix=settings.numbers.dial_prefix
    )
    if isinstance(number, InvalidNumber):
        raise UsageError(f"{args.number!r} is not a valid phone number: {number.reason}")
    lead = parse_lead_state(args.lead_state, number)
    if isinstance(lead, InvalidLeadState):
        raise UsageError(f"--lead-state: {lead.reason}")
    purpose = Purpose(args.purpose) if args.purpose else Purpose(settings.campaigns.default_purpose)
    if args.campaign:
        async with database(settings) as pool, pool.acquire() as conn:
            campaign = await campaign_store.get_campaign(conn, args.campaign)
        if campaign is None:
            raise UsageError(f"no campaign {args.campaign!r}")
        purpose = campaign.purpose
    print(
        explain(
            build_rulebook(settings),
            number,
            args.at or clock(),
            purpose,
            lead_subdivision=lead,
        )
    )
    return EXIT_OK


def register(sub: Any) -> None:
    """This group's commands, on the top-level parser's subcommands."""
    c = add(
        sub,
        "check",
        cmd_check,
        "check one number as a call would be checked; exit 0 allow, 10 block",
        epilog="A dry run unless --record: then it counts as an attempt, as an AGI check does.",
    )
    c.add_argument(
        "number", help="the number to call, in any usual form (+48 601 234 567, 0048..., (202) 555-0123)"
    )
    c.add_argument("--campaign", help="campaign name (default: campaigns.default)")
    c.add_argument(
        "--at", type=parse_instant, help="judge at this instant instead of now (ISO-8601 with offset)"
    )
    c.add_argument("--json", action="store_true", help="print the decision as the API returns it")
    c.add_argument("--record", action="store_true", help="count this check as a call attempt")
    c.add_argument(
        "--lead-state",
        metavar="STATE",
        help="the lead's own state or province: FL, US-FL or Florida (both it and the number's must allow)",
    )

    rules = sub.add_parser("rules", help="the jurisdiction rule packs in force").add_subparsers(
        dest="sub", metavar="ACTION", required=True, parser_class=Parser
    )
    rs = add(rules, "show", cmd_rules_show, "print the effective rules with their legal sources")
    rs.add_argument("country", nargs="?", help="ISO country code, e.g. US, GB, PL")
    re_ = add(
        rules, "explain", cmd_rules_explain, "print every step of the timing and consent rules for a number"
    )
    re_.add_argument("number")
    re_.add_argument("--at", type=parse_instant, help="judge at this instant (ISO-8601 with offset)")
    re_.add_argument("--campaign")
    re_.add_argument("--purpose", choices=PURPOSES)
    re_.add_argument("--lead-state", metavar="STATE", help="the lead's own state: FL, US-FL or Florida")
