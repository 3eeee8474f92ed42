"""Evidence: export a bundle (``evidence``), and ``verify`` — the database's logs, or a bundle offline.

``verify`` without a file seals what is pending (only with the seal key: a checkpoint without its mac
would look forged) and checks every log, its macs and the anchor file. ``verify FILE`` needs no
database: exit 0 intact, 1 altered, 2 unreadable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from dialguard.anchor import (
    AnchorError,
    AnchorFile,
    SealKeyError,
    key_id,
    load_seal_key,
    parse_key,
    seal_round,
)
from dialguard.bundle import BundleReport, UnreadableBundle, check_bundle, load_bundle
from dialguard.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    add,
    database,
    normalise_number,
    parse_instant,
)
from dialguard.clock import Clock
from dialguard.config import Settings
from dialguard.store.evidence import BundleTooLarge, export_campaign, export_number
from dialguard.store.sealing import VerifyReport, verify


async def cmd_evidence(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    if (args.number is None) == (args.campaign is None):
        raise UsageError("give a NUMBER or --campaign NAME (with --since/--until), one of them")
    if args.number is None and args.since and args.until and args.until <= args.since:
        raise UsageError("--until must come after --since")
    if args.number is not None and (args.since or args.until):
        raise UsageError("--since and --until go with --campaign")
    number = normalise_number(settings, args.number) if args.number is not None else None
    async with database(settings) as pool, pool.acquire() as conn:
        try:
            if number is not None:
                bundle = await export_number(conn, number, at=clock(), by="cli")
            else:
                bundle = await export_campaign(
                    conn, args.campaign, since=args.since, until=args.until, at=clock(), by="cli"
                )
        except BundleTooLarge as exc:
            raise UsageError(str(exc)) from None
    text = json.dumps(bundle, ensure_ascii=False, indent=1) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        await asyncio.to_thread(Path(args.output).write_text, text, encoding="utf-8")
    counts = ", ".join(
        f"{len(part['records'])} {table} ({len(part['checkpoints'])} checkpoints)"
        for table, part in bundle["logs"].items()
    )
    print(f"bundle{' written to ' + args.output if args.output else ''}: {counts}", file=sys.stderr)
    return EXIT_OK


async def cmd_verify(settings: Settings, args: argparse.Namespace, clock: Clock) -> int:
    if args.file is not None:
        return await asyncio.to_thread(_verify_bundle, settings, args)
    if args.key_file or args.anchor or args.gateway:
        raise UsageError(
            "--key-file, --anchor and --gateway go with a bundle FILE; the database is checked with the "
            "gateway's own key and anchor (gate.seal_key or gate.seal_key_file, gate.seal_anchor)"
        )
    return await _verify_database(settings, clock)


async def _verify_database(settings: Settings, clock: Clock) -> int:
    key = load_seal_key(settings)
    anchor = AnchorFile(settings.gate.seal_anchor, keep_all=True)
    stopped: str | None = None
    sealed: dict[str, int] = {}
    async with database(settings) as pool, pool.acquire() as conn:
        if key is not None:
            try:
                sealed = await seal_round(conn, key=key, anchor=anchor, clock=clock) or {}
            except AnchorError as exc:
                stopped = str(exc)
        state = await asyncio.to_thread(anchor.read) if anchor.exists() else None
        report = await verify(conn, key=key, anchored=state.anchored() if state and state.began else None)
    if key is None:
        print(
            f"no seal key here (gate.seal_key, or {settings.gate.seal_key_file}): pending rows were not "
            "sealed and checkpoint macs not checked; run verify where the gateway runs"
        )
    else:
        print(f"seal key {key_id(key)}: every checkpoint's mac checked")
    if state is None or state.began is None:
        where = settings.gate.seal_anchor
        print(f"no anchor file at {where}: a truncated log cannot be told from a short one")
    else:
        anchored = sum(len(d) for d in state.digests.values())
        print(f"anchor {settings.gate.seal_anchor}: {anchored} checkpoints anchored, each compared")
        for line in state.unreadable:
            print(f"  note: anchor line {line} is unreadable (cut short by a crash, or damaged)")
    _print_database_report(report, sealed)
    if stopped:
        print(f"  TAMPERED: {stopped}")
    ok = report.ok and stopped is None
    print("evidence logs intact" if ok else "evidence logs have been altered")
    return EXIT_OK if ok else EXIT_ERROR


def _print_database_report(report: VerifyReport, sealed: dict[str, int]) -> None:
    for table, counts in report.logs.items():
        print(
            f"{table}: sealed now {sealed.get(table, 0)}; checkpoints {counts.checkpoints}; "
            f"sealed rows {counts.sealed_rows}; not yet sealed {counts.unsealed_rows}"
        )
        if counts.unkeyed:
            print(f"  note: {counts.unkeyed} checkpoints predate the seal key (no mac)")
    for problem in report.problems:
        print(f"  TAMPERED: {problem}")


def _verify_bundle(settings: Settings, args: argparse.Namespace) -> int:
    """Blocking (a worker thread): the bundle, and what the operator adds (key, anchor)."""
    try:
        doc = load_bundle(_read(args.file))
        key = _bundle_key(settings, args)
        anchor_path = args.anchor or (settings.gate.seal_anchor if args.gateway else None)
        anchored = None
        if anchor_path is not None:
            state = AnchorFile(anchor_path, keep_all=True).read()
            if state.began is None:
                raise UsageError(f"{anchor_path}: no anchor there")
            anchored = state.anchored()
        report = check_bundle(doc, key=key, anchored=anchored)
    except UnreadableBundle as exc:
        print(f"dialguard: {args.file}: unreadable: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AnchorError as exc:
        raise UsageError(str(exc)) from None
    _print_bundle_report(report, key, anchor_path)
    print(f"{args.file}: " + ("bundle intact" if report.ok else "bundle has been altered"))
    return EXIT_OK if report.ok else EXIT_ERROR


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UnreadableBundle(exc.strerror or str(exc)) from None


def _bundle_key(settings: Settings, args: argparse.Namespace) -> bytes | None:
    if args.key_file is not None:
        try:
            return parse_key(Path(args.key_file).read_text(encoding="ascii", errors="replace"), args.key_file)
        except (OSError, SealKeyError) as exc:
            raise UsageError(f"--key-file {args.key_file}: {getattr(exc, 'strerror', None) or exc}") from None
    if args.gateway:
        key = load_seal_key(settings)
        if key is None:
            raise UsageError(f"--gateway: no seal key here (gate.seal_key, {settings.gate.seal_key_file})")
        return key
    return None


def _print_bundle_report(report: BundleReport, key: bytes | None, anchor: Any) -> None:
    print("subject: " + ", ".join(f"{k} {v}" for k, v in report.subject.items() if v is not None))
    for table, s in report.logs.items():
        unsealed = f"; {s.unsealed} not yet sealed when exported" if s.unsealed else ""
        print(f"{table}: {s.records} records, {s.sealed} sealed in {s.checkpoints} checkpoints{unsealed}")
    print(f"seal key {key_id(key)}: macs checked" if key else "macs not checked (no seal key given)")
    print(f"anchor {anchor}: checkpoints compared" if anchor else "no anchor file given")
    for note in report.notes:
        print(f"  note: {note}")
    for problem in report.problems:
        print(f"  ALTERED: {problem}")


def register(sub: Any) -> None:
    """This group's commands, on the top-level parser's subcommands."""
    ev = add(
        sub,
        "evidence",
        cmd_evidence,
        "export an evidence bundle: a number's decisions, consent, do-not-call and opt-out history, call "
        "events, and the seals that let anyone check them (dialguard verify FILE)",
    )
    ev.add_argument("number", nargs="?", help="the number, in any usual form")
    ev.add_argument("--campaign", help="instead of a number: the calls of this campaign")
    ev.add_argument("--since", type=parse_instant, help="with --campaign: decided at or after (ISO-8601)")
    ev.add_argument("--until", type=parse_instant, help="with --campaign: decided before (ISO-8601)")
    ev.add_argument("-o", "--output", help="write the bundle here (default: standard output)")

    ve = add(
        sub,
        "verify",
        cmd_verify,
        "without FILE: seal pending rows and verify every tamper-evident log in the database, its seal "
        "macs and the anchor file; with FILE: check an evidence bundle offline (exit 0 intact, 1 altered, "
        "2 unreadable)",
    )
    ve.add_argument("file", nargs="?", help="an evidence bundle (dialguard evidence ... -o FILE)")
    ve.add_argument("--key-file", help="with FILE: also check the checkpoints' macs with this seal key")
    ve.add_argument("--anchor", help="with FILE: also compare the checkpoints with this anchor file")
    ve.add_argument(
        "--gateway", action="store_true", help="with FILE: use this gateway's seal key and anchor file"
    )
