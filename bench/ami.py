"""AMI under load (issue 12): ingestion, checks during an event storm, originate. Ratios within one run.

(a) ingestion: N storm events (Newstate and VarSet, each with a ``ChanVariable: DIALGUARD_CALL_ID=...``
    line, as tests/fakes/asterisk_ami.py's storm makes them) recorded once, then replayed as fast as a
    server process can write them to: our AmiClient feeding a CallTracker, and a bare asyncio reader
    that only splits the stream on ``\\r\\n\\r\\n``. Interleaved rounds; events/s each and the ratio.
(b) FastAGI ``check`` p50/p99 against the gateway's loop (AgiServer + real gate + AmiClient feeding the
    CallTimeline on PostgreSQL), the load from bench/gate_latency.py's generator process, with AMI idle
    and during a 10,000 events/s storm for 10 s from FakeAmi in a process of its own; the gateway's RSS
    before and after the storm.
(c) originate throughput: POST /v1/calls requests/s (real gate, PostgreSQL, AmiClient, FakeAmi answering
    and running each call to its hang-up) against AmiClient.originate alone in a loop, same concurrency.

    PYTHONPATH=src .venv/bin/python bench/ami.py [--events 200000] [--sessions 2000] [--concurrency 10]

Database: $DIALGUARD_TEST_DSN (a scratch database is created and dropped), else an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]

import asyncpg  # noqa: E402
from gate_latency import NUMBERS, load, percentile  # noqa: E402
from scratch import scratch_database  # noqa: E402
from tests.fakes.asterisk_ami import FakeAmi  # noqa: E402

from dialguard.asterisk.agi_routes import agi_routes  # noqa: E402
from dialguard.asterisk.agi_server import AgiServer  # noqa: E402
from dialguard.asterisk.ami import AmiClient  # noqa: E402
from dialguard.asterisk.ami_calls import CallTracker  # noqa: E402
from dialguard.asterisk.ami_protocol import AmiMessage  # noqa: E402
from dialguard.clock import system_clock  # noqa: E402
from dialguard.gate import Gate  # noqa: E402
from dialguard.rules.loader import load_rulebook  # noqa: E402
from dialguard.store.db import create_pool  # noqa: E402
from dialguard.timeline import CallTimeline  # noqa: E402

LOGIN_OK = b"Response: Success\r\nActionID: %s\r\nMessage: Authentication accepted\r\n\r\n"


# ---------------------------------------------------------------- processes of their own


async def serve_fake_ami() -> None:
    """FakeAmi (Asterisk); each ``storm RATE SECONDS`` line on stdin runs a storm and prints its report."""
    async with FakeAmi(channelvars=("DIALGUARD_CALL_ID",), read="all") as ami:
        print(ami.port, flush=True)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            _, rate, seconds = line.split()
            report = await ami.storm(float(rate), float(seconds))
            print(json.dumps({"events": report.events, "seconds": report.seconds}), flush=True)


async def serve_replay(path: str) -> None:
    """A manager that logs anyone in and then writes the recorded events as fast as the socket takes them."""
    blob = await asyncio.to_thread(Path(path).read_bytes)

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        login = await reader.readuntil(b"\r\n\r\n")
        action_id = next(
            line.split(b":", 1)[1].strip()
            for line in login.split(b"\r\n")
            if line.lower().startswith(b"actionid")
        )
        writer.write(LOGIN_OK % action_id)
        for i in range(0, len(blob), 1 << 20):
            writer.write(blob[i : i + (1 << 20)])
            await writer.drain()
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


async def spawn(*args: str) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    return proc, int(await proc.stdout.readline())


async def storm(proc: asyncio.subprocess.Process, rate: float, seconds: float) -> dict[str, float]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"storm {rate} {seconds}\n".encode())
    await proc.stdin.drain()
    report: dict[str, float] = json.loads(await proc.stdout.readline())
    return report


# ---------------------------------------------------------------- (a) ingestion


async def record(port: int, events: int, fake: asyncio.subprocess.Process, path: Path) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    writer.write(
        b"Action: Login\r\nActionID: 1\r\nUsername: dialguard\r\nSecret: s3cret\r\nEvents: on\r\n\r\n"
    )
    got: list[bytes] = []

    async def read() -> None:
        while len(got) < events:
            message = await reader.readuntil(b"\r\n\r\n")
            if message.startswith(b"Event: Newstate") or message.startswith(b"Event: VarSet"):
                got.append(message)

    reading = asyncio.create_task(read())
    await asyncio.sleep(0.3)
    await storm(fake, 50_000, events / 50_000)
    await reading
    writer.close()
    await asyncio.to_thread(path.write_bytes, b"".join(got))


async def ours(port: int, events: int) -> float:
    tracker = CallTracker()
    count = 0
    done = asyncio.Event()

    def on_event(event: AmiMessage) -> None:
        nonlocal count
        tracker.feed(event, received_at=system_clock())
        count += 1
        if count == events:
            done.set()

    client = AmiClient(host="127.0.0.1", port=port, username="u", secret="s", on_event=on_event,
                       ping_interval=3600)  # fmt: skip
    task = asyncio.create_task(client.run())
    start = time.perf_counter()
    await done.wait()
    rate = events / (time.perf_counter() - start)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return rate


async def bare(port: int, events: int) -> float:
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    writer.write(b"Action: Login\r\nActionID: 1\r\nUsername: u\r\nSecret: s\r\n\r\n")
    count, rest = -1, b""  # the login's answer is no event
    while count < events:
        data = await reader.read(64 * 1024)
        parts = (rest + data).split(b"\r\n\r\n")
        rest = parts.pop()
        count += len(parts)
    rate = events / (time.perf_counter() - start)
    writer.close()
    return rate


# ---------------------------------------------------------------- (b) checks during a storm


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def checks_during_storm(
    dsn: str, args: argparse.Namespace, fake: asyncio.subprocess.Process, port: int
) -> None:
    conn = await asyncpg.connect(dsn)
    await conn.execute("INSERT INTO campaigns (name, purpose) VALUES ('bench', 'informational')")
    await conn.close()
    pool = await create_pool(dsn, size=10)
    timeline = CallTimeline(pool=pool, clock=system_clock)
    seen = 0

    def counted(event: AmiMessage) -> None:
        nonlocal seen
        seen += 1
        timeline.on_event(event)

    gate = Gate(pool=pool, rulebook=load_rulebook(), clock=system_clock, default_region="US")
    server = AgiServer(routes=agi_routes(gate=gate), host="127.0.0.1", port=0)
    await server.start()
    link = AmiClient(host="127.0.0.1", port=port, username="dialguard", secret="s3cret", on_event=counted)
    tasks = [asyncio.create_task(link.run()), asyncio.create_task(timeline.run())]
    try:
        assert await link.wait_up(5)
        await load(server.port, 200, args.concurrency)  # warm-up
        idle, _ = await load(server.port, args.sessions, args.concurrency)
        rss_before = rss_mb()
        seen = 0
        storming = asyncio.create_task(storm(fake, 10_000, 10))
        during: list[float] = []
        while not storming.done():
            lat, _ = await load(server.port, 200, args.concurrency)
            during += lat
        report = await storming
        await asyncio.sleep(0.5)
        rss_after = rss_mb()
        print(f"\n(b) FastAGI check, concurrency {args.concurrency}, gateway loop also reading AMI")
        print(f"{'AMI':<28} {'checks':>7} {'p50':>9} {'p99':>9}")
        rows = {"idle": idle, "storm 10,000 events/s, 10 s": during}
        for name, lat in rows.items():
            print(
                f"{name:<28} {len(lat):>7} {statistics.median(lat) * 1000:>7.2f}ms "
                f"{percentile(lat, 99) * 1000:>7.2f}ms"
            )
        p50 = statistics.median(during) / statistics.median(idle)
        p99 = percentile(during, 99) / percentile(idle, 99)
        print(f"storm vs idle: p50 {p50:.2f}x, p99 {p99:.2f}x")
        print(f"storm: {report['events']:.0f} events sent in {report['seconds']:.1f} s, {seen} read; "
              f"link reconnects {link.status.reconnects}; timeline pending {timeline.status.pending}, "
              f"dropped {timeline.status.dropped}")  # fmt: skip
        print(f"gateway RSS: {rss_before:.1f} MB before the storm, {rss_after:.1f} MB after")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.close()
        await pool.close()


async def originate_throughput(dsn: str, args: argparse.Namespace, port: int) -> None:
    import uuid

    import aiohttp
    from aiohttp import web

    from dialguard.config import Settings
    from dialguard.originate import OriginateSettings, Originator
    from dialguard.pacing import Pacer
    from dialguard.store.tokens import Role, create_token
    from dialguard.web.app import create_app

    pool = await create_pool(dsn, size=10)
    async with pool.acquire() as conn:
        token = await create_token(conn, name="dialer", role=Role.DIALER)
    gate = Gate(pool=pool, rulebook=load_rulebook(), clock=system_clock, default_region="US")
    originator = Originator(
        gate=gate, pool=pool, ami=None, timeline=None, pacer=Pacer(system_clock), clock=system_clock,
        settings=OriginateSettings("PJSIP/{e164}@trunk", "dialguard-originate", 20),
    )  # fmt: skip
    timeline = CallTimeline(pool=pool, clock=system_clock, on_call_ended=originator.call_ended)
    link = AmiClient(
        host="127.0.0.1", port=port, username="dialguard", secret="s3cret", on_event=timeline.on_event
    )
    originator.ami, originator.timeline = link, timeline
    tasks = [asyncio.create_task(link.run()), asyncio.create_task(timeline.run())]
    runner = web.AppRunner(
        create_app(settings=Settings(), pool=pool, gate=gate, originator=originator, ami=link)
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    statuses: dict[int, int] = {}
    try:
        assert await link.wait_up(5)
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(f"http://127.0.0.1:{http_port}") as http:

            async def post(n: int) -> None:
                body = {"number": NUMBERS[n % len(NUMBERS)], "campaign": "bench"}
                key = {**headers, "Idempotency-Key": str(uuid.uuid4())}
                async with http.post("/v1/calls", json=body, headers=key) as response:
                    await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1

            async def originate(n: int) -> None:
                await link.originate([("Channel", f"PJSIP/{NUMBERS[n % len(NUMBERS)]}@trunk"),
                                      ("Context", "dialguard-originate"), ("Exten", "s"), ("Priority", "1"),
                                      ("ChannelId", str(uuid.uuid4()))])  # fmt: skip

            async def drive(one: object, total: int) -> float:
                work = iter(range(total))

                async def worker() -> None:
                    for n in work:
                        await one(n)  # type: ignore[operator]

                start = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(args.concurrency)))
                return total / (time.perf_counter() - start)

            await drive(post, 50)  # warm-up
            statuses.clear()
            rates: dict[str, list[float]] = {"POST /v1/calls": [], "AmiClient.originate": []}
            for _ in range(args.rounds):
                rates["POST /v1/calls"].append(await drive(post, args.calls))
                rates["AmiClient.originate"].append(await drive(originate, args.calls))
        med = {name: statistics.median(r) for name, r in rates.items()}
        print(f"\n(c) originate throughput, {args.calls} per round, concurrency {args.concurrency}, "
              f"median of {args.rounds} rounds; HTTP answers {dict(sorted(statuses.items()))}")  # fmt: skip
        for name, rate in med.items():
            print(f"{name:<28} {rate:>10,.0f} requests/s")
        print(f"POST vs originate alone: {med['POST /v1/calls'] / med['AmiClient.originate']:.2f}x")
    finally:
        await runner.cleanup()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.close()


async def run(args: argparse.Namespace) -> None:
    fake, port = await spawn("--fake-ami")
    replay: asyncio.subprocess.Process | None = None
    try:
        async with scratch_database() as (dsn, tmp):
            blob = tmp / "events.ami"
            await record(port, args.events, fake, blob)
            replay, replay_port = await spawn("--replay", str(blob))
            rates: dict[str, list[float]] = {"AmiClient + CallTracker": [], "bare split": []}
            for _ in range(args.rounds):
                rates["AmiClient + CallTracker"].append(await ours(replay_port, args.events))
                rates["bare split"].append(await bare(replay_port, args.events))
            size = blob.stat().st_size / 2**20
            print(f"(a) ingestion: {args.events:,} recorded storm events ({size:.1f} MB), "
                  f"median of {args.rounds} interleaved rounds")  # fmt: skip
            med = {name: statistics.median(r) for name, r in rates.items()}
            for name, rate in med.items():
                print(f"{name:<28} {rate:>10,.0f} events/s")
            print(f"ours vs bare: {med['AmiClient + CallTracker'] / med['bare split']:.2f}x")
            await checks_during_storm(dsn, args, fake, port)
            await originate_throughput(dsn, args, port)
    finally:
        for proc in (fake, replay):
            if proc is not None:
                proc.kill()
                await proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000, help="events in (a)'s stream (default 200000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=2000, help="checks with AMI idle (default 2000)")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument(
        "--calls", type=int, default=1000, help="originations per round in (c) (default 1000)"
    )
    parser.add_argument("--fake-ami", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--replay", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fake_ami:
        asyncio.run(serve_fake_ami())
    elif args.replay:
        asyncio.run(serve_replay(args.replay))
    else:
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
