"""The ``dialguard`` command line. Each command reads the same configuration as ``serve``.

Exit codes: 0 success (``check``: the call is allowed), 10 ``check`` blocked the call, 2 bad usage,
1 anything else that went wrong (the message says what to do).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NoReturn

import asyncpg

from dialguard import __version__
from dialguard.clock import Clock, system_clock
from dialguard.clock import parse_instant as parse_iso_instant
from dialguard.config import ConfigError, Settings, load_settings
from dialguard.hlr.setup import open_roaming
from dialguard.journal import JournalError
from dialguard.logs import configure as configure_logs
from dialguard.numbers import InvalidLeadState, InvalidNumber, NumberFacts, parse_lead_state, parse_wildcard
from dialguard.policy.model import INTERNAL, Purpose
from dialguard.rules.loader import CONSENT_KINDS, PackError
from dialguard.store import campaigns as campaign_store
from dialguard.store import consent as consent_store
from dialguard.store import dnc as dnc_store
from dialguard.store.db import DatabaseError, create_pool, resolve_dsn
from dialguard.store.migrate import MigrationError, migrate
from dialguard.store.sealing import seal, verify

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
        return parse_iso_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def count(text: str) -> int:
    """A whole number, 0 or more (``--limit``)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count; write a whole number, 0 or more")
    return value


def record_id(text: str) -> int:
    """A row id (``emergency end ID``): a whole number the database can hold."""
    value = int(text) if text.isdigit() else 0
    if not 1 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id; ids are whole numbers from 1")
    return value


def percent(text: str) -> float:
    """A percentage from 0 to 100 (``--max-broken``)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage; write a number from 0 to 100")
    return value


def parse_day(text: str) -> date:
    """``--date``: a calendar day, YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date; write YYYY-MM-DD, e.g. 2026-11-20"
        ) from None


# ---------------------------------------------------------------- database access


@asynccontextmanager
async def database(settings: Settings) -> Any:
    """A migrated connection pool for one command (the embedded server is started when no DSN is set)."""
    if settings.database.dsn is None:
        # Name the database every command uses when no DSN says which: one state, never two by accident.
        print(f"dialguard: using the embedded PostgreSQL in {settings.database.data_dir}", file=sys.stderr)
    dsn = await resolve_dsn(settings.database, create=False)
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


def _lead_state(settings: Settings, number: str, state: str | None) -> str | None:
    """``--lead-state`` read as the gate reads it, by the number's country: a usage error if it cannot be.

    An unparsable number leaves it to the gate, whose verdict on the number (``number.invalid``, or
    ``number.emergency``) does not depend on it."""
    from dialguard.numbers import parse_number

    parsed = parse_number(
        number, default_region=settings.numbers.default_region, dial_prefix=settings.numbers.dial_prefix
    )
    if state is None or not isinstance(parsed, NumberFacts):
        return state
    lead = parse_lead_state(state, parsed)
    if isinstance(lead, InvalidLeadState):
        raise UsageError(f"--lead-state: {lead.reason}")
    return lead


def _normalise_entry(settings: Settings, raw: str) -> str:
    """A number, or a wildcard: ``+1212*`` (+, country code and leading digits, then *)."""
    if not raw.endswith("*"):
        return _normalise(settings, raw)
    wildcard = parse_wildcard(raw)
    if isinstance(wildcard, InvalidNumber):
        raise UsageError(f"{raw!r} is {wildcard.reason}")
    return wildcard


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    """A file's bytes in 4 MiB chunks, read off the event loop."""
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, 4 << 20):
            yield chunk


# ---------------------------------------------------------------- commands


async def cmd_serve(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    from dialguard.app import serve

    await serve(settings)
    return EXIT_OK


async def cmd_migrate(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    dsn = await resolve_dsn(settings.database)
    pool = await create_pool(dsn, size=1, command_timeout=settings.database.command_timeout)
    try:
        async with pool.acquire() as conn:
            applied = await migrate(conn)
    finally:
        await pool.close()
    print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m.version:04d}_{m.name}" for m in applied))
    return EXIT_OK


async def cmd_check(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    from dialguard.app import build_gate
    from dialguard.gate import CheckRequest

    try:
        request = CheckRequest(
            number=args.number,
            campaign=args.campaign,
            record=args.record,
            at=args.at,
            lead_subdivision=_lead_state(settings, args.number, args.lead_state),
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
    number = _normalise(settings, args.number)
    async with database(settings) as pool, pool.acquire() as conn:
        await consent_store.revoke_consent(conn, number=number, source=args.source, at=clock())
    print(f"every consent of {number} is revoked from now on")
    return EXIT_OK


async def cmd_consent_list(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    number = _normalise(settings, args.number) if args.number else None
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


async def cmd_dnc_add(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    number = _normalise_entry(settings, args.number)
    async with database(settings) as pool, pool.acquire() as conn:
        added = await dnc_store.add_dnc(
            conn, number=number, at=clock(), list_name=args.list, source=args.source, expires_at=args.expires
        )
    print(f"{number} {'added to' if added else 'was already on'} the {args.list} do-not-call list")
    return EXIT_OK


async def cmd_dnc_remove(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    number = _normalise_entry(settings, args.number)
    async with database(settings) as pool, pool.acquire() as conn:
        removed = await dnc_store.remove_dnc(conn, number=number, at=clock(), list_name=args.list)
    print(f"{number} {'removed from' if removed else 'was not on'} the {args.list} do-not-call list")
    return EXIT_OK


async def cmd_dnc_list(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    async with database(settings) as pool, pool.acquire() as conn:
        rows = await dnc_store.list_dnc(conn, args.list, args.limit)
    for r in rows:
        print(f"{r['number']:<16} {r['list_name']:<12} {r['source']:<10} {r['added_at']:%Y-%m-%d %H:%M}")
    if not rows:
        print("no numbers on the list")
    return EXIT_OK


async def cmd_dnc_import(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from dialguard.app import build_rulebook
    from dialguard.dnc_files import FileFormat, WrongFormat
    from dialguard.policy.model import is_company_list
    from dialguard.store.registry import ImportRefused, InvalidListName, check_list_date, import_list

    path: Path = args.file
    now = clock()
    if not is_company_list(args.list):
        # Before anything is read or drawn: a national list's freshness counts from the publisher's date.
        if args.date is None:
            raise UsageError(
                f"{args.list} is a national list: give the publisher's date of the data with --date "
                "YYYY-MM-DD (its freshness rule counts from it, not from the import day)"
            )
        try:
            check_list_date(args.date, now)
        except ImportRefused as exc:
            raise UsageError(str(exc)) from None
    size = await _input_size(path)
    fmt = FileFormat(args.format)
    lapse_after = build_rulebook(settings).entry_lifetime(args.list)
    columns = [BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=_stderr_console(), transient=False) as bar:
        task = bar.add_task("import", total=size)

        def advance(n: int) -> None:
            bar.advance(task, n)

        async with database(settings) as pool, pool.acquire() as conn:
            chunks = _file_chunks(path)
            try:
                report = await import_list(
                    conn, chunks, list_name=args.list, fmt=fmt, list_date=args.date, now=now,
                    actor="cli", source_file=str(path), default_region=settings.numbers.default_region,
                    max_reject_ratio=args.max_broken / 100, lapse_after=lapse_after, progress=advance,
                )  # fmt: skip
            except (WrongFormat, ImportRefused, InvalidListName) as exc:
                print(f"dialguard: import refused, nothing changed: {exc}", file=sys.stderr)
                return EXIT_ERROR
    for r in report.rejects[:20]:
        print(f"  line {r.line}: {r.text!r}: {r.why}", file=sys.stderr)
    if report.rejected > 20:
        print(f"  ... {report.rejected - 20} more broken lines", file=sys.stderr)
    version = f" as version {report.version_id} dated {report.list_date}" if report.version_id else ""
    deleted = f", {report.deleted:,} deleted" if report.deleted else ""
    if lapse_after is not None:
        deleted += f", {report.lapsed:,} lapsed registrations skipped (older than {lapse_after.days} days)"
    print(
        f"{args.list}: {report.rows:,} numbers {'live' if report.version_id else 'added'}{version}{deleted}, "
        f"{report.rejected:,} broken lines "
        f"skipped, in {report.seconds:.1f} s"
    )
    return EXIT_OK


async def cmd_dnc_lists(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    from dialguard.store.registry import registry_status

    async with database(settings) as pool, pool.acquire() as conn:
        rows = await registry_status(conn)
    today = clock().astimezone(UTC).date()  # list dates are UTC days, as the freshness rule counts them
    for r in rows:
        if r["version_id"] is None:
            print(f"{r['name']:<14} no live version")
            continue
        age = (today - r["list_date"]).days
        print(
            f"{r['name']:<14} version {r['version_id']:<5} data of {r['list_date']} ({age} days old), "
            f"{r['row_count']:,} numbers, live since {r['live_at']:%Y-%m-%d %H:%M}"
        )
    if not rows:
        print("no national lists loaded; import one with: dialguard dnc import FILE --list us_national")
    return EXIT_OK


async def cmd_scrub(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    import csv

    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from dialguard.app import build_gate
    from dialguard.scrub import Scrubber, ScrubError

    path: Path = args.input
    size = await _input_size(path)
    output: Path | None = args.output
    if output is not None and await asyncio.to_thread(_same_file, output, path):
        raise UsageError(f"-o {output} is the lead file itself: write the scrubbed copy to another file")
    # Files are read and written in a worker thread, a batch of rows at a time (quoted newlines and all).
    # The output is written beside its name and renamed into place only when the scrub succeeds: a
    # failed scrub never leaves an empty or half-written file where a good one may have been.
    source = await asyncio.to_thread(path.open, newline="", encoding="utf-8-sig")
    out = sys.stdout
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial") if output is not None else None
    if partial is not None:
        try:
            out = await asyncio.to_thread(partial.open, "w", newline="", encoding="utf-8")
        except OSError:
            source.close()
            raise
    reader, writer = csv.reader(source), csv.writer(out)
    done = False

    async def emit(row: list[str]) -> None:
        writer.writerow(row)

    try:
        with Progress(BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=_stderr_console()) as bar:
            task = bar.add_task("scrub", total=size)

            async def rows() -> AsyncIterator[list[str]]:
                while batch := await asyncio.to_thread(lambda: list(itertools.islice(reader, 1000))):
                    bar.update(task, completed=os.lseek(source.fileno(), 0, os.SEEK_CUR))
                    for row in batch:
                        yield row

            async with (
                database(settings) as pool,
                open_roaming(settings.hlr, pool=pool, clock=clock) as roaming,
            ):
                async with pool.acquire() as conn:
                    known = await campaign_store.get_campaign(conn, args.campaign)
                if known is None and args.campaign != settings.campaigns.default:
                    raise UsageError(
                        f"no campaign {args.campaign!r}: every row would be blocked as campaign.unknown; "
                        f"add it with: dialguard campaign add {args.campaign} --purpose ..."
                    )
                gate = build_gate(settings, pool, clock, roaming)
                summary = await Scrubber(gate=gate, campaign=args.campaign, at=args.at).run(rows(), emit)
        done = True
    except (ScrubError, csv.Error, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot scrub {path}: {exc}") from None
    finally:
        source.close()
        if partial is not None and output is not None:
            out.close()
            if done:
                partial.replace(output)
            else:
                partial.unlink(missing_ok=True)
    print(f"{summary.rows:,} rows: {summary.allowed:,} allowed, {summary.blocked:,} blocked", file=sys.stderr)
    for reason, n in summary.by_reason.most_common():
        print(f"  {reason:<24} {n:,}", file=sys.stderr)
    if summary.not_judged:
        note = f"{summary.not_judged:,}  (see dialguard_row_error)"
        print(f"  {'not judged':<24} {note}", file=sys.stderr)
    return EXIT_OK


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


async def _input_size(path: Path) -> int | None:
    """The file's size for the progress bar (None for a pipe); a missing file is a usage error."""
    try:
        st = await asyncio.to_thread(path.stat)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return st.st_size or None


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


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


async def cmd_complaint_add(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    from dialguard.store.complaints import file_complaint

    number = _normalise(settings, args.number)
    async with database(settings) as pool, pool.acquire() as conn:
        complaint_id = await file_complaint(
            conn, number=number, channel=args.channel, at=clock(), note=args.note, campaign=args.campaign
        )
    print(f"complaint {complaint_id}: {number} revoked every consent and is on the internal do-not-call list")
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
    number = _normalise(settings, args.number)
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


async def cmd_verify(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    async with database(settings) as pool, pool.acquire() as conn:
        sealed = await seal(conn) or {}
        report = await verify(conn)
    for table, counts in report.logs.items():
        print(
            f"{table}: sealed now {sealed.get(table, 0)}; checkpoints {counts.checkpoints}; "
            f"sealed rows {counts.sealed_rows}; not yet sealed {counts.unsealed_rows}"
        )
    for problem in report.problems:
        print(f"  TAMPERED: {problem}")
    print("evidence logs intact" if report.ok else "evidence logs have been altered")
    return EXIT_OK if report.ok else EXIT_ERROR


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


# ---------------------------------------------------------------- parser


Command = Callable[[Settings, argparse.Namespace, Clock], Awaitable[int]]


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
        "--lead-state",
        metavar="STATE",
        help="the lead's own state or province: FL, US-FL or Florida (both it and the number's must allow)",
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

    dnc = sub.add_parser("dnc", help="the do-not-call lists").add_subparsers(
        dest="sub", metavar="ACTION", required=True, parser_class=Parser
    )
    da = add(
        dnc,
        "add",
        cmd_dnc_add,
        "put a number on the company's do-not-call list",
        epilog="NUMBER may be a wildcard, + and the leading digits then *: +1212* blocks every number in "
        "area code 212. National lists (us_national, uk_tps ...) change only by `dnc import`.",
    )
    da.add_argument("number", help="a number in any usual form, or a wildcard such as +1212*")
    da.add_argument("--list", default=INTERNAL, help="internal (default) or campaign:NAME")
    da.add_argument("--source", default="cli", help="where the request came from")
    da.add_argument(
        "--expires", type=parse_instant, help="when the entry lapses (e.g. a state list's 3 years)"
    )
    dr = add(dnc, "remove", cmd_dnc_remove, "take a number off a do-not-call list")
    dr.add_argument("number")
    dr.add_argument("--list", default=INTERNAL)
    dl = add(dnc, "list", cmd_dnc_list, "list numbers on the do-not-call lists")
    dl.add_argument("--list", default=None, help="only this list")
    dl.add_argument("--limit", type=count, default=1000, help="at most this many entries (default 1000)")
    di = add(
        dnc,
        "import",
        cmd_dnc_import,
        "load a do-not-call file: a national list becomes a new version, swapped in atomically",
        epilog="Formats: us-registry (2125550100 or 212,5550100 per line), us-registry-changes "
        "(212,5550100,A|D), tps (01632960001 per line), csv (a 'number' column). Lists 'internal' and "
        "'campaign:NAME' take the numbers as entries; any other name is a national list, replaced whole. "
        "Broken lines are reported with their line numbers and skipped; the import is refused, and the "
        "live list kept, when more than --max-broken percent are broken or the file is not the format asked.",
    )
    di.add_argument("file", type=Path)
    di.add_argument("--list", required=True, help="us_national, uk_tps, uk_ctps, internal, campaign:NAME ...")
    di.add_argument("--format", required=True, choices=["us-registry", "us-registry-changes", "tps", "csv"])
    di.add_argument(
        "--date",
        type=parse_day,
        help="the publisher's date of the data, YYYY-MM-DD: required for a national list, whose "
        "freshness (e.g. 31 days for us_national) counts from it",
    )
    di.add_argument(
        "--max-broken", type=percent, default=1.0, help="percent of broken lines tolerated, 0-100 (default 1)"
    )
    add(dnc, "lists", cmd_dnc_lists, "national lists: live version, date of the data, size")

    sc = add(
        sub,
        "scrub",
        cmd_scrub,
        "judge every row of a lead list as a call would be judged (nothing is counted or stored)",
        epilog="IN.csv needs a header with a number column (number, phone, phone_number); a lead_state or "
        "state column adds the lead's own state (FL, US-FL or Florida). Each row gets dialguard_verdict, "
        "dialguard_reason, dialguard_reasons and dialguard_next_callable_at, or dialguard_row_error when it "
        "cannot be judged (a ragged row, a state unknown for its number, an emergency number); a summary "
        "by reason goes to stderr.",
    )
    sc.add_argument("input", type=Path, metavar="IN.csv")
    sc.add_argument("-o", "--output", type=Path, metavar="OUT.csv", help="default: standard output")
    sc.add_argument("--campaign", required=True)
    sc.add_argument("--at", type=parse_instant, help="judge at this instant (ISO-8601 with offset)")

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

    jr = sub.add_parser("journal", help="the opt-out journal (opt-outs taken while the database was away)")
    jrs = jr.add_subparsers(dest="sub", metavar="ACTION", required=True, parser_class=Parser)
    js = add(jrs, "status", cmd_journal_status, "show the opt-outs that wait for the database")
    js.add_argument("--replay", action="store_true", help="store them now (serve does this by itself)")

    add(
        sub,
        "verify",
        cmd_verify,
        "seal pending rows and verify the tamper-evident logs of decisions and call events",
    )
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
    # Commands print their own results; library chatter below warnings would only confuse.
    configure_logs(
        level=settings.log.level,
        fmt=settings.log.format,
        mask_numbers=settings.log.mask_numbers,
        quiet=args.command != "serve",
    )
    try:
        code: int = asyncio.run(args.func(settings, args, system_clock))
        return code
    except (UsageError, dnc_store.NotACompanyList) as exc:
        print(f"dialguard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (DatabaseError, MigrationError) as exc:
        print(f"dialguard: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ConfigError as exc:
        print(f"dialguard: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except JournalError as exc:
        print(f"dialguard: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except PackError as exc:
        print(f"dialguard: rule pack error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`dialguard dnc list | head`): nothing left to say, and nothing to say it to.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except OSError as exc:
        # A file, a directory or a port the command cannot use: one line that names it.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"dialguard: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
