"""``POST /v1/checks`` over HTTP against a bare aiohttp handler, side by side in one run (issue 15).

Every server runs in its own process against the same PostgreSQL; the load comes from a load-generator
process of its own (aiohttp, keep-alive, ``--concurrency`` clients), started for each batch; its CPU share
(of one core) is printed per row.

- gateway:           dialguard's app as ``serve`` wires it for HTTP: the bearer-token check, the gate
                     (parse, rules, one fact query, policy, one INSERT of the decision), its event hub
                     and token cache (``http.token_cache_seconds``, default 5).
- gateway, no cache: the same with ``token_cache_seconds = 0``: the token looked up on every request,
                     on a connection of its own from the call path's pool (as before the cache).
- baseline:          a bare aiohttp handler: read the JSON body, one indexed asyncpg lookup, answer JSON.
                     What any HTTP check service must at least do.
- baseline+commit:   the same, and its answer stored as one row (a primary key, no other index) with a
                     durable commit before it answers: the least a service does that answers only once
                     its record is stored, as the gateway does.

Latency is per request; CPU/req is the server process's own CPU time (from /proc) per request, steadier
than the rate on a shared machine. Each row's requests are split into interleaved rounds that visit the
servers in turn (a shared, noisy machine: a drift falls on every server alike).

    .venv/bin/python bench/http_checks.py [--requests 3000] [--rounds 3] [--concurrency 50]

Database: $DIALGUARD_TEST_DSN (a server; a scratch database is created and dropped), else the
embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import asyncpg  # noqa: E402
from procs import cpu_seconds, percentile, run_generator, server_process  # noqa: E402
from scratch import ANSWERS_TABLE, scratch_database, store_answer  # noqa: E402

from dialguard.loops import loop_factory  # noqa: E402
from dialguard.store.db import create_pool  # noqa: E402

DNC_ROWS = 100_000
NUMBERS = [f"+1212{n:07d}" for n in range(5_550_000, 5_560_000)]


# ---------------------------------------------------------------- the servers (run as subprocesses)


async def serve_gateway(dsn: str, token_cache_seconds: float) -> None:
    import dataclasses

    from aiohttp import web
    from clocks import inside_hours_clock

    from dialguard.app import settle_memory
    from dialguard.config import HttpSettings, Settings
    from dialguard.events import EventHub
    from dialguard.gate import Gate
    from dialguard.rules.loader import load_rulebook
    from dialguard.web.app import create_app

    pool = await create_pool(dsn, size=10)
    admin_pool = await create_pool(dsn, size=4, application_name="dialguard-admin")
    rulebook = load_rulebook()
    clock = inside_hours_clock(rulebook)
    gate = Gate(pool=pool, rulebook=rulebook, clock=clock, default_region="US")
    admin_gate = Gate(pool=admin_pool, rulebook=rulebook, clock=clock, default_region="US")
    extra: dict[str, Any] = {}
    hub_kw: dict[str, Any] = {}
    cache = None
    # The code before the token cache has no such parameter: it runs as it was (the "before" figures).
    if "token_cache" in inspect.signature(create_app).parameters:
        from dialguard.web.token_cache import TokenCache

        cache = TokenCache(max_age=token_cache_seconds)
        extra["token_cache"] = cache
        hub_kw["watches"] = [cache.watch]
    hub = EventHub(dsn=dsn, **hub_kw)
    feed = asyncio.create_task(hub.run())
    await hub.wait_ready(10)
    settings = dataclasses.replace(Settings(), http=HttpSettings())
    app = create_app(
        settings=settings, pool=pool, gate=gate, admin_pool=admin_pool, admin_gate=admin_gate, events=hub,
        **extra,
    )  # fmt: skip
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    settle_memory()  # as `dialguard serve` does before it listens
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    if cache is not None:  # proof that the cache served (or, with 0 seconds, did not)
        kept = f"{cache.hits} hits, {cache.misses} misses"
        print(f"gateway, token cache {token_cache_seconds:g} s: {kept}", file=sys.stderr)
    feed.cancel()


async def serve_baseline(dsn: str, commit: bool = False) -> None:
    from aiohttp import web

    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)

    async def check(request: web.Request) -> web.Response:
        body = await request.json()
        async with pool.acquire() as conn:
            number = body["number"]
            hit = await conn.fetchval("SELECT 1 FROM dnc_entries WHERE number = $1", number) is not None
            if commit:
                await store_answer(conn, number, hit)
        return web.json_response({"verdict": "BLOCK" if hit else "ALLOW"})

    app = web.Application()
    app.router.add_post("/v1/checks", check)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


# ---------------------------------------------------------------- the load


async def generate(port: int, requests: int, concurrency: int, token: str) -> None:
    """The load generator, in a process of its own: prints latencies, wall time and its CPU as JSON."""
    import aiohttp

    latencies: list[float] = []
    queue = iter(range(requests))
    url = f"http://127.0.0.1:{port}/v1/checks"
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for _ in queue:
                body = {"number": random.choice(NUMBERS), "campaign": "bench"}
                start = time.perf_counter()
                async with session.post(url, json=body, headers=headers) as response:
                    answer = await response.json()
                latencies.append(time.perf_counter() - start)
                if response.status != 200 or "verdict" not in answer:
                    raise RuntimeError(f"no verdict: {response.status} {answer}")

        cpu = time.process_time()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    print(json.dumps({"latencies": latencies, "wall": wall, "cpu": time.process_time() - cpu}))


LOAD_CPU: list[float] = []  # the load generator's CPU share (of one core) in each load() call


async def load(port: int, requests: int, concurrency: int, token: str) -> tuple[list[float], float]:
    """Run the load generator's process against ``port``; (latencies, wall seconds)."""
    latencies, wall, share = await run_generator(__file__, str(port), str(requests), str(concurrency), token)
    LOAD_CPU.append(share)
    return latencies, wall


class Figures(NamedTuple):
    p50: float
    p99: float
    rate: float
    cpu: float  # the server process's CPU seconds per request (what a saved round trip saves there)


async def seed(dsn: str) -> str:
    """The bench's campaign, DNC rows and a dialer token; returns the token."""
    pool = await create_pool(dsn, size=1)  # its connections have the codecs the stores expect
    try:
        async with pool.acquire() as conn:
            return await _seed(conn)
    finally:
        await pool.close()


async def _seed(conn: Any) -> str:
    from dialguard.store.tokens import Role, create_token

    await conn.execute("INSERT INTO campaigns (name, purpose) VALUES ('bench', 'informational')")
    await conn.execute(ANSWERS_TABLE)
    listed = {f"+1{random.randrange(2012000000, 9899999999)}" for _ in range(DNC_ROWS)}
    listed |= set(NUMBERS[::10])  # one bench number in ten is on the list
    rows = [(n, "internal", "bench") for n in sorted(listed)]
    columns = ["number", "list_name", "source"]
    await conn.copy_records_to_table("dnc_entries", records=rows, columns=columns)
    for i in range(200):  # other gateways' and teams' tokens: the lookup is not on a one-row table
        await create_token(conn, name=f"other-{i}", role=Role.DIALER)
    token = await create_token(conn, name="bench", role=Role.DIALER)
    await conn.execute("ANALYZE")
    return token


def spawn(kind: str, dsn: str, token_cache_seconds: float = 5.0) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, __file__, "--serve", kind, "--dsn", dsn, "--cache", str(token_cache_seconds)]
    return server_process(kind, command)


async def run(args: argparse.Namespace) -> None:
    async with scratch_database() as (dsn, _):
        await _run(args, dsn)


async def _run(args: argparse.Namespace, dsn: str) -> None:
    procs: list[subprocess.Popen[str]] = []
    try:
        token = await seed(dsn)
        gateway, gateway_port = spawn("gateway", dsn, 5.0)
        nocache, nocache_port = spawn("gateway", dsn, 0.0)
        base, base_port = spawn("baseline", dsn)
        stored, stored_port = spawn("baseline_commit", dsn)
        procs += [gateway, nocache, base, stored]
        servers = {
            "gateway": gateway_port, "gateway, no cache": nocache_port, "baseline": base_port,
            "baseline+commit": stored_port,
        }  # fmt: skip
        pids = {"gateway": gateway.pid, "gateway, no cache": nocache.pid, "baseline": base.pid}
        pids["baseline+commit"] = stored.pid
        for port in servers.values():  # warm up: connections, prepared statements, caches
            await load(port, 200, 20, token)
        LOAD_CPU.clear()
        print(
            f"POST /v1/checks, {args.requests} requests per row in {args.rounds} interleaved rounds, "
            f"{DNC_ROWS:,} DNC rows, full rule packs"
        )
        header = ("server", "N", "p50", "p99", "checks/s", "CPU/req")
        header += ("p50 vs base", "p99 vs base", "rate vs base")
        print("{:<18} {:>4} {:>9} {:>9} {:>9} {:>9} {:>12} {:>12} {:>13}".format(*header))
        for n in args.concurrency:
            latencies: dict[str, list[float]] = {name: [] for name in servers}
            walls = dict.fromkeys(servers, 0.0)
            cpus = dict.fromkeys(servers, 0.0)
            order = list(servers)
            for round_ in range(args.rounds):
                for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
                    cpu = cpu_seconds(pids[name])
                    lat, wall = await load(servers[name], args.requests // args.rounds, n, token)
                    cpus[name] += cpu_seconds(pids[name]) - cpu
                    latencies[name] += lat
                    walls[name] += wall
            figures = {
                name: Figures(
                    statistics.median(lat), percentile(lat, 99), len(lat) / walls[name], cpus[name] / len(lat)
                )
                for name, lat in latencies.items()
            }
            bare = figures["baseline"]
            print(f"{'':<18} {n:>4} load generator CPU: median {statistics.median(LOAD_CPU):.0%} of a core")
            LOAD_CPU.clear()
            for name, f in figures.items():
                print(
                    f"{name:<18} {n:>4} {f.p50 * 1000:>7.2f}ms {f.p99 * 1000:>7.2f}ms {f.rate:>9.0f} "
                    f"{f.cpu * 1e6:>7.0f}us "
                    f"{f.p50 / bare.p50:>11.2f}x {f.p99 / bare.p99:>11.2f}x {f.rate / bare.rate:>12.2f}x"
                )
            on, off, kept = figures["gateway"], figures["gateway, no cache"], figures["baseline+commit"]
            print(
                f"{'':<18} {n:>4} gateway vs baseline+commit: p50 {on.p50 / kept.p50:.2f}x, "
                f"p99 {on.p99 / kept.p99:.2f}x, rate {on.rate / kept.rate:.2f}x, "
                f"CPU/req {on.cpu / kept.cpu:.2f}x"
            )
            print(
                f"{'':<18} {n:>4} cache vs none: p50 {on.p50 / off.p50:.2f}x, p99 {on.p99 / off.p99:.2f}x, "
                f"rate {on.rate / off.rate:.2f}x, server CPU per request {on.cpu / off.cpu:.2f}x"
            )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[50])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=float, default=5.0, help=argparse.SUPPRESS)
    parser.add_argument("--generate", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        port, requests, concurrency, token = args.generate
        asyncio.run(generate(int(port), int(requests), int(concurrency), token))
    elif args.serve == "gateway":
        with asyncio.Runner(loop_factory=loop_factory("uvloop")) as runner:  # serve's loop
            runner.run(serve_gateway(args.dsn, args.cache))
    elif args.serve == "baseline":
        asyncio.run(serve_baseline(args.dsn))
    elif args.serve == "baseline_commit":
        asyncio.run(serve_baseline(args.dsn, commit=True))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
