"""Lead-list scrub throughput: dialguard's Scrubber against a bare lookup loop, on one file, in one run.

- scrub:    ``Scrubber`` over ``Gate.check`` (parse, rules, the one fact query, policy; nothing stored),
            batches of 200 rows judged concurrently, every row written out with its verdict.
- baseline: the same file, batches and pool; per row one indexed DNC lookup and the row written out.

Peak memory (VmHWM) is printed after each pass: it must not grow with the file.

    .venv/bin/python bench/scrub.py [--rows 1000000]

Database: $DIALGUARD_TEST_DSN (a server; a scratch database is created and dropped), else the
embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from scratch import scratch_database

from dialguard.clock import fixed_clock
from dialguard.gate import Gate
from dialguard.rules.loader import load_rulebook
from dialguard.scrub import Scrubber
from dialguard.store.db import create_pool

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
BATCH = 200


def number(i: int) -> str:
    return f"+1212{2_000_000 + i % 8_000_000:07d}"


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def rows(path: Path) -> AsyncIterator[list[str]]:
    with path.open(newline="") as f:
        reader = csv.reader(f)
        while batch := list(itertools.islice(reader, 1000)):
            for row in batch:
                yield row


async def scrub(pool: asyncpg.Pool, path: Path, out: Path) -> int:
    gate = Gate(pool=pool, rulebook=load_rulebook(), clock=fixed_clock(NOW), default_region="US")
    with out.open("w", newline="") as f:
        writer = csv.writer(f)

        async def emit(row: list[str]) -> None:
            writer.writerow(row)

        summary = await Scrubber(gate=gate, campaign="bench", batch=BATCH).run(rows(path), emit)
    return summary.rows


async def baseline(pool: asyncpg.Pool, path: Path, out: Path) -> int:
    count = 0

    async def lookup(n: str) -> bool:
        async with pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT 1 FROM dnc_entries WHERE number = $1", n))

    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        source = rows(path)
        writer.writerow([*await anext(source), "listed"])
        batch: list[list[str]] = []
        async for row in source:
            batch.append(row)
            if len(batch) == BATCH:
                hits = await asyncio.gather(*(lookup(r[0]) for r in batch))
                writer.writerows([*r, str(h)] for r, h in zip(batch, hits, strict=True))
                count += len(batch)
                batch = []
        hits = await asyncio.gather(*(lookup(r[0]) for r in batch))
        writer.writerows([*r, str(h)] for r, h in zip(batch, hits, strict=True))
    return count + len(batch)


async def run(args: argparse.Namespace) -> None:
    async with scratch_database() as (dsn, tmp_dir):
        await _run(args, dsn, tmp_dir)


async def _run(args: argparse.Namespace, dsn: str, tmp_dir: Path) -> None:
    pool = None
    try:
        conn = await asyncpg.connect(dsn)
        await conn.execute("INSERT INTO campaigns (name, purpose) VALUES ('bench', 'informational')")
        listed = [(number(i), "internal", "bench") for i in range(0, args.rows, 10)]
        await conn.copy_records_to_table(
            "dnc_entries", records=listed, columns=["number", "list_name", "source"]
        )
        await conn.execute("ANALYZE")
        await conn.close()
        leads = tmp_dir / "leads.csv"
        with leads.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["number", "name", "state"])
            writer.writerows([number(i), f"Lead {i}", "NY"] for i in range(args.rows))
        pool = await create_pool(dsn, size=10)
        size_mb = leads.stat().st_size / 2**20
        print(f"scrub of {args.rows:,} rows ({size_mb:.0f} MB), batches of {BATCH}, pool of 10")
        figures = {}
        for label, func in (("baseline", baseline), ("scrub", scrub)):
            start = time.perf_counter()
            done = await func(pool, leads, tmp_dir / f"{label}.csv")
            figures[label] = done / (time.perf_counter() - start)
            print(
                f"{label:<9} {done:>10,} rows {figures[label]:>10,.0f} rows/s   peak RSS {peak_mb():,.0f} MB"
            )
        print(f"scrub / baseline: {figures['scrub'] / figures['baseline']:.2f}x the rate")
    finally:
        if pool is not None:
            await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="lead rows (default 1,000,000)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
