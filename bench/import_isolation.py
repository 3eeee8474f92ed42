"""Check latency while a national list is imported, swapped in and its old version retired (issue 10,
item 12), against the same checks with no admin work, in one run.

The pools are wired as ``dialguard serve`` wires them: the call path's (10 connections) for the checks,
``dialguard-admin`` (2) for the import. A live version of SIZE numbers is loaded first; then checks
arrive at a steady RATE (open loop, as calls do: latency counts from the moment a check was due, so a
stalled loop shows), half of them on the list, each stored as a decision, through: QUIET seconds with
no admin work, the retirements below, then ROUNDS imports of the next version (COPY, index, attach,
swap; then the old version retired by DETACH CONCURRENTLY and DROP), and after a checkpoint QUIET
seconds more with no admin work. Each event is followed by QUIET seconds counted as its aftermath (a
backlog of checks to drain, autovacuum); the baseline is the quiet windows at the start and the end.
Checks are grouped by what ran when they were due: nothing, an event, or the import's step, which a
sampler thread reads from pg_stat_activity every 5 ms.

The retirements, as the issue saw them: a transaction that read the whole live
list (a report, an export) stays open READ_HOLD seconds, and a retired version is dropped the old way
(a plain DROP of the partition: ACCESS EXCLUSIVE on the parent, queued behind the read, every check
queued behind it, until the 2 s lock_timeout) or the new way (DETACH CONCURRENTLY, then DROP); the
same read with no retirement is the control.

    .venv/bin/python bench/import_isolation.py [--size 10M] [--rate 200] [--quiet 10] [--rounds 2]
                                               [--read-hold 2.5] [--importer in-process|cli]
                                               [--set KEY=VALUE ...]

``in-process``: the import runs in the checks' own event loop, as an HTTP upload to ``serve`` does (fed
in 1 MiB chunks, as the API reads them). ``cli``: ``dialguard dnc import`` in a process of its own.
``--set``: a server setting for the scratch database, for controls (e.g. synchronous_commit=off).

Database: $DIALGUARD_TEST_DSN (a server; a scratch database is created and dropped), else the
embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
from dnc_import import nanp, parse_size, write_registry
from scratch import scratch_database

from dialguard.clock import fixed_clock
from dialguard.dnc_files import FileFormat
from dialguard.gate import CheckRequest, Gate
from dialguard.rules.loader import load_rulebook
from dialguard.store.db import create_pool
from dialguard.store.registry import BULK_TIMEOUT, DROP_LOCK_TIMEOUT, drop_retired, import_registry

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
LIST_DATE = date(2026, 11, 20)
# The import's steps, as its statements show in pg_stat_activity (no check runs any of these).
STEP_OF_QUERY = """
SELECT CASE WHEN query LIKE 'COPY %' THEN 'copy'
            WHEN query LIKE 'CREATE INDEX %' THEN 'index'
            WHEN query LIKE 'ANALYZE %' THEN 'analyze'
            WHEN query LIKE '%ATTACH PARTITION%' THEN 'attach'
            WHEN query = 'COMMIT' AND xact_start < clock_timestamp() - interval '1 s' THEN 'commit (swap)'
            WHEN query LIKE '%DETACH PARTITION%' THEN 'retire: detach'
            WHEN query LIKE 'DROP TABLE %' THEN 'retire: drop'
       END AS step
  FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()"""
RETIREMENTS = {  # how a retired copy of the live list goes, while a read of the whole live list runs
    "none": "the read alone",
    "old": "plain DROP (before)",
    "new": "DETACH CONCURRENTLY",
}
STEPS = ("setup", "copy", "index", "analyze", "attach", "commit (swap)", "retire: detach", "retire: drop")


@dataclass
class Check:
    due: float
    latency: float
    unavailable: bool


@dataclass
class Timeline:
    """What ran when (monotonic s): labelled windows, and each change of an import's step."""

    windows: list[tuple[float, float, str]] = field(default_factory=list)
    steps: list[tuple[float, str]] = field(default_factory=list)

    def window(self, due: float) -> str:
        """The label of the window ``due`` falls in ("quiet" if none); for an import, the step under way."""
        for began, ended, label in self.windows:
            if began <= due < ended:
                if label != "import":
                    return label
                seen = [step for at, step in self.steps if began <= at <= due]
                return seen[-1] if seen else "setup"
        return "quiet"


async def chunks(path: Path, size: int) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, size):
            yield chunk


def sample_steps(dsn: str, timeline: Timeline, done: threading.Event) -> None:
    """In a thread of its own, so that a busy event loop does not blur the steps: every 5 ms."""

    async def sample() -> None:
        conn = await asyncpg.connect(dsn)
        last = None
        try:
            while not done.is_set():
                steps = [r["step"] for r in await conn.fetch(STEP_OF_QUERY) if r["step"]]
                if steps and steps[0] != last:
                    last = steps[0]
                    timeline.steps.append((time.monotonic(), last))
                await asyncio.sleep(0.005)
        finally:
            await conn.close()

    asyncio.run(sample())


async def import_next(args: argparse.Namespace, dsn: str, admin: asyncpg.Pool, path: Path) -> None:
    if args.importer == "cli":
        env = {**os.environ, "DIALGUARD_DATABASE_DSN": dsn}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dialguard", "dnc", "import", str(path), "--list", "us_national",
            "--format", "us-registry", "--date", LIST_DATE.isoformat(), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"dialguard dnc import failed: {err.decode()[-2000:]}")
        return
    async with admin.acquire() as conn:
        await import_registry(
            conn, chunks(path, 1 << 20), registry="us_national", fmt=FileFormat.US_REGISTRY,
            list_date=LIST_DATE, now=NOW, actor="bench",
        )  # fmt: skip


async def retired_copy(admin: asyncpg.Pool) -> str:
    """A retired version as large as the live one: a copy of it, attached, not live."""
    async with admin.acquire() as conn:
        live = await conn.fetchval("SELECT live_version FROM dnc_registries")
        version = await conn.fetchval("SELECT nextval('dnc_registry_versions_id_seq')")
        table = f"dnc_registry_numbers_v{version}"
        await conn.execute(
            f"""CREATE TABLE {table} (version_id bigint NOT NULL DEFAULT {version}
                    CHECK (version_id = {version}), number bigint NOT NULL)"""
        )
        for sql in (
            f"INSERT INTO {table} (number) SELECT number FROM dnc_registry_numbers_v{live}",
            f"CREATE INDEX ON {table} (number)",
            f"ALTER TABLE dnc_registry_numbers ATTACH PARTITION {table} FOR VALUES IN ({version})",
        ):
            await conn.execute(sql, timeout=BULK_TIMEOUT)
    return table


async def settle(admin: asyncpg.Pool) -> None:
    """Before any check is timed: the vacuum autovacuum would run on the fresh tables, and a checkpoint,
    so that their writes do not land in the quiet windows."""
    async with admin.acquire() as conn:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'dnc_registry_numbers_v%'"
        )
        for (table,) in tables:
            await conn.execute(f"VACUUM (ANALYZE) {table}", timeout=BULK_TIMEOUT)
        await conn.execute("CHECKPOINT", timeout=BULK_TIMEOUT)


async def retire_under_a_read(dsn: str, admin: asyncpg.Pool, table: str, how: str, hold: float) -> None:
    """Retire ``table`` while a transaction that read the whole live list (a report, an export) is open
    for ``hold`` seconds."""
    reader = await asyncpg.connect(dsn)

    async def read() -> None:
        async with reader.transaction():
            live = await reader.fetchval("SELECT live_version FROM dnc_registries")
            await reader.fetchval(f"SELECT count(*) FROM dnc_registry_numbers WHERE version_id = {live}")
            await reader.execute(f"SELECT pg_sleep({hold})")

    try:
        reading = asyncio.create_task(read())
        async with admin.acquire() as conn:
            while not await conn.fetchval(  # noqa: ASYNC110 - the state is another connection's
                """SELECT count(*) > 0 FROM pg_locks
                    WHERE pid = $1 AND relation = 'dnc_registry_numbers'::regclass""",
                reader.get_server_pid(),
            ):
                await asyncio.sleep(0.001)
            if how == "old":  # what dialguard did before: DROP the partition, lock_timeout 2 s
                try:
                    async with conn.transaction():
                        await conn.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")
                        await conn.execute(f"DROP TABLE {table}")
                except asyncpg.LockNotAvailableError:
                    print(f"  (old way: DROP TABLE {table} gave up after {DROP_LOCK_TIMEOUT})")
            elif how == "new":
                await drop_retired(conn)
        await reading
    finally:
        await reader.close()


async def arrivals(gate: Gate, size: int, rate: float, stop: asyncio.Event, out: list[Check]) -> None:
    """Checks due every 1/rate seconds, half of them on the list, each in a task of its own."""

    async def one(due: float) -> None:
        listed = random.random() < 0.5
        n = nanp(random.randrange(size)) if listed else nanp(size + random.randrange(1_000_000))
        result = await gate.check(CheckRequest(f"+1{n}", campaign="bench"))
        unavailable = result.decision.reason == "gate.unavailable"
        out.append(Check(due, time.monotonic() - due, unavailable))

    due = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        while not stop.is_set():
            tg.create_task(one(due))
            due += 1 / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


async def run(args: argparse.Namespace) -> None:
    async with scratch_database() as (dsn, tmp_dir):
        path = tmp_dir / "registry.txt"
        t0 = time.perf_counter()
        await asyncio.to_thread(write_registry, path, args.size)
        print(f"generated {args.size:,} numbers in {time.perf_counter() - t0:.1f} s")
        if args.set:
            conn = await asyncpg.connect(dsn)
            name = await conn.fetchval("SELECT current_database()")
            for setting in args.set:
                key, _, value = setting.partition("=")
                await conn.execute(f"ALTER DATABASE \"{name}\" SET {key} = '{value}'")
            await conn.close()
        calls = await create_pool(dsn, size=10)
        admin = await create_pool(dsn, size=2, application_name="dialguard-admin")
        try:
            await _run(args, dsn, calls, admin, path)
        finally:
            await calls.close()
            await admin.close()


async def _run(
    args: argparse.Namespace, dsn: str, calls: asyncpg.Pool, admin: asyncpg.Pool, path: Path
) -> None:
    async with calls.acquire() as conn:
        await conn.execute("INSERT INTO campaigns (name, purpose) VALUES ('bench', 'informational')")
    t0 = time.perf_counter()
    async with admin.acquire() as conn:  # the live version that the first measured import replaces
        await import_registry(
            conn, chunks(path, 4 << 20), registry="us_national", fmt=FileFormat.US_REGISTRY,
            list_date=LIST_DATE, now=NOW, actor="bench",
        )  # fmt: skip
    print(f"first version live in {time.perf_counter() - t0:.1f} s")
    # Two retired versions as large as the live one, made before any check is timed (their writes
    # would otherwise fill the quiet windows): one to retire the old way, one the new.
    tables = {how: await retired_copy(admin) for how in ("old", "new")}
    await settle(admin)
    gate = Gate(pool=calls, rulebook=load_rulebook(), clock=fixed_clock(NOW), default_region="US")
    stop = asyncio.Event()
    warming = asyncio.create_task(arrivals(gate, args.size, args.rate, stop, []))
    await asyncio.sleep(2)  # connections, statements, rule caches
    stop.set()
    await warming

    checks: list[Check] = []
    timeline = Timeline()
    stop, sampled = asyncio.Event(), threading.Event()
    sampler = asyncio.create_task(asyncio.to_thread(sample_steps, dsn, timeline, sampled))

    async def then_quiet(label: str, began: float) -> None:
        """The event's window, then the quiet seconds after it: its aftermath (a backlog of checks to
        drain, a checkpoint) counts against it, not against the quiet baseline."""
        ended = time.monotonic()
        timeline.windows.append((began, ended, label))
        await asyncio.sleep(args.quiet)
        timeline.windows.append((ended, time.monotonic(), f"{label}: after"))

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(arrivals(gate, args.size, args.rate, stop, checks))
            await asyncio.sleep(args.quiet)  # baseline, first half
            for how, label in RETIREMENTS.items():  # each retires a copy of the live list under a read
                began = time.monotonic()
                await retire_under_a_read(dsn, admin, tables.get(how, ""), how, args.read_hold)
                await then_quiet(label, began)
            for _ in range(args.rounds):
                began = time.monotonic()
                await import_next(args, dsn, admin, path)
                await then_quiet("import", began)
            began = time.monotonic()
            async with admin.acquire() as conn:
                await conn.execute("CHECKPOINT", timeout=BULK_TIMEOUT)
            timeline.windows.append((began, time.monotonic(), "settling"))
            await asyncio.sleep(args.quiet)  # baseline, second half
            stop.set()
    finally:
        sampled.set()
        await sampler
    report(args, timeline, checks)


def report(args: argparse.Namespace, timeline: Timeline, checks: list[Check]) -> None:
    windows: dict[str, list[Check]] = {}
    for c in checks:
        windows.setdefault(timeline.window(c.due), []).append(c)
    quiet = windows.pop("quiet", [])
    base = pct([c.latency for c in quiet], 0.99)
    steps = [(f"  {step}", windows.get(step, [])) for step in STEPS]
    took = ", ".join(f"{end - began:.1f} s" for began, end, label in timeline.windows if label == "import")
    print(
        f"\n{args.rounds} imports of {args.size:,} numbers ({args.importer}) took {took}; checks due at "
        f"{args.rate:g}/s; {args.quiet:g} s of quiet after each event, and at the start and the end"
    )
    head = ("checks due", "checks", "p50", "p99", "max", "p99 vs quiet", "unavailable")
    print("{:<34} {:>7} {:>9} {:>9} {:>9} {:>13} {:>11}".format(*head))
    rows = [
        ("with no admin work", quiet),
        ("during an import, swap, retirement", [c for _, cs in steps for c in cs]),
        *steps,
        (f"in the {args.quiet:g} s after an import", windows.get("import: after", [])),
        (f"retiring, a read of the list open {args.read_hold:g} s:", []),
    ]
    for label in RETIREMENTS.values():
        rows.append((f"  {label}", windows.get(label, [])))
        rows.append(("    and after", windows.get(f"{label}: after", [])))
    for name, cs in rows:
        if not cs:
            print(f"{name:<34} {'-' if name.startswith(' ') else ''}")
            continue
        lat = [c.latency for c in cs]
        print(
            f"{name:<34} {len(cs):>7} {pct(lat, 0.5) * 1e3:>7.2f}ms {pct(lat, 0.99) * 1e3:>7.2f}ms "
            f"{max(lat) * 1e3:>7.2f}ms {pct(lat, 0.99) / base:>12.2f}x {sum(c.unavailable for c in cs):>11}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=parse_size, default=10_000_000, help="numbers per version (10M)")
    parser.add_argument("--rate", type=float, default=200, help="checks per second (default 200)")
    parser.add_argument("--quiet", type=float, default=10, help="seconds with no admin work before and after")
    parser.add_argument("--rounds", type=int, default=2, help="imports, each replacing the last (default 2)")
    parser.add_argument(
        "--read-hold", type=float, default=2.5, help="seconds the read's transaction stays open (2.5)"
    )
    parser.add_argument("--importer", choices=["in-process", "cli"], default="in-process")
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="a server setting for the scratch database"
    )
    logging.basicConfig(level=logging.ERROR)  # blocked checks are counted, not logged one by one
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
