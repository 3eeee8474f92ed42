"""A burst of FastAGI ``check`` sessions opened at once: listen-queue overflows and latency, by backlog.

A 600-call burst on a real Asterisk overflowed asyncio's default listen backlog (100) about 124 times:
each overflow drops a finished handshake, and that call waits for a SYN retransmit (1 s, then 3 s)
before its check even starts. This opens ``--burst`` sessions at once against the gate started with
each backlog in turn, and reports the kernel's ``ListenOverflows`` (``/proc/net/netstat``, TcpExt)
before and after each burst, and the sessions' p50/p99/max from connect to the end of the session.

The load generator (fake-Asterisk sessions, tests/fakes) runs in a process of its own; its CPU time is
reported. ``ListenOverflows`` counts the whole network namespace: other work on the machine adds to it.

    .venv/bin/python bench/burst.py [--burst 600] [--rounds 3] [--backlogs 100,1024]

Database: $DIALGUARD_TEST_DSN (a scratch database is created and dropped), else embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]

from gate_latency import NUMBERS, percentile, seed, spawn  # noqa: E402
from scratch import scratch_database  # noqa: E402
from tests.fakes.asterisk_agi import FakeAsterisk  # noqa: E402


def listen_overflows() -> int:
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split()[1:], values.split()[1:], strict=True))["ListenOverflows"])
    raise RuntimeError("no TcpExt line in /proc/net/netstat")


async def fire(port: int, burst: int) -> None:
    """The load generator (its own process): ``burst`` sessions at once; prints latencies as JSON."""
    asterisk = FakeAsterisk("127.0.0.1", port)

    async def one() -> float:
        start = time.perf_counter()
        run = await asterisk.agi("check", random.choice(NUMBERS), "bench", within=120)
        if "DIALGUARD_VERDICT" not in run.variables:
            raise RuntimeError(f"session ended without a verdict: {run.replies[-3:]}")
        return time.perf_counter() - start

    start = time.perf_counter()
    latencies = await asyncio.gather(*(one() for _ in range(burst)))
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"latencies": latencies, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime}))


def burst_once(port: int, burst: int) -> tuple[dict[str, float], int]:
    before = listen_overflows()
    out = subprocess.run(
        [sys.executable, __file__, "--fire", str(port), "--burst", str(burst)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    overflows = listen_overflows() - before
    return json.loads(out), overflows


async def run(args: argparse.Namespace) -> None:
    async with scratch_database() as (dsn, _):
        await seed(dsn, "informational")
        procs: list[subprocess.Popen[str]] = []
        try:
            ports = {}
            for backlog in args.backlogs:
                proc, port = spawn("gate", dsn, "packs", backlog=backlog)
                procs.append(proc)
                ports[backlog] = port
                burst_once(port, 100)  # warm up: connections, prepared statements, caches
            print(f"FastAGI check, bursts of {args.burst} sessions at once, {args.rounds} rounds per backlog")
            print(
                "{:>7} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}".format(
                    "backlog", "round", "overflows", "p50", "p99", "max", "load CPU"
                )
            )
            results: dict[int, list[tuple[list[float], int, float]]] = {b: [] for b in args.backlogs}
            for round_ in range(args.rounds):
                for backlog in args.backlogs[round_ % 2 :] + args.backlogs[: round_ % 2]:
                    figures, overflows = burst_once(ports[backlog], args.burst)
                    lat = figures["latencies"]
                    share = figures["cpu"] / figures["wall"]
                    results[backlog].append((lat, overflows, share))
                    print(
                        f"{backlog:>7} {round_:>5} {overflows:>9} {statistics.median(lat) * 1000:>7.0f}ms "
                        f"{percentile(lat, 99) * 1000:>7.0f}ms {max(lat) * 1000:>7.0f}ms {share:>8.0%}"
                    )
            print("all rounds:")
            for backlog, rows in results.items():
                lat = [x for r in rows for x in r[0]]
                print(
                    f"{backlog:>7} overflows {sum(r[1] for r in rows):>5}  "
                    f"p50 {statistics.median(lat) * 1000:.0f} ms  "
                    f"p99 {percentile(lat, 99) * 1000:.0f} ms  max {max(lat) * 1000:.0f} ms"
                )
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--burst", type=int, default=600, help="sessions opened at once (default 600)")
    parser.add_argument("--rounds", type=int, default=3, help="bursts per backlog, interleaved (default 3)")
    parser.add_argument(
        "--backlogs",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[100, 1024],
        help="listen backlogs to compare (default 100,1024: asyncio's default and ours)",
    )
    parser.add_argument("--fire", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fire:
        asyncio.run(fire(args.fire, args.burst))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
