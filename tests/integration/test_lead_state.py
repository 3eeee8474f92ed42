"""Issue 10, item 5: a lead's own state, through every entry point, read by one parser.

The forms users type (``FL``, ``fl``, `` us-fl ``, ``Florida``) apply that state's rules; anything the
number's country does not make a state of is an error where one can be returned (CLI exit 2, HTTP 422,
a scrub row error) and a BLOCK ``lead_state.invalid`` where none can (FastAGI).

The yardstick: Florida allows calls 8:00-20:00, the federal rule 8:00-21:00. A New York number
(America/New_York only) at 20:30 Eastern is allowed, unless its lead lives in Florida.
"""

from __future__ import annotations

import csv
import json
import uuid
from datetime import UTC, datetime
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
from dialguard.gate import CheckRequest, Gate
from dialguard.policy.model import Purpose, Verdict
from dialguard.rules.loader import load_rulebook
from dialguard.scrub import Scrubber
from dialguard.store import campaigns
from dialguard.store.tokens import Role, create_token
from dialguard.web.app import create_app
from tests.cli import dialguard
from tests.fakes.asterisk_agi import FakeAsterisk

# A Monday, no holiday: 20:30 in New York and Miami, 19:30 in Pensacola.
EVENING = datetime(2026, 11, 24, 1, 30, tzinfo=UTC)
EVENING_ISO = "2026-11-23T20:30:00-05:00"
NY = "+1 212 555 0142"  # America/New_York only; no state layer with hours
FLORIDA_FORMS = ["FL", "fl", " us-fl ", "US-FL", "Florida", "florida"]
NOT_STATES = ["US-XX", "XX", "Floridaa", "CA-XX", "ON", "US FL"]

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def notices(pool: asyncpg.Pool) -> asyncpg.Pool:
    """An informational campaign: no consent or national list needed in the US, only the hours judge."""
    async with pool.acquire() as conn:
        await campaigns.add_campaign(conn, name="notices", purpose=Purpose.INFORMATIONAL)
    return pool


def gate_for(pool: asyncpg.Pool) -> Gate:
    return Gate(pool=pool, rulebook=load_rulebook(), clock=fixed_clock(EVENING), default_region="US")


def hours_of(decision: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in decision["reasons"] if r["code"].startswith("hours."))


# ------------------------------------------------------------------ the gate


@pytest.mark.parametrize("state", FLORIDA_FORMS)
async def test_the_gate_applies_florida_for_every_form_of_it(notices: asyncpg.Pool, state: str) -> None:
    gate = gate_for(notices)
    alone = await gate.check(CheckRequest(NY, campaign="notices"))
    assert alone.verdict is Verdict.ALLOW, alone.decision.reasons  # 20:30 < 21:00 federally
    florida = await gate.check(CheckRequest(NY, campaign="notices", lead_subdivision=state))
    assert florida.verdict is Verdict.BLOCK
    assert florida.decision.reason == "hours.outside_window"


@pytest.mark.parametrize("state", NOT_STATES)
async def test_the_gate_blocks_a_lead_state_it_cannot_read_and_stores_why(
    notices: asyncpg.Pool, state: str
) -> None:
    result = await gate_for(notices).check(CheckRequest(NY, campaign="notices", lead_subdivision=state))
    assert result.verdict is Verdict.BLOCK
    assert result.decision.reason == "lead_state.invalid"
    failed = next(r for r in result.decision.reasons if not r.passed)
    assert failed.detail["value"] == state
    assert result.stored
    async with notices.acquire() as conn:
        row = await conn.fetchrow("SELECT verdict, reason FROM decisions WHERE call_id = $1", result.call_id)
    assert row is not None and (row["verdict"], row["reason"]) == ("BLOCK", "lead_state.invalid")


# ------------------------------------------------------------------ the command line


async def test_check_on_the_command_line_applies_florida_for_fl(notices: asyncpg.Pool, db_dsn: str) -> None:
    base = ("check", NY, "--campaign", "notices", "--at", EVENING_ISO, "--json")
    code, out, err = await dialguard(db_dsn, *base)
    assert code == 0, (out, err)
    for state in ("FL", "Florida", "us-fl"):
        code, out, err = await dialguard(db_dsn, *base, "--lead-state", state)
        assert code == 10, (state, out, err)
        decision = json.loads(out)
        assert decision["reason"] == "hours.outside_window"
        assert "America/Chicago" in json.dumps(hours_of(decision))  # Florida's zones were added


@pytest.mark.parametrize("command", ["check", "explain"])
async def test_a_lead_state_the_command_line_cannot_read_is_a_usage_error(
    notices: asyncpg.Pool, db_dsn: str, command: str
) -> None:
    args = ["check"] if command == "check" else ["rules", "explain"]
    code, out, err = await dialguard(db_dsn, *args, NY, "--at", EVENING_ISO, "--lead-state", "US-XX")
    assert code == 2, (out, err)
    line = err.strip()
    assert "\n" not in line, err
    # The value, and the accepted forms shown on the number's own state.
    assert "'US-XX'" in line and "(NY)" in line and "(US-NY)" in line and "(New York)" in line
    async with notices.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM decisions") == 0  # nothing was judged


async def test_rules_explain_applies_florida_for_fl(notices: asyncpg.Pool, db_dsn: str) -> None:
    code, out, err = await dialguard(
        db_dsn, "rules", "explain", NY, "--at", EVENING_ISO, "--lead-state", "FL"
    )
    assert code == 0, err
    assert "US-FL" in out


# ------------------------------------------------------------------ HTTP


@pytest.fixture
async def api(notices: asyncpg.Pool, aiohttp_client: Any) -> tuple[Client, dict[str, str]]:
    client = await aiohttp_client(create_app(settings=Settings(), pool=notices, gate=gate_for(notices)))
    async with notices.acquire() as conn:
        token = await create_token(conn, name="dialer-1", role=Role.DIALER)
    return client, {"Authorization": f"Bearer {token}"}


async def test_post_checks_applies_florida_for_fl(api: tuple[Client, dict[str, str]]) -> None:
    client, auth = api
    body = {"number": NY, "campaign": "notices"}
    alone = await (await client.post("/v1/checks", json=body, headers=auth)).json()
    assert alone["verdict"] == "ALLOW", alone
    response = await client.post("/v1/checks", json={**body, "lead_state": "fl"}, headers=auth)
    assert response.status == 200
    florida = await response.json()
    assert (florida["verdict"], florida["reason"]) == ("BLOCK", "hours.outside_window")


async def test_post_checks_refuses_a_lead_state_it_cannot_read(
    api: tuple[Client, dict[str, str]], notices: asyncpg.Pool
) -> None:
    client, auth = api
    response = await client.post(
        "/v1/checks", json={"number": NY, "campaign": "notices", "lead_state": "US-XX"}, headers=auth
    )
    assert response.status == 422
    error = await response.json()
    assert set(error) == {"error_id", "message", "details"}
    assert error["error_id"] == "invalid_lead_state"
    assert "'US-XX'" in error["message"]
    assert error["details"]["field"] == "lead_state" and error["details"]["value"] == "US-XX"
    async with notices.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM decisions") == 0


# ------------------------------------------------------------------ FastAGI


@pytest.fixture
async def agi(notices: asyncpg.Pool) -> Any:
    server = AgiServer(routes=agi_routes(gate=gate_for(notices)), host="127.0.0.1", port=0)
    await server.start()
    yield FakeAsterisk("127.0.0.1", server.port)
    await server.close()


async def test_the_agi_check_applies_florida_for_its_third_argument(agi: FakeAsterisk) -> None:
    alone = await agi.agi("check", NY, "notices")
    assert alone.variables["DIALGUARD_VERDICT"] == "ALLOW"
    florida = await agi.agi("check", NY, "notices", "Florida")
    assert florida.variables["DIALGUARD_VERDICT"] == "BLOCK"
    assert florida.variables["DIALGUARD_REASON"] == "hours.outside_window"


async def test_the_agi_check_blocks_a_lead_state_it_cannot_read(
    agi: FakeAsterisk, notices: asyncpg.Pool
) -> None:
    run = await agi.agi("check", NY, "notices", "US-XX")
    assert run.variables["DIALGUARD_VERDICT"] == "BLOCK"
    assert run.variables["DIALGUARD_REASON"] == "lead_state.invalid"
    assert run.variables["DIALGUARD_NUMBER"] == "+12125550142"
    async with notices.acquire() as conn:
        body = await conn.fetchval(
            "SELECT body FROM decisions WHERE call_id = $1", uuid.UUID(run.variables["DIALGUARD_CALL_ID"])
        )
    failed = next(r for r in body["reasons"] if r["code"] == "lead_state.invalid")
    assert failed["detail"]["value"] == "US-XX" and not failed["passed"]


# ------------------------------------------------------------------ scrub


async def scrub(gate: Gate, *rows: list[str]) -> tuple[list[list[str]], dict[str, Any]]:
    out: list[list[str]] = []

    async def emit(row: list[str]) -> None:
        out.append(row)

    async def lines() -> Any:
        for row in rows:
            yield row

    summary = await Scrubber(gate=gate, campaign="notices", at=EVENING).run(lines(), emit)
    return out, summary.as_json()


async def test_scrub_reads_the_state_column_with_the_same_parser(notices: asyncpg.Pool) -> None:
    out, summary = await scrub(
        gate_for(notices),
        ["number", "state"],
        [NY, ""],
        [NY, "Florida"],
        [NY, "us-fl"],
        [NY, "US-XX"],
        [NY, "Ontario"],
    )
    verdicts = [row[2:4] for row in out[1:]]
    assert verdicts[:3] == [
        ["ALLOW", "ok"],
        ["BLOCK", "hours.outside_window"],
        ["BLOCK", "hours.outside_window"],
    ]
    for row in out[4:]:
        assert row[2:5] == ["BLOCK", "", ""], row  # not judged, never ALLOW
        assert f"'{row[1]}'" in row[6], row  # the row error names the value
    assert summary["not_judged"] == 2
    assert summary["rows"] == 5


async def test_scrub_from_the_command_line_gives_a_bad_state_its_row_error(
    notices: asyncpg.Pool, db_dsn: str, tmp_path: Path
) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text(f"number,lead_state\n{NY},FL\n{NY},Narnia\n", encoding="utf-8")
    code, _, err = await dialguard(
        db_dsn, "scrub", str(leads), "-o", str(tmp_path / "out.csv"), "--campaign", "notices",
        "--at", EVENING_ISO,
    )  # fmt: skip
    assert code == 0, err
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as f:
        out = list(csv.reader(f))
    assert out[1][2:4] == ["BLOCK", "hours.outside_window"]
    assert out[2][2:4] == ["BLOCK", ""] and "'Narnia'" in out[2][6]


async def test_scrub_over_http_gives_a_bad_ndjson_lead_state_its_row_error(
    api: tuple[Client, dict[str, str]],
) -> None:
    client, auth = api
    body = f'{{"number": "{NY}", "lead_state": "FL"}}\n{{"number": "{NY}", "lead_state": "US-XX"}}\n'
    response = await client.post(
        "/v1/scrub?campaign=notices",
        data=body,
        headers={**auth, "Content-Type": "application/x-ndjson"},
    )
    lines = [json.loads(x) for x in (await response.text()).splitlines()]
    assert (lines[0]["verdict"], lines[0]["reason"]) == ("BLOCK", "hours.outside_window")
    assert (lines[1]["verdict"], lines[1]["reason"]) == ("BLOCK", "")
    assert "'US-XX'" in lines[1]["row_error"]
    assert lines[2]["summary"]["not_judged"] == 1
