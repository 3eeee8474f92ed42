"""A database outage under load, as an operator sees it: log lines, blocked calls, time to recover.

Starts a real ``dialguard serve`` and drives FastAGI checks at ``--rate`` per second (fake-Asterisk
sessions) through an outage of ``--seconds``:

- ``--mode embedded``: the gateway's own embedded PostgreSQL (a fresh data dir), its postmaster killed
  with SIGKILL; the gateway is expected to start it again by itself.
- ``--mode system``: $DIALGUARD_TEST_DSN's server (a scratch database) behind a TCP proxy that cuts every
  link for ``--seconds`` and then lets them through again.

Prints the gateway's log lines during the outage by level (the one-line-a-decision ``dialguard.decisions``
lines apart), tracebacks, the checks blocked and their session times (a blocked check's decision is
journaled, fsynced, before the channel hears it), the decisions stored afterwards, and the seconds from
the cut to the first check that was judged on facts again.

    .venv/bin/python bench/outage.py [--mode embedded|system] [--rate 20] [--seconds 15]

Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]

from scratch import scratch_database  # noqa: E402
from tests.e2e.test_two_gateways import _free_port, _start_gateway  # noqa: E402
from tests.fakes.asterisk_agi import FakeAsterisk  # noqa: E402
from tests.fakes.proxy import CuttableProxy  # noqa: E402

NUMBER = "+48601234567"


class Log:
    """The gateway's stderr, read as it comes (a full pipe would stall its loop)."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self.task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace"))

    def since(self, mark: int) -> dict[str, int]:
        counts: collections.Counter[str] = collections.Counter()
        for line in self.lines[mark:]:
            try:
                record = json.loads(line)
            except ValueError:
                counts["continuation lines (tracebacks, dumps)"] += 1
                continue
            key = "decisions" if record["logger"] == "dialguard.decisions" else record["level"]
            counts[key] += 1
            counts["tracebacks"] += "exception" in record
        return dict(counts)


LATENCIES: list[float] = []  # seconds, of the checks that were blocked as gate.unavailable


async def check(asterisk: FakeAsterisk) -> str:
    started = time.perf_counter()
    run = await asterisk.agi("check", NUMBER, "bench", within=30)
    reasons = run.variables.get("DIALGUARD_REASONS", "")
    if "gate.unavailable" in reasons:
        LATENCIES.append(time.perf_counter() - started)
    return reasons


async def drive(asterisk: FakeAsterisk, rate: float, seconds: float, since: float) -> list[tuple[float, str]]:
    """Checks at ``rate`` a second for ``seconds``, each on its own: when each began (seconds after
    ``since``) and its reason codes."""
    sessions = []
    for _ in range(int(rate * seconds)):
        sessions.append((time.monotonic() - since, asyncio.create_task(check(asterisk))))
        await asyncio.sleep(1 / rate)
    return [(at, await session) for at, session in sessions]


async def until_judged(asterisk: FakeAsterisk, since: float, limit: float = 120) -> float:
    async with asyncio.timeout(limit):
        while "gate.unavailable" in await check(asterisk):  # noqa: ASYNC110 - the gateway is another process
            await asyncio.sleep(0.2)
    return time.monotonic() - since


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("embedded", "system"), default="embedded")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    agi_port = _free_port()
    with tempfile.TemporaryDirectory(prefix="dialguard-outage-") as tmp:
        env = {
            **os.environ,
            "DIALGUARD_AGI_PORT": str(agi_port),
            "DIALGUARD_HTTP_PORT": str(_free_port()),
            "DIALGUARD_DATABASE_DATA_DIR": tmp,
            "DIALGUARD_LOG_FORMAT": "json",
            "DIALGUARD_GATE_FACT_TIMEOUT": "0.5",
        }
        env.pop("DIALGUARD_DATABASE_DSN", None)
        if args.mode == "system":
            async with scratch_database() as (dsn, _):
                proxy = CuttableProxy.for_dsn(dsn)
                await proxy.start()
                env["DIALGUARD_DATABASE_DSN"] = proxy.dsn_through(dsn)
                try:
                    await run(args, env, agi_port, cut=proxy.cut, restore=proxy.restore, dsn=dsn)
                finally:
                    await proxy.close()
        else:
            pgdata = Path(tmp) / "pgdata"

            def kill() -> None:
                pid = int((pgdata / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGKILL)

            await run(args, env, agi_port, cut=kill, restore=None, dsn=None, pgdata=pgdata)


async def run(
    args: argparse.Namespace,
    env: dict[str, str],
    agi_port: int,
    *,
    cut: object,
    restore: object,
    dsn: str | None,
    pgdata: Path | None = None,
) -> None:
    proc = await _start_gateway(env)
    assert proc.stderr is not None
    log = Log(proc.stderr)
    asterisk = FakeAsterisk("127.0.0.1", agi_port)
    try:
        assert "gate.unavailable" not in await check(asterisk)
        mark = len(log.lines)
        started = time.monotonic()
        cut()  # type: ignore[operator]
        if restore is not None:
            loop = asyncio.get_running_loop()
            loop.call_later(args.seconds, restore)  # type: ignore[arg-type]
        checks = await drive(asterisk, args.rate, args.seconds, started)
        blocked_at = [at for at, reasons in checks if "gate.unavailable" in reasons]
        blocked = len(blocked_at)
        if checks and "gate.unavailable" not in checks[-1][1]:
            judged = [
                at
                for at, reasons in checks
                if "gate.unavailable" not in reasons and at > max(blocked_at, default=0)
            ]
            back = f"{judged[0]:.1f} s"
        else:
            try:
                back = f"{await until_judged(asterisk, started):.1f} s"
            except TimeoutError:
                back = "not within 120 s"
        await asyncio.sleep(6)  # a replay round, and the lines that say the database is back
        print(f"mode {args.mode}: {len(checks)} checks in {args.seconds:g} s, {blocked} blocked")
        print(f"first check judged on facts again {back} after the cut")
        if LATENCIES:
            ms = sorted(x * 1000 for x in LATENCIES)
            p50, p99 = ms[len(ms) // 2], ms[len(ms) * 99 // 100]
            print(f"blocked checks, session time: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        print(f"log lines from the cut on: {log.since(mark)}")
        for line in log.lines[mark:]:
            if '"dialguard.decisions"' not in line and "gate unavailable, blocking call" not in line:
                print("   ", line.rstrip()[:300])
        if pgdata is not None:
            dsn = f"postgresql://postgres@/postgres?host={pgdata}"
        if dsn is not None:
            try:
                conn = await asyncpg.connect(dsn, timeout=5)
                stored = await conn.fetchval(
                    "SELECT count(*) FROM decisions WHERE reason = 'gate.unavailable'"
                )
                await conn.close()
                print(f"gate.unavailable decisions stored: {stored} of {blocked}")
            except (OSError, asyncpg.PostgresError) as exc:
                print(f"database not reachable afterwards: {exc}")
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
        await log.task


if __name__ == "__main__":
    asyncio.run(main())
