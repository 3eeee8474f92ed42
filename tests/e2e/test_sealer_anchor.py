"""`dialguard serve` seals under a key of its own and anchors every checkpoint (issue 14, item 11): the
key file is made at first start (mode 0600), the anchor grows as the sealer runs, and a log truncated
with its checkpoints behind the gateway's back stops the sealer, which /healthz reports."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from dialguard.store.db import create_pool
from tests.cli import dialguard
from tests.e2e.test_supervised_sealer import health_until
from tests.e2e.test_two_gateways import _free_port, _start_gateway
from tests.integration.evidence_history import record_history, settle


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def lines_in(path: Path, at_least: int) -> list[str]:
    async with asyncio.timeout(60):  # a round every 10 s
        while len(lines := await asyncio.to_thread(_lines, path)) < at_least:  # noqa: ASYNC110 - another process's file
            await asyncio.sleep(0.2)
        return lines


async def test_serve_makes_its_key_anchors_what_it_seals_and_stops_at_a_truncated_log(
    new_database: Callable[[], Awaitable[str]], tmp_path: Path
) -> None:
    dsn = await new_database()
    http_port = _free_port()
    key_file, anchor = tmp_path / "state" / "seal.key", tmp_path / "state" / "seal-anchor.jsonl"
    env = {
        **os.environ,
        "DIALGUARD_DATABASE_DSN": dsn,
        "DIALGUARD_AGI_PORT": str(_free_port()),
        "DIALGUARD_HTTP_PORT": str(http_port),
        "DIALGUARD_CALLS_JOURNAL_PATH": str(tmp_path / "journal.jsonl"),
        "DIALGUARD_GATE_SEAL_KEY_FILE": str(key_file),
        "DIALGUARD_GATE_SEAL_ANCHOR": str(anchor),
    }
    pool = await create_pool(dsn, size=1)  # with the gateway's jsonb codec
    proc = await _start_gateway(env)
    assert proc.stderr is not None
    said = asyncio.create_task(proc.stderr.read())  # read as it comes: a full pipe would stall the loop
    try:
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        async with pool.acquire() as conn:
            await record_history(conn)
            await settle(conn)
        lines = await lines_in(anchor, 7)  # the first line, then a checkpoint of each of the six logs
        assert '"log":"decisions"' in "".join(lines)
        settings = {"gate_seal_key_file": str(key_file), "gate_seal_anchor": str(anchor)}
        code, out, _ = await dialguard(dsn, "verify", **settings)
        assert code == 0 and "evidence logs intact" in out, out
        await pool.execute("TRUNCATE decisions, decision_checkpoints, attempts")
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{http_port}/healthz"
            body = await health_until(http, url, lambda b: "sealer" in b.get("down", {}))
        assert "AnchorError" in body["down"]["sealer"]["error"]
        code, out, _ = await dialguard(dsn, "verify", **settings)
        assert code == 1 and "is in the anchor file but not in the database" in out
    finally:
        await pool.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                await proc.wait()
    log = (await said).decode()
    assert "background task sealer failed" in log and "is missing from the database" in log
