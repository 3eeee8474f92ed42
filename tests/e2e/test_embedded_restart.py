"""`dialguard serve` on its embedded PostgreSQL, whose postmaster is killed (issue 14, item 5).

Before, the server stayed dead until someone restarted `serve`: every check blocked as gate.unavailable,
a WARNING each, and asyncpg's tracebacks every 1-8 s. Now the gateway starts the server again (1 s
doubling to 30 s between attempts), says so in one line when it stops and one when it runs again, the
outage is one WARNING and one INFO line, and the checks blocked meanwhile are stored when it is back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time
from pathlib import Path

import asyncpg
import pytest

from dialguard.store.embedded import postmaster_pid, running_pid
from tests.e2e.test_two_gateways import _free_port, _start_gateway
from tests.fakes.asterisk_agi import FakeAsterisk

NUMBER = "+48601234567"


async def reasons(asterisk: FakeAsterisk) -> str:
    run = await asterisk.agi("check", NUMBER, within=30)
    assert "DIALGUARD_REASONS" in run.variables, f"a check without a verdict: {run.replies[-3:]}"
    return run.variables["DIALGUARD_REASONS"]


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), 60)


@pytest.mark.slow
async def test_a_killed_embedded_postgres_is_started_again_and_its_outage_stored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Not under pytest's temp root: the embedded server's own user must reach it (see conftest).
    with tempfile.TemporaryDirectory(prefix="dialguard-test-restart-") as tmp:
        pgdata = Path(tmp) / "pgdata"
        agi_port = _free_port()
        env = {
            **{k: v for k, v in os.environ.items() if k != "DIALGUARD_DATABASE_DSN"},
            "DIALGUARD_DATABASE_DATA_DIR": tmp,
            "DIALGUARD_AGI_PORT": str(agi_port),
            "DIALGUARD_HTTP_PORT": str(_free_port()),
            "DIALGUARD_LOG_FORMAT": "json",
            "DIALGUARD_GATE_FACT_TIMEOUT": "0.5",
        }
        proc = await _start_gateway(env)
        assert proc.stderr is not None
        said = asyncio.create_task(proc.stderr.read())  # read as it comes: a full pipe stalls the loop
        asterisk = FakeAsterisk("127.0.0.1", agi_port)
        try:
            assert "gate.unavailable" not in await reasons(asterisk)
            killed = postmaster_pid(pgdata)
            assert killed is not None
            os.kill(killed, signal.SIGKILL)
            cut = time.monotonic()
            blocked = 0
            async with asyncio.timeout(45):  # 1 + 2 + 4 + 8 + 16 s of backoff, with room
                # A backend outlives its postmaster for a moment: the first checks may still be judged.
                while "gate.unavailable" not in await reasons(asterisk):  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.05)
                blocked = 1
                while "gate.unavailable" in await reasons(asterisk):
                    blocked += 1
                    await asyncio.sleep(0.1)
            back_after = time.monotonic() - cut
            restarted = running_pid(pgdata)
            assert restarted is not None and restarted != killed
            conn = await asyncpg.connect(f"postgresql://postgres@/postgres?host={pgdata}")
            try:
                async with asyncio.timeout(30):  # the decision journal is replayed every 5 s
                    while (  # noqa: ASYNC110 - the gateway's replay, another process
                        stored := await conn.fetchval(
                            "SELECT count(*) FROM decisions WHERE (body->>'stored_late')::boolean"
                        )
                    ) < blocked:
                        await asyncio.sleep(0.2)
            finally:
                await conn.close()
            assert stored == blocked > 0
        except BaseException as exc:
            await stop(proc)
            # What the gateway said explains a failure here: it runs in a process of its own.
            exc.add_note(f"gateway exit {proc.returncode}; its log's end:\n{(await said).decode()[-4000:]}")
            raise
        finally:
            await stop(proc)
            if (left := running_pid(pgdata)) is not None:  # the gateway stops it; a failed run may not
                os.kill(left, signal.SIGTERM)
        records = [json.loads(line) for line in (await said).decode().splitlines() if line.startswith("{")]
    lines = [r for r in records if r["logger"] != "dialguard.decisions"]
    messages = [r["message"] for r in lines]
    stopped = [m for m in messages if m.startswith("embedded PostgreSQL stopped")]
    running = [m for m in messages if m.startswith("embedded PostgreSQL running again after")]
    assert len(stopped) == 1 and f"pid {killed}" in stopped[0]
    assert len(running) == 1 and "restart 1 since the gateway started" in running[0]
    answers = [m for m in messages if m.startswith("database answers again")]
    assert len(answers) == 1 and f"{blocked} checks blocked meanwhile" in answers[0]
    warnings = [r["message"] for r in lines if r["level"] in ("WARNING", "ERROR", "CRITICAL")]
    # The outage, the server stopped, and at most the first failure of each background task.
    assert len(warnings) <= 4, warnings
    tracebacks = [r for r in records if "exception" in r]
    # No traceback anywhere; a failure shows each whole, as pytest would cut the records short.
    assert not tracebacks, "\n".join(f"{r['logger']}: {r['message']}\n{r['exception']}" for r in tracebacks)
    with capsys.disabled():
        print(f"\nembedded PostgreSQL killed: checks judged again after {back_after:.1f} s; {running[0]}")
