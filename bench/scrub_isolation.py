"""FastAGI check latency while a lead list streams through POST /v1/scrub (issue 14, item 7), against the
same checks with no scrub, in one run; and the scrub's rows/s, before and after the change.

Each gateway is ``dialguard serve`` (its CLI entry: logging and all) in a process of its own: FastAGI and
HTTP on one event loop, the call path's pool (10) and the admin pool (2), as deployed. They run side by
side on one PostgreSQL, each with some of issue 14's levers undone (monkeypatched at start):

- before:   slicing off (``Scrubber(slice_seconds=None)``: a batch of 200 rows parsed, judged and
            written in one go between two database waits) and no ``gc.freeze()`` at start: as it was.
- after:    as shipped: the scrub hands the loop back after every ``scrub.SLICE`` of CPU (slicing.py),
            and the start-up heap is frozen out of the collector's sight (a full collection ~1 ms).
- unsliced, unfrozen: one lever undone each (not run unless asked for).
- separate: a control. The "after" gateway takes the checks while ``dialguard scrub`` scrubs the same
            file in a process of its own: every CPU cycle of the scrub off the gateway's loop; what
            no in-process scheduling can beat on this machine.

Checks arrive open-loop at RATE a second (as calls do: latency counts from the moment a check was due,
so a stalled loop shows) from a load-generator process of its own: fake-Asterisk sessions
(tests/fakes/asterisk_agi.py) running ``check NUMBER bench``, one New York number in ten on the
internal list, each decision stored. A round, per mode: IDLE seconds of checks alone, then a scrub of
ROWS rows (POSTed as CSV by this process, its NDJSON read as it streams), then TAIL seconds more. The
rounds alternate the modes, so a drift in the machine's load falls on all of them. Checks are grouped
by when they were due: before the scrub (the idle baseline), during it, after it.

    .venv/bin/python bench/scrub_isolation.py [--rows 100000] [--rate 50] [--idle 10] [--tail 5]
                                              [--rounds 2] [--modes before,after,separate]
                                              [--slice SECONDS] [--dump FILE]

Database: $DIALGUARD_TEST_DSN (a server; a scratch database is created and dropped), else the
embedded PostgreSQL in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import random
import socket
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
from scratch import scratch_database  # noqa: E402
from tests.fakes.asterisk_agi import FakeAsterisk  # noqa: E402

from dialguard.scrub import SLICE  # noqa: E402
from dialguard.store.db import create_pool  # noqa: E402
from dialguard.store.tokens import Role, create_token  # noqa: E402

CHECK_NUMBERS = [f"+1212{n:07d}" for n in range(5_550_000, 5_560_000)]
ATTEMPTS = 100_000  # a month of earlier calls, so that the attempts table is no empty one
AT = "2026-11-23T16:00:00+00:00"  # the scrub's instant: 11:00 in New York, inside every window
# The gateways, by the levers of issue 14 (item 7) each one undoes.
LEVERS_UNDONE = {
    "before": {"slicing", "freeze"},
    "after": set(),
    "unsliced": {"slicing"},
    "unfrozen": {"freeze"},
}
# separate: the "after" gateway takes the checks; `dialguard scrub`, a process of its own, the list.
MODES = (*LEVERS_UNDONE, "separate")


def lead(i: int) -> str:
    return f"+1212{2_000_000 + i:07d}"


def leads_csv(rows: int) -> bytes:
    return ("number,name,state\n" + "".join(f"{lead(i)},Lead {i},NY\n" for i in range(rows))).encode()


# ---------------------------------------------------------------- the gateway (a process of its own)


def serve(variant: str, slice_seconds: float | None) -> int:
    """``dialguard serve``, configured by the environment, with the levers ``variant`` undoes;
    ``slice_seconds``: another slice than the shipped one."""
    undone = LEVERS_UNDONE[variant]
    if "slicing" in undone or slice_seconds is not None:
        from dialguard.scrub import Scrubber

        shipped = Scrubber.__init__
        chosen = None if "slicing" in undone else slice_seconds

        def patched(self: Scrubber, **kwargs: object) -> None:
            shipped(self, **{**kwargs, "slice_seconds": chosen})  # type: ignore[arg-type]

        Scrubber.__init__ = patched  # type: ignore[method-assign]
    if "freeze" in undone:
        gc.freeze = lambda: None
    from dialguard.cli import main

    return main(["serve"])


# ---------------------------------------------------------------- the load (a process of its own)


async def generate(port: int, rate: float) -> None:
    """Checks due every 1/rate s until stdin closes; prints [due, latency, verdict set] per check as JSON.
    Times are time.monotonic(): the same clock in every process of the machine."""
    asterisk = FakeAsterisk("127.0.0.1", port)
    checks: list[tuple[float, float, bool]] = []
    loop = asyncio.get_running_loop()
    stop = loop.run_in_executor(None, sys.stdin.buffer.read)  # EOF: the bench is done with us

    async def one(due: float) -> None:
        try:
            run = await asterisk.agi("check", random.choice(CHECK_NUMBERS), "bench", within=30)
            ok = run.variables.get("DIALGUARD_VERDICT") in ("ALLOW", "BLOCK")
        except (OSError, TimeoutError):
            ok = False
        checks.append((due, time.monotonic() - due, ok))

    due = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        while not stop.done():
            tg.create_task(one(due))
            due += 1 / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
    print(json.dumps(checks))


# ---------------------------------------------------------------- the bench


@dataclass
class Gateway:
    variant: str
    agi_port: int
    http_port: int
    proc: asyncio.subprocess.Process
    drain: asyncio.Task[None] | None = None


@dataclass
class Round:
    checks: list[tuple[float, float, bool]]
    began: float  # the scrub's POST
    ended: float  # its summary line read
    rows: int


@dataclass
class Tally:
    rounds: list[Round] = field(default_factory=list)

    def window(self, name: str) -> list[float]:
        out = []
        for r in self.rounds:
            for due, latency, _ in r.checks:
                where = "idle" if due < r.began else "scrub" if due < r.ended else "after"
                if where == name:
                    out.append(latency)
        return out

    def failed(self) -> int:
        return sum(not ok for r in self.rounds for _, _, ok in r.checks)

    def rows_per_second(self) -> float:
        return sum(r.rows for r in self.rounds) / sum(r.ended - r.began for r in self.rounds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def start_gateway(variant: str, dsn: str, tmp: Path, slice_seconds: float | None) -> Gateway:
    agi_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "DIALGUARD_DATABASE_DSN": dsn,
        "DIALGUARD_AGI_PORT": str(agi_port),
        "DIALGUARD_HTTP_PORT": str(http_port),
        "DIALGUARD_CALLS_JOURNAL_PATH": str(tmp / f"journal-{variant}.jsonl"),
        "DIALGUARD_GATE_WRITER": f"bench-{variant}",
    }
    chosen = [] if slice_seconds is None else ["--slice", str(slice_seconds)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", variant, *chosen, env=env, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    async with asyncio.timeout(60):
        while b"dialguard ready" not in (line := await proc.stderr.readline()):
            if not line:
                raise SystemExit(f"the {variant} gateway exited before it was ready")
    gateway = Gateway(variant, agi_port, http_port, proc)

    async def drain(stream: asyncio.StreamReader) -> None:  # its log: one line a decision
        while await stream.read(1 << 16):
            pass

    gateway.drain = asyncio.create_task(drain(proc.stderr))
    return gateway


async def scrub(http: aiohttp.ClientSession, gateway: Gateway, token: str, body: bytes) -> int:
    """POST the lead list; read the NDJSON as it comes; the rows the summary counts."""
    url = f"http://127.0.0.1:{gateway.http_port}/v1/scrub"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}
    lines, tail = 0, b""
    query = {"campaign": "bench", "at": AT}
    async with http.post(url, params=query, data=body, headers=headers) as response:
        if response.status != 200:
            raise SystemExit(f"scrub answered {response.status}: {await response.text()}")
        async for chunk in response.content.iter_chunked(1 << 16):
            lines += chunk.count(b"\n")
            tail = (tail + chunk)[-4096:]
    last = json.loads(tail.rstrip(b"\n").rsplit(b"\n", 1)[-1])
    if "summary" not in last:
        raise SystemExit(f"the scrub ended without its summary: {last}")
    rows: int = last["summary"]["rows"]
    assert lines == rows + 1, (lines, rows)
    return rows


async def scrub_by_cli(dsn: str, leads: Path, rows: int) -> int:
    """The same list through ``dialguard scrub`` in a process of its own (its start-up counted)."""
    env = {
        **os.environ,
        "DIALGUARD_DATABASE_DSN": dsn,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialguard", "scrub", str(leads), "-o", str(leads.with_suffix(".out.csv")),
        "--campaign", "bench", "--at", AT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    if proc.returncode != 0 or f"{rows:,} rows:" not in err.decode():
        raise SystemExit(f"dialguard scrub failed ({proc.returncode}): {err.decode()[-2000:]}")
    return rows


async def one_round(
    args: argparse.Namespace,
    http: aiohttp.ClientSession,
    gateway: Gateway,
    token: str,
    body: bytes,
    cli: tuple[str, Path] | None = None,
) -> Round:
    """Checks against ``gateway``; the scrub by it over HTTP, or by the CLI (``cli``: DSN and leads file)."""
    load = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--generate", str(gateway.agi_port), str(args.rate),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert load.stdin is not None
    try:
        await asyncio.sleep(args.idle)
        began = time.monotonic()
        rows = await (scrub(http, gateway, token, body) if cli is None else scrub_by_cli(*cli, args.rows))
        ended = time.monotonic()
        await asyncio.sleep(args.tail)
    finally:
        load.stdin.close()
    out, _ = await load.communicate()
    if load.returncode != 0:
        raise SystemExit(f"the load generator failed ({load.returncode})")
    checks = [tuple(c) for c in json.loads(out)]
    warm = checks[0][0] + 1.0  # the generator's first second: connections, statements, caches
    return Round([c for c in checks if c[0] >= warm], began, ended, rows)  # type: ignore[misc]


async def seed(dsn: str, rows: int) -> str:
    """A campaign, one number in ten (of the checks' and of the leads) on the internal list, a month of
    earlier attempts (other numbers); a token."""
    listed = [(n, "internal", "bench") for n in CHECK_NUMBERS[::10]]
    listed += [(lead(i), "internal", "bench") for i in range(0, rows, 10)]
    now = datetime.now(UTC)
    attempts = [
        (f"+1646{i:07d}", "bench", "informational", uuid.uuid4(), now - timedelta(seconds=i * 26))
        for i in range(ATTEMPTS)
    ]
    pool = await create_pool(dsn, size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO campaigns (name, purpose) VALUES ('bench', 'informational')")
            await conn.copy_records_to_table(
                "dnc_entries", records=listed, columns=["number", "list_name", "source"]
            )
            await conn.copy_records_to_table(
                "attempts", records=attempts, columns=["number", "campaign", "purpose", "call_id", "at"]
            )
            await conn.execute("ANALYZE")
            return await create_token(conn, name="bench", role=Role.DIALER)
    finally:
        await pool.close()


async def analyze(dsn: str) -> None:
    """What autovacuum does on a real server (the test server here runs without it): fresh statistics
    for the tables the checks grow. With an attempts table the planner still believes empty, the scrub's
    fact query reads all of it for every number: 0.3 s a batch after 20,000 checks."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ANALYZE attempts; ANALYZE decisions")
    finally:
        await conn.close()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


async def run(args: argparse.Namespace) -> None:
    async with scratch_database() as (dsn, tmp):
        token = await seed(dsn, args.rows)
        body = leads_csv(args.rows)
        leads = tmp / "leads.csv"
        leads.write_bytes(body)
        variants = [
            v for v in LEVERS_UNDONE if v in args.modes or (v == "after" and "separate" in args.modes)
        ]
        gateways = {v: await start_gateway(v, dsn, tmp, args.slice) for v in variants}
        tallies = {mode: Tally() for mode in args.modes}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
                # Warm each gateway's scrub path (rules, holiday calendars, statements) off the record.
                for g in gateways.values():
                    await scrub(http, g, token, leads_csv(2_000))
                print(
                    f"checks at {args.rate:g}/s (open loop); a scrub of {args.rows:,} rows "
                    f"({len(body) / 2**20:.1f} MB CSV) per round; {args.rounds} rounds per mode, "
                    f"alternating; {args.idle:g} s idle before each scrub, {args.tail:g} s after"
                )
                for i in range(args.rounds):
                    for mode in args.modes if i % 2 == 0 else args.modes[::-1]:
                        cli = (dsn, leads) if mode == "separate" else None
                        g = gateways["after" if cli else mode]
                        await analyze(dsn)
                        r = await one_round(args, http, g, token, body, cli)
                        tallies[mode].rounds.append(r)
                        print(f"  round {i + 1} {mode:<9} scrub {r.ended - r.began:5.1f} s", flush=True)
        finally:
            for g in gateways.values():
                g.proc.terminate()
                await g.proc.wait()
                if g.drain is not None:
                    await g.drain
        report(tallies)
        if args.dump:
            raw = {mode: [dataclasses.asdict(r) for r in t.rounds] for mode, t in tallies.items()}
            args.dump.write_text(json.dumps(raw))


def report(tallies: dict[str, Tally]) -> None:
    head = ("scrub", "checks due", "checks", "p50", "p99", "max", "p99/idle", "failed")
    print("\n{:<9} {:<12} {:>7} {:>9} {:>9} {:>9} {:>9} {:>7}".format(*head))
    for variant, tally in tallies.items():
        idle = pct(tally.window("idle"), 0.99)
        for name in ("idle", "scrub", "after"):
            lat = tally.window(name)
            if not lat:
                continue
            print(
                f"{variant:<9} {'during scrub' if name == 'scrub' else name:<12} {len(lat):>7} "
                f"{pct(lat, 0.5) * 1e3:>7.2f}ms {pct(lat, 0.99) * 1e3:>7.2f}ms {max(lat) * 1e3:>7.2f}ms "
                f"{pct(lat, 0.99) / idle:>8.2f}x {tally.failed() if name == 'idle' else '':>7}"
            )
    print()
    for variant, tally in tallies.items():
        rounds = [
            pct([lat for due, lat, _ in r.checks if r.began <= due < r.ended], 0.99)
            / pct([lat for due, lat, _ in r.checks if due < r.began], 0.99)
            for r in tally.rounds
        ]
        print(
            f"{variant:<9} scrub {tally.rows_per_second():>7,.0f} rows/s; check p99 during / idle: "
            f"{pct(tally.window('scrub'), 0.99) / pct(tally.window('idle'), 0.99):.2f}x "
            f"(rounds: {', '.join(f'{x:.2f}x' for x in rounds)}; median {statistics.median(rounds):.2f}x)"
        )
    if {"before", "after"} <= tallies.keys():
        a, b = tallies["after"], tallies["before"]
        print(f"scrub rate after / before: {a.rows_per_second() / b.rows_per_second():.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000, help="lead rows per scrub (default 100,000)")
    parser.add_argument("--rate", type=float, default=50, help="checks per second (default 50)")
    parser.add_argument("--idle", type=float, default=10, help="seconds of checks alone before each scrub")
    parser.add_argument("--tail", type=float, default=5, help="seconds of checks after each scrub")
    parser.add_argument("--rounds", type=int, default=2, help="scrubs per gateway (default 2)")
    parser.add_argument(
        "--modes",
        type=lambda s: [v for v in s.split(",") if v],
        default=["before", "after", "separate"],
        help=f"comma-separated, of: {', '.join(MODES)} (default before,after,separate)",
    )
    parser.add_argument(
        "--slice", type=float, help=f"the slice of gateways that slice, in seconds (default {SLICE:g})"
    )
    parser.add_argument(
        "--dump", type=Path, help="write every check (due, latency, ok) and scrub window as JSON"
    )
    parser.add_argument("--serve", choices=list(LEVERS_UNDONE), help=argparse.SUPPRESS)
    parser.add_argument("--generate", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        sys.exit(serve(args.serve, args.slice))
    elif args.generate:
        port, rate = args.generate
        asyncio.run(generate(int(port), float(rate)))
    else:
        if unknown := set(args.modes) - set(MODES):
            parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
