"""The do-not-call lists (entries, imports, national versions) and lead-list scrubs."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path
from typing import Any

from dialguard.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    Parser,
    UsageError,
    add,
    count,
    database,
    file_chunks,
    input_size,
    normalise_entry,
    parse_day,
    parse_instant,
    percent,
    same_file,
    stderr_console,
)
from dialguard.clock import Clock
from dialguard.config import Settings
from dialguard.hlr.setup import open_roaming
from dialguard.policy.model import INTERNAL
from dialguard.store import campaigns as campaign_store
from dialguard.store import dnc as dnc_store


async def cmd_dnc_add(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    number = normalise_entry(settings, args.number)
    async with database(settings) as pool, pool.acquire() as conn:
        added = await dnc_store.add_dnc(
            conn, number=number, at=clock(), list_name=args.list, source=args.source, expires_at=args.expires
        )
    print(f"{number} {'added to' if added else 'was already on'} the {args.list} do-not-call list")
    return EXIT_OK


async def cmd_dnc_remove(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    number = normalise_entry(settings, args.number)
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
    size = await input_size(path)
    fmt = FileFormat(args.format)
    lapse_after = build_rulebook(settings).entry_lifetime(args.list)
    columns = [BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    # Transient: the bar is gone when the import ends, so a refusal is not left under a drawn bar.
    with Progress(*columns, console=stderr_console(), transient=True) as bar:
        task = bar.add_task("import", total=size)

        def advance(n: int) -> None:
            bar.advance(task, n)

        async with database(settings) as pool, pool.acquire() as conn:
            chunks = file_chunks(path)
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
    size = await input_size(path)
    output: Path | None = args.output
    if output is not None and await asyncio.to_thread(same_file, output, path):
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
        with Progress(BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=stderr_console()) as bar:
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


def register(sub: Any) -> None:
    """This group's commands, on the top-level parser's subcommands."""
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
