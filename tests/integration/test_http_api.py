"""The /v1 HTTP API over a real socket and a real PostgreSQL: roles, errors, effects, the OpenAPI document."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialguard.clock import fixed_clock
from dialguard.config import HttpSettings, Settings
from dialguard.gate import Gate
from dialguard.rules.loader import load_rulebook
from dialguard.store.tokens import Role, create_token, revoke_token
from dialguard.web.app import create_app
from dialguard.web.routes import ROUTES
from tests.fakes.waiting import server_reports

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 11:00 in New York
SMALL_BODY = 4096

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def api(pool: asyncpg.Pool, aiohttp_client: Any) -> tuple[Client, dict[str, str]]:
    settings = dataclasses.replace(Settings(), http=HttpSettings(max_body_bytes=SMALL_BODY))
    gate = Gate(pool=pool, rulebook=load_rulebook(), clock=fixed_clock(NOW), default_region="US")
    client = await aiohttp_client(create_app(settings=settings, pool=pool, gate=gate))
    async with pool.acquire() as conn:
        tokens = {str(role): await create_token(conn, name=f"{role}-1", role=role) for role in Role}
    return client, tokens


def concrete(path: str) -> str:
    """A route's path with a sample value for each {parameter}: braces never match aiohttp's router."""
    return re.sub(r"\{[^}]+\}", "0b6c7d2a-9f4e-4e1b-8c3a-5d2f1e0a9b87", path)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def error_of(response: Any) -> dict[str, Any]:
    body = await response.json()
    assert set(body) == {"error_id", "message", "details"}, body
    return dict(body)


# Who may do what (issue 4): supervisor reads; dialer checks, writes consent and opt-outs; admin all.
READ = {"admin", "dialer", "supervisor"}
WRITE = {"admin", "dialer"}
MATRIX = {
    ("POST", "/v1/checks"): WRITE,
    ("GET", "/v1/campaigns"): READ,
    ("GET", "/v1/campaigns/{name}"): READ,
    ("POST", "/v1/campaigns"): {"admin"},
    ("GET", "/v1/consents"): READ,
    ("POST", "/v1/consents"): WRITE,
    ("POST", "/v1/consents/revocations"): WRITE,
    ("GET", "/v1/dnc"): READ,
    ("POST", "/v1/dnc"): WRITE,
    ("DELETE", "/v1/dnc"): {"admin"},
    ("GET", "/v1/dnc/lists"): READ,
    ("POST", "/v1/dnc/imports"): {"admin"},
    ("GET", "/v1/complaints"): READ,
    ("POST", "/v1/complaints"): WRITE,
    ("POST", "/v1/scrub"): WRITE,
    ("GET", "/v1/audit"): {"admin", "supervisor"},
    ("POST", "/v1/calls"): WRITE,
    ("GET", "/v1/calls/{call_id}"): READ,
    ("GET", "/v1/numbers/{number}/explain"): READ,
    ("GET", "/v1/stats/verdicts"): READ,
    ("GET", "/v1/whoami"): READ,
    ("GET", "/v1/decisions"): READ,
    ("GET", "/v1/calls"): READ,
    ("GET", "/v1/events"): READ,
    ("GET", "/v1/evidence/{number}"): {"admin", "supervisor"},
    ("GET", "/v1/evidence"): {"admin", "supervisor"},
}


def test_the_matrix_names_every_route() -> None:
    assert set(MATRIX) == {(r.method, r.path) for r in ROUTES}


@pytest.mark.parametrize(("method", "path"), sorted(MATRIX))
async def test_each_role_route_by_route(api: tuple[Client, dict[str, str]], method: str, path: str) -> None:
    client, tokens = api
    for role, token in tokens.items():
        response = await client.request(method, concrete(path), headers=bearer(token), json={})
        if role in MATRIX[(method, path)]:
            assert response.status not in (401, 403), (role, method, path, await response.text())
        else:
            assert response.status == 403, (role, method, path)
            assert (await error_of(response))["error_id"] == "forbidden"


async def test_no_token_a_wrong_one_and_a_revoked_one_are_refused(
    api: tuple[Client, dict[str, str]], pool: asyncpg.Pool
) -> None:
    client, tokens = api
    assert (await error_of(await client.get("/v1/campaigns")))["error_id"] == "unauthenticated"
    assert (await client.get("/v1/campaigns", headers=bearer("dg_nope"))).status == 401
    assert (await client.get("/v1/campaigns", headers={"Authorization": "Basic abc"})).status == 401
    async with pool.acquire() as conn:
        await revoke_token(conn, at=NOW, name="admin-1")
    assert (await client.get("/v1/campaigns", headers=bearer(tokens["admin"]))).status == 401
    assert (await client.get("/healthz")).status == 200  # health and the document need no token
    assert (await client.get("/v1/openapi.json")).status == 200


@pytest.mark.parametrize(
    ("body", "status", "error_id"),
    [
        (b'{"number": 12125550142}', 400, "bad_type"),
        (b'{"number": "+12125550142", "colour": "red"}', 400, "unknown_fields"),
        (b'{"campaign": "x"}', 400, "missing_field"),
        (b'{"number": "+12125550142", "record": "yes"}', 400, "bad_type"),
        (b'{"number": "+12125550142", "at": "tomorrow"}', 400, "bad_field"),
        (b'{"number": "+12125550142", "at": "2026-11-23T10:00:00"}', 400, "bad_field"),
        (b'{"number": "+1212', 400, "bad_json"),
        (b"[1, 2]", 400, "bad_json"),
        (b'{"number": "' + b"9" * SMALL_BODY + b'"}', 413, "body_too_large"),
    ],
)
async def test_bad_bodies_get_the_right_status_and_a_message(
    api: tuple[Client, dict[str, str]], body: bytes, status: int, error_id: str
) -> None:
    client, tokens = api
    headers = {**bearer(tokens["dialer"]), "Content-Type": "application/json"}
    response = await client.post("/v1/checks", data=body, headers=headers)
    assert response.status == status
    error = await error_of(response)
    assert error["error_id"] == error_id
    assert error["message"]


async def test_a_body_that_is_not_json_and_a_number_that_is_not_a_number(
    api: tuple[Client, dict[str, str]],
) -> None:
    client, tokens = api
    plain = await client.post("/v1/consents", data=b"number=1", headers=bearer(tokens["dialer"]))
    assert plain.status == 415
    bad = await client.post(
        "/v1/consents",
        json={"number": "call me", "purpose": "marketing", "kind": "express", "source": "api"},
        headers=bearer(tokens["dialer"]),
    )
    assert bad.status == 422
    assert (await error_of(bad))["error_id"] == "invalid_number"


async def test_a_check_returns_the_decision_json(api: tuple[Client, dict[str, str]]) -> None:
    client, tokens = api
    response = await client.post(
        "/v1/checks",
        json={"number": "+1 212 555 0142", "campaign": "default"},
        headers=bearer(tokens["dialer"]),
    )
    assert response.status == 200
    decision = await response.json()
    assert {"call_id", "number", "campaign", "verdict", "reason", "reasons", "next_callable_at"} <= set(
        decision
    )
    assert decision["number"] == "+12125550142"
    assert decision["verdict"] == "BLOCK"  # marketing without consent or a national list


async def test_a_complaint_revokes_consent_lists_the_number_and_is_audited(
    api: tuple[Client, dict[str, str]],
) -> None:
    client, tokens = api
    dialer = bearer(tokens["dialer"])
    granted = await client.post(
        "/v1/consents",
        json={
            "number": "+44 7911 123456",
            "purpose": "marketing",
            "kind": "express",
            "source": "web_form",
            "evidence": {"name": "Ann", "request_shown": "Call me about offers"},
        },
        headers=dialer,
    )
    assert granted.status == 201
    filed = await client.post(
        "/v1/complaints", json={"number": "07911 123456", "channel": "phone", "note": "stop"}, headers=dialer
    )
    assert filed.status == 422  # a national number needs the default region: this API's is US
    filed = await client.post(
        "/v1/complaints", json={"number": "+447911123456", "channel": "phone", "note": "stop"}, headers=dialer
    )
    assert filed.status == 201
    check = await (
        await client.post(
            "/v1/checks", json={"number": "+447911123456", "campaign": "default"}, headers=dialer
        )
    ).json()
    assert check["reason"] == "dnc.internal"
    consents = await (await client.get("/v1/consents?number=%2B447911123456", headers=dialer)).json()
    assert [c["revoked_at"] is not None for c in consents["consents"]] == [True]
    audit = await (await client.get("/v1/audit", headers=bearer(tokens["supervisor"]))).json()
    actions = [(e["actor"], e["action"], e["subject"]) for e in audit["entries"]]
    assert ("dialer-1", "consent.grant", "+447911123456") in actions
    assert ("dialer-1", "consent.revoke", "+447911123456") in actions
    assert ("dialer-1", "dnc.add", "+447911123456") in actions
    assert ("dialer-1", "complaint.file", "+447911123456") in actions


async def test_a_dialer_writes_opt_outs_but_not_national_lists(api: tuple[Client, dict[str, str]]) -> None:
    client, tokens = api
    dialer = bearer(tokens["dialer"])
    ok = await client.post("/v1/dnc", json={"number": "+12125550142"}, headers=dialer)
    assert ok.status == 201
    again = await client.post("/v1/dnc", json={"number": "+12125550142"}, headers=dialer)
    assert (again.status, (await again.json())["added"]) == (200, False)
    national = await client.post(
        "/v1/dnc", json={"number": "+12125550142", "list": "us_national"}, headers=dialer
    )
    assert national.status == 422 and (await error_of(national))["error_id"] == "national_list"
    # Not even an admin: a national list changes only by import (issue 11).
    by_admin = await client.post(
        "/v1/dnc", json={"number": "+12125550142", "list": "us_national"}, headers=bearer(tokens["admin"])
    )
    assert by_admin.status == 422
    wildcard = await client.post("/v1/dnc", json={"number": "+1305*"}, headers=bearer(tokens["admin"]))
    assert wildcard.status == 201
    no_country = await client.post("/v1/dnc", json={"number": "+0212*"}, headers=bearer(tokens["admin"]))
    assert no_country.status == 422  # refused at the edge, not by the database's CHECK (a 500)
    gone = await client.delete("/v1/dnc", json={"number": "+1999"}, headers=bearer(tokens["admin"]))
    assert gone.status == 422


async def test_import_over_http_and_a_wrong_format_or_a_truncated_upload_changes_nothing(
    api: tuple[Client, dict[str, str]], pool: asyncpg.Pool
) -> None:
    client, tokens = api
    admin = bearer(tokens["admin"])
    url = "/v1/dnc/imports?list=us_national&format=us-registry&date=2026-11-20"
    done = await client.post(url, data=b"2125550100\n212,5550101\n", headers=admin)
    assert done.status == 201, await done.text()
    report = await done.json()
    assert (report["rows"], report["list_date"]) == (2, "2026-11-20")
    wrong = await client.post(url, data=b"number,name\n+12125550100,Ann\n+13105550100,Bob\n", headers=admin)
    assert wrong.status == 422
    assert (await error_of(wrong))["error_id"] == "wrong_format"

    # A client that announces more than it sends, then hangs up while the import's COPY waits for more.
    _, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        f"POST {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tokens['admin']}\r\n"
        "Content-Length: 1000000\r\n\r\n".encode()
        + b"3105550100\n" * 100
    )
    await writer.drain()
    async with pool.acquire() as conn:
        await server_reports(conn, "SELECT count(*) > 0 FROM pg_stat_progress_copy")
        writer.close()
        await writer.wait_closed()
        await server_reports(conn, "SELECT count(*) = 0 FROM pg_stat_progress_copy")
        await server_reports(
            conn,
            """SELECT count(*) = 0 FROM pg_stat_activity
                WHERE datname = current_database() AND state LIKE 'idle in transaction%'""",
        )
    lists = await (await client.get("/v1/dnc/lists", headers=admin)).json()
    assert [(x["name"], x["version_id"], x["row_count"]) for x in lists["lists"]] == [
        ("us_national", report["version_id"], 2)
    ]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM dnc_registry_numbers") == 2


async def test_an_import_of_a_lapsing_list_over_http_reads_its_lifetime_from_the_packs(
    api: tuple[Client, dict[str, str]],
) -> None:
    client, tokens = api
    admin = bearer(tokens["admin"])
    url = "/v1/dnc/imports?list=us_tx&format=csv&date=2026-11-22"
    undated = await client.post(url, data=b"number\n5125550100\n", headers=admin)
    assert undated.status == 422
    assert "registered_on" in (await error_of(undated))["message"]
    dated = b"number,registered_on\n5125550100,2025-03-01\n5125550101,2023-11-21\n"
    done = await client.post(url, data=dated, headers=admin)
    assert done.status == 201, await done.text()
    assert {k: (await done.json())[k] for k in ("rows", "lapsed", "rejected")} == {
        "rows": 1,
        "lapsed": 1,
        "rejected": 0,
    }


async def test_scrub_over_http_streams_a_line_a_row_then_the_summary(
    api: tuple[Client, dict[str, str]],
) -> None:
    client, tokens = api
    response = await client.post(
        "/v1/scrub?campaign=default",
        data='number,name\n+1 212 555 0142,"Ann\nSmith"\nnope,Bob\n',
        headers={**bearer(tokens["dialer"]), "Content-Type": "text/csv"},
    )
    assert response.status == 200
    lines = [json.loads(line) for line in (await response.text()).splitlines()]
    assert [line.get("reason") for line in lines[:2]] == ["dnc.list_stale", "number.invalid"]
    assert lines[0]["row"] == {"number": "+1 212 555 0142", "name": "Ann\nSmith"}
    assert lines[2] == {
        "summary": {
            "rows": 2,
            "allowed": 0,
            "blocked": 2,
            "by_reason": {"dnc.list_stale": 1, "number.invalid": 1},
        }
    }


async def test_the_openapi_document_matches_the_router_both_ways(api: tuple[Client, dict[str, str]]) -> None:
    client, _ = api
    document = await (await client.get("/v1/openapi.json")).json()
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    routed = {
        (r.method, r.resource.canonical)
        for r in client.app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith("/v1/") and r.method != "HEAD"
    }
    routed.discard(("GET", "/v1/openapi.json"))
    assert documented == routed
    for (method, path), roles in MATRIX.items():
        assert set(document["paths"][path][method.lower()]["x-roles"]) == roles


async def test_scrub_takes_ndjson_and_a_bad_line_ends_the_stream_with_an_error(
    api: tuple[Client, dict[str, str]],
) -> None:
    client, tokens = api
    headers = {**bearer(tokens["dialer"]), "Content-Type": "application/x-ndjson"}
    body = '{"number": "+1 212 555 0142", "lead_state": "NY"}\n\n{"number": "nope"}\n'
    lines = [
        json.loads(x)
        for x in (
            await (await client.post("/v1/scrub?campaign=default", data=body, headers=headers)).text()
        ).splitlines()
    ]
    assert [x.get("reason") for x in lines[:2]] == ["dnc.list_stale", "number.invalid"]
    assert lines[0]["row"] == {"number": "+1 212 555 0142", "lead_state": "NY"}
    assert lines[2]["summary"]["rows"] == 2
    broken = '{"number": "+1 212 555 0142"}\n{"number": 42}\n'
    response = await client.post("/v1/scrub?campaign=default", data=broken, headers=headers)
    assert response.status == 200  # the stream had begun
    last = json.loads((await response.text()).splitlines()[-1])
    assert last["error"]["error_id"] == "bad_type"
    assert "line 2" in last["error"]["message"]


async def test_campaign_settings_the_call_path_cannot_use_are_refused(
    api: tuple[Client, dict[str, str]],
) -> None:
    client, tokens = api
    body = {
        "name": "ventas",
        "purpose": "marketing",
        "settings": {"optout_digit": "#*", "roaming": "yes please"},
    }
    response = await client.post("/v1/campaigns", json=body, headers=bearer(tokens["admin"]))
    assert response.status == 422
    error = await error_of(response)
    assert (
        error["error_id"] == "bad_settings"
        and "optout_digit" in error["message"]
        and "roaming" in error["message"]
    )
    listed = await client.get("/v1/campaigns", headers=bearer(tokens["admin"]))
    assert "ventas" not in await listed.text()


async def test_answers_carry_plain_headers_and_no_versions(api: tuple[Client, dict[str, str]]) -> None:
    """Issue 14, item 10."""
    client, tokens = api
    for response in (
        await client.get("/v1/campaigns", headers=bearer(tokens["admin"])),
        await client.get("/v1/campaigns"),  # an error answer too
        await client.get("/healthz"),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Server"] == "dialguard"
