"""National DNC lists at scale: import speed, size on disk, and the gate's check latency by list size.

For each size (default 10k, 10M, 100M) a registry file is generated on disk, imported as the live
version of ``us_national`` (COPY into a fresh partition, index, attach, swap), and then the gate's
check is timed with that list live: half the numbers on the list, half not, through ``Gate.check``
in this process. The first size is the baseline for the p99 ratio; all sizes run in one run.

    .venv/bin/python bench/dnc_import.py [--sizes 10k,10M,100M] [--checks 3000] [--concurrency 20]

Database: $DIALGUARD_TEST_DSN (a server; a scratch database is created and dropped), else the
embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

from scratch import scratch_database

from dialguard.clock import fixed_clock
from dialguard.dnc_files import FileFormat
from dialguard.gate import CheckRequest, Gate
from dialguard.rules.loader import load_rulebook
from dialguard.store.db import create_pool
from dialguard.store.registry import import_registry

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)


def nanp(i: int) -> int:
    """The i-th of 6.4 billion distinct valid ten-digit NANP numbers (area and exchange 200-999)."""
    return (200 + i % 800) * 10_000_000 + (200 + (i // 800) % 800) * 10_000 + i // 640_000


def write_registry(path: Path, size: int) -> None:
    with path.open("wb") as f:
        step = 1_000_000
        for start in range(0, size, step):
            f.write(b"".join(b"%d\n" % nanp(i) for i in range(start, min(size, start + step))))


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, 4 << 20):
            yield chunk


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


async def time_checks(gate: Gate, size: int, checks: int, concurrency: int) -> list[float]:
    listed = [nanp(random.randrange(size)) for _ in range(checks // 2)]
    unlisted = [nanp(size + random.randrange(1_000_000)) for _ in range(checks - len(listed))]
    numbers = [f"+1{n}" for n in listed + unlisted]
    random.shuffle(numbers)
    queue = iter(numbers)
    latencies: list[float] = []

    async def worker() -> None:
        for number in queue:
            start = time.perf_counter()
            result = await gate.check(CheckRequest(number, campaign="bench"))
            latencies.append(time.perf_counter() - start)
            if result.decision.reason == "gate.unavailable":
                raise RuntimeError(result.to_json())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def run(args: argparse.Namespace) -> None:
    async with scratch_database() as (dsn, tmp_dir):
        await _run(args, dsn, tmp_dir)


async def _run(args: argparse.Namespace, dsn: str, tmp_dir: Path) -> None:
    pool = None
    try:
        # One connection more than the checks use, held for the imports: dialguard's own pool, so the
        # store sees the connection it always gets (jsonb codec, UTC).
        pool = await create_pool(dsn, size=args.concurrency + 1)
        conn = await pool.acquire()
        await conn.execute("INSERT INTO campaigns (name, purpose) VALUES ('bench', 'informational')")
        gate = Gate(pool=pool, rulebook=load_rulebook(), clock=fixed_clock(NOW), default_region="US")
        await time_checks(gate, 1000, 200, args.concurrency)  # warm up: connections, statements
        print(f"us_national imports and gate checks ({args.checks} checks at N={args.concurrency} per size)")
        head = ("size", "gen s", "import s", "rows/s", "table", "index", "p50", "p99", "p99/first", "RSS MB")
        print("{:>12} {:>7} {:>9} {:>11} {:>9} {:>9} {:>8} {:>8} {:>10} {:>7}".format(*head))
        first_p99 = None
        for size in args.sizes:
            path = tmp_dir / f"registry-{size}.txt"
            t0 = time.perf_counter()
            await asyncio.to_thread(write_registry, path, size)
            generated = time.perf_counter() - t0
            report = await import_registry(
                conn, file_chunks(path), registry="us_national", fmt=FileFormat.US_REGISTRY,
                list_date=date(2026, 11, 20), now=NOW, actor="bench",
            )  # fmt: skip
            path.unlink()
            table = f"dnc_registry_numbers_v{report.version_id}"
            heap = await conn.fetchval("SELECT pg_relation_size($1::regclass)", table)
            index = await conn.fetchval("SELECT pg_indexes_size($1::regclass)", table)
            latencies = await time_checks(gate, size, args.checks, args.concurrency)
            ordered = sorted(latencies)
            p99 = ordered[int(0.99 * len(ordered)) - 1]
            first_p99 = first_p99 or p99
            rate = report.rows / report.seconds
            p50 = statistics.median(latencies)
            print(
                f"{size:>12,} {generated:>7.1f} {report.seconds:>9.1f} {rate:>11,.0f} "
                f"{heap / 2**20:>7.0f}MB {index / 2**20:>7.0f}MB {p50 * 1000:>6.2f}ms "
                f"{p99 * 1000:>6.2f}ms {p99 / first_p99:>9.2f}x {rss_mb():>7.0f}"
            )
        await pool.release(conn)
    finally:
        if pool is not None:
            await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=lambda s: [parse_size(x) for x in s.split(",")],
        default=[10_000, 10_000_000, 100_000_000],
        help="list sizes, comma-separated, k and M allowed (default 10k,10M,100M)",
    )
    parser.add_argument("--checks", type=int, default=3000, help="gate checks timed per size (default 3000)")
    parser.add_argument("--concurrency", type=int, default=20, help="concurrent checks (default 20)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
