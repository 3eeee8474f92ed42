"""The ``dialguard`` command line. Each command reads the same configuration as ``serve``.

Exit codes: 0 success (``check``: the call is allowed), 10 ``check`` blocked the call, 2 bad usage,
1 anything else that went wrong (the message says what to do).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import asyncpg

from dialguard import __version__
from dialguard.clock import system_clock
from dialguard.config import ConfigError, Settings, load_settings
from dialguard.numbers import InvalidNumber
from dialguard.policy.model import Purpose
from dialguard.rules.loader import PackError
from dialguard.store import campaigns as campaign_store
from dialguard.store import consent as consent_store
from dialguard.store import dnc as dnc_store
from dialguard.store.db import DatabaseError, create_pool, resolve_dsn
from dialguard.store.decisions import seal, verify
from dialguard.store.migrate import MigrationError, migrate

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BLOCK = 0, 1, 2, 10
PURPOSES = [str(p) for p in Purpose]


class UsageError(Exception):
    """The command line was understood but its values cannot be used."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parse_instant(text: str) -> datetime:
    """``--at``: ISO-8601 with an offset (``2026-11-23T20:30:00-07:00`` or ``...Z``)."""
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO-8601 time; write e.g. 2026-11-23T20:30:00-07:00"
        ) from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add one, e.g. {text}+00:00 or {text}Z")
    return at


# ---------------------------------------------------------------- database access


@asynccontextmanager
async def database(settings: Settings) -> Any:
    """A migrated connection pool for one command (the embedded server is started when no DSN is set)."""
    dsn = await resolve_dsn(settings.database)
    pool = await create_pool(dsn, size=2, command_timeout=settings.database.command_timeout)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        yield pool
    finally:
        await pool.close()


def _normalise(settings: Settings, raw: str) -> str:
    from dialguard.numbers import parse_number

    number = parse_number(
        raw, default_region=settings.numbers.default_region, dial_prefix=settings.numbers.dial_prefix
    )
    if isinstance(number, InvalidNumber):
        raise UsageError(f"{raw!r} is not a valid phone number: {number.reason}")
    return number.e164


# ---------------------------------------------------------------- commands


async def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from dialguard.app import serve

    await serve(settings)
    return EXIT_OK


async def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    dsn = await resolve_dsn(settings.database)
    conn = await asyncpg.connect(dsn)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m.version:04d}_{m.name}" for m in applied))
    return EXIT_OK


async def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    from dialguard.app import build_gate
    from dialguard.gate import CheckRequest

    async with database(settings) as pool:
        gate = build_gate(settings, pool, system_clock)
        result = await gate.check(
            CheckRequest(
                number=args.number,
                campaign=args.campaign,
                record=args.record,
                at=args.at,
                lead_subdivision=args.lead_state,
                channel="cli",
            )
        )
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


async def cmd_campaign_add(settings: Settings, args: argparse.Namespace) -> int:
    async with database(settings) as pool, pool.acquire() as conn:
        try:
            c = await campaign_store.add_campaign(conn, name=args.name, purpose=Purpose(args.purpose))
        except campaign_store.CampaignExists as exc:
            raise UsageError(str(exc)) from None
        except asyncpg.CheckViolationError:
            raise UsageError(
                f"{args.name!r} is not a usable campaign name: letters, digits, '_', '.', '-', up to 64"
            ) from None
    print(f"campaign {c.name} added ({c.purpose})")
    return EXIT_OK


async def cmd_campaign_list(settings: Settings, args: argparse.Namespace) -> int:
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


async def cmd_consent_add(settings: Settings, args: argparse.Namespace) -> int:
    number = _normalise(settings, args.number)
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
            purpose=Purpose(args.purpose) if args.purpose else None,
            campaign=args.campaign,
            expires_at=args.expires,
        )
    scope = f"campaign {args.campaign}" if args.campaign else f"purpose {args.purpose}"
    print(f"consent {consent_id} recorded for {number}: {args.kind}, {scope}, source {args.source}")
    return EXIT_OK


async def cmd_consent_revoke(settings: Settings, args: argparse.Namespace) -> int:
    number = _normalise(settings, args.number)
    async with database(settings) as pool, pool.acquire() as conn:
        await consent_store.revoke_consent(conn, number=number, source=args.source)
    print(f"every consent of {number} is revoked from now on")
    return EXIT_OK


async def cmd_consent_list(settings: Settings, args: argparse.Namespace) -> int:
    number = _normalise(settings, args.number) if args.number else None
    async with database(settings) as pool, pool.acquire() as conn:
        rows = await consent_store.list_consents(conn, number)
    now = system_clock()
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


async def cmd_dnc_add(settings: Settings, args: argparse.Namespace) -> int:
    number = _normalise(settings, args.number)
    async with database(settings) as pool, pool.acquire() as conn:
        added = await dnc_store.add_dnc(conn, number=number, list_name=args.list, source=args.source)
    print(f"{number} {'added to' if added else 'was already on'} the {args.list} do-not-call list")
    return EXIT_OK


async def cmd_dnc_remove(settings: Settings, args: argparse.Namespace) -> int:
    number = _normalise(settings, args.number)
    async with database(settings) as pool, pool.acquire() as conn:
        removed = await dnc_store.remove_dnc(conn, number=number, list_name=args.list)
    print(f"{number} {'removed from' if removed else 'was not on'} the {args.list} do-not-call list")
    return EXIT_OK


async def cmd_dnc_list(settings: Settings, args: argparse.Namespace) -> int:
    async with database(settings) as pool, pool.acquire() as conn:
        rows = await dnc_store.list_dnc(conn, args.list, args.limit)
    for r in rows:
        print(f"{r['number']:<16} {r['list_name']:<12} {r['source']:<10} {r['added_at']:%Y-%m-%d %H:%M}")
    if not rows:
        print("no numbers on the list")
    return EXIT_OK


async def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    async with database(settings) as pool, pool.acquire() as conn:
        sealed = await seal(conn)
        report = await verify(conn)
    print(
        f"sealed now: {sealed or 0} decisions; checkpoints: {report.checkpoints}; "
        f"sealed decisions: {report.sealed_rows}; not yet sealed: {report.unsealed_rows}"
    )
    for problem in report.problems:
        print(f"  TAMPERED: {problem}")
    print("decision log intact" if report.ok else "decision log has been altered")
    return EXIT_OK if report.ok else EXIT_ERROR


async def cmd_rules_show(settings: Settings, args: argparse.Namespace) -> int:
    from dialguard.app import build_rulebook
    from dialguard.rules.explain import show

    print(show(build_rulebook(settings), args.country))
    return EXIT_OK


async def cmd_rules_explain(settings: Settings, args: argparse.Namespace) -> int:
    from dialguard.app import build_rulebook
    from dialguard.numbers import parse_number
    from dialguard.rules.explain import explain

    number = parse_number(
        args.number, default_region=settings.numbers.default_region, dial_prefix=settings.numbers.dial_prefix
    )
    if isinstance(number, InvalidNumber):
        raise UsageError(f"{args.number!r} is not a valid phone number: {number.reason}")
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
            args.at or system_clock(),
            purpose,
            lead_subdivision=args.lead_state,
        )
    )
    return EXIT_OK


# ---------------------------------------------------------------- parser


Command = Callable[[Settings, argparse.Namespace], Awaitable[int]]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="dialguard",
        description="Outbound-call compliance gate for Asterisk: every call is checked for consent, "
        "do-not-call lists, calling hours, roaming and frequency before it is dialled.",
        epilog="Configuration: --config FILE or $DIALGUARD_CONFIG (TOML); any key can be overridden "
        "with DIALGUARD_<SECTION>_<KEY>, e.g. DIALGUARD_DATABASE_DSN. Without a DSN the embedded "
        "PostgreSQL in database.data_dir is used.",
    )
    p.add_argument("--config", type=Path, help="TOML configuration file")
    p.add_argument("--version", action="version", version=f"dialguard {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)

    def add(parent: Any, name: str, func: Command, help: str, **kw: Any) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help, **kw)
        sp.set_defaults(func=func)
        return sp

    s = add(sub, "serve", cmd_serve, "run the gateway: FastAGI, HTTP API, database (migrated at start)")
    s.add_argument("--agi-port", type=int, help="FastAGI port (default 4573)")
    s.add_argument("--http-port", type=int, help="HTTP port (default 8080)")
    add(sub, "migrate", cmd_migrate, "apply the database migrations that are missing")

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
        "--lead-state", metavar="SUBDIVISION", help="the lead's own state, e.g. US-TX (both must allow)"
    )

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
        help="express, express_written, written_agreement, ebr_purchase, ebr_inquiry, verbal_recorded",
    )
    co.add_argument(
        "--source", default="cli", help="where it was given: web_form, call, paper, import, api ..."
    )
    co.add_argument("--expires", type=parse_instant, help="when it lapses (ISO-8601 with offset)")
    cr = add(cons, "revoke", cmd_consent_revoke, "withdraw every consent of a number, effective at once")
    cr.add_argument("number")
    cr.add_argument("--source", default="cli", help="how the person withdrew it")
    cl = add(cons, "list", cmd_consent_list, "list consent grants and their state")
    cl.add_argument("number", nargs="?")

    dnc = sub.add_parser("dnc", help="the do-not-call lists").add_subparsers(
        dest="sub", metavar="ACTION", required=True, parser_class=Parser
    )
    da = add(dnc, "add", cmd_dnc_add, "put a number on a do-not-call list")
    da.add_argument("number")
    da.add_argument("--list", default=dnc_store.INTERNAL, help="list name (default: internal)")
    da.add_argument("--source", default="cli", help="where the request came from")
    dr = add(dnc, "remove", cmd_dnc_remove, "take a number off a do-not-call list")
    dr.add_argument("number")
    dr.add_argument("--list", default=dnc_store.INTERNAL)
    dl = add(dnc, "list", cmd_dnc_list, "list numbers on the do-not-call lists")
    dl.add_argument("--list", default=None, help="only this list")
    dl.add_argument("--limit", type=int, default=1000)

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
    re_.add_argument("--lead-state", metavar="SUBDIVISION")

    add(sub, "verify", cmd_verify, "seal pending decisions and verify the tamper-evident decision log")
    return p


def _flags(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    flags: dict[str, dict[str, Any]] = {}
    if getattr(args, "agi_port", None) is not None:
        flags.setdefault("agi", {})["port"] = args.agi_port
    if getattr(args, "http_port", None) is not None:
        flags.setdefault("http", {})["port"] = args.http_port
    return flags


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, flags=_flags(args))
    except ConfigError as exc:
        print(f"dialguard: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=settings.log.level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command != "serve":
        # Commands print their own results; library chatter below warnings would only confuse.
        logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        code: int = asyncio.run(args.func(settings, args))
        return code
    except UsageError as exc:
        print(f"dialguard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (DatabaseError, MigrationError) as exc:
        print(f"dialguard: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except PackError as exc:
        print(f"dialguard: rule pack error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
