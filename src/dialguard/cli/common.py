"""What every command shares: exit codes, argument types, the one bootstrap to the database."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, NoReturn

from dialguard.clock import Clock
from dialguard.clock import parse_instant as parse_iso_instant
from dialguard.config import Settings
from dialguard.numbers import InvalidLeadState, InvalidNumber, NumberFacts, parse_lead_state, parse_wildcard
from dialguard.policy.model import Purpose
from dialguard.store.db import create_pool
from dialguard.store.setup import prepare_database

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
    dsn = (await prepare_database(settings.database, create=False)).gateway_dsn
    pool = await create_pool(dsn, size=2, command_timeout=settings.database.command_timeout)
    try:
        yield pool
    finally:
        await pool.close()


def normalise_number(settings: Settings, raw: str) -> str:
    from dialguard.numbers import parse_number

    number = parse_number(
        raw, default_region=settings.numbers.default_region, dial_prefix=settings.numbers.dial_prefix
    )
    if isinstance(number, InvalidNumber):
        raise UsageError(f"{raw!r} is not a valid phone number: {number.reason}")
    return number.e164


def lead_state_of(settings: Settings, number: str, state: str | None) -> str | None:
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


def normalise_entry(settings: Settings, raw: str) -> str:
    """A number, or a wildcard: ``+1212*`` (+, country code and leading digits, then *)."""
    if not raw.endswith("*"):
        return normalise_number(settings, raw)
    wildcard = parse_wildcard(raw)
    if isinstance(wildcard, InvalidNumber):
        raise UsageError(f"{raw!r} is {wildcard.reason}")
    return wildcard


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """A file's bytes in 4 MiB chunks, read off the event loop."""
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, 4 << 20):
            yield chunk


def same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


async def input_size(path: Path) -> int | None:
    """The file's size for the progress bar (None for a pipe); a missing file is a usage error."""
    try:
        st = await asyncio.to_thread(path.stat)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return st.st_size or None


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


Command = Callable[[Settings, argparse.Namespace, Clock], Awaitable[int]]


def add(parent: Any, name: str, func: Command, help: str, **kw: Any) -> argparse.ArgumentParser:
    """A subcommand that runs ``func``; its help is its description too."""
    sp: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help, **kw)
    sp.set_defaults(func=func)
    return sp
