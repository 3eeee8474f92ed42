"""The image's entrypoint and HEALTHCHECK outside Docker: a real ``dialguard serve`` started with the
Dockerfile's own ENV lines (its paths moved under a temporary directory, its ports free ones), and the
HEALTHCHECK command run against it as Docker would run it, in the same environment."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from dialguard.healthcheck import healthz_url
from tests.deploy.files import dockerfile_stages, exec_form
from tests.e2e.test_two_gateways import _free_port, _start_gateway
from tests.fakes.asterisk_agi import FakeAsterisk

FINAL = dockerfile_stages()[-1]
(VOLUME,) = exec_form(FINAL.one("VOLUME"))
_, _, _HEALTHCHECK = FINAL.one("HEALTHCHECK").partition(" CMD ")
HEALTHCHECK = exec_form(_HEALTHCHECK)


def image_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment inside the container: this process's, the Dockerfile's ENV, then ``settings``."""
    env = {**os.environ}
    for key, value in FINAL.env().items():
        env[key] = value.replace(VOLUME, str(tmp_path), 1) if value.startswith(VOLUME) else value
    env.update({f"DIALGUARD_{k.upper()}": v for k, v in settings.items()})
    return env


async def healthcheck(env: dict[str, str]) -> tuple[int, str]:
    """The HEALTHCHECK's CMD, with this interpreter as the image's ``python``."""
    assert HEALTHCHECK[0] == "python"
    run = await asyncio.create_subprocess_exec(
        sys.executable, *HEALTHCHECK[1:], env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await run.communicate()
    assert run.returncode is not None
    return run.returncode, err.decode()


def test_a_wildcard_address_is_asked_on_loopback() -> None:
    assert healthz_url("0.0.0.0", 8080) == "http://127.0.0.1:8080/healthz"
    assert healthz_url("::", 8080) == "http://[::1]:8080/healthz"
    assert healthz_url("10.1.2.3", 9000) == "http://10.1.2.3:9000/healthz"
    assert healthz_url("fd00::5", 9000) == "http://[fd00::5]:9000/healthz"


@pytest.fixture
async def gateway(
    new_database: Callable[[], Awaitable[str]], tmp_path: Path
) -> AsyncIterator[tuple[dict[str, str], asyncio.subprocess.Process]]:
    """``dialguard serve`` as the image starts it; its environment, for the health check to share."""
    env = image_env(
        tmp_path,
        database_dsn=await new_database(),
        agi_port=str(_free_port()),
        http_port=str(_free_port()),
    )
    proc = await _start_gateway(env)
    try:
        yield env, proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


async def test_the_healthcheck_passes_on_a_serving_gateway_and_fails_once_it_stops(
    gateway: tuple[dict[str, str], asyncio.subprocess.Process],
) -> None:
    env, proc = gateway
    assert await healthcheck(env) == (0, "")
    # Bound to 0.0.0.0 as in the container, it serves calls on loopback (allowed without agi.allow).
    run = await FakeAsterisk("127.0.0.1", int(env["DIALGUARD_AGI_PORT"])).agi("check", "+48601234567")
    assert run.variables["DIALGUARD_VERDICT"] in ("ALLOW", "BLOCK")
    assert run.variables["DIALGUARD_REASON"] != "gate.unavailable"

    proc.terminate()  # what `docker stop` sends
    assert await proc.wait() == 0
    code, err = await healthcheck(env)
    assert code == 1
    assert f"127.0.0.1:{env['DIALGUARD_HTTP_PORT']}/healthz" in err


async def test_the_healthcheck_fails_when_healthz_says_the_database_is_away(tmp_path: Path) -> None:
    async def unavailable(request: web.Request) -> web.Response:
        return web.json_response({"status": "unavailable", "database": "TimeoutError"}, status=503)

    app = web.Application()
    app.router.add_get("/healthz", unavailable)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        code, err = await healthcheck(image_env(tmp_path, http_port=str(port)))
    finally:
        await runner.cleanup()
    assert code == 1
    assert "answered 503" in err


async def test_a_configuration_error_is_unhealthy_not_a_crash(tmp_path: Path) -> None:
    code, err = await healthcheck(image_env(tmp_path, http_port="eighty"))
    assert code == 1
    assert "configuration error" in err and "http.port" in err
