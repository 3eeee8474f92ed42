"""More cores: one `dialguard serve` against two on one port (agi.reuse_port), and the bare baseline, in
one run; with the CPU each check costs the gateways and PostgreSQL, the ceiling for more cores on paper.

Every server is its own process (the gateways are real ``dialguard serve``s: pools, metrics, sealer, live
feed) on one PostgreSQL with gate_latency's 100,000 DNC rows; the load is gate_latency's fake-Asterisk
generator, a process of its own started per batch (its CPU share of one core is printed). Each row's
sessions are split into interleaved rounds that visit the servers in turn, in a rotated order.

CPU per check, from /proc around each batch: the gateway processes (all threads) and the PostgreSQL
backends of the bench's database (the server must run on this host). Only one server is loaded at a time,
so the backends' CPU during a batch is that server's. PostgreSQL's own background processes (WAL
writer, checkpointer) are shared with anything else on the server and are not counted.

    DIALGUARD_TEST_DSN=postgresql://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/scaling.py [--sessions 2000] [--rounds 5] [--concurrency 200]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]

import asyncpg  # noqa: E402
from gate_latency import LOAD_CPU, load, percentile, seed, spawn  # noqa: E402
from procs import backend_pids, cpu_of, cpu_seconds, free_port, spent, start_serve, stop  # noqa: E402
from scratch import scratch_database  # noqa: E402


class Server(NamedTuple):
    port: int
    pids: list[int]  # the server's processes, whose CPU is its own


class Row(NamedTuple):
    p50: float
    p99: float
    p99_round: float
    rate: float
    server_cpu: float  # CPU seconds per check, the server's processes
    db_cpu: float  # CPU seconds per check, PostgreSQL's backends


async def start(dsn: str, data_dir: Path) -> tuple[dict[str, Server], list[subprocess.Popen[Any]]]:
    procs: list[subprocess.Popen[Any]] = []
    one_port, two_port = free_port(), free_port()
    one = start_serve(dsn, data_dir, "one", AGI_PORT=str(one_port), HTTP_PORT=str(free_port()))
    procs.append(one)
    twins = []
    for name in ("two-a", "two-b"):
        proc = start_serve(
            dsn, data_dir, name, AGI_PORT=str(two_port), AGI_REUSE_PORT="true", HTTP_PORT=str(free_port())
        )
        procs.append(proc)
        twins.append(proc)
    base, base_port = spawn("baseline", dsn, "packs")
    servers = {
        "gate, 1 process": Server(one_port, [one.pid]),
        "gate, 2 processes": Server(two_port, [p.pid for p in twins]),
        "baseline": Server(base_port, [base.pid]),
    }
    return servers, [*procs, base]


async def run(args: argparse.Namespace) -> None:
    async with scratch_database() as (dsn, tmp):
        await seed(dsn, "informational")
        servers, procs = await start(dsn, tmp)
        watch = await asyncpg.connect(dsn)
        try:
            await measure(args, servers, watch)
        finally:
            await watch.close()
            stop(procs)


async def measure(args: argparse.Namespace, servers: dict[str, Server], watch: asyncpg.Connection) -> None:
    for server in servers.values():  # warm-up: connections, prepared statements, caches
        await load(server.port, 400, 50, "bench")
    LOAD_CPU.clear()
    print(
        f"FastAGI check, {args.sessions} sessions per row in {args.rounds} interleaved rounds, "
        "shipped rule packs, campaign purpose informational, 100,000 DNC rows"
    )
    head = ("server", "N", "p50", "p99", "p99 rnd", "checks/s", "vs 1 proc", "vs base", "srv CPU", "pg CPU")
    print("{:<18} {:>4} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9}".format(*head))
    for n in args.concurrency:
        latencies: dict[str, list[float]] = {name: [] for name in servers}
        round_p99s: dict[str, list[float]] = {name: [] for name in servers}
        walls, server_cpu, db_cpu = (
            dict.fromkeys(servers, 0.0),
            dict.fromkeys(servers, 0.0),
            dict.fromkeys(servers, 0.0),
        )
        order = list(servers)
        for round_ in range(args.rounds):
            for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
                server = servers[name]
                before = sum(map(cpu_seconds, server.pids)), cpu_of(await backend_pids(watch))
                lat, wall = await load(server.port, args.sessions // args.rounds, n, "bench")
                server_cpu[name] += sum(map(cpu_seconds, server.pids)) - before[0]
                db_cpu[name] += spent(before[1], cpu_of(await backend_pids(watch)))
                latencies[name] += lat
                round_p99s[name].append(percentile(lat, 99))
                walls[name] += wall
        rows = {
            name: Row(
                statistics.median(lat),
                percentile(lat, 99),
                statistics.median(round_p99s[name]),
                len(lat) / walls[name],
                server_cpu[name] / len(lat),
                db_cpu[name] / len(lat),
            )
            for name, lat in latencies.items()
        }
        one, bare = rows["gate, 1 process"], rows["baseline"]
        for name, r in rows.items():
            print(
                f"{name:<18} {n:>4} {r.p50 * 1000:>7.1f}ms {r.p99 * 1000:>7.1f}ms "
                f"{r.p99_round * 1000:>7.1f}ms "
                f"{r.rate:>9.0f} {r.rate / one.rate:>8.2f}x {r.rate / bare.rate:>7.2f}x "
                f"{r.server_cpu * 1e6:>7.0f}us {r.db_cpu * 1e6:>7.0f}us"
            )
        print(f"{'':<18} {n:>4} load generator CPU: median {statistics.median(LOAD_CPU):.0%} of a core")
        LOAD_CPU.clear()
        # The one process's CPU per check is the best case; two on two busy cores pay for sharing them.
        on_paper("1-process", rows["gate, 1 process"])
        on_paper("2-process", rows["gate, 2 processes"])


def on_paper(label: str, r: Row) -> None:
    """The ceiling per core count from CPU per check: every core busy, nothing else on the host (Asterisk
    elsewhere), PostgreSQL's CPU per check unchanged by more concurrency, one process per gateway core."""
    gate, db = r.server_cpu, r.db_cpu
    print(
        f"on paper, from the {label} row: {gate * 1e6:.0f} us gate + {db * 1e6:.0f} us PostgreSQL "
        f"per check; one gate process tops out at {1 / gate:.0f} checks/s"
    )
    for cores in (2, 4, 8):
        same_host = cores / (gate + db)  # gateways and PostgreSQL share the cores
        processes = math.ceil(same_host * gate)
        print(
            f"  {cores} cores, PostgreSQL on them too: {same_host:>6.0f} checks/s with {processes} gate "
            f"processes; PostgreSQL elsewhere: {cores / gate:>6.0f} checks/s with {cores} "
            f"(it then needs {cores * db / gate:.1f} cores of its own)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=2000, help="sessions per row (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per row (default 5)")
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[200],
        help="concurrent sessions, comma-separated (default 200)",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
