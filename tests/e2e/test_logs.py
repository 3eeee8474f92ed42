"""The logs of a real `dialguard serve`: one line a decision from every entry point, numbers masked,
JSON on request, and no secret anywhere (issue 11)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from dialguard.logs import mask
from tests.cli import dialguard
from tests.e2e.test_two_gateways import _free_port
from tests.fakes.asterisk_agi import FakeAsterisk

SECRETS = {"dsn": "dsn-pw-s3cr3t", "ami": "ami-s3cr3t", "hlr": "Bearer hlr-s3cr3t"}
NUMBER = "+48601234567"


def _with_password(dsn: str, password: str) -> str:
    """The same DSN with a password (the test server trusts local connections and ignores it)."""
    parts = urlsplit(dsn)
    user = parts.username or "postgres"
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{user}:{password}@{host}", parts.path, parts.query, ""))


async def test_a_full_run_logs_every_decision_masked_and_no_secret(db_dsn: str, tmp_path: Path) -> None:
    dsn = _with_password(db_dsn, SECRETS["dsn"])
    code, token, _ = await dialguard(dsn, "token", "create", "crm", "--role", "dialer")
    assert code == 0
    token = token.strip()
    agi_port, http_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "DIALGUARD_DATABASE_DSN": dsn,
        "DIALGUARD_AGI_PORT": str(agi_port),
        "DIALGUARD_HTTP_PORT": str(http_port),
        "DIALGUARD_AMI_SECRET": SECRETS["ami"],
        "DIALGUARD_HLR_AUTH_VALUE": SECRETS["hlr"],
        "DIALGUARD_LOG_LEVEL": "DEBUG",
        "DIALGUARD_LOG_FORMAT": "json",
        "DIALGUARD_CALLS_JOURNAL_PATH": str(tmp_path / "journal.jsonl"),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialguard", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(30):
            while "dialguard ready" not in (line := (await proc.stderr.readline()).decode()):
                assert line, "the gateway exited before it was ready"
                lines.append(line)
        await FakeAsterisk("127.0.0.1", agi_port).agi("check", NUMBER)
        async with aiohttp.ClientSession() as http:
            answer = await http.post(
                f"http://127.0.0.1:{http_port}/v1/checks",
                json={"number": NUMBER, "record": True},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert answer.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(proc.communicate(), 30)
    lines += rest.decode().splitlines()
    log = "\n".join(lines)
    for secret in (*SECRETS.values(), token, NUMBER):
        assert secret not in log, f"{secret!r} reached the log"
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(records) == len([line for line in lines if line.strip()]), "every line is one JSON object"
    decisions = [r for r in records if r["logger"] == "dialguard.decisions"]
    assert [d["channel"] for d in decisions] == ["agi", "http:crm"]
    assert all(d["number"] == mask(NUMBER) and d["verdict"] in ("ALLOW", "BLOCK") for d in decisions)
    assert all({"call_id", "campaign", "reason", "latency_ms"} <= set(d) for d in decisions)
