"""GET /v1/decisions over a large decision log: the real route against a bare keyset query, in one run.

A scratch database gets ``--rows`` decisions (default 10 million) of realistic shape: twenty
campaigns, 70 % allowed, the blocks spread over five reasons (the rarest 1 %), a million numbers, four
decisions a second over a month, each body a full decision JSON of six reasons (~1 kB). They are made
by PostgreSQL itself (generate_series, two sessions, the table UNLOGGED and its indexes built
afterwards: a scratch table, so WAL would only slow the load); the indexes of migration 0007 are
built last and timed on their own.

- route: ``dialguard serve`` in its own process (the real HTTP route: token check, the admin pool,
         the keyset read, the page joined as JSON text), asked by one aiohttp client, one request at a
         time, keep-alive.
- bare:  the same keyset read on a plain asyncpg connection in this process: ``SELECT id, decided_at,
         body::text ... ORDER BY decided_at DESC, id DESC LIMIT n+1``, the rows fetched, nothing else.

Each scenario is read on its first page and on a deep one (the cursor after about half the log), in
interleaved rounds that visit route and bare in turn. A last row times the alternative the route does
not take for ``reason``: any failed code (``body->'reasons' @> ...``) read along the time index.

    .venv/bin/python bench/decisions_page.py [--rows 10000000] [--requests 200] [--rounds 4]

Database: $DIALGUARD_TEST_DSN (a server; a scratch database is created and dropped), else the
embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
from scratch import scratch_database  # noqa: E402

from dialguard.store.db import create_pool  # noqa: E402
from dialguard.store.decision_log import Cursor  # noqa: E402
from dialguard.store.tokens import Role, create_token  # noqa: E402

START = datetime(2026, 10, 24, tzinfo=UTC)  # a month before NOW, four decisions a second
BENCH_NUMBER = "+12125000042"  # one of the million numbers; it has about ten decisions

# Reason buckets of 100: 70 allowed, then the blocks' first failed code.
REASON = """CASE WHEN b < 70 THEN 'ok' WHEN b < 80 THEN 'hours.outside_window'
                 WHEN b < 90 THEN 'dnc.internal' WHEN b < 96 THEN 'consent.missing'
                 WHEN b < 99 THEN 'frequency.cap' ELSE 'roaming.abroad' END"""

LOAD = f"""
WITH g AS (
    SELECT i, gen_random_uuid() AS call_id,
           '+1212' || (5000000 + abs(hashint8(i * 17 + 3)::bigint) % 1000000)::text AS number,
           'c' || lpad((abs(hashint8(i)::bigint) % 20)::text, 2, '0') AS campaign,
           $3::timestamptz + (i / 4) * interval '1 second' AS decided_at,
           abs(hashint8(i * 31 + 7)::bigint) % 100 AS b
      FROM generate_series($1::bigint, $2::bigint) AS i
), r AS (SELECT *, {REASON} AS reason FROM g)
INSERT INTO decisions (call_id, number, campaign, verdict, reason, body, rules_version, decided_at,
                       recorded, writer, row_hash, inserted_at)
SELECT call_id, number, campaign, CASE WHEN reason = 'ok' THEN 'ALLOW' ELSE 'BLOCK' END, reason,
       jsonb_build_object(
           'call_id', call_id, 'number', number, 'campaign', campaign,
           'verdict', CASE WHEN reason = 'ok' THEN 'ALLOW' ELSE 'BLOCK' END, 'reason', reason,
           'reasons', jsonb_build_array(
               jsonb_build_object('code', 'number.ok', 'passed', true,
                                  'detail', jsonb_build_object('e164', number, 'region', 'US', 'line_type', 'FIXED_LINE_OR_MOBILE')),
               jsonb_build_object('code', CASE WHEN reason = 'dnc.internal' THEN 'dnc.internal' ELSE 'dnc.clear' END,
                                  'passed', reason <> 'dnc.internal',
                                  'detail', jsonb_build_object('lists', jsonb_build_array('internal', 'us_national'),
                                                               'us_national_version', '2026-11-20')),
               jsonb_build_object('code', CASE WHEN reason = 'consent.missing' THEN 'consent.missing' ELSE 'consent.valid' END,
                                  'passed', reason <> 'consent.missing',
                                  'detail', jsonb_build_object('consent_id', i, 'source', 'web_form', 'granted_at', '2026-09-01T10:00:00+00:00')),
               jsonb_build_object('code', CASE WHEN reason = 'hours.outside_window' THEN 'hours.outside_window' ELSE 'hours.within_window' END,
                                  'passed', reason <> 'hours.outside_window',
                                  'detail', jsonb_build_object('local_times', jsonb_build_array('2026-11-23T11:00:00-05:00'),
                                                               'zones', jsonb_build_array('America/New_York'), 'window', '08:00-21:00')),
               jsonb_build_object('code', CASE WHEN reason = 'frequency.cap' THEN 'frequency.cap' ELSE 'frequency.ok' END,
                                  'passed', reason <> 'frequency.cap',
                                  'detail', jsonb_build_object('attempts', 1, 'max_calls', 3, 'period_hours', 24)),
               jsonb_build_object('code', CASE WHEN reason = 'roaming.abroad' THEN 'roaming.abroad' ELSE 'roaming.not_required' END,
                                  'passed', reason <> 'roaming.abroad',
                                  'detail', jsonb_build_object('provider', 'bench', 'age_seconds', 3600))),
           'next_callable_at', NULL, 'rules_version', 'bench0123456789abcdef', 'decided_at', decided_at,
           'recorded', true, 'channel', 'agi'),
       'bench0123456789abcdef', decided_at, true, 'bench', '\\x00', decided_at
  FROM r
"""  # noqa: E501 - SQL reads better whole

# Migration 0007's indexes, built after the load and timed apart from the rest.
OURS = {
    "decisions_decided_at_id": "(decided_at, id)",
    "decisions_campaign_decided_at": "(campaign, decided_at, id)",
    "decisions_reason_decided_at": "(reason, decided_at, id)",
}
OTHERS = {"decisions_number": "(number, decided_at)", "decisions_inserted_at": "(inserted_at, id)"}


class Scenario(NamedTuple):
    name: str
    query: dict[str, str]  # the route's query
    where: str  # the bare query's conditions (besides the cursor)
    args: tuple[object, ...]


SCENARIOS = [
    Scenario("no filter", {}, "", ()),
    Scenario("campaign (5 %)", {"campaign": "c07"}, "campaign = $1", ("c07",)),
    Scenario("verdict BLOCK (30 %)", {"verdict": "BLOCK"}, "verdict = $1", ("BLOCK",)),
    Scenario("reason (10 %)", {"reason": "dnc.internal"}, "reason = $1", ("dnc.internal",)),
    Scenario("reason (1 %)", {"reason": "roaming.abroad"}, "reason = $1", ("roaming.abroad",)),
    Scenario(
        "campaign + BLOCK",
        {"campaign": "c07", "verdict": "BLOCK"},
        "campaign = $1 AND verdict = $2",
        ("c07", "BLOCK"),
    ),
    Scenario("number (~10 rows)", {"number": BENCH_NUMBER}, "number = $1", (BENCH_NUMBER,)),
]
ANY_FAILED = Scenario(
    "any failed code (1 %), @> on body",
    {},
    """body->'reasons' @> '[{"code": "roaming.abroad", "passed": false}]'""",
    (),
)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(dsn: str, rows: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ALTER TABLE decisions SET UNLOGGED")
        for name in [*OURS, *OTHERS]:
            await conn.execute(f"DROP INDEX {name}")
        await conn.execute("ALTER TABLE decisions DROP CONSTRAINT decisions_pkey")
        await conn.execute("ALTER TABLE decisions DROP CONSTRAINT decisions_call_id_key")
    finally:
        await conn.close()
    started = time.perf_counter()
    parts = 2  # one INSERT per core

    async def part(k: int) -> None:
        c = await asyncpg.connect(dsn)
        try:
            step = 1_000_000
            for lo in range(k * step, rows, parts * step):
                await c.execute(LOAD, lo, min(lo + step, rows) - 1, START, timeout=3600)
        finally:
            await c.close()

    await asyncio.gather(*(part(k) for k in range(parts)))
    print(f"loaded {rows:,} decisions in {time.perf_counter() - started:.0f} s")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        started = time.perf_counter()
        await conn.execute("ALTER TABLE decisions ADD PRIMARY KEY (id)", timeout=3600)
        await conn.execute("ALTER TABLE decisions ADD UNIQUE (call_id)", timeout=3600)
        for name, columns in OTHERS.items():
            await conn.execute(f"CREATE INDEX {name} ON decisions {columns}", timeout=3600)
        print(f"rebuilt the older indexes in {time.perf_counter() - started:.0f} s")
        for name, columns in OURS.items():
            started = time.perf_counter()
            await conn.execute(f"CREATE INDEX {name} ON decisions {columns}", timeout=3600)
            print(f"  migration 0007's {name} {columns}: {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE decisions", timeout=3600)
        print(f"vacuum analyze: {time.perf_counter() - started:.0f} s")
        # The sealer of the gateway under test has nothing to do: every row counts as sealed already.
        await conn.execute(
            """INSERT INTO decision_checkpoints (from_at, to_at, row_count, digest)
               VALUES ('1970-01-01+00', now(), $1, '\\x00')""",
            rows,
        )
    finally:
        await conn.close()


async def start_gateway(dsn: str, tmp: Path) -> tuple[asyncio.subprocess.Process, str, asyncio.Task[None]]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "DIALGUARD_DATABASE_DSN": dsn,
        "DIALGUARD_HTTP_PORT": str(port),
        "DIALGUARD_AGI_PORT": str(free_port()),
        "DIALGUARD_CALLS_JOURNAL_PATH": str(tmp / "journal.jsonl"),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialguard", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    stderr = proc.stderr
    try:
        async with asyncio.timeout(60):
            while b"dialguard ready" not in (line := await stderr.readline()):
                if not line:
                    raise RuntimeError("the gateway exited before it was ready")
    except BaseException:
        proc.kill()
        await proc.wait()
        raise

    async def drain() -> None:  # a full stderr pipe would stop the gateway
        while await stderr.readline():
            pass

    return proc, f"http://127.0.0.1:{port}", asyncio.create_task(drain())


async def deep_cursor(conn: asyncpg.Connection, rows: int) -> Cursor:
    row = await conn.fetchrow(
        "SELECT decided_at, id FROM decisions ORDER BY decided_at DESC, id DESC OFFSET $1 LIMIT 1",
        rows // 2,
        timeout=600,
    )
    assert row is not None
    return Cursor(row["decided_at"], row["id"])


def bare_sql(s: Scenario, limit: int, deep: bool) -> str:
    conditions = [c for c in (s.where,) if c]
    n = len(s.args)
    if deep:
        conditions.append(f"(decided_at, id) < (${n + 1}, ${n + 2})")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"""SELECT id, decided_at, body::text FROM decisions {where}
               ORDER BY decided_at DESC, id DESC LIMIT {limit + 1}"""


async def plan_of(conn: asyncpg.Connection, sql: str, args: tuple[object, ...]) -> str:
    """The index the bare query walks (EXPLAIN's first index node)."""
    plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    import json

    def walk(node: dict[str, object]) -> str | None:
        if "Index Name" in node:
            return f"{node['Node Type']} {node['Index Name']}"
        for child in node.get("Plans", []):  # type: ignore[attr-defined]
            if (found := walk(child)) is not None:
                return found
        return None

    return walk(json.loads(plan)[0]["Plan"]) or "Seq Scan"


async def run(args: argparse.Namespace) -> None:
    async with scratch_database() as (dsn, tmp):
        await load(dsn, args.rows)
        setup = await create_pool(dsn, size=1)
        async with setup.acquire() as conn:
            token = await create_token(conn, name="bench", role=Role.SUPERVISOR)
        await setup.close()
        bare = await asyncpg.connect(dsn)
        proc, base, drain = await start_gateway(dsn, tmp)
        try:
            deep = await deep_cursor(bare, args.rows)
            await measure(args, bare, base, token, deep)
        finally:
            proc.terminate()
            await proc.wait()
            drain.cancel()
            await bare.close()


async def measure(
    args: argparse.Namespace, bare: asyncpg.Connection, base: str, token: str, deep: Cursor
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    print(f"\nrequests per cell {args.requests} in {args.rounds} interleaved rounds; deep = after "
          f"{args.rows // 2:,} rows (decided {deep.decided_at:%Y-%m-%d %H:%M})\n")  # fmt: skip
    print(
        "| scenario | page | limit | route p50 | route p99 | bare p50 | bare p99 | p50 ratio | p99 ratio "
        "| rows | bare query's index |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    async with aiohttp.ClientSession(headers=headers) as http:
        cells = [
            (s, d, 50) for s in SCENARIOS for d in (False, True) if not (d and s.name.startswith("number"))
        ]
        cells += [(SCENARIOS[0], False, 500), (SCENARIOS[0], True, 500)]
        for scenario, is_deep, limit in cells:
            query = {**scenario.query, "limit": str(limit)}
            if is_deep:
                query["cursor"] = deep.encode()
            sql = bare_sql(scenario, limit, is_deep)
            sql_args = (*scenario.args, *((deep.decided_at, deep.id) if is_deep else ()))
            route_t: list[float] = []
            bare_t: list[float] = []
            got = 0
            for _ in range(2):  # warm both
                async with http.get(f"{base}/v1/decisions", params=query) as r:
                    assert r.status == 200, await r.text()
                    got = len((await r.json())["decisions"])
                await bare.fetch(sql, *sql_args)
            per_round = max(1, args.requests // args.rounds)
            for _ in range(args.rounds):
                for _ in range(per_round):
                    t = time.perf_counter()
                    async with http.get(f"{base}/v1/decisions", params=query) as r:
                        await r.read()
                    route_t.append(time.perf_counter() - t)
                for _ in range(per_round):
                    t = time.perf_counter()
                    await bare.fetch(sql, *sql_args)
                    bare_t.append(time.perf_counter() - t)
            plan = await plan_of(bare, sql, sql_args)
            r50, r99 = percentile(route_t, 50) * 1000, percentile(route_t, 99) * 1000
            b50, b99 = percentile(bare_t, 50) * 1000, percentile(bare_t, 99) * 1000
            page = "deep" if is_deep else "first"
            print(
                f"| {scenario.name} | {page} | {limit} | {r50:.2f} ms | {r99:.2f} ms | {b50:.2f} ms "
                f"| {b99:.2f} ms | {r50 / b50:.2f}× | {r99 / b99:.2f}× | {got} | {plan} |",
                flush=True,
            )
        # What a "reason = any failed code" filter would cost: the body's reasons read row by row.
        for is_deep in (False, True):
            sql = bare_sql(ANY_FAILED, 50, is_deep)
            sql_args = (deep.decided_at, deep.id) if is_deep else ()
            times = []
            for _ in range(max(3, args.requests // 20)):
                t = time.perf_counter()
                found = await bare.fetch(sql, *sql_args, timeout=600)
                times.append(time.perf_counter() - t)
            b50, b99 = percentile(times, 50) * 1000, percentile(times, 99) * 1000
            plan = await plan_of(bare, sql, sql_args)
            print(
                f"| {ANY_FAILED.name} (not taken) | {'deep' if is_deep else 'first'} | 50 | - | - "
                f"| {b50:.2f} ms | {b99:.2f} ms | - | - | {min(len(found), 50)} | {plan} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=10_000_000, help="decisions in the log (default 10,000,000)"
    )
    parser.add_argument("--requests", type=int, default=200, help="requests per cell and side (default 200)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
