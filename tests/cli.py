"""The real `dialguard` command in a subprocess, against a test database."""

from __future__ import annotations

import asyncio
import os
import sys


async def dialguard(db_dsn: str, *args: str, **settings: str) -> tuple[int, str, str]:
    """Run ``python -m dialguard ARGS`` with DIALGUARD_<KEY>=value for each setting; (exit, out, err)."""
    env = {**os.environ, "DIALGUARD_DATABASE_DSN": db_dsn}
    env.update({f"DIALGUARD_{key.upper()}": value for key, value in settings.items()})
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialguard", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await run.communicate()
    assert run.returncode is not None
    return run.returncode, out.decode(), err.decode()
