"""`dialguard serve` under systemd's Type=notify and WatchdogSec (issue 14, item 4b): a real gateway
process, and the test in systemd's place on a real AF_UNIX datagram socket named by $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.e2e.test_two_gateways import _free_port, _start_gateway
from tests.fakes.asterisk_agi import FakeAsterisk


@pytest.mark.parametrize("namespace", ["abstract", "path"])
async def test_systemd_hears_ready_once_serving_then_watchdog_pings_then_stopping_on_sigterm(
    namespace: str, new_database: Callable[[], Awaitable[str]], tmp_path: Path
) -> None:
    agi_port = _free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("NOTIFY_SOCKET", "WATCHDOG_PID")}
    env |= {
        "DIALGUARD_DATABASE_DSN": await new_database(),
        "DIALGUARD_AGI_PORT": str(agi_port),
        "DIALGUARD_HTTP_PORT": str(_free_port()),
        "DIALGUARD_CALLS_JOURNAL_PATH": str(tmp_path / "journal.jsonl"),
        "WATCHDOG_USEC": "1000000",  # WatchdogSec=1s: a ping every half second
    }
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.setblocking(False)
        if namespace == "abstract":
            name = f"dialguard-test-{uuid.uuid4().hex}"
            systemd.bind("\0" + name)
            env["NOTIFY_SOCKET"] = "@" + name
        else:
            systemd.bind(str(tmp_path / "notify"))
            env["NOTIFY_SOCKET"] = str(tmp_path / "notify")

        async def heard() -> list[str]:
            async with asyncio.timeout(30):
                return (await loop.sock_recv(systemd, 4096)).decode().splitlines()

        proc = await _start_gateway(env)
        try:
            assert "READY=1" in await heard()
            # READY=1 means serving: a call is answered now.
            run = await FakeAsterisk("127.0.0.1", agi_port).agi("check", "+12125550142")
            assert run.variables["DIALGUARD_VERDICT"] in ("ALLOW", "BLOCK")
            pings = 0
            while pings < 3:
                message = await heard()
                assert message == ["WATCHDOG=1"]
                pings += 1

            proc.send_signal(signal.SIGTERM)
            while "STOPPING=1" not in (message := await heard()):
                assert message == ["WATCHDOG=1"]
            async with asyncio.timeout(30):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
