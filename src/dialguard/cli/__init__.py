"""The ``dialguard`` command line: one module per command group, one bootstrap shared with ``serve``.

Exit codes: 0 success (``check``: the call is allowed), 10 ``check`` blocked the call, 2 bad usage,
1 anything else that went wrong (the message says what to do).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dialguard import __version__
from dialguard.anchor import AnchorError, SealKeyError
from dialguard.cli import admin, calls, checks, evidence, gateway, lists, people
from dialguard.cli.common import EXIT_ERROR, EXIT_USAGE, Parser, UsageError
from dialguard.clock import system_clock
from dialguard.config import ConfigError, load_settings
from dialguard.journal import JournalError
from dialguard.logs import configure as configure_logs
from dialguard.loops import loop_factory
from dialguard.rules.loader import PackError
from dialguard.store import dnc as dnc_store
from dialguard.store.db import DatabaseError
from dialguard.store.migrate import MigrationError


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

    for commands in (gateway, checks, people, lists, admin, calls, evidence):
        commands.register(sub)
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
        factory = loop_factory(settings.gate.event_loop) if args.command == "serve" else None
        with asyncio.Runner(loop_factory=factory) as runner:
            code: int = runner.run(args.func(settings, args, system_clock))
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
    except (JournalError, SealKeyError, AnchorError) as exc:
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
