"""`dialguard serve` under `ulimit -n 1024` and 1,100 slow FastAGI peers (issue 14).

What happened in production: the peers took every file descriptor, the journal's replay died of
"Too many open files" and took its task group with it, SIGTERM was ignored, and a journaled opt-out
sat unapplied while its number was answered ALLOW. Here a real gateway process runs under that limit
(set in the child only) with 1,100 connections that send nothing, and must:
1. stay up and refuse, at once, every session beyond agi.max_sessions (Asterisk sees AGISTATUS=FAILURE);
2. still answer /healthz, and refuse a well-formed check promptly rather than leave it hanging;
3. apply, by its background replay, an opt-out journaled while the database was away, so that the
   number is blocked (dnc.internal) once a session is free;
4. end on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg

from dialguard.journal import OptOutJournal
from dialguard.store.calls import OptOut
from tests.e2e.test_two_gateways import _free_port
from tests.fakes.asterisk_agi import FakeAsterisk

OPEN_FILES = 1024
SLOW_PEERS = 1100
# What default_max_sessions() leaves under that limit: room for the pools, HTTP and the journals.
CAP = OPEN_FILES - 256
NUMBER = "+48601230042"
ALWAYS_OPEN = """
[pack]
country = "DEFAULT"
name = "test: open around the clock, no caps"

[hours]
source = "test pack"
policy = true
all = ["00:00-24:00"]
"""


def _limit_open_files() -> None:
    """In the child between fork and exec: the soft limit production had (the hard one stays)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, hard))


async def _serve_limited(env: dict[str, str]) -> tuple[asyncio.subprocess.Process, asyncio.Task[bytes]]:
    """The gateway under the limit, once ready; its stderr read as it comes (a full pipe blocks its loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialguard", "serve",
        env=env, stderr=asyncio.subprocess.PIPE, preexec_fn=_limit_open_files,
    )  # fmt: skip
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        while b"dialguard ready" not in (line := await proc.stderr.readline()):
            assert line, "the gateway exited before it was ready"
    assert b"event loop uvloop" in line  # the loop shipped: libuv accepts differently from asyncio
    return proc, asyncio.create_task(proc.stderr.read())


@contextlib.asynccontextmanager
async def slow_peers(port: int) -> AsyncIterator[tuple[list[asyncio.StreamWriter], int]]:
    """SLOW_PEERS connections that send nothing; yields those the gateway holds and how many it refused
    (a refused one is sent ``failure`` and closed, which is AGISTATUS=FAILURE for Asterisk)."""
    peers = [await asyncio.open_connection("127.0.0.1", port) for _ in range(SLOW_PEERS)]
    try:
        reads = [asyncio.create_task(reader.readline()) for reader, _ in peers]
        # Rather than never: the gateway may take its time to accept them all (it must, though).
        async with asyncio.timeout(20):
            for answered, read in enumerate(asyncio.as_completed(reads), 1):
                await read
                if answered == SLOW_PEERS - CAP:
                    break
        await asyncio.sleep(0.5)  # a refusal beyond the expected ones would show by now
        refused = [r for r in reads if r.done()]
        assert {r.result() for r in refused} == {b"failure\n"}
        held = [writer for read, (_, writer) in zip(reads, peers, strict=True) if not read.done()]
        yield held, len(refused)
    finally:
        for read in reads:
            read.cancel()
        for _, writer in peers:
            writer.close()


async def _until(probe: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(20):  # the replay runs every 5 s; a dead one never would
        while not await probe():  # noqa: ASYNC110 - another process's state
            await asyncio.sleep(0.2)


async def test_a_gateway_out_of_file_descriptors_refuses_fast_replays_its_journal_and_stops_on_sigterm(
    new_database: Callable[[], Awaitable[str]], tmp_path: Path
) -> None:
    dsn = await new_database()
    (tmp_path / "DEFAULT.toml").write_text(ALWAYS_OPEN)
    agi_port, http_port = _free_port(), _free_port()
    optouts = tmp_path / "optout-journal.jsonl"
    env = {
        **os.environ,
        "DIALGUARD_DATABASE_DSN": dsn,
        "DIALGUARD_AGI_PORT": str(agi_port),
        "DIALGUARD_AGI_READ_TIMEOUT": "60",  # the slow peers stay for the whole test
        "DIALGUARD_HTTP_PORT": str(http_port),
        "DIALGUARD_RULES_PACK_DIR": str(tmp_path),
        "DIALGUARD_CALLS_JOURNAL_PATH": str(optouts),
    }
    proc, said = await _serve_limited(env)
    asterisk = FakeAsterisk("127.0.0.1", agi_port)
    db = await asyncpg.connect(dsn)
    try:
        # The call whose callee will opt out, decided while all is well.
        before = await asterisk.agi("check", NUMBER)
        assert before.variables["DIALGUARD_VERDICT"] == "ALLOW"
        call_id = uuid.UUID(before.variables["DIALGUARD_CALL_ID"])

        async with slow_peers(agi_port) as (held, refused), aiohttp.ClientSession() as http:
            assert (len(held), refused) == (CAP, SLOW_PEERS - CAP)
            assert proc.returncode is None
            # A real check now is refused at once, as Asterisk sees it: the dialplan's FAILURE branch
            # (the call is not placed) rather than a channel that waits for a gateway that never answers.
            full = await asterisk.agi("check", NUMBER)
            assert (full.status, full.failure_line, full.commands) == ("FAILURE", "failure", [])
            async with http.get(f"http://127.0.0.1:{http_port}/healthz") as response:
                assert response.status == 200
                assert (await response.json())["status"] == "ok"

            # The callee's key press, journaled while the database was away (as the opt-out route does);
            # the background replay must store it with 1,100 peers connected.
            optout = OptOut(uuid.uuid4(), NUMBER, call_id, "default", "9", datetime.now(UTC))
            await OptOutJournal(optouts).append(optout)
            stored = "SELECT count(*) = 1 FROM optouts WHERE id = $1"
            await _until(lambda: db.fetchval(stored, optout.id))
            async with http.get(f"http://127.0.0.1:{http_port}/healthz") as response:
                assert (await response.json())["status"] == "ok"  # no background task down

            # One slow peer goes: its session is free, and the next check of the number is blocked.
            held[0].close()
            await _until(lambda: _answered(asterisk))
            after = await asterisk.agi("check", NUMBER)
            assert (after.variables["DIALGUARD_VERDICT"], after.variables["DIALGUARD_REASON"]) == (
                "BLOCK",
                "dnc.internal",
            )
            assert proc.returncode is None

            proc.send_signal(signal.SIGTERM)  # with 767 sessions still open
            async with asyncio.timeout(20):  # rather than never: a swallowed cancel would hang here
                assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await db.close()
    log = (await said).decode()
    assert "refused with AGISTATUS=FAILURE" in log
    assert "Too many open files" not in log
    assert "Traceback" not in log


async def _answered(asterisk: FakeAsterisk) -> bool:
    """A session is free again: a check gets its verdict (the gateway noticed the closed peer)."""
    run = await asterisk.agi("check", "not a number")
    return run.status == "SUCCESS"
