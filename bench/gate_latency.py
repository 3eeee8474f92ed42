"""FastAGI ``check`` latency: the real gate against a bare baseline, side by side in one run.

Every server runs in its own process against the same PostgreSQL; the load comes from fake-Asterisk
sessions (the one in tests/fakes, which speaks FastAGI as res_agi.c does) from a load-generator process
of its own, started for each batch; its CPU share (of one core) is printed per row.

- gate:     dialguard's AgiServer + check route: parse, rules, one fact query, policy, one INSERT
            of the decision and attempt, one EXEC MSet and the verdict's SET VARIABLE; on uvloop and
            with the collector settled, as `dialguard serve` runs.
- gate, 1 window: the same gate judging by a one-window rule table: the rule packs' own cost.
- baseline: a bare asyncio FastAGI server: read the environment, one indexed asyncpg lookup,
            one SET VARIABLE. What any FastAGI service must at least do.
- baseline+commit: the same, and its answer stored as one row (a primary key, no other index) with
            a durable commit before the SET VARIABLE: what a service must at least do that keeps a
            record of each answer and sets it only once stored, as the gate does.

Latency is measured per session, from connect to the server closing it. Figures are ratios within
one run: these machines are shared and noisy, so each row's sessions are split into interleaved rounds
that visit the servers in turn.

    .venv/bin/python bench/gate_latency.py [--sessions 2000] [--rounds 5] [--concurrency 1,50,200]
                                           [--rules packs|small]
                                           [--roaming]   (adds gates asking an HLR: warm cache, cold cache)
                                           [--also-without mset,reset,facts,uvloop]   (a lever undone)
                                           [--uvloop-baseline]   (the bare baseline on uvloop too)
                                           [--purpose debt_collection] [--stale-attempts 20000]

``--stale-attempts N`` sets issue 15's trap: attempts is analyzed while empty with autovacuum off for it,
the gates plan their statements during the warm-up, then N attempts of other numbers are inserted before
the measured rounds. ``gate -facts`` reads attempts as the fact query did before (inline, for every
purpose); ``--purpose`` is the bench campaign's (informational by default: no US cap counts it).

Database: $DIALGUARD_TEST_DSN (a server; a scratch database is created and dropped), else the
embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import asyncpg  # noqa: E402
from procs import percentile, run_generator, server_process  # noqa: E402
from scratch import ANSWERS_TABLE, scratch_database, store_answer  # noqa: E402
from tests.fakes.asterisk_agi import FakeAsterisk  # noqa: E402

from dialguard.loops import loop_factory  # noqa: E402
from dialguard.store.db import create_pool  # noqa: E402
from dialguard.store.migrate import migrate  # noqa: E402

DNC_ROWS = 100_000
# The attempts column of the fact query before issue 15: inline, read whenever any cap exists.
ATTEMPTS_BEFORE = """  (SELECT coalesce(jsonb_agg(jsonb_build_object(
            'at', at, 'campaign', campaign, 'purpose', purpose)), '[]')
     FROM attempts WHERE number = $1 AND $3::timestamptz IS NOT NULL AND at > $3) AS attempts,"""
NUMBERS = [f"+1212{n:07d}" for n in range(5_550_000, 5_560_000)]


# ---------------------------------------------------------------- the two servers (run as subprocesses)


async def serve_gate(
    dsn: str, rules: str, roaming: str = "off", backlog: int = 1024, without: frozenset[str] = frozenset()
) -> None:
    import aiohttp
    from clocks import inside_hours_clock
    from tests.fakes.hlr_server import API_KEY, MAPPING, FakeHlr
    from tests.fakes.rules import simple_rulebook

    from dialguard.app import settle_memory
    from dialguard.asterisk.agi_routes import agi_routes
    from dialguard.asterisk.agi_server import AgiServer
    from dialguard.gate import Gate
    from dialguard.hlr.providers import HttpProvider
    from dialguard.hlr.service import RoamingService
    from dialguard.rules.loader import load_rulebook

    if "reset" in without:  # lever 3 undone: asyncpg's reset query on every release
        from dialguard.store.db import PooledConnection

        PooledConnection.get_reset_query = asyncpg.Connection.get_reset_query  # type: ignore[method-assign]
    if "mset" in without:  # issue 15's lever 2 undone: one SET VARIABLE per variable, as before
        from dialguard.asterisk.agi_server import AgiSession

        async def one_by_one(self: AgiSession, variables: dict[str, str]) -> None:
            for name, value in variables.items():
                await self.set_variable(name, value)

        AgiSession.set_variables = one_by_one  # type: ignore[assignment,method-assign]
    if "facts" in without:  # issue 15's fact query undone: attempts inline, for every purpose
        import dialguard.gate
        from dialguard.store import facts

        before = re.sub(
            r"  -- Only for a campaign.*?END AS attempts,",
            lambda _: ATTEMPTS_BEFORE,
            facts._FACTS_SQL,
            flags=re.S,
        )
        before = before.replace("$7", "$5").replace("$8", "$6")
        assert before != facts._FACTS_SQL

        async def read_facts(conn: Any, *, number: str, campaign: str, attempts: Any, now: Any) -> Any:
            since = attempts.since if attempts else None
            row = await conn.fetchrow(
                before, number, campaign, since, now, int(number[1:]), facts.prefixes_of(number)
            )
            return facts._parse(row)

        dialguard.gate.read_facts = read_facts  # type: ignore[assignment]
    pool = await create_pool(dsn, size=10)
    rulebook = load_rulebook() if rules == "packs" else simple_rulebook()
    clock = inside_hours_clock(load_rulebook())  # the same instant for either rule table
    service = None
    if roaming != "off":
        # A vendor answering in 100 ms; warm: answers cached for 30 days (the cache is pre-filled),
        # cold: a TTL of zero, so every check asks the vendor.
        hlr = FakeHlr(delay=0.1)
        await hlr.start()
        session = aiohttp.ClientSession()
        provider = HttpProvider(
            session=session, url=hlr.url, mapping=MAPPING, auth_header="X-Api-Key", auth_value=API_KEY
        )
        ttl = 30 * 86400.0 if roaming == "warm" else 0.0  # the clock runs up to three weeks ahead
        service = RoamingService(pool=pool, provider=provider, clock=clock, ttl=ttl, concurrency=200)
    gate = Gate(pool=pool, rulebook=rulebook, clock=clock, default_region="US", roaming=service)
    server = AgiServer(routes=agi_routes(gate=gate), host="127.0.0.1", port=0, backlog=backlog)
    settle_memory()  # as `dialguard serve` does before it listens
    await server.start()
    print(server.port, flush=True)
    await asyncio.Event().wait()


async def serve_baseline(dsn: str, variables: int, commit: bool = False) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        env = {}
        while (line := await reader.readline()) not in (b"\n", b""):
            key, _, value = line.decode().rstrip("\n").partition(": ")
            env[key] = value
        number = env.get("agi_arg_1", "")
        async with pool.acquire() as conn:
            hit = await conn.fetchval("SELECT 1 FROM dnc_entries WHERE number = $1", number) is not None
            if commit:
                await store_answer(conn, number, hit)
        for i in range(variables - 1):  # the same number of round trips as the contract's variables
            writer.write(f'SET VARIABLE "DIALGUARD_V{i}" "x"\n'.encode())
            await writer.drain()
            await reader.readline()
        writer.write(f'SET VARIABLE "DIALGUARD_VERDICT" "{"BLOCK" if hit else "ALLOW"}"\n'.encode())
        await writer.drain()
        await reader.readline()
        writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0, backlog=1024)  # as the gate's
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


# ---------------------------------------------------------------- the load


async def generate(port: int, sessions: int, concurrency: int, campaign: str) -> None:
    """The load generator, in a process of its own: prints latencies, wall time and its CPU as JSON."""
    asterisk = FakeAsterisk("127.0.0.1", port)
    latencies: list[float] = []
    queue = iter(range(sessions))

    async def worker() -> None:
        for _ in queue:
            number = random.choice(NUMBERS)
            start = time.perf_counter()
            run = await asterisk.agi("check", number, campaign)
            latencies.append(time.perf_counter() - start)
            if "DIALGUARD_VERDICT" not in run.variables:
                raise RuntimeError(f"session ended without a verdict: {run.replies[-3:]}")

    cpu = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    print(json.dumps({"latencies": latencies, "wall": wall, "cpu": time.process_time() - cpu}))


LOAD_CPU: list[float] = []  # the load generator's CPU share (of one core) in each load() call


async def load(
    port: int, sessions: int, concurrency: int, campaign: str = "bench"
) -> tuple[list[float], float]:
    """Run the load generator's process against ``port``; (latencies, wall seconds)."""
    latencies, wall, share = await run_generator(
        __file__, str(port), str(sessions), str(concurrency), campaign
    )
    LOAD_CPU.append(share)
    return latencies, wall


class Figures(NamedTuple):
    p50: float
    p99: float
    p99_round: float  # the median of the rounds' p99s
    rate: float


def compare(figures: dict[str, Figures], ours: str, control: str) -> str:
    a, b = figures[ours], figures[control]
    rounds = a.p99_round / b.p99_round
    return f"p99 {a.p99 / b.p99:.2f}x (median round {rounds:.2f}x), rate {a.rate / b.rate:.2f}x"


async def seed(dsn: str, purpose: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await conn.execute("INSERT INTO campaigns (name, purpose) VALUES ('bench', $1)", purpose)
        await conn.execute(ANSWERS_TABLE)
        await conn.execute(
            "ALTER TABLE attempts SET (autovacuum_enabled = off)"
        )  # as on a server with it off
        # The same calls with an HLR look-up asked for by the campaign (roaming servers).
        await conn.execute(
            """INSERT INTO campaigns (name, purpose, settings)
               VALUES ('bench_hlr', 'informational', '{"roaming": true}')"""
        )
        await conn.executemany(
            "INSERT INTO hlr_cache (number, status, provider, fetched_at) VALUES ($1, 'home', 'fake', now())",
            [(n,) for n in NUMBERS],
        )
        listed = {f"+1{random.randrange(2012000000, 9899999999)}" for _ in range(DNC_ROWS)}
        listed |= set(NUMBERS[::10])  # one bench number in ten is on the list
        rows = [(n, "internal", "bench") for n in sorted(listed)]
        await conn.copy_records_to_table(
            "dnc_entries", records=rows, columns=["number", "list_name", "source"]
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def add_other_attempts(dsn: str, rows: int) -> None:
    """Attempts of numbers the bench never calls, inside every cap's period: the table grows under plans
    made while it was empty (seed's ANALYZE ran before any attempt)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """INSERT INTO attempts (number, campaign, purpose, call_id, at)
               SELECT '+1646555' || lpad((g % 5000)::text, 4, '0'), 'other', 'debt_collection',
                      gen_random_uuid(), now() - g * interval '1 second'
                 FROM generate_series(1, $1) g""",
            rows,
        )
    finally:
        await conn.close()


def spawn(
    kind: str, dsn: str, rules: str, roaming: str = "off", backlog: int = 1024, without: str = ""
) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, __file__, "--serve", kind, "--dsn", dsn, "--rules", rules, "--hlr", roaming]
    return server_process(kind, [*command, "--backlog", str(backlog), "--without-lever", without])


async def run(args: argparse.Namespace) -> None:
    async with scratch_database() as (dsn, _):
        await _run(args, dsn)


async def _run(args: argparse.Namespace, dsn: str) -> None:
    procs: list[subprocess.Popen[str]] = []
    try:
        await seed(dsn, args.purpose)
        gate, gate_port = spawn("gate", dsn, args.rules)
        base, base_port = spawn("baseline", dsn, args.rules)
        base7, base7_port = spawn("baseline7", dsn, args.rules)
        stored, stored_port = spawn("baseline_commit", dsn, args.rules)
        # The same gate with the one-window table, in the same run: what the rule packs cost.
        small, small_port = spawn("gate", dsn, "small")
        procs += [gate, base, base7, stored, small]
        servers = {
            "gate": (gate_port, "bench"),
            "gate, 1 window": (small_port, "bench"),
            "baseline": (base_port, "bench"),
            "baseline+7 SETs": (base7_port, "bench"),
            "baseline+commit": (stored_port, "bench"),
        }
        for lever in args.also_without:
            proc, port = spawn("gate", dsn, args.rules, without=lever)
            procs.append(proc)
            servers[f"gate -{lever}"] = (port, "bench")
        if args.uvloop_baseline:
            base_uv, base_uv_port = spawn("baseline_uvloop", dsn, args.rules)
            procs.append(base_uv)
            servers["baseline, uvloop"] = (base_uv_port, "bench")
        if args.roaming:
            warm, warm_port = spawn("gate", dsn, args.rules, "warm")
            cold, cold_port = spawn("gate", dsn, args.rules, "cold")
            procs += [warm, cold]
            servers["gate, HLR warm"] = (warm_port, "bench_hlr")
            servers["gate, HLR cold"] = (cold_port, "bench_hlr")
        for port, campaign in servers.values():
            # Warm up: connections, prepared statements, caches. Setting the trap, with a campaign no one
            # made: blocked, so no attempt is recorded and every gate plans while attempts is empty.
            await load(port, 200, 20, "unmade" if args.stale_attempts else campaign)
        if args.stale_attempts:
            await add_other_attempts(dsn, args.stale_attempts)
        LOAD_CPU.clear()
        print(
            f"FastAGI check, {args.sessions} sessions per row in {args.rounds} interleaved rounds, "
            f"{DNC_ROWS:,} DNC rows, rules: {args.rules}, campaign purpose: {args.purpose}, "
            f"{args.stale_attempts:,} attempts added after the plans were made"
        )
        header = ("server", "N", "p50", "p99", "p99 rnd", "checks/s", "p99 vs base", "rate vs base")
        print("{:<16} {:>4} {:>9} {:>9} {:>9} {:>9} {:>12} {:>13}".format(*header))
        for n in args.concurrency:
            # Interleaved rounds, each in a rotated order: a drift in the machine's load (shared, 2 cores)
            # falls on every server alike instead of on whichever ran during it.
            latencies: dict[str, list[float]] = {name: [] for name in servers}
            round_p99s: dict[str, list[float]] = {name: [] for name in servers}
            walls = dict.fromkeys(servers, 0.0)
            order = list(servers)
            for round_ in range(args.rounds):
                for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
                    port, campaign = servers[name]
                    lat, wall = await load(port, args.sessions // args.rounds, n, campaign)
                    latencies[name] += lat
                    round_p99s[name].append(percentile(lat, 99))
                    walls[name] += wall
            # p99 over all sessions, and the median of the rounds' p99s: one stall (a checkpoint's fsync,
            # another tenant) lands in one round and moves the first, not the second.
            figures = {
                name: Figures(
                    statistics.median(lat),
                    percentile(lat, 99),
                    statistics.median(round_p99s[name]),
                    len(lat) / walls[name],
                )
                for name, lat in latencies.items()
            }
            bare = figures["baseline"]
            print(f"{'':<16} {n:>4} load generator CPU: median {statistics.median(LOAD_CPU):.0%} of a core")
            LOAD_CPU.clear()
            for name, f in figures.items():
                print(
                    f"{name:<16} {n:>4} {f.p50 * 1000:>7.2f}ms {f.p99 * 1000:>7.2f}ms "
                    f"{f.p99_round * 1000:>7.2f}ms {f.rate:>9.0f} {f.p99 / bare.p99:>11.2f}x "
                    f"{f.rate / bare.rate:>12.2f}x"
                )
            for lever in args.also_without:
                print(f"{'':<16} {n:>4} gate vs gate -{lever}: {compare(figures, 'gate', f'gate -{lever}')}")
            if args.uvloop_baseline:
                against = compare(figures, "gate", "baseline, uvloop")
                print(f"{'':<16} {n:>4} gate vs baseline, uvloop: {against}")
            stored = figures["baseline+commit"]
            print(
                f"{'':<16} {n:>4} gate vs baseline+commit: p50 {figures['gate'].p50 / stored.p50:.2f}x, "
                f"{compare(figures, 'gate', 'baseline+commit')}"
            )
            rules_cost = compare(figures, "gate", "gate, 1 window")
            print(f"{'':<16} {n:>4} rules ({args.rules}) vs one window: {rules_cost}")
            if args.roaming:
                cold_rate = figures["gate, HLR cold"].rate / figures["gate"].rate
                print(
                    f"{'':<16} {n:>4} HLR warm vs off: {compare(figures, 'gate, HLR warm', 'gate')}; "
                    f"cold (100 ms vendor) rate {cold_rate:.2f}x"
                )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=2000, help="sessions per row (default 2000)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds the sessions are split into (default 5)"
    )
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 50, 200],
        help="concurrent sessions, comma-separated (default 1,50,200)",
    )
    parser.add_argument(
        "--rules", choices=["packs", "small"], default="packs", help="the shipped packs or a one-window table"
    )
    parser.add_argument(
        "--roaming",
        action="store_true",
        help="add gates asking an HLR: a warm cache, and a cold one (100 ms vendor)",
    )
    parser.add_argument(
        "--purpose",
        choices=["marketing", "informational", "debt_collection", "survey"],
        default="informational",
        help="the bench campaign's purpose (default informational)",
    )
    parser.add_argument(
        "--stale-attempts",
        type=int,
        default=0,
        help="attempts of other numbers added after the warm-up, under plans made while attempts was empty",
    )
    parser.add_argument(
        "--serve",
        choices=["gate", "baseline", "baseline7", "baseline_commit", "baseline_uvloop"],
        help=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--uvloop-baseline",
        action="store_true",
        help="add the bare baseline on uvloop too: what the event loop alone buys a FastAGI server",
    )
    parser.add_argument("--hlr", choices=["off", "warm", "cold"], default="off", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--backlog", type=int, default=1024, help=argparse.SUPPRESS)
    parser.add_argument("--without-lever", default="", help=argparse.SUPPRESS)
    parser.add_argument("--generate", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument(
        "--also-without",
        type=lambda s: [x for x in s.split(",") if x],
        default=[],
        help="add gates with one of issue 15's levers undone, each its own row: mset, reset, facts, uvloop",
    )
    args = parser.parse_args()
    if args.serve == "gate":
        without = frozenset(x for x in args.without_lever.split(",") if x)
        # On serve's event loop (gate.event_loop's default), or asyncio's own with that lever undone.
        factory = None if "uvloop" in without else loop_factory("uvloop")
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve_gate(args.dsn, args.rules, args.hlr, args.backlog, without))
    elif args.generate:
        port, sessions, concurrency, campaign = args.generate
        asyncio.run(generate(int(port), int(sessions), int(concurrency), campaign))
    elif args.serve == "baseline":
        asyncio.run(serve_baseline(args.dsn, 1))
    elif args.serve == "baseline_uvloop":
        with asyncio.Runner(loop_factory=loop_factory("uvloop")) as runner:
            runner.run(serve_baseline(args.dsn, 1))
    elif args.serve == "baseline7":
        asyncio.run(serve_baseline(args.dsn, 7))
    elif args.serve == "baseline_commit":
        asyncio.run(serve_baseline(args.dsn, 1, commit=True))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
