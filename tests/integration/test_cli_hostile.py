"""Every CLI command, given hostile input, answers with one clear line and a non-zero exit: never a
Python traceback (issue 11). The list is checked against the parser, so a new command needs its case."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import pytest

from dialguard.cli import build_parser
from tests.cli import dialguard

BINARY = "\xff\xfe garbage \x1b[31m\u202e"  # argv cannot carry NUL; the rest of the mess, yes
HOSTILE: list[list[str]] = [
    ["serve", "--agi-port", "99999"],
    ["serve", "--http-port", "-1"],
    ["migrate", "--bogus"],
    ["check", "not a number"],
    ["check", "+12025550143", "--at", "yesterday"],
    ["check", "+12025550143", "--at", "2026-01-05T15:00:00Z", "--record"],
    ["check", "9" * 5000],
    ["campaign", "add", "bad name!", "--purpose", "marketing"],
    ["campaign", "add", "x", "--purpose", "spam"],
    ["campaign", "list", "extra"],
    ["consent", "add", "12", "--purpose", "marketing"],
    ["consent", "add", "+12025550143", "--campaign", "nosuch"],
    ["consent", "add", "+12025550143", "--purpose", "marketing", "--expires", "0001-01-01T00:00:00+14:00"],
    ["consent", "revoke", BINARY],
    ["consent", "list", "not-a-number"],
    ["dnc", "add", "+0212*"],
    ["dnc", "remove", BINARY],
    ["dnc", "list", "--limit", "-1"],
    ["dnc", "import", "{tmp}/missing.txt", "--list", "internal", "--format", "csv"],
    ["dnc", "import", "{tmp}", "--list", "internal", "--format", "csv"],
    ["dnc", "import", "{tmp}/leads.csv", "--list", "internal", "--format", "csv", "--max-broken", "-1"],
    ["dnc", "import", "{tmp}/leads.csv", "--list", "US National!", "--format", "csv", "--date", "2026-11-20"],
    ["dnc", "import", "{tmp}/leads.csv", "--list", "us_national", "--format", "tps", "--date", "9999-12-31"],
    ["dnc", "lists", "extra"],
    ["scrub", "{tmp}/missing.csv", "--campaign", "spring"],
    ["scrub", "{tmp}/leads.csv", "--campaign", "spring", "-o", "/no/such/dir/out.csv"],
    ["scrub", "{tmp}/binary.csv", "--campaign", "spring"],
    ["token", "create", "x" * 500, "--role", "admin"],
    ["token", "revoke", BINARY],
    ["complaint", "add", "not-a-number"],
    ["emergency", "add", "US-NY", "--until", "nonsense", "--reason", "x"],
    ["emergency", "list", "--bogus"],
    ["emergency", "end", "99999999999999999999999"],
    ["hlr", "lookup", "+48601234567"],
    ["journal", "status", "--bogus"],
    ["rules", "show", BINARY],
    ["rules", "explain", "not-a-number"],
    ["verify", "--bogus"],
    ["calls", "tail", "--verdict", BINARY],
    ["verify", "{tmp}/binary.csv"],
    ["evidence", BINARY],
    ["evidence", "--campaign", "spring", "-o", "/no/such/dir/out.json"],
]


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= _commands(sub, (*prefix, name)) or {(*prefix, name)}
    return found


def _path(args: list[str]) -> tuple[str, ...]:
    commands = _commands(build_parser())
    return next(c for c in sorted(commands, key=len, reverse=True) if tuple(args[: len(c)]) == c)


def test_every_command_has_a_hostile_case() -> None:
    assert {_path(args) for args in HOSTILE} == _commands(build_parser())


@pytest.mark.parametrize("args", HOSTILE, ids=lambda a: " ".join(a)[:60])
async def test_hostile_input_gets_one_clear_line(db_dsn: str, tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "leads.csv").write_text("number\n+12025550143\n", encoding="utf-8")
    (tmp_path / "binary.csv").write_bytes(os.urandom(2048))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, out, err = await dialguard(db_dsn, *argv)
    assert "Traceback" not in err and "Traceback" not in out, err
    assert code != 0, (out, err)
    assert (err if code != 10 else out).strip(), "a refusal must say why"  # check: exit 10, the decision


async def test_a_closed_pipe_is_not_a_traceback(db_dsn: str) -> None:
    env = {**os.environ, "DIALGUARD_DATABASE_DSN": db_dsn}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialguard", "rules", "show",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.feed_eof()  # read nothing
    proc._transport.get_pipe_transport(1).close()  # type: ignore[attr-defined]  # `| head -0`
    err = await proc.stderr.read()
    await proc.wait()
    assert b"Traceback" not in err, err
