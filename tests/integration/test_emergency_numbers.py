"""Emergency and short service numbers that reach the gate anyway (issue 10, item 13): ALLOW, with the
reason ``number.emergency``, through every entry point — never a block, whatever the facts.

The numbers are read from the shipped dialplan's [dialguard-emergency], so the gate's list cannot drift
from the one the dialplan dials before any check.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dialguard.asterisk.agi_routes import agi_routes
from dialguard.asterisk.agi_server import AgiServer
from dialguard.clock import fixed_clock
from dialguard.config import Settings
from dialguard.gate import CheckRequest, Gate
from dialguard.policy.model import Verdict
from dialguard.rules.loader import load_rulebook
from dialguard.scrub import Scrubber
from dialguard.store import dnc
from dialguard.store.tokens import Role, create_token
from dialguard.web.app import create_app
from tests.cli import dialguard
from tests.dialplan_shipped import CONF, emergency_extensions, installed
from tests.fakes.asterisk_agi import FakeAsterisk
from tests.fakes.dialplan import Channel, call, load_dialplan
from tests.integration.test_dialplan_gate import agi_over_fastagi

NIGHT = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # 03:00 in New York: outside every calling window
SHIPPED = emergency_extensions(load_dialplan(CONF))


def gate_for(pool: asyncpg.Pool, region: str = "US") -> Gate:
    return Gate(pool=pool, rulebook=load_rulebook(), clock=fixed_clock(NIGHT), default_region=region)


@pytest.mark.parametrize("number", SHIPPED)
async def test_every_number_the_dialplan_dials_unchecked_is_allowed_by_the_gate(
    pool: asyncpg.Pool, number: str
) -> None:
    # A recorded check, at night, for a campaign that does not exist: nothing of that is even looked at.
    result = await gate_for(pool).check(
        CheckRequest(number, campaign="no-such-campaign", record=True, channel="agi")
    )
    assert result.verdict is Verdict.ALLOW
    assert result.decision.codes == ("number.emergency",)
    detail = result.decision.reasons[0].detail
    assert detail["dialled"] == number and detail["service"]
    assert number.endswith(str(detail["digits"]))
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM decisions WHERE call_id = $1", result.call_id)
        attempts = await conn.fetchval("SELECT count(*) FROM attempts")
    assert row is not None, "stored like any other decision"
    assert (row["verdict"], row["reason"], row["number"]) == ("ALLOW", "ok", detail["digits"])
    assert row["body"]["reasons"][0]["code"] == "number.emergency"
    assert not row["recorded"] and attempts == 0  # no campaign's attempt: no cap counts it


@pytest.mark.parametrize("region", ["GB", "PL", "CN"])
async def test_the_gate_answers_alike_on_a_site_of_any_country(pool: asyncpg.Pool, region: str) -> None:
    for number in ("911", "9112", "999", "000", "+1911"):
        result = await gate_for(pool, region).check(CheckRequest(number))
        assert result.decision.codes == ("number.emergency",), (region, number)


@pytest.mark.parametrize("number", ["411", "611", "311", "12", "1911", "+1999", "9112345678"])
async def test_other_short_numbers_are_still_invalid_numbers(pool: asyncpg.Pool, number: str) -> None:
    # The dialplan sends 411 and 611 (directory, repair) to the check like any number: the gate blocks.
    result = await gate_for(pool).check(CheckRequest(number))
    assert result.verdict is Verdict.BLOCK
    assert result.decision.codes == ("number.invalid",)


async def test_a_phone_that_writes_911_as_e164_reaches_911(pool: asyncpg.Pool) -> None:
    result = await gate_for(pool).check(CheckRequest("+1 911"))
    assert result.verdict is Verdict.ALLOW and result.number_text == "911"
    assert result.to_json()["number"] == "911"


@pytest.fixture
async def agi(pool: asyncpg.Pool) -> AsyncIterator[AgiServer]:
    server = AgiServer(routes=agi_routes(gate=gate_for(pool)), host="127.0.0.1", port=0)
    await server.start()
    yield server
    await server.close()


async def test_the_agi_check_allows_an_emergency_number_and_hands_back_its_digits(
    pool: asyncpg.Pool, agi: AgiServer
) -> None:
    run = await FakeAsterisk("127.0.0.1", agi.port).agi("check", "9911", "default", "US-XX")
    v = run.variables
    assert (v["DIALGUARD_VERDICT"], v["DIALGUARD_REASON"], v["DIALGUARD_REASONS"]) == (
        "ALLOW",
        "ok",
        "number.emergency",
    )
    assert v["DIALGUARD_NUMBER"] == "911"  # what the dialplan then dials: not 9911, never empty
    async with pool.acquire() as conn:
        body = await conn.fetchval(
            "SELECT body FROM decisions WHERE call_id = $1", uuid.UUID(v["DIALGUARD_CALL_ID"])
        )
    assert body["channel"] == "agi" and body["reasons"][0]["detail"]["dialled"] == "9911"


async def test_a_route_that_checks_every_number_dials_the_emergency_number(
    pool: asyncpg.Pool, agi: AgiServer, tmp_path: Path
) -> None:
    # The shipped check context, reached with 9911 (an administrator's own route, README): it dials 911.
    dp = installed(tmp_path)
    dp.globals["DIALGUARD_GATE"] = f"127.0.0.1:{agi.port}"
    dialled: list[str] = []

    def trunk(dialstring: str, chan: Channel) -> str:
        dialled.append(dialstring)
        return "NOANSWER"

    relay = agi_over_fastagi(asyncio.get_running_loop())
    chan = await asyncio.to_thread(call, dp, "dialguard-dialled", "9911", agi=relay, dial=trunk)
    g = dp.globals
    assert dialled == [f"{g['DIALGUARD_DIAL_PREFIX']}911{g['DIALGUARD_DIAL_SUFFIX']}"]
    assert chan.variables["DIALGUARD_VERDICT"] == "ALLOW"


async def test_check_on_the_command_line(pool: asyncpg.Pool, db_dsn: str) -> None:
    code, out, err = await dialguard(db_dsn, "check", "9911", "--json", "--lead-state", "Narnia")
    assert code == 0, (out, err)
    decision = json.loads(out)
    assert (decision["verdict"], decision["number"]) == ("ALLOW", "911")
    assert [r["code"] for r in decision["reasons"]] == ["number.emergency"]


async def test_post_checks(pool: asyncpg.Pool, aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(settings=Settings(), pool=pool, gate=gate_for(pool)))
    async with pool.acquire() as conn:
        token = await create_token(conn, name="dialer-1", role=Role.DIALER)
    response = await client.post(
        "/v1/checks",
        json={"number": "+1 911", "lead_state": "Narnia"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 200
    decision = await response.json()
    assert (decision["verdict"], decision["number"], decision["reasons"][0]["code"]) == (
        "ALLOW",
        "911",
        "number.emergency",
    )


async def test_a_lead_list_row_with_an_emergency_number_is_never_allowed(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await dnc.add_dnc(conn, at=NIGHT, number="+12125550199", source="complaint")
    out: list[list[str]] = []

    async def emit(row: list[str]) -> None:
        out.append(row)

    async def rows() -> AsyncIterator[list[str]]:
        for row in (["number"], ["911"], ["+1 212 555 0199"]):
            yield row

    summary = await Scrubber(gate=gate_for(pool), campaign="default").run(rows(), emit)
    assert out[1][1:4] == ["BLOCK", "", ""]  # a campaign never dials it
    assert "'911' is an emergency or short service number" in out[1][5]
    assert out[2][1:3] == ["BLOCK", "dnc.internal"]
    assert summary.not_judged == 1 and summary.allowed == 0
