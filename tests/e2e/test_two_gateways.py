"""Two `dialguard serve` processes on one database race for the last slot under a frequency cap.

The cap must hold across gateways (issue 3): for every number one call below the cap, the two
gateways together allow exactly one more call. Both are real processes driven over FastAGI.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import asyncpg
import pytest

from tests.fakes.asterisk_agi import FakeAsterisk

ALWAYS_OPEN_THREE_A_DAY = """
[pack]
country = "DEFAULT"
name = "test: open around the clock, three calls a day"

[hours]
source = "test pack"
policy = true
all = ["00:00-24:00"]

[[caps]]
max_calls = 3
period_hours = 24
source = "test pack"
policy = true
"""
NUMBERS = [f"+4860123{i:04d}" for i in range(12)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start_gateway(env: dict[str, str]) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialguard", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        while b"dialguard ready" not in (line := await proc.stderr.readline()):
            assert line, "the gateway exited before it was ready"
    return proc


class Ports(NamedTuple):
    agi: int
    http: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"


@asynccontextmanager
async def gateways(db_dsn: str, tmp_path: Path, count: int = 2, **env: str) -> AsyncIterator[list[Ports]]:
    """``count`` real `dialguard serve` processes on one database, each on ports and with a journal of its
    own, ``env`` (DIALGUARD_... variables) added to each; ended when the block is left."""
    started: list[Ports] = []
    procs = []
    try:
        for i in range(count):
            ports = Ports(_free_port(), _free_port())
            own = {
                **os.environ,
                "DIALGUARD_DATABASE_DSN": db_dsn,
                "DIALGUARD_AGI_PORT": str(ports.agi),
                "DIALGUARD_HTTP_PORT": str(ports.http),
                "DIALGUARD_CALLS_JOURNAL_PATH": str(tmp_path / f"journal-{i}.jsonl"),
                "DIALGUARD_GATE_WRITER": f"gateway-{i}",
                **env,
            }
            procs.append(await _start_gateway(own))
            started.append(ports)
        yield started
    finally:
        for proc in procs:
            proc.terminate()
            await proc.wait()


@pytest.fixture
async def two_gateways(tmp_path: Path, db_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[list[int]]:
    (tmp_path / "DEFAULT.toml").write_text(ALWAYS_OPEN_THREE_A_DAY)
    async with gateways(db_dsn, tmp_path, DIALGUARD_RULES_PACK_DIR=str(tmp_path)) as started:
        yield [p.agi for p in started]


async def test_two_gateway_processes_allow_exactly_the_last_slot(
    two_gateways: list[int], pool: asyncpg.Pool
) -> None:
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        await conn.executemany(
            """INSERT INTO attempts (number, campaign, purpose, call_id, at)
               VALUES ($1, 'default', 'marketing', $2, $3)""",
            [(n, uuid.uuid4(), now - timedelta(hours=h)) for n in NUMBERS for h in (1, 2)],
        )
    gateways = [FakeAsterisk("127.0.0.1", port) for port in two_gateways]
    runs = await asyncio.gather(*(g.agi("check", n) for n in NUMBERS for g in gateways))

    for i, number in enumerate(NUMBERS):
        verdicts = sorted(run.variables["DIALGUARD_VERDICT"] for run in runs[2 * i : 2 * i + 2])
        assert verdicts == ["ALLOW", "BLOCK"], number
        blocked = next(r for r in runs[2 * i : 2 * i + 2] if r.variables["DIALGUARD_VERDICT"] == "BLOCK")
        assert blocked.variables["DIALGUARD_REASON"] == "frequency.cap"
    async with pool.acquire() as conn:
        counts = await conn.fetch("SELECT number, count(*) AS n FROM attempts GROUP BY number")
        writers = await conn.fetchval("SELECT count(DISTINCT writer) FROM decisions")
    assert {r["number"]: r["n"] for r in counts} == dict.fromkeys(NUMBERS, 3)
    assert writers == 2  # both processes really decided calls
