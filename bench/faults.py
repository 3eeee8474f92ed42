"""Faults under load, as the issue's table asks (issue 14): what each one does to calls and opt-outs.

Real ``dialguard serve`` processes, driven over FastAGI by fake-Asterisk sessions (``tests/fakes``):
``check`` sessions at ``--rate`` a second (one in five for a number on the internal do-not-call list, a
"trap"), and ``announce`` sessions at ``--optouts`` a second in which the callee presses the opt-out key,
each on a number of its own so that every opt-out can be counted. Each fault runs ``--seconds`` after
``--baseline`` seconds of steady load, and the load goes on until checks are judged on facts again.

1. database stopped and started: the server behind a TCP proxy that closes every link and refuses new
   ones, then lets them through again ($DIALGUARD_TEST_DSN's server, a scratch database).
2. embedded PostgreSQL ``kill -9`` (its postmaster); the gateway starts it again by itself.
3. database paused: ``SIGSTOP`` to the embedded postmaster and its children, ``SIGCONT`` at the end.
4. database blackholed: the proxy holds every byte both ways and refuses nothing, then lets them through.
5. gateway stalled, two gateways on one database, Asterisk's ``hagi://`` trying A then B
   (``tests/fakes/asterisk_agi.hagi``): (a) ``SIGSTOP`` to A, under a stand-in for systemd's
   ``WatchdogSec`` (``FakeSystemd``); (b) A's event loop blocked (a driver outside dialguard, as
   tests/e2e/test_loop_watchdog.py does), which its own loop watchdog must end.
6. gateway ``kill -9`` with opt-outs in its journal and in flight (the database cut first), then the
   database back and the gateway started again: the opt-outs pressed against those stored.

Per fault: checks answered in the window (load held) and judged on facts; ALLOWs without facts (an
ALLOW the channel heard that no stored decision stands behind, a stored ALLOW without its list check's
evidence, or any ALLOW of a trap number); opt-outs pressed / confirmed to the callee / stored after
recovery and the journal's replay; p99 of a check session before and during the fault; recovery, from
the fault's end (or its start where nothing lifts it: 2, 5) to the first check judged on facts after
the last one that was not.

    .venv/bin/python bench/faults.py [--seconds 8] [--rate 25] [--optouts 3] [--write docs/reliability.md]
    make faults

Figures: docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]

from scratch import scratch_database  # noqa: E402
from tests.e2e.test_loop_watchdog import DRIVER  # noqa: E402
from tests.e2e.test_two_gateways import _free_port  # noqa: E402
from tests.fakes.asterisk_agi import Channel, FakeAsterisk, hagi  # noqa: E402
from tests.fakes.proxy import CuttableProxy  # noqa: E402

from dialguard.store.dnc import add_dnc  # noqa: E402
from dialguard.store.roles import EMBEDDED_GATEWAY_ROLE  # noqa: E402
from dialguard.store.setup import with_user  # noqa: E402

OPEN_ALL_DAY = """
[pack]
country = "DEFAULT"
name = "bench: open around the clock, no caps"

[hours]
source = "bench pack"
policy = true
all = ["00:00-24:00"]
"""
SOUNDS = ROOT / "asterisk-conf" / "sounds"
TRAP_EVERY = 5  # one check in five is for a number on the internal list
TRAPS = 20
CONFIRMED = "dialguard-optout-confirmed"
WATCHDOG_SEC = 4.0  # deploy/dialguard.service WatchdogSec: a ping every 2 s
ABORT_SEC = 1.0  # deploy/dialguard.service TimeoutAbortSec: SIGKILL this long after SIGABRT
LOOP_STALL_LIMIT = 3.0  # gate.loop_stall_limit, its default: below WatchdogSec
SESSION_LIMIT = 90.0  # a fake-Asterisk session that waits longer is given up (Asterisk would wait)


# ---------------------------------------------------------------- pure figures (kept apart, testable)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0..100); None of nothing."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least the first
    return ordered[int(rank) - 1]


def recovery(outcomes: Iterable[tuple[float, float, bool]], since: float) -> float | None:
    """Seconds from ``since`` to the end of the first check judged on facts that started after ``since``
    and after the last one that was not (outcomes: started, ended, judged on facts); None when there is
    none yet."""
    rows = sorted(outcomes)
    after = max((started for started, _, judged in rows if not judged and started >= since), default=since)
    ends = [ended for started, ended, judged in rows if judged and started >= after]
    return min(ends) - since if ends else None


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A Markdown table; columns after the first whose cells start with a digit (bold or not) are
    right-aligned."""
    align = [
        "---:" if i and rows and rows[0][i].lstrip("*")[:1].isdigit() else "---" for i in range(len(header))
    ]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


# ---------------------------------------------------------------- the gateways


class Gateway:
    """A ``dialguard serve`` (or the loop-blocking driver around it), its stderr drained as it comes:
    a full pipe would stall its loop, which is a fault of its own."""

    def __init__(self, name: str, env: dict[str, str], *, driver: bool = False) -> None:
        self.name = name
        self.env = env
        self.driver = driver
        self.port = int(env["DIALGUARD_AGI_PORT"])
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        argv = ["-c", DRIVER] if self.driver else ["-m", "dialguard", "serve"]
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *argv, env=self.env,
            stdin=asyncio.subprocess.PIPE if self.driver else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stderr is not None
        async with asyncio.timeout(60):
            while b"dialguard ready" not in (line := await self.proc.stderr.readline()):
                assert line, f"gateway {self.name} exited before it was ready"
        self._reader = asyncio.create_task(self._read(self.proc.stderr))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace"))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)

    async def block_loop(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"block\n")
        await self.proc.stdin.drain()

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        if self._reader is not None:
            await self._reader
        return code

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.signal(signal.SIGCONT)  # a stopped gateway would never see the SIGTERM
        self.signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(20):
                await self.wait()
        except TimeoutError:
            self.signal(signal.SIGKILL)
            await self.wait()


def gateway_env(tmp: Path, name: str, *, dsn: str | None, seal_key: str) -> dict[str, str]:
    data = tmp / name
    data.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "DIALGUARD_AGI_PORT": str(_free_port()),
        "DIALGUARD_HTTP_PORT": str(_free_port()),
        "DIALGUARD_DATABASE_DATA_DIR": str(data),
        "DIALGUARD_RULES_PACK_DIR": str(tmp / "packs"),
        "DIALGUARD_CALLS_SOUNDS_DIR": str(SOUNDS),
        "DIALGUARD_GATE_WRITER": name,
        "DIALGUARD_GATE_SEAL_KEY": seal_key,  # gateways sharing a database share the key
        "DIALGUARD_LOG_FORMAT": "json",
    }
    stale = (
        "DIALGUARD_DATABASE_DSN",
        "DIALGUARD_DATABASE_OWNER_DSN",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
    )
    for key in stale:
        env.pop(key, None)
    if dsn is not None:
        # As deployed: the gateway's own role, the server's superuser the schema's owner (scratch.py
        # makes the role); the embedded server separates them by itself.
        env["DIALGUARD_DATABASE_DSN"] = with_user(dsn, EMBEDDED_GATEWAY_ROLE)
        env["DIALGUARD_DATABASE_OWNER_DSN"] = dsn
    return env


class FakeSystemd:
    """systemd's side of ``Type=notify`` with ``WatchdogSec``, for one unit: no ``WATCHDOG=1`` for
    ``watchdog_sec`` and it sends the watchdog signal, SIGABRT, with a SIGCONT behind it (systemd's
    ``kill_and_sigcont``: a stopped process must run to die of it), then SIGKILL after TimeoutAbortSec."""

    def __init__(self, path: Path, *, watchdog_sec: float, abort_sec: float) -> None:
        self.path = path
        self.watchdog_sec = watchdog_sec
        self.abort_sec = abort_sec
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.fired: list[tuple[float, str]] = []  # (when, what)

    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self.path), "WATCHDOG_USEC": str(int(self.watchdog_sec * 1e6)),
                "PYTHONFAULTHANDLER": "1"}  # fmt: skip

    async def supervise(self, gateway: Gateway) -> None:
        """Until the gateway exits by itself, or the watchdog ends it."""
        assert gateway.proc is not None
        loop = asyncio.get_running_loop()
        exited = asyncio.ensure_future(gateway.proc.wait())
        armed = False  # from READY=1 or the first WATCHDOG=1 on, as systemd arms it
        while True:
            heard = asyncio.ensure_future(loop.sock_recv(self.sock, 4096))
            done, _ = await asyncio.wait(
                {heard, exited},
                timeout=self.watchdog_sec if armed else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if heard in done:
                message = heard.result().decode()
                armed = armed or "READY=1" in message or "WATCHDOG=1" in message
                if exited not in done:
                    continue
            heard.cancel()
            if exited in done:
                return
            break
        self.fired.append((time.monotonic(), "SIGABRT"))
        gateway.signal(signal.SIGABRT)
        gateway.signal(signal.SIGCONT)
        try:
            async with asyncio.timeout(self.abort_sec):
                await exited
        except TimeoutError:
            self.fired.append((time.monotonic(), "SIGKILL"))
            gateway.signal(signal.SIGKILL)
            await exited

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------- the load


@dataclass
class Session:
    kind: str  # check, announce
    number: str
    started: float
    ended: float = 0.0
    verdict: str | None = None  # None: the call got no verdict (no gateway, or the session died)
    reason: str = ""
    call_id: str = ""
    target: int | None = None  # which gateway answered, in hagi order
    pressed: bool = False
    confirmed: bool = False  # the callee heard the opt-out confirmed
    error: str = ""

    @property
    def on_facts(self) -> bool:
        return self.verdict is not None and self.reason != "gate.unavailable"


@dataclass
class Numbers:
    """The numbers of one fault: distinct, so that every decision and every opt-out is its own."""

    fault: int
    checks: int = 0

    def check(self) -> str:
        self.checks += 1
        if self.checks % TRAP_EVERY == 0:
            return self.trap(self.checks // TRAP_EVERY % TRAPS)
        return f"+4860{self.fault}{self.checks:06d}"

    def trap(self, i: int) -> str:
        return f"+4869{self.fault}{i:06d}"

    def announce(self, i: int) -> str:
        return f"+4850{self.fault}{i:06d}"


class Load:
    def __init__(
        self,
        targets: Sequence[FakeAsterisk],
        numbers: Numbers,
        answered: list[tuple[str, str]],
        args: argparse.Namespace,
    ) -> None:
        self.targets = targets
        self.numbers = numbers
        self.answered = answered  # (call id, number) of the ALLOWed calls the callee will answer
        self.rate = args.rate
        self.optouts = args.optouts
        self.sessions: list[Session] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(
            self._tick(stop, self.rate, self._check), self._tick(stop, self.optouts, self._announce)
        )
        if self._tasks:
            await asyncio.wait(self._tasks)

    async def _tick(
        self, stop: asyncio.Event, rate: float, start: Callable[[], Coroutine[Any, Any, None] | None]
    ) -> None:
        began, n = time.monotonic(), 0
        while not stop.is_set():
            session = start()
            if session is not None:
                task = asyncio.create_task(session)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            n += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(began + n / rate - time.monotonic(), 0)):
                    await stop.wait()

    def _check(self) -> Coroutine[Any, Any, None]:
        s = Session("check", self.numbers.check(), time.monotonic())
        self.sessions.append(s)
        return self._drive(s, "check", s.number, "default")

    def _announce(self) -> Coroutine[Any, Any, None] | None:
        if not self.answered:
            return None
        call_id, number = self.answered.pop()
        s = Session("announce", number, time.monotonic(), call_id=call_id)
        self.sessions.append(s)
        return self._drive(s, "announce", call_id, number, "default")

    async def _drive(self, s: Session, script: str, *args: str) -> None:
        channel = Channel(dtmf=["9"]) if s.kind == "announce" else Channel()
        try:
            s.target, run = await hagi(self.targets, script, *args, channel=channel, within=SESSION_LIMIT)
        except (OSError, TimeoutError) as exc:  # no gateway took the call, or its session died
            s.error = type(exc).__name__
        else:
            variables = run.variables
            if s.kind == "check":
                s.verdict = variables.get("DIALGUARD_VERDICT") or None
                s.reason = variables.get("DIALGUARD_REASON", "")
                s.call_id = variables.get("DIALGUARD_CALL_ID", "")
            else:
                s.verdict = variables.get("DIALGUARD_ANNOUNCE") or variables.get("DIALGUARD_OPTOUT")
                s.confirmed = any(
                    c[:2] == ["STREAM", "FILE"] and c[2].endswith(CONFIRMED) for c in run.commands
                )
        s.pressed = s.kind == "announce" and not channel.dtmf  # the key went to a gateway's prompt
        s.ended = time.monotonic()


async def answered_calls(
    targets: Sequence[FakeAsterisk], numbers: Numbers, count: int
) -> list[tuple[str, str]]:
    """ALLOW decisions to answer later, made before the fault: an announce needs its call's decision."""
    out: list[tuple[str, str]] = []
    for first in range(0, count, 10):
        batch = [numbers.announce(i) for i in range(first, min(first + 10, count))]
        runs = await asyncio.gather(*(hagi(targets, "check", n, "default") for n in batch))
        for number, (_, run) in zip(batch, runs, strict=True):
            if run.variables.get("DIALGUARD_VERDICT") == "ALLOW":
                out.append((run.variables["DIALGUARD_CALL_ID"], number))
    out.reverse()  # popped from the end: in number order
    return out


# ---------------------------------------------------------------- one fault


@dataclass
class Fault:
    key: str
    title: str
    start: Callable[[], Awaitable[None]]
    end: Callable[[], Awaitable[None]]
    from_start: bool = False  # nothing lifts it: recovery counts from the fault itself
    notes: list[str] = field(default_factory=list)


@dataclass
class Row:
    fault: Fault
    window: int
    answered: int
    judged: int
    allows: int
    without_facts: int
    pressed: int
    confirmed: int
    stored: int
    lost: int
    p99_before: float | None
    p99_during: float | None
    recovered: float | None
    late_blocks: tuple[int, int]  # gate.unavailable heard, stored (late, from the decision journal)


async def connect(dsn: str, limit: float = 30) -> asyncpg.Connection:
    async with asyncio.timeout(limit):
        while True:
            try:
                return await asyncpg.connect(dsn, timeout=5)
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(0.5)


async def seed_traps(dsn: str, numbers: Numbers) -> None:
    conn = await connect(dsn)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    try:
        for i in range(TRAPS):
            await add_dnc(conn, number=numbers.trap(i), at=datetime.now(UTC), source="bench", actor="bench")
    finally:
        await conn.close()


async def run_fault(
    fault: Fault, index: int, targets: Sequence[FakeAsterisk], dsn: str, args: argparse.Namespace
) -> Row:
    print(f"fault {fault.key}: {fault.title}", file=sys.stderr, flush=True)
    numbers = Numbers(index)
    await seed_traps(dsn, numbers)
    answered = await answered_calls(targets, numbers, int(args.optouts * (args.baseline + args.seconds + 20)))
    load = Load(targets, numbers, answered, args)
    stop = asyncio.Event()
    driving = asyncio.create_task(load.run(stop))
    await asyncio.sleep(args.baseline)
    began = time.monotonic()
    await fault.start()
    await asyncio.sleep(args.seconds)
    ended = time.monotonic()
    await fault.end()
    since = began if fault.from_start else ended

    def outcomes() -> list[tuple[float, float, bool]]:
        return [(s.started, s.ended, s.on_facts) for s in load.sessions if s.kind == "check" and s.ended]

    async with asyncio.timeout(args.seconds + 60):
        # Until checks have been judged on facts for 2 s on end (sessions end in other tasks: polled).
        while (back := recovery(outcomes(), since)) is None or time.monotonic() < since + back + 2:  # noqa: ASYNC110
            await asyncio.sleep(0.25)
    stop.set()
    async with asyncio.timeout(SESSION_LIMIT + 10):
        await driving
    recovered = recovery(outcomes(), since)
    by_b = [s.ended for s in load.sessions if s.target == 1 and s.started >= since]
    if by_b:
        fault.notes.append(f"first call answered by B {min(by_b) - since:.1f} s after the fault began")

    checks = [s for s in load.sessions if s.kind == "check"]
    window = [s for s in checks if began <= s.started < ended]
    before = [s for s in checks if s.started < began]
    announces = [s for s in load.sessions if s.kind == "announce"]
    conn = await connect(dsn)
    fault.notes.insert(0, f"PostgreSQL {await conn.fetchval('SHOW server_version')}")
    try:
        confirmed = {s.number for s in announces if s.confirmed}
        # The journals replay every 5 s: wait for the confirmed opt-outs (or give up after 30 s).
        deadline = time.monotonic() + 30
        while True:
            stored = {r["number"] for r in await conn.fetch(
                "SELECT DISTINCT number FROM optouts WHERE number = ANY($1)", [s.number for s in announces]
            )}  # fmt: skip
            if confirmed <= stored or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        await asyncio.sleep(6)  # one more replay round, for the blocked decisions
        stored = {r["number"] for r in await conn.fetch(
            "SELECT DISTINCT number FROM optouts WHERE number = ANY($1)", [s.number for s in announces]
        )}  # fmt: skip
        check_numbers = sorted({s.number for s in checks})
        decisions = await conn.fetch(
            "SELECT call_id::text, number, verdict, reason, body FROM decisions WHERE number = ANY($1)",
            check_numbers,
        )
    finally:
        await conn.close()
    unconfirmed = {s.number for s in announces if s.pressed and not s.confirmed}
    if unconfirmed:  # the promise is "stored before confirmed"; a press cut short may go either way
        fault.notes.append(
            f"{len(unconfirmed)} key press(es) in flight not confirmed to the callee, "
            f"{len(unconfirmed & stored)} of them stored"
        )
    traps = {numbers.trap(i) for i in range(TRAPS)}
    heard_allow = {s.call_id: s.number for s in checks if s.verdict == "ALLOW"}
    stored_allow = {r["call_id"]: r for r in decisions if r["verdict"] == "ALLOW"}
    no_row = set(heard_allow) - set(stored_allow)
    no_evidence = {
        cid
        for cid, r in stored_allow.items()
        if not any(x["code"].startswith("dnc") and x["passed"] for x in json.loads(r["body"])["reasons"])
    }
    trapped = {cid for cid, n in heard_allow.items() if n in traps} | {
        cid for cid, r in stored_allow.items() if r["number"] in traps
    }
    unavailable_heard = {s.call_id for s in checks if s.reason == "gate.unavailable"}
    unavailable_stored = {r["call_id"] for r in decisions if r["reason"] == "gate.unavailable"}
    return Row(
        fault=fault,
        window=len(window),
        answered=sum(s.verdict is not None for s in window),
        judged=sum(s.on_facts for s in window),
        allows=sum(s.verdict == "ALLOW" for s in window),
        without_facts=len(no_row | no_evidence | trapped),
        pressed=sum(s.pressed for s in announces),
        confirmed=len(confirmed),
        stored=len(stored),
        lost=len(confirmed - stored),
        p99_before=percentile([s.ended - s.started for s in before], 99),
        p99_during=percentile([s.ended - s.started for s in window], 99),
        recovered=recovered,
        late_blocks=(len(unavailable_heard), len(unavailable_heard & unavailable_stored)),
    )


# ---------------------------------------------------------------- the three set-ups


async def through_proxy(tmp: Path, args: argparse.Namespace) -> list[Row]:
    """Faults 1, 4 and 6: one gateway on a scratch database behind a proxy."""
    async with scratch_database() as (dsn, _):
        proxy = CuttableProxy.for_dsn(dsn)
        await proxy.start()
        gateway = Gateway(
            "proxied", gateway_env(tmp, "proxied", dsn=proxy.dsn_through(dsn), seal_key=secrets.token_hex(32))
        )
        await gateway.start()
        targets = [FakeAsterisk("127.0.0.1", gateway.port)]
        restarting: list[asyncio.Task[None]] = []

        async def cut() -> None:
            proxy.cut()

        async def restore() -> None:
            proxy.restore()

        async def blackhole() -> None:
            proxy.blackhole()

        async def cut_then_kill() -> None:
            proxy.cut()
            restarting.append(asyncio.create_task(kill_later()))

        async def kill_later() -> None:
            await asyncio.sleep(args.seconds / 2)
            pending = Path(gateway.env["DIALGUARD_DATABASE_DATA_DIR"]) / "optout-journal.jsonl"
            text = await asyncio.to_thread(lambda: pending.read_text() if pending.exists() else "")
            waiting = len(text.splitlines())
            gateway.signal(signal.SIGKILL)
            await gateway.wait()
            kill.notes.append(
                f"SIGKILL at {args.seconds / 2:g} s, {waiting} opt-out(s) waiting in the journal"
            )

        async def restore_and_restart() -> None:
            proxy.restore()
            started = time.monotonic()

            async def again() -> None:
                await gateway.start()
                kill.notes.append(
                    f"restarted: ready {time.monotonic() - started:.1f} s after the restart began"
                )

            restarting.append(asyncio.create_task(again()))

        stop_start = Fault(
            "1", "database stopped, then started (proxy closes and refuses, then passes)", cut, restore
        )
        hole = Fault(
            "4",
            "database blackholed (proxy holds every byte, refuses nothing), then restored",
            blackhole,
            restore,
        )
        kill = Fault("6", "gateway `kill -9` with the database away, opt-outs journaled and in flight; "
                     "database back, gateway restarted", cut_then_kill, restore_and_restart)  # fmt: skip
        try:
            rows = [
                await run_fault(stop_start, 1, targets, dsn, args),
                await run_fault(hole, 4, targets, dsn, args),
            ]
            rows.append(await run_fault(kill, 6, targets, dsn, args))
            for task in restarting:
                await task
            return rows
        finally:
            await gateway.stop()
            await proxy.close()


def children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(stat.parent.name))
    return out


async def embedded(tmp: Path, args: argparse.Namespace) -> list[Row]:
    """Faults 2 and 3: one gateway on its own embedded PostgreSQL."""
    gateway = Gateway("embedded", gateway_env(tmp, "embedded", dsn=None, seal_key=secrets.token_hex(32)))
    pgdata = Path(gateway.env["DIALGUARD_DATABASE_DATA_DIR"]) / "pgdata"
    dsn = f"postgresql://postgres@/postgres?host={pgdata}"
    paused: list[int] = []

    def postmaster() -> int:
        return int((pgdata / "postmaster.pid").read_text().split()[0])

    async def kill() -> None:
        os.kill(postmaster(), signal.SIGKILL)

    async def nothing() -> None:
        pass

    async def pause() -> None:
        pid = postmaster()
        os.kill(pid, signal.SIGSTOP)  # first: it forks no new child while its children are stopped
        paused[:] = [pid, *children_of(pid)]
        for child in paused[1:]:
            os.kill(child, signal.SIGSTOP)
        paused_fault.notes.append(f"SIGSTOP to the postmaster and {len(paused) - 1} children")

    async def resume() -> None:
        for pid in paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    await gateway.start()
    targets = [FakeAsterisk("127.0.0.1", gateway.port)]
    killed = Fault(
        "2",
        "embedded PostgreSQL `kill -9` (the gateway starts it again itself)",
        kill,
        nothing,
        from_start=True,
    )
    paused_fault = Fault(
        "3", "database paused (SIGSTOP postmaster and children), then SIGCONT", pause, resume
    )
    try:
        rows = [await run_fault(killed, 2, targets, dsn, args)]
        restarts = [line for line in gateway.lines if "running again after" in line]
        killed.notes.extend(json.loads(line)["message"] for line in restarts[:1])
        rows.append(await run_fault(paused_fault, 3, targets, dsn, args))
        return rows
    finally:
        await resume()
        await gateway.stop()


async def two_gateways(tmp: Path, args: argparse.Namespace) -> list[Row]:
    """Fault 5: gateways A and B on one database, Asterisk's hagi:// trying A, then B."""
    async with scratch_database() as (dsn, _):
        key = secrets.token_hex(32)
        systemd = FakeSystemd(tmp / "notify", watchdog_sec=args.watchdog_sec, abort_sec=ABORT_SEC)
        env_a = gateway_env(tmp, "A", dsn=dsn, seal_key=key) | systemd.env()
        env_a["DIALGUARD_GATE_LOOP_STALL_LIMIT"] = str(args.stall_limit)
        a = Gateway("A", env_a, driver=True)
        b = Gateway("B", gateway_env(tmp, "B", dsn=dsn, seal_key=key))
        supervising: list[asyncio.Task[None]] = []
        stopped_at: list[float] = []

        async def start_a() -> None:
            await a.start()
            supervising.append(asyncio.create_task(systemd.supervise(a)))

        async def sigstop() -> None:
            stopped_at[:] = [time.monotonic()]
            a.signal(signal.SIGSTOP)

        async def block() -> None:
            stopped_at[:] = [time.monotonic()]
            await a.block_loop()

        def ended_by(fault: Fault) -> Callable[[], Awaitable[None]]:
            async def note() -> None:
                try:
                    async with asyncio.timeout(15):
                        code = await a.wait()
                except TimeoutError:
                    fault.notes.append("A still running 15 s after the fault's end: nothing ended it")
                    return
                fired = [
                    f"{what} at {at - stopped_at[0]:.1f} s"
                    for at, what in systemd.fired
                    if at >= stopped_at[0]
                ]
                watchdog = [line for line in a.lines if "event loop has not run" in line]
                if code == 70 and watchdog:
                    how = f"exit {code}: A's own loop watchdog"
                elif code < 0:
                    how = f"killed by signal {-code} ({signal.Signals(-code).name})"
                else:
                    how = f"exit {code}"
                fault.notes.append(f"A {how}; systemd stand-in: {', '.join(fired) or 'did not fire'}")

            return note

        await b.start()
        await start_a()
        targets = [FakeAsterisk("127.0.0.1", a.port), FakeAsterisk("127.0.0.1", b.port)]
        stall = Fault("5a", f"gateway A stopped (SIGSTOP); systemd WatchdogSec={args.watchdog_sec:g}s; "
                      "hagi:// A then B", sigstop, lambda: asyncio.sleep(0), from_start=True)  # fmt: skip
        stall.end = ended_by(stall)
        blocked = Fault("5b", f"gateway A's event loop blocked; gate.loop_stall_limit={args.stall_limit:g}s; "
                        "hagi:// A then B", block, lambda: asyncio.sleep(0), from_start=True)  # fmt: skip
        blocked.end = ended_by(blocked)
        try:
            rows = [await run_fault(stall, 5, targets, dsn, args)]
            for task in supervising:
                await task
            await start_a()  # as systemd's Restart=on-failure would
            rows.append(await run_fault(blocked, 7, targets, dsn, args))
            return rows
        finally:
            for task in supervising:
                task.cancel()
            await a.stop()
            await b.stop()
            systemd.close()


# ---------------------------------------------------------------- the report


def ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.0f} ms"


def report(rows: Sequence[Row]) -> str:
    header = ["fault", "checks answered (load held)", "judged on facts", "ALLOWs in window / without facts",
              "opt-outs pressed / confirmed / stored", "confirmed, not stored", "p99 check before",
              "p99 check during", "recovery"]  # fmt: skip
    body = []
    for r in sorted(rows, key=lambda r: r.fault.key):
        body.append([
            f"{r.fault.key}. {r.fault.title}",
            f"{r.answered}/{r.window} ({100 * r.answered / max(r.window, 1):.0f} %)",
            f"{r.judged}/{r.window}",
            f"{r.allows} / **{r.without_facts}**",
            f"{r.pressed} / {r.confirmed} / {r.stored}",
            f"**{r.lost}**",
            ms(r.p99_before),
            ms(r.p99_during),
            "–" if r.recovered is None else f"{r.recovered:.1f} s",
        ])  # fmt: skip
    return table(body, header)


def machine() -> str:
    """The machine, for the report's heading (each fault's database server is in its notes)."""
    system = f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs"
    return f"{system}, Python {platform.python_version()}"


def document(rows: Sequence[Row], args: argparse.Namespace, took: float) -> str:
    server = (
        "the server $DIALGUARD_TEST_DSN names" if os.environ.get("DIALGUARD_TEST_DSN") else "an embedded one"
    )
    limits = (
        f"`WatchdogSec={args.watchdog_sec:g}s` (pings every {args.watchdog_sec / 2:g} s), "
        f"`gate.loop_stall_limit={args.stall_limit:g}`"
    )
    notes = []
    for r in sorted(rows, key=lambda r: r.fault.key):
        heard, stored = r.late_blocks
        blocked = (
            f"{heard} checks blocked `gate.unavailable`, {stored} of them stored (late, from the journal)"
        )
        said = [blocked] if heard else []
        notes.append(f"- **{r.fault.key}**: {'; '.join([*said, *r.fault.notes])}.")
    return f"""# Reliability: faults under load

What a fault does to calls and opt-outs, measured by `bench/faults.py` against real `dialguard serve`
processes driven over FastAGI by the fake Asterisk of `tests/fakes` (issue 14). Rerun it with

```sh
make faults          # or: .venv/bin/python bench/faults.py --write docs/reliability.md
```

(`DIALGUARD_TEST_DSN` names the PostgreSQL server for faults 1, 4, 5 and 6; without it they run on an
embedded one too.) Each fault lasts {args.seconds:g} s after {args.baseline:g} s of steady load: `check`
sessions at {args.rate:g}/s (one in {TRAP_EVERY} for a number on the internal do-not-call list) and `announce`
sessions at {args.optouts:g}/s in which the callee presses the opt-out key, each on a number of its own.
The load goes on until checks are judged on facts again.

1. **Database stopped, then started**: a TCP proxy in front of the server closes every link and refuses
   new ones, then passes them again.
2. **Embedded PostgreSQL `kill -9`**: its postmaster; nothing outside restarts it, the gateway does.
3. **Database paused**: `SIGSTOP` to the embedded postmaster and its children, `SIGCONT` at the end.
4. **Database blackholed**: the proxy holds every byte both ways and refuses nothing, then lets them
   through (as TCP's retransmissions would once the path is back).
5. **Gateway stalled**, two gateways on one database and Asterisk's `hagi://` trying A, then B
   (`tests/fakes/asterisk_agi.hagi`: a 2 s connect, no read timeout, no fail-over once connected).
   **5a**: `SIGSTOP` to A; the bench stands in for systemd with `WatchdogSec={args.watchdog_sec:g}s`
   (no `WATCHDOG=1` that long: `SIGABRT` and `SIGCONT`, `SIGKILL` {ABORT_SEC:g} s later), since a stopped
   process cannot end itself. **5b**: A's event loop blocked (a driver around `serve`, as
   `tests/e2e/test_loop_watchdog.py` does), which A's own loop watchdog must end
   (`gate.loop_stall_limit={args.stall_limit:g}`). Recovery here is from the stall to the first call
   answered by B; the issue asks for 5 s.
6. **Gateway `kill -9`** halfway through a database cut, with opt-outs in its journal and in flight;
   then the database back and the gateway started again (it replays its journal before it serves).

Columns: *checks answered*: sessions started during the fault that got a verdict (a fail-closed BLOCK
counts; a call no gateway took or whose session died does not). *ALLOWs without facts*: an ALLOW the
channel heard that no stored ALLOW stands behind, a stored ALLOW without its list check's evidence, or
an ALLOW of a number on the internal list; it must be 0 (the window's ALLOWs are beside it).
*Opt-outs*: keys pressed, confirmations the callee heard, numbers in `optouts` after recovery and the
journal's replay; a confirmed opt-out not stored is a lost one. *p99*: a check session from connect to
its end (or to its failure). *Recovery*: from the end of the fault (from its start for 2 and 5, where
nothing outside lifts it) to the first check judged on facts after the last one that was not.

## {datetime.now(UTC):%Y-%m-%d}, {machine()}

{report(rows)}

The whole run took {took:.0f} s; faults 1, 4, 5 and 6 ran on {server}.

Notes, by fault:

{chr(10).join(notes)}

Reading the table:

- A check that got no verdict (faults 5 and 6) is a call not placed: the dialplan blocks on an empty
  `DIALGUARD_VERDICT`, and Asterisk ends `AGI()` with `AGISTATUS=FAILURE` when the gateway's socket
  closes. In 5, the calls that reached A after it stalled were held until A was ended, then failed;
  `hagi://` moves to B only for calls that find A's port closed.
- Checks judged on facts inside a database fault are those made before it bit, after it was lifted, or
  in its last `gate.fact_timeout` seconds when the held bytes (3, 4) flowed again in time.
- Stall limits in this run: {limits}. Shipped: `WatchdogSec=4s` and `TimeoutAbortSec=1s` in
  deploy/dialguard.service, `gate.loop_stall_limit=3` by default.
"""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=8.0, help="each fault's length")
    parser.add_argument("--baseline", type=float, default=2.0, help="steady load before each fault")
    parser.add_argument("--rate", type=float, default=25.0, help="check sessions a second")
    parser.add_argument(
        "--optouts", type=float, default=3.0, help="announce sessions with an opt-out a second"
    )
    parser.add_argument("--watchdog-sec", type=float, default=WATCHDOG_SEC)
    parser.add_argument("--stall-limit", type=float, default=LOOP_STALL_LIMIT)
    parser.add_argument("--only", default="", help="comma-separated set-ups: proxy, embedded, two")
    parser.add_argument("--write", type=Path, help="write the report here (docs/reliability.md)")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else {"proxy", "embedded", "two"}
    started = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="dialguard-faults-") as name:
        tmp = Path(name)
        (tmp / "packs").mkdir()
        (tmp / "packs" / "DEFAULT.toml").write_text(OPEN_ALL_DAY)
        for setup, run in (("proxy", through_proxy), ("embedded", embedded), ("two", two_gateways)):
            if setup in only:
                rows += await run(tmp, args)
    text = document(rows, args, time.monotonic() - started)
    print(text)
    if args.write is not None:
        args.write.write_text(text)


if __name__ == "__main__":
    asyncio.run(main())
