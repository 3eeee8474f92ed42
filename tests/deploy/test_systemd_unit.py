"""deploy/dialguard.service, read as systemd reads a unit (no systemd here): the keys it must have, the
settings it passes being ones ``load_settings`` accepts, and MemoryDenyWriteExecute= shown to be safe by
running the gateway under the kernel's own form of it (PR_SET_MDWE, which systemd uses where it exists)."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath

import pytest

from dialguard.config import Settings, load_settings
from tests.deploy.files import ROOT, env_file, systemd_unit
from tests.e2e.test_two_gateways import _free_port
from tests.fakes.asterisk_agi import FakeAsterisk

UNIT_PATH = ROOT / "deploy" / "dialguard.service"
UNIT = systemd_unit(UNIT_PATH)
SERVICE = UNIT["Service"]


def one(key: str) -> str:
    (value,) = SERVICE[key]
    return value


def unit_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in SERVICE["Environment"]:
        for word in shlex.split(line):
            key, sep, value = word.partition("=")
            assert sep, line
            env[key] = value
    return env


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DynamicUser", "yes"),
        ("StateDirectory", "dialguard"),
        ("Restart", "on-failure"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("RestrictNamespaces", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("SystemCallArchitectures", "native"),
    ],
)
def test_service_setting(key: str, value: str) -> None:
    assert one(key) == value


def test_network_families_are_unix_and_ip_only() -> None:
    assert set(one("RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}


def test_system_calls_are_those_of_a_service() -> None:
    filters = SERVICE["SystemCallFilter"]
    assert filters[0] == "@system-service"
    assert all(f.startswith("~") for f in filters[1:])  # later lines only take more away


def test_it_runs_dialguard_serve_and_starts_at_boot() -> None:
    assert PurePosixPath(shlex.split(one("ExecStart"))[0]).name == "dialguard"
    assert shlex.split(one("ExecStart"))[1:] == ["serve"]
    assert UNIT["Install"]["WantedBy"] == ["multi-user.target"]


def test_a_stalled_gateway_is_ended_within_five_seconds() -> None:
    """Issue 14: systemd's watchdog (a stopped process) and the loop's own (a blocked loop) both end a
    stalled gateway in time for calls to fail over within 5 s."""
    assert one("Type") == "notify"  # dialguard speaks sd_notify: READY=1, WATCHDOG=1, STOPPING=1
    watchdog = float(one("WatchdogSec").removesuffix("s"))
    abort = float(one("TimeoutAbortSec").removesuffix("s"))
    assert watchdog + abort <= 5
    assert Settings().gate.loop_stall_limit < watchdog  # the gateway's own, with its log line, first


def test_secrets_come_from_an_environment_file_read_by_systemd() -> None:
    (path,) = SERVICE["EnvironmentFile"]
    assert path.startswith("/etc/dialguard/")  # read by PID 1 as root, so it may be 0600
    assert not any(w in line.upper() for line in SERVICE["Environment"] for w in ("DSN", "SECRET", "AUTH"))


def test_state_lives_in_the_state_directory_and_the_settings_are_accepted() -> None:
    env = unit_environment()
    state = PurePosixPath("/var/lib") / one("StateDirectory")
    assert one("WorkingDirectory") == str(state)
    assert set(env) >= {"DIALGUARD_DATABASE_DATA_DIR", "DIALGUARD_CALLS_JOURNAL_PATH"}
    settings = load_settings(env={**env, **env_file(ROOT / "deploy" / "dialguard.env.example")})
    assert PurePosixPath(settings.database.data_dir) == state
    assert PurePosixPath(settings.calls.journal_path).parent == state
    # Next to Asterisk: FastAGI stays on loopback, where the default agi.allow already lets Asterisk in.
    assert settings.agi.host == "127.0.0.1"


# ------------------------------------------------------------------ MemoryDenyWriteExecute=yes

PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1
# Set the flag, check it took, then become the command: the flag is kept across execve and fork.
MDWE_EXEC = f"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
    sys.exit(f"PR_SET_MDWE: {{os.strerror(ctypes.get_errno())}}")
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""
PRINT_MDWE = f"import ctypes; print(ctypes.CDLL(None).prctl({PR_GET_MDWE}, 0, 0, 0, 0))"


async def _mdwe_supported() -> str | None:
    """None when PR_SET_MDWE works and outlives execve; else why not (kernels before 6.3)."""
    if sys.platform != "linux":
        return "PR_SET_MDWE is Linux's"
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-c", MDWE_EXEC, "-c", PRINT_MDWE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await run.communicate()
    if run.returncode != 0 or out.strip() != str(PR_MDWE_REFUSE_EXEC_GAIN).encode():
        return f"this kernel has no PR_SET_MDWE ({err.decode().strip() or out.decode().strip()})"
    return None


async def test_a_writable_executable_mapping_is_refused_under_mdwe() -> None:
    """The flag is really in force in the processes below (else the next test would prove nothing)."""
    if reason := await _mdwe_supported():
        pytest.skip(reason)
    probe = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)"
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-c", MDWE_EXEC, "-c", probe, stderr=asyncio.subprocess.PIPE
    )
    _, err = await run.communicate()
    assert run.returncode != 0 and b"PermissionError" in err


async def test_the_gateway_serves_under_memory_deny_write_execute(
    new_database: Callable[[], Awaitable[str]], tmp_path: Path
) -> None:
    if reason := await _mdwe_supported():
        pytest.skip(reason)
    agi_port, http_port = _free_port(), _free_port()
    env = {
        **os.environ,
        **unit_environment(),
        "DIALGUARD_DATABASE_DSN": await new_database(),
        "DIALGUARD_DATABASE_DATA_DIR": str(tmp_path),
        "DIALGUARD_CALLS_JOURNAL_PATH": str(tmp_path / "journal.jsonl"),
        "DIALGUARD_AGI_PORT": str(agi_port),
        "DIALGUARD_HTTP_PORT": str(http_port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", MDWE_EXEC, "-m", "dialguard", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        while b"dialguard ready" not in (line := await proc.stderr.readline()):
            assert line, "the gateway exited before it was ready"
    try:
        run = await FakeAsterisk("127.0.0.1", agi_port).agi("check", "+12025550143")  # asyncpg, the rules
        assert run.variables["DIALGUARD_REASON"] != "gate.unavailable"
        health = await asyncio.create_subprocess_exec(
            sys.executable, "-c", MDWE_EXEC, "-m", "dialguard.healthcheck", env=env
        )
        assert await health.wait() == 0  # aiohttp answered
    finally:
        proc.terminate()
        assert await proc.wait() == 0
