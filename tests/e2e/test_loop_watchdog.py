"""A gateway whose event loop stops ends itself, so that Asterisk's AGI() fails at once (issue 14, 4a).

Asterisk never times out a FastAGI read, and a stalled process still accepts connections from its listen
backlog: without the watchdog, a call would wait in AGI() for as long as the loop is stuck. The gateway
here is the real ``serve``, started by a small driver that blocks its loop when the test asks (a callback
that sleeps, as a blocking call on the loop would): no hook in dialguard itself.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.e2e.test_two_gateways import _free_port
from tests.fakes.asterisk_agi import FakeAsterisk

DRIVER = """
import asyncio, logging, sys, time
from dialguard.app import serve
from dialguard.config import load_settings

def block_the_loop():
    sys.stdin.readline()
    print("driver: blocking the event loop", file=sys.stderr, flush=True)
    time.sleep(3600)

async def main():
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), block_the_loop)
    await serve(load_settings())

logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
asyncio.run(main())
"""
# What Asterisk's launch_netscript and setup_env send before they wait for the first command.
pytestmark = pytest.mark.faketime_unsafe  # the watchdog thread waits with a timeout (pyproject markers)

AGI_REQUEST = (
    b"agi_network: yes\nagi_network_script: check\nagi_request: agi://127.0.0.1/check\n"
    b"agi_channel: PJSIP/alice-00000001\nagi_arg_1: +12125550142\n\n"
)
STALL_LIMIT = 2.0


async def _stderr_until(proc: asyncio.subprocess.Process, marker: bytes) -> None:
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        while marker not in (line := await proc.stderr.readline()):
            assert line, f"the gateway exited before {marker!r}"


@pytest.fixture
async def stallable(
    new_database: Callable[[], Awaitable[str]], tmp_path: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """A serving gateway (and its FastAGI port) whose loop blocks when a line arrives on its stdin."""
    agi_port = _free_port()
    env = {
        **os.environ,
        "DIALGUARD_DATABASE_DSN": await new_database(),
        "DIALGUARD_AGI_PORT": str(agi_port),
        "DIALGUARD_HTTP_PORT": str(_free_port()),
        "DIALGUARD_CALLS_JOURNAL_PATH": str(tmp_path / "journal.jsonl"),
        "DIALGUARD_GATE_LOOP_STALL_LIMIT": str(STALL_LIMIT),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DRIVER, env=env, stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        await _stderr_until(proc, b"dialguard ready")
        yield proc, agi_port
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_a_stalled_gateway_ends_itself_and_the_call_waiting_on_it_fails_at_once(
    stallable: tuple[asyncio.subprocess.Process, int],
) -> None:
    proc, agi_port = stallable
    assert proc.stdin is not None and proc.stderr is not None
    answered = await FakeAsterisk("127.0.0.1", agi_port).agi("check", "+12125550142")
    assert answered.variables["DIALGUARD_VERDICT"] in ("ALLOW", "BLOCK")  # it served while its loop ran

    proc.stdin.write(b"block\n")
    await proc.stdin.drain()
    await _stderr_until(proc, b"driver: blocking the event loop")
    # A call arrives now: the kernel accepts it from the backlog, as it would for Asterisk.
    reader, writer = await asyncio.open_connection("127.0.0.1", agi_port)
    writer.write(AGI_REQUEST)
    await writer.drain()
    async with asyncio.timeout(30):  # the limit is 2 s; without the watchdog the call waits for ever
        try:
            answer = await reader.read()
        except ConnectionResetError:  # the request was never read: closing the socket resets it
            answer = b""
    writer.close()
    assert answer == b"", "the stalled gateway answered after all"

    async with asyncio.timeout(30):
        assert await proc.wait() == 70
    said = (await proc.stderr.read()).decode()
    [line] = [line for line in said.splitlines() if "CRITICAL" in line]
    assert "dialguard.watchdog" in line and "event loop has not run" in line
    assert "block_the_loop" in line  # where the loop was stuck, for whoever reads the log
    with pytest.raises(ConnectionRefusedError):  # the next call fails at once (hagi:// moves on)
        await asyncio.open_connection("127.0.0.1", agi_port)
