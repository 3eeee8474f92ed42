"""The shipped dialplan against the real gate: FastAGI on a real socket, HTTP on a real app, PostgreSQL.

The dialplan runs in tests/fakes/dialplan.py as Asterisk would run it; each AGI() it reaches is a real
FastAGI session (tests/fakes/asterisk_agi.py, as res_agi.c speaks it) to the gate's own server.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialguard.asterisk.agi_routes import agi_routes
from dialguard.asterisk.agi_server import AgiServer
from dialguard.clock import fixed_clock
from dialguard.config import Settings
from dialguard.gate import Gate
from dialguard.policy.model import Purpose
from dialguard.store import consent, dnc
from dialguard.store.campaigns import add_campaign
from dialguard.store.tokens import Role, create_token
from dialguard.web.app import create_app
from tests.dialplan_shipped import CONF, PHONES, ROOT, installed
from tests.fakes import asterisk_agi
from tests.fakes.dialplan import Channel, Dialplan, call
from tests.fakes.rules import simple_rulebook

NOON = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)  # 12:00 in Warsaw, a Monday
PL_MOBILE = "+48601234567"

Client = TestClient[web.Request, web.Application]


def agi_over_fastagi(loop: asyncio.AbstractEventLoop) -> Any:
    """AGI(agi://host:port/script,args): a real FastAGI session, from the dialplan's thread."""

    def agi(url: str, args: list[str], chan: Channel) -> str:
        m = re.fullmatch(r"agi://([^:/]+):(\d+)/(.*)", url)
        assert m, url
        fake = asterisk_agi.FakeAsterisk(m.group(1), int(m.group(2)))
        channel = asterisk_agi.Channel(extension=chan.exten, context=chan.context)
        try:
            run = asyncio.run_coroutine_threadsafe(fake.agi(m.group(3), *args, channel=channel), loop).result(
                10
            )
        except OSError:
            return "FAILURE"  # res_agi: "Couldn't connect to any host.  FastAGI failed."
        for name, value in run.variables.items():
            chan.set(name, value)
        return run.status

    return agi


@pytest.fixture
async def gate_server(pool: asyncpg.Pool) -> AsyncIterator[AgiServer]:
    gate = Gate(pool=pool, rulebook=simple_rulebook(), clock=fixed_clock(NOON), default_region="PL")
    server = AgiServer(routes=agi_routes(gate=gate), host="127.0.0.1", port=0)
    await server.start()
    yield server
    await server.close()


def dialplan_to(tmp_path: Path, port: int) -> Dialplan:
    dp = installed(tmp_path)
    dp.globals["DIALGUARD_GATE"] = f"127.0.0.1:{port}"  # the site's [globals] edit
    return dp


async def run_call(dp: Dialplan, number: str, dialled: list[str]) -> Channel:
    def trunk(dialstring: str, chan: Channel) -> str:
        dialled.append(dialstring)
        return "NOANSWER"

    agi = agi_over_fastagi(asyncio.get_running_loop())
    return await asyncio.to_thread(call, dp, PHONES, number, agi=agi, dial=trunk)


async def test_a_consented_number_is_checked_by_the_gate_then_dialled(
    pool: asyncpg.Pool, gate_server: AgiServer, tmp_path: Path
) -> None:
    async with pool.acquire() as conn:
        await consent.grant_consent(
            conn, at=NOON, number=PL_MOBILE, kind="express", source="web_form", purpose=Purpose.MARKETING,
            granted_at=NOON - timedelta(days=1),
        )  # fmt: skip
    dp = dialplan_to(tmp_path, gate_server.port)
    dialled: list[str] = []
    chan = await run_call(dp, "0048601234567", dialled)
    call_id = chan.variables["DIALGUARD_CALL_ID"]
    g = dp.globals
    assert dialled == [f"{g['DIALGUARD_DIAL_PREFIX']}{PL_MOBILE}{g['DIALGUARD_DIAL_SUFFIX']}"]
    async with pool.acquire() as conn:
        attempts = await conn.fetchval("SELECT count(*) FROM attempts WHERE call_id = $1::uuid", call_id)
    assert attempts == 1  # a check from the dialplan counts as an attempt


async def test_a_number_on_the_internal_list_is_rejected_with_its_reason(
    pool: asyncpg.Pool, gate_server: AgiServer, tmp_path: Path
) -> None:
    async with pool.acquire() as conn:
        await dnc.add_dnc(conn, at=NOON, number=PL_MOBILE, source="complaint")
    dialled: list[str] = []
    chan = await run_call(dialplan_to(tmp_path, gate_server.port), "+48601234567", dialled)
    assert dialled == []
    assert chan.ended == "Hangup(21)"
    assert any(
        e.data.startswith("dialguard: BLOCK dnc.internal [") for e in chan.events if e.kind == "Verbose"
    )


async def test_an_emergency_number_never_reaches_the_gate(
    pool: asyncpg.Pool, gate_server: AgiServer, tmp_path: Path
) -> None:
    dialled: list[str] = []
    dp = dialplan_to(tmp_path, gate_server.port)
    chan = await run_call(dp, "112", dialled)
    g = dp.globals
    assert dialled[0] == f"{g['DIALGUARD_EMERGENCY_DIAL_PREFIX']}112{g['DIALGUARD_EMERGENCY_DIAL_SUFFIX']}"
    assert "AGI" not in [e.kind for e in chan.events]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM decisions") == 0


async def test_a_gate_that_is_down_is_logged_as_unreachable_and_the_call_rejected(tmp_path: Path) -> None:
    server = AgiServer(routes={}, host="127.0.0.1", port=0)
    await server.start()
    port = server.port
    await server.close()  # nothing listens there now
    dialled: list[str] = []
    chan = await run_call(dialplan_to(tmp_path, port), "+48601234567", dialled)
    assert dialled == []
    assert [e.data for e in chan.events if e.kind == "Verbose"] == [
        "dialguard: gate unreachable (AGISTATUS=FAILURE) - call to +48601234567 rejected"
    ]
    assert chan.ended == "Hangup(21)"


# ------------------------------------------------------------------ item 15: the dialer's check


def dialer_docs() -> dict[str, str]:
    """Where the dialer flow is written: README's Asterisk section, docs/asterisk.md, the conf comment."""
    readme = (ROOT / "README.md").read_text()
    wiring = readme[readme.index("## Wire it into Asterisk") :]
    return {
        "README.md": wiring[: wiring.index("\n## ", 1)],
        "docs/asterisk.md": (ROOT / "docs" / "asterisk.md").read_text(),
        CONF.name: CONF.read_text(),
    }


def check_bodies(text: str) -> list[dict[str, Any]]:
    # curl -d '{...}' localhost:8080/v1/checks, or "POST /v1/checks {...}"
    pattern = r"(\{\"number\"[^{}]*\})'?\s+localhost:\d+/v1/checks|/v1/checks\s+(\{[^{}]*\})"
    return [json.loads(b) for m in re.finditer(pattern, text) for b in m.groups() if b]


@pytest.fixture
async def api(pool: asyncpg.Pool, aiohttp_client: Any) -> tuple[Client, str]:
    # A cap of two calls a day: a check that counts as an attempt runs into it on the third call.
    rulebook = simple_rulebook(consent_for=(), cap=(2, timedelta(days=1)))
    gate = Gate(pool=pool, rulebook=rulebook, clock=fixed_clock(NOON), default_region="PL")
    client = await aiohttp_client(create_app(settings=Settings(), pool=pool, gate=gate))
    async with pool.acquire() as conn:
        await add_campaign(conn, name="spring", purpose=Purpose.INFORMATIONAL)
        token = await create_token(conn, name="crm", role=Role.DIALER)
    return client, token


@pytest.mark.parametrize("doc", sorted(dialer_docs()))
async def test_the_documented_dialer_check_counts_as_an_attempt_so_caps_apply(
    api: tuple[Client, str], doc: str
) -> None:
    bodies = check_bodies(dialer_docs()[doc])
    assert bodies, f"{doc} documents no POST /v1/checks body for the dialer"
    client, token = api
    for body in bodies:
        assert body.get("record") is True, f'{doc}: {body}: without "record": true it is a dry run'
        verdicts = []
        for _ in range(3):
            r = await client.post("/v1/checks", json=body, headers={"Authorization": f"Bearer {token}"})
            decision = await r.json()
            assert r.status == 200, decision
            verdicts.append((decision["verdict"], decision["reason"], decision["recorded"]))
        assert verdicts == [("ALLOW", "ok", True), ("ALLOW", "ok", True), ("BLOCK", "frequency.cap", True)]
