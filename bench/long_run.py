"""A long run through FastAGI: 100,000 checks at fixed concurrency into one real `dialguard serve`, the
attempts table growing as it would in a day's dialling, printed per block of 10,000 checks: rate, p50,
p99, the gateway's resident memory (VmRSS), its CPU and PostgreSQL's backends' CPU per check, and the
attempts row count. Goal (issue 15): the last block's rate within noise of the first (no plan gone
bad as the table grows) and a flat RSS.

The shipped rule packs; one debt-collection campaign, so Reg F's cap (7 calls in 7 days per campaign)
counts every call: each allowed call is an attempt, read back by every later check of its number.
Numbers are drawn at random from 15,000 New York numbers (one in ten on the company's list), so a
number gets some 6-7 calls in 100,000 and a share of the later checks meet the cap. New York's calling
hours (8:00-21:00 for debt collection) apply: run it between 13:00 and 02:00 UTC, or every call is
blocked on hours and attempts stay empty (the ALLOW share per block shows it).

The load generator is a process of its own per block (its CPU share of a core is printed).

    DIALGUARD_TEST_DSN=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/long_run.py [--checks 100000] [--block 10000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]

import asyncpg  # noqa: E402
from procs import backend_pids, cpu_of, cpu_seconds, free_port, rss_bytes, spent, start_serve, stop  # noqa: E402
from scratch import scratch_database  # noqa: E402
from tests.fakes.asterisk_agi import FakeAsterisk  # noqa: E402

NUMBERS = [f"+1212{n:07d}" for n in range(5_550_000, 5_565_000)]
DNC_ROWS = 100_000
CAMPAIGN = "longrun"


async def generate(port: int, checks: int, concurrency: int) -> None:
    """The load generator, in a process of its own: prints latencies, verdicts, wall and CPU as JSON."""
    asterisk = FakeAsterisk("127.0.0.1", port)
    latencies: list[float] = []
    allowed = 0
    queue = iter(range(checks))

    async def worker() -> None:
        nonlocal allowed
        for _ in queue:
            start = time.perf_counter()
            run = await asterisk.agi("check", random.choice(NUMBERS), CAMPAIGN)
            latencies.append(time.perf_counter() - start)
            verdict = run.variables.get("DIALGUARD_VERDICT")
            if verdict is None:
                raise RuntimeError(f"session ended without a verdict: {run.replies[-3:]}")
            allowed += verdict == "ALLOW"

    cpu, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    out = {"latencies": latencies, "allowed": allowed, "wall": wall, "cpu": time.process_time() - cpu}
    print(json.dumps(out))


async def block(port: int, checks: int, concurrency: int) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--generate", str(port), str(checks), str(concurrency),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the load generator failed ({proc.returncode})")
    figures: dict[str, object] = json.loads(out)
    return figures


async def seed(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO campaigns (name, purpose) VALUES ($1, 'debt_collection')", CAMPAIGN)
        listed = {f"+1{random.randrange(2012000000, 9899999999)}" for _ in range(DNC_ROWS)}
        listed |= set(NUMBERS[::10])
        await conn.copy_records_to_table(
            "dnc_entries",
            records=[(n, "internal", "bench") for n in sorted(listed)],
            columns=["number", "list_name", "source"],
        )
        await conn.execute("ANALYZE")  # autovacuum stays on, as on a server left to its defaults
    finally:
        await conn.close()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run(args: argparse.Namespace) -> None:
    async with scratch_database() as (dsn, tmp):
        await seed(dsn)
        port = free_port()
        gate = start_serve(dsn, tmp, "long-run", AGI_PORT=str(port), HTTP_PORT=str(free_port()))
        watch = await asyncpg.connect(dsn)
        try:
            await measure(args, port, gate.pid, watch)
        finally:
            await watch.close()
            stop([gate])


async def measure(args: argparse.Namespace, port: int, pid: int, watch: asyncpg.Connection) -> None:
    print(
        f"{args.checks:,} FastAGI checks in blocks of {args.block:,}, {args.concurrency} at a time, "
        f"{len(NUMBERS):,} numbers, campaign purpose debt_collection (Reg F: 7 in 7 days), "
        f"gateway RSS at start {rss_bytes(pid) / 2**20:.1f} MiB"
    )
    head = ("checks", "checks/s", "p50", "p99", "ALLOW", "RSS", "gate CPU", "pg CPU", "attempts", "gen CPU")
    print("{:>8} {:>9} {:>8} {:>8} {:>6} {:>9} {:>9} {:>8} {:>9} {:>8}".format(*head))
    done = 0
    rates: list[float] = []
    while done < args.checks:
        n = min(args.block, args.checks - done)
        gate_before, pg_before = cpu_seconds(pid), cpu_of(await backend_pids(watch))
        figures = await block(port, n, args.concurrency)
        gate_cpu = (cpu_seconds(pid) - gate_before) / n
        pg_cpu = spent(pg_before, cpu_of(await backend_pids(watch))) / n
        done += n
        latencies: list[float] = figures["latencies"]  # type: ignore[assignment]
        wall: float = figures["wall"]  # type: ignore[assignment]
        rates.append(n / wall)
        attempts = await watch.fetchval("SELECT count(*) FROM attempts")
        print(
            f"{done:>8,} {n / wall:>9.0f} {statistics.median(latencies) * 1000:>6.1f}ms "
            f"{percentile(latencies, 99) * 1000:>6.1f}ms {figures['allowed'] / n:>6.0%} "  # type: ignore[operator]
            f"{rss_bytes(pid) / 2**20:>5.1f} MiB {gate_cpu * 1e6:>7.0f}us {pg_cpu * 1e6:>6.0f}us "
            f"{attempts:>9,} {figures['cpu'] / wall:>8.0%}"  # type: ignore[operator]
        )
    print(f"last block's rate / first block's: {rates[-1] / rates[0]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checks", type=int, default=100_000, help="checks in all (default 100,000)")
    parser.add_argument("--block", type=int, default=10_000, help="checks per printed block (default 10,000)")
    parser.add_argument("--concurrency", type=int, default=50, help="sessions at once (default 50)")
    parser.add_argument("--generate", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        asyncio.run(generate(*args.generate))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
