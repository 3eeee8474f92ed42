"""Benchmarks' view of processes: real `dialguard serve` gateways started and stopped, and what a process
costs (CPU seconds, resident memory) read from /proc, for the gateways and PostgreSQL's backends alike."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of every thread of ``pid`` so far; 0 for a process gone (a closed backend)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15


def cpu_of(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in pids}


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two readings, of the processes alive at the second: a backend that closed in
    between (an idle pool connection past its lifetime) is left out rather than counted negative, one
    that opened is counted whole."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items() if cpu)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def backend_pids(conn: asyncpg.Connection) -> list[int]:
    """PostgreSQL's backends serving this database, other than ``conn``'s own (on this host: /proc)."""
    rows = await conn.fetch(
        """SELECT pid FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND backend_type = 'client backend'"""
    )
    return [r["pid"] for r in rows]


def start_serve(dsn: str, data_dir: Path, name: str, **settings: str) -> subprocess.Popen[bytes]:
    """A real `dialguard serve` on ``dsn``, its state in ``data_dir``, its log in ``data_dir/NAME.log``;
    returned once it says it is ready. ``settings``: more DIALGUARD_* variables (e.g. AGI_PORT="4573")."""
    log = data_dir / f"{name}.log"
    env = {
        **os.environ,
        "DIALGUARD_DATABASE_DSN": dsn,
        "DIALGUARD_DATABASE_DATA_DIR": str(data_dir),
        "DIALGUARD_GATE_WRITER": name,
        "DIALGUARD_CALLS_SOUNDS_DIR": "",
        **{f"DIALGUARD_{key.upper()}": value for key, value in settings.items()},
    }
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dialguard", "serve"], env=env, stderr=out)
    deadline = time.monotonic() + 60
    while b"dialguard ready" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"{name} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    return proc


def stop(procs: list[subprocess.Popen[Any]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run_generator(script: str, *args: str) -> tuple[list[float], float, float]:
    """``script --generate ARGS`` in a process of its own, so the load's CPU is not the measured
    server's: (latencies, wall seconds, the generator's CPU share of one core), from the JSON it prints
    (``latencies``, ``wall``, ``cpu``)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, script, "--generate", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the load generator failed ({proc.returncode})")
    figures = json.loads(out)
    return figures["latencies"], figures["wall"], figures["cpu"] / figures["wall"]


def server_process(kind: str, command: list[str]) -> tuple[subprocess.Popen[str], int]:
    """Start a bench server that prints its port on its first line once it listens: (process, port)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"the {kind} server did not start")
    return proc, int(line)
