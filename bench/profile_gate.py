"""Where a FastAGI check's CPU goes in the gateway's process: cProfile over a loaded gate.

The gate (the one `make bench` measures: AgiServer, the check route, the shipped rule packs) runs in this
process under cProfile; the load comes from bench/gate_latency.py's load generator in a process of its
own. Prints the gate process's CPU per check, and the functions with the most CPU of their own and
under them, per check.

    .venv/bin/python bench/profile_gate.py [--sessions 5000] [--concurrency 50] [--top 25]
                                           [--stages]   (no profiler: the wall time of each step instead)
                                           [--default-gc]   (without the gateway's collector settings)

Figures: docs/benchmarks.md ("Issue 15 — where the time goes").
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]

from clocks import inside_hours_clock  # noqa: E402
from gate_latency import load, seed  # noqa: E402
from scratch import scratch_database  # noqa: E402

from dialguard.app import settle_memory  # noqa: E402
from dialguard.asterisk.agi_routes import agi_routes  # noqa: E402
from dialguard.asterisk.agi_server import AgiServer, AgiSession  # noqa: E402
from dialguard.gate import Gate  # noqa: E402
from dialguard.loops import loop_factory  # noqa: E402
from dialguard.rules.loader import load_rulebook  # noqa: E402
from dialguard.store.db import create_pool  # noqa: E402

STEPS: dict[str, list[float]] = {}


def time_steps() -> None:
    """Wrap the steps of a check so that each records its wall time (the session from accept to close,
    the environment block, the whole Gate.check, the fact query, the insert and its commit, each reply)."""
    import dialguard.gate

    def wrap(owner: Any, name: str, step: str) -> None:
        inner = getattr(owner, name)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await inner(*args, **kwargs)
            finally:
                STEPS.setdefault(step, []).append(time.perf_counter() - start)

        setattr(owner, name, timed)

    wrap(AgiServer, "_serve", "session (accept to close)")
    wrap(AgiServer, "_open", "environment block")
    wrap(Gate, "check", "Gate.check")
    wrap(dialguard.gate, "read_facts", "fact query")
    wrap(Gate, "_insert", "insert + commit")
    wrap(AgiSession, "reply_to", "a command's reply")
    started: list[float] = []

    def collected(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            STEPS.setdefault(f"gc: generation {info['generation']}", []).append(
                time.perf_counter() - started[0]
            )

    gc.callbacks.append(collected)


async def profile(args: argparse.Namespace) -> None:
    if args.stages:
        time_steps()
    async with scratch_database() as (dsn, _):
        await seed(dsn, "informational")
        pool = await create_pool(dsn, size=10)
        rulebook = load_rulebook()
        gate = Gate(pool=pool, rulebook=rulebook, clock=inside_hours_clock(rulebook), default_region="US")
        server = AgiServer(routes=agi_routes(gate=gate), host="127.0.0.1", port=0)
        if not args.default_gc:
            settle_memory()  # as `dialguard serve` does before it listens
        await server.start()
        try:
            await load(server.port, 500, args.concurrency)  # warm: plans, pools, caches
            profiler = cProfile.Profile()
            STEPS.clear()
            cpu = time.process_time()
            if not args.stages:
                profiler.enable()
            latencies, wall = await load(server.port, args.sessions, args.concurrency)
            profiler.disable()
            cpu = time.process_time() - cpu
        finally:
            await server.close()
            await pool.close()
    print(
        f"{len(latencies)} checks at concurrency {args.concurrency}: {len(latencies) / wall:.0f} checks/s; "
        f"the gate process spent {cpu / len(latencies) * 1e6:.0f} µs of CPU per check "
        f"({cpu / wall:.0%} of a core{'' if args.stages else '; profiled, so slower than unprofiled'})"
    )
    if args.stages:
        print("\nwall time of each step, per check (p50 / mean; a wrapped step costs a few µs more):")
        for step, seconds in STEPS.items():
            if step.startswith("gc"):
                print(
                    f"  {sum(seconds) / len(latencies) * 1e6:7.1f} µs per check in {len(seconds)} "
                    f"collections (longest {max(seconds) * 1e3:.1f} ms)  {step}"
                )
                continue
            per = len(seconds) / len(latencies)
            print(
                f"  {statistics.median(seconds) * 1e6:7.0f} µs / {statistics.mean(seconds) * 1e6:7.0f} µs"
                f"  {per:.0f}x  {step}"
            )
        return
    stats = pstats.Stats(profiler)
    per_check = 1e6 / len(latencies)
    for key, title in (("tottime", "own time"), ("cumtime", "with what they call")):
        print(f"\nµs per check, by {title}:")
        column = 2 if key == "tottime" else 3
        rows = sorted(stats.stats.items(), key=lambda kv: kv[1][column], reverse=True)  # type: ignore[attr-defined]
        for (path, line, name), (_, calls, own, total, _) in rows[: args.top]:
            where = f"{Path(path).name}:{line}" if line else path
            spent = own if key == "tottime" else total
            print(f"  {spent * per_check:8.1f}  {calls / len(latencies):6.1f} calls  {name}  ({where})")


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--stages", action="store_true", help="time each step instead of profiling")
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="CPython's collector settings, not the gateway's (settle_memory)",
    )
    loops = ["uvloop", "asyncio"]
    parser.add_argument("--event-loop", choices=loops, default="uvloop", help="uvloop, as serve runs")
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=loop_factory(args.event_loop)) as runner:
        runner.run(profile(args))


if __name__ == "__main__":
    main()
