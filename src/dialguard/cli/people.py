"""Campaigns and what the people called said: consent given and withdrawn, complaints."""

from __future__ import annotations

import argparse
from typing import Any

from dialguard.cli.common import (
    EXIT_OK,
    PURPOSES,
    Parser,
    UsageError,
    add,
    database,
    normalise_number,
    parse_instant,
)
from dialguard.clock import Clock
from dialguard.config import Settings
from dialguard.policy.model import Purpose
from dialguard.rules.loader import CONSENT_KINDS
from dialguard.store import campaigns as campaign_store
from dialguard.store import consent as consent_store


async def cmd_campaign_add(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    async with database(settings) as pool, pool.acquire() as conn:
        try:
            c = await campaign_store.add_campaign(conn, name=args.name, purpose=Purpose(args.purpose))
        except campaign_store.CampaignExists as exc:
            raise UsageError(str(exc)) from None
        except campaign_store.InvalidCampaignName as exc:
            raise UsageError(str(exc)) from None
    print(f"campaign {c.name} added ({c.purpose})")
    return EXIT_OK


async def cmd_campaign_list(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    async with database(settings) as pool, pool.acquire() as conn:
        rows = await campaign_store.list_campaigns(conn)
    for c in rows:
        print(f"{c.name:<24} {c.purpose}")
    if not rows:
        print(
            f"no campaigns yet; checks without one use {settings.campaigns.default!r} "
            f"({settings.campaigns.default_purpose})"
        )
    return EXIT_OK


async def cmd_consent_add(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    number = normalise_number(settings, args.number)
    async with database(settings) as pool, pool.acquire() as conn:
        if args.campaign and await campaign_store.get_campaign(conn, args.campaign) is None:
            raise UsageError(
                f"no campaign {args.campaign!r}; add it with: dialguard campaign add {args.campaign}"
            )
        consent_id = await consent_store.grant_consent(
            conn,
            number=number,
            kind=args.kind,
            source=args.source,
            at=clock(),
            purpose=Purpose(args.purpose) if args.purpose else None,
            campaign=args.campaign,
            expires_at=args.expires,
            granted_at=args.granted_at,
            evidence=_consent_evidence(args),
        )
    scope = f"campaign {args.campaign}" if args.campaign else f"purpose {args.purpose}"
    print(f"consent {consent_id} recorded for {number}: {args.kind}, {scope}, source {args.source}")
    return EXIT_OK


def _consent_evidence(args: argparse.Namespace) -> dict[str, str]:
    """What record-keeping rules ask of a consent (TSR 310.5): who, the request as shown, a document."""
    fields = {"name": args.name, "request_shown": args.text, "reference": args.reference}
    return {k: v for k, v in fields.items() if v}


async def cmd_consent_revoke(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    number = normalise_number(settings, args.number)
    async with database(settings) as pool, pool.acquire() as conn:
        await consent_store.revoke_consent(conn, number=number, source=args.source, at=clock())
    print(f"every consent of {number} is revoked from now on")
    return EXIT_OK


async def cmd_consent_list(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    number = normalise_number(settings, args.number) if args.number else None
    async with database(settings) as pool, pool.acquire() as conn:
        rows = await consent_store.list_consents(conn, number)
    now = clock()
    for r in rows:
        state = (
            "revoked"
            if r["revoked_at"]
            else "expired"
            if r["expires_at"] and r["expires_at"] <= now
            else "valid"
        )
        scope = f"campaign:{r['campaign']}" if r["campaign"] else f"purpose:{r['purpose']}"
        print(
            f"{r['id']:>6} {r['number']:<16} {state:<8} {r['kind']:<16} {scope:<24} {r['source']:<10} "
            f"{r['granted_at']:%Y-%m-%d %H:%M}"
        )
    if not rows:
        print("no consent on record" + (f" for {number}" if number else ""))
    return EXIT_OK


async def cmd_complaint_add(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    from dialguard.store.complaints import file_complaint

    number = normalise_number(settings, args.number)
    async with database(settings) as pool, pool.acquire() as conn:
        complaint_id = await file_complaint(
            conn, number=number, channel=args.channel, at=clock(), note=args.note, campaign=args.campaign
        )
    print(f"complaint {complaint_id}: {number} revoked every consent and is on the internal do-not-call list")
    return EXIT_OK


def register(sub: Any) -> None:
    """This group's commands, on the top-level parser's subcommands."""
    camp = sub.add_parser("campaign", help="define campaigns and their purpose").add_subparsers(
        dest="sub", metavar="ACTION", required=True, parser_class=Parser
    )
    ca = add(camp, "add", cmd_campaign_add, "add a campaign")
    ca.add_argument("name")
    ca.add_argument("--purpose", required=True, choices=PURPOSES, help="what its calls are for")
    add(camp, "list", cmd_campaign_list, "list campaigns")

    cons = sub.add_parser("consent", help="record, revoke and list consent").add_subparsers(
        dest="sub", metavar="ACTION", required=True, parser_class=Parser
    )
    co = add(cons, "add", cmd_consent_add, "record a consent grant for a number")
    co.add_argument("number")
    scope = co.add_mutually_exclusive_group(required=True)
    scope.add_argument("--purpose", choices=PURPOSES, help="consent to calls of this purpose, any campaign")
    scope.add_argument("--campaign", help="consent to this campaign's calls only")
    co.add_argument(
        "--kind",
        default="express",
        choices=sorted(CONSENT_KINDS),
        help="express_written: signed (TCPA); written_agreement: names the number (TSR: exempts from "
        "the national list); ebr_purchase / ebr_inquiry: a business relationship (18 / 3 months from "
        "--granted-at)",
    )
    co.add_argument("--granted-at", type=parse_instant, help="when it was given (default now), ISO-8601")
    co.add_argument("--name", help="the person's name, as given")
    co.add_argument("--text", help="the request as the person saw or heard it")
    co.add_argument("--reference", help="where the proof is: a recording, a document, a form submission id")
    co.add_argument(
        "--source", default="cli", help="where it was given: web_form, call, paper, import, api ..."
    )
    co.add_argument("--expires", type=parse_instant, help="when it lapses (ISO-8601 with offset)")
    cr = add(cons, "revoke", cmd_consent_revoke, "withdraw every consent of a number, effective at once")
    cr.add_argument("number")
    cr.add_argument("--source", default="cli", help="how the person withdrew it")
    cl = add(cons, "list", cmd_consent_list, "list consent grants and their state")
    cl.add_argument("number", nargs="?")

    comp = sub.add_parser("complaint", help="record complaints").add_subparsers(
        dest="sub", metavar="ACTION", required=True, parser_class=Parser
    )
    cp = add(
        comp, "add", cmd_complaint_add, "record a complaint: consent revoked, number on the internal list"
    )
    cp.add_argument("number")
    cp.add_argument("--channel", default="phone", help="how it reached you: phone, email, letter, regulator")
    cp.add_argument("--note", default="", help="what the person said")
    cp.add_argument("--campaign", help="the campaign complained about")
