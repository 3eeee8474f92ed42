"""What storing many decisions in one statement would buy (issue 15's lever, not built): measured first.

N concurrent checks, each on a pooled connection: one indexed read (the fact query's stand-in), then
its decision stored with a durable commit, as the gate's path with no cap does:

- single:  the decision inserted on the same connection, one statement and one commit per decision
           (``insert_decision``, what the gate does today);
- batched: the connection released after the read; the decision queued to writer tasks that each take
           what is waiting (up to 200) and insert it in one ``unnest`` statement and one commit; the check
           waits for its batch's commit, so a verdict would still follow a durable decision.

Prints each mode's rate and this process's CPU per decision (the gateway's share), interleaved in rounds
in one run. The decisions are the gate's own hash and body.

    .venv/bin/python bench/insert_batching.py [--checks 3000] [--rounds 3] [--concurrency 1,50,200]

Figures: docs/benchmarks.md ("Issue 15 — 2026-11-27, 05:00–05:50 UTC: a durable baseline...").
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import asyncpg  # noqa: E402
from scratch import scratch_database  # noqa: E402

from dialguard.store.db import create_pool  # noqa: E402
from dialguard.store.decisions import insert_decision  # noqa: E402
from dialguard.store.sealing import decision_hash_and_body  # noqa: E402

DECIDED_AT = datetime(2030, 6, 3, 17, tzinfo=UTC)  # stored only; nothing here reads a clock
# About the size of a real decision's body (2.8 KB: six reasons, their details and sources).
BODY = {"reasons": [{"code": "x.ok", "passed": True, "detail": {"source": {"citation": "c" * 400}}}] * 6}
READ_SQL = "SELECT 1 FROM decisions WHERE call_id = $1"
BATCH_SQL = """
INSERT INTO decisions (call_id, number, campaign, verdict, reason, body, rules_version,
                       decided_at, recorded, writer, row_hash)
SELECT c, n, k, v, r, b::jsonb, rv, d, rec, w, h
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
              $8::timestamptz[], $9::bool[], $10::text[], $11::bytea[])
       AS t(c, n, k, v, r, b, rv, d, rec, w, h)
"""
COLUMNS = ("call_id", "number", "campaign", "verdict", "reason", "body", "rules_version", "decided_at")
COLUMNS += ("recorded", "writer")
MAX_BATCH = 200


def decision(i: int) -> dict[str, Any]:
    return {
        "call_id": uuid.uuid4(), "number": f"+1212555{i % 10_000:04d}", "campaign": "bench",
        "purpose": "informational", "verdict": "ALLOW", "reason": "allowed", "body": BODY,
        "rules_version": "bench", "decided_at": DECIDED_AT, "recorded": False, "writer": "bench",
    }  # fmt: skip


async def single(pool: asyncpg.Pool, checks: int, concurrency: int) -> float:
    """The checks; returns the mean batch size (1 here)."""
    numbers = iter(range(checks))

    async def check() -> None:
        for i in numbers:
            async with pool.acquire() as conn:
                await conn.fetchval(READ_SQL, uuid.uuid4())
                await insert_decision(conn, **decision(i))

    await asyncio.gather(*(check() for _ in range(concurrency)))
    return 1.0


async def batched(pool: asyncpg.Pool, checks: int, concurrency: int, writers: int = 4) -> float:
    waiting: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
    wake = asyncio.Event()
    sizes: list[int] = []

    async def writer() -> None:
        while True:
            while not waiting:
                wake.clear()
                await wake.wait()
            batch = waiting[:MAX_BATCH]
            del waiting[:MAX_BATCH]
            columns: list[list[Any]] = [[] for _ in range(len(COLUMNS) + 1)]
            for row, _ in batch:
                digest, body = decision_hash_and_body(row)  # the body as the text its hash encoded
                values = [*(body if c == "body" else row[c] for c in COLUMNS), digest]
                for column, value in zip(columns, values, strict=True):
                    column.append(value)
            async with pool.acquire() as conn:
                await conn.execute(BATCH_SQL, *columns)
            sizes.append(len(batch))
            for _, stored in batch:
                stored.set_result(None)

    tasks = [asyncio.create_task(writer()) for _ in range(writers)]
    numbers = iter(range(checks))

    async def check() -> None:
        for i in numbers:
            async with pool.acquire() as conn:
                await conn.fetchval(READ_SQL, uuid.uuid4())
            stored = asyncio.get_running_loop().create_future()
            waiting.append((decision(i), stored))
            wake.set()
            await stored

    await asyncio.gather(*(check() for _ in range(concurrency)))
    for task in tasks:
        task.cancel()
    return statistics.mean(sizes)


async def run(args: argparse.Namespace) -> None:
    async with scratch_database() as (dsn, _):
        pool = await create_pool(dsn, size=10)
        figures: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
        modes = {"single": single, "batched": batched}
        for _ in range(args.rounds):
            for name, mode in modes.items():
                for n in args.concurrency:
                    checks = args.checks if n > 1 else args.checks // 5
                    wall, cpu = time.perf_counter(), time.process_time()
                    batch = await mode(pool, checks, n)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    figures.setdefault((name, n), []).append((checks / wall, cpu / checks, batch))
        await pool.close()
    print(f"medians of {args.rounds} rounds, modes alternated")
    print(f"{'mode':<8} {'N':>4} {'checks/s':>9} {'CPU/check':>10} {'batch':>6}")
    for n in args.concurrency:
        for name in modes:
            runs = figures[(name, n)]
            rate, cpu, batch = (statistics.median(r[k] for r in runs) for k in range(3))
            print(f"{name:<8} {n:>4} {rate:>9.0f} {cpu * 1e6:>8.0f}us {batch:>6.1f}")
        one, many = (figures[(name, n)] for name in modes)
        ratio = statistics.median(r[0] for r in many) / statistics.median(r[0] for r in one)
        print(f"{'':<8} {n:>4} batched vs single: rate {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checks", type=int, default=3000, help="checks per mode and round (default 3000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, modes alternated (default 3)")
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 50, 200],
        help="concurrent checks, comma-separated (default 1,50,200)",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
