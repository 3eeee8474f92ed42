"""One state, never two by accident (issue 11): a command run from anywhere finds the gateway's database,
and none but `serve` and `migrate` starts a fresh, empty one."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path


async def run(*args: str, **env: str) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DIALGUARD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialguard", *args, env={**clean, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_a_command_refuses_to_start_a_second_empty_database(tmp_path: Path) -> None:
    code, err = await run("dnc", "add", "+1 202 555 0143", DIALGUARD_DATABASE_DATA_DIR=str(tmp_path / "d"))
    assert code == 1
    assert "no dialguard database in" in err and "run `dialguard serve`" in err
    assert "Traceback" not in err
    assert not (tmp_path / "d" / "pgdata").exists()


async def test_an_unusable_data_directory_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    code, err = await run("migrate", DIALGUARD_DATABASE_DATA_DIR="/proc/nope")
    assert code == 1
    assert "cannot use /proc/nope for the embedded PostgreSQL" in err and "Traceback" not in err
