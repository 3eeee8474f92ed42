"""Several `dialguard serve` processes on one FastAGI port (agi.reuse_port, http.reuse_port): both start,
the kernel spreads the calls over both, and a process without the setting is refused with a line that
names the key to set."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.e2e.test_two_gateways import _free_port, _start_gateway
from tests.fakes.asterisk_agi import FakeAsterisk

SESSIONS = 200


async def _refused(env: dict[str, str]) -> str:
    """The stderr of a `serve` that must fail to start (exit 1)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialguard", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 1, err.decode()
    return err.decode()


@pytest.fixture
async def gateway_env(new_database: Callable[[], Awaitable[str]], tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DIALGUARD_DATABASE_DSN": await new_database(),
        "DIALGUARD_DATABASE_DATA_DIR": str(tmp_path),  # one state directory, as systemd's instances share
        "DIALGUARD_DATABASE_POOL_SIZE": "3",
        "DIALGUARD_DATABASE_ADMIN_POOL_SIZE": "1",
        "DIALGUARD_AGI_PORT": str(_free_port()),
        "DIALGUARD_HTTP_PORT": str(_free_port()),
    }


async def test_two_processes_share_one_port_and_the_calls(gateway_env: dict[str, str]) -> None:
    shared = {**gateway_env, "DIALGUARD_AGI_REUSE_PORT": "true", "DIALGUARD_HTTP_REUSE_PORT": "true"}
    procs = []
    try:
        for name in ("gateway-a", "gateway-b"):
            procs.append(await _start_gateway({**shared, "DIALGUARD_GATE_WRITER": name}))
        asterisk = FakeAsterisk("127.0.0.1", int(gateway_env["DIALGUARD_AGI_PORT"]))
        numbers = [f"+1212555{i:04d}" for i in range(SESSIONS)]
        runs = await asyncio.gather(*(asterisk.agi("check", n) for n in numbers))
        assert all("DIALGUARD_VERDICT" in run.variables for run in runs)
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{gateway_env['DIALGUARD_HTTP_PORT']}/healthz"
            async with http.get(url) as response:
                assert response.status == 200  # whichever process the kernel picked
        # Without the setting, a third process on the same port is refused, naming the key.
        third = await _refused({**gateway_env, "DIALGUARD_GATE_WRITER": "gateway-c"})
        assert "agi.port" in third and "is in use" in third and "agi.reuse_port = true" in third
        assert "DIALGUARD_AGI_REUSE_PORT" in third and "Traceback" not in third
        # FastAGI elsewhere, HTTP on the shared port without the setting: refused, naming the HTTP key.
        fourth = await _refused(
            {**shared, "DIALGUARD_AGI_PORT": str(_free_port()), "DIALGUARD_HTTP_REUSE_PORT": "false"}
        )
        assert "http.port" in fourth and "http.reuse_port = true" in fourth and "Traceback" not in fourth
    finally:
        for proc in procs:
            proc.terminate()
            await proc.wait()
    conn = await asyncpg.connect(gateway_env["DIALGUARD_DATABASE_DSN"])
    try:
        rows = await conn.fetch("SELECT writer, count(*) AS n FROM decisions GROUP BY writer")
    finally:
        await conn.close()
    by_writer = {r["writer"]: r["n"] for r in rows}
    assert sum(by_writer.values()) == SESSIONS
    # Both decided calls: the kernel hashes each connection's ports, so 200 all on one has odds of 2^-199.
    assert set(by_writer) == {"gateway-a", "gateway-b"}, by_writer
    assert all(n > 0 for n in by_writer.values())


async def test_a_second_process_without_the_setting_is_refused_with_the_key_to_set(
    gateway_env: dict[str, str],
) -> None:
    first = await _start_gateway(gateway_env)
    try:
        err = await _refused(gateway_env)
    finally:
        first.terminate()
        await first.wait()
    port = gateway_env["DIALGUARD_AGI_PORT"]
    (line,) = [line for line in err.splitlines() if line.startswith("dialguard:")]
    assert line == (
        f"dialguard: agi.port: 127.0.0.1:{port} is in use (another dialguard serve, or another program); "
        "several gateway processes share one port only when every one of them sets agi.reuse_port = true "
        "(DIALGUARD_AGI_REUSE_PORT)"
    )
