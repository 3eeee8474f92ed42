"""Evidence bundles (issue 13): exported from a real PostgreSQL, checked offline, and every kind of
tampering with one found — an altered byte, a dropped row, rows reordered — by the library, by
`dialguard verify FILE` in a subprocess, and through GET /v1/evidence with its role check."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dialguard.anchor import AnchorFile, seal_round
from dialguard.bundle import FORMAT, UnreadableBundle, check_bundle, load_bundle
from dialguard.clock import fixed_clock
from dialguard.config import Settings
from dialguard.gate import Gate
from dialguard.rules.loader import load_rulebook
from dialguard.store import evidence
from dialguard.store.evidence import BundleTooLarge, export_campaign, export_number
from dialguard.store.sealing import seal
from dialguard.store.tokens import Role, create_token
from dialguard.web.app import create_app
from tests.cli import dialguard
from tests.integration.evidence_history import ANN, BOB, KEY, NOW, decide, record_history, settle

Client = TestClient[web.Request, web.Application]


async def sealed_history(pool: asyncpg.Pool, anchor: AnchorFile | None = None) -> dict[str, Any]:
    """The history, settled and sealed (with the key, anchored when ``anchor`` is given); Ann's bundle."""
    async with pool.acquire() as conn:
        history = await record_history(conn)
        await settle(conn)
        if anchor is not None:
            await seal_round(conn, key=KEY, anchor=anchor, clock=fixed_clock(NOW))
        else:
            await seal(conn, key=KEY)
        bundle = await export_number(conn, ANN, at=NOW, by="test")
    bundle["_calls"] = [str(c) for c in history.calls[ANN]]
    return bundle


def checked(bundle: dict[str, Any], **kw: Any) -> Any:
    """The check of the bundle as a file would carry it (the test's own notes taken out)."""
    doc = {k: v for k, v in bundle.items() if not k.startswith("_")}
    return check_bundle(load_bundle(json.dumps(doc).encode()), **kw)


async def test_a_numbers_bundle_holds_its_whole_history_and_others_rows_by_hash_only(
    pool: asyncpg.Pool,
) -> None:
    bundle = await sealed_history(pool)
    logs = bundle["logs"]
    counts = {table: len(part["records"]) for table, part in logs.items()}
    assert counts == {
        "decisions": 2,
        "call_events": 3,  # a notice per call, and the stored opt-out
        "consent_grants": 1,
        "consent_revocations": 2,  # withdrawn by a call, and by the opt-out
        "dnc_history": 4,  # on the list (by complaint, and by the opt-out), the wildcard over it, off it
        "optouts": 1,
    }
    decision = logs["decisions"]["records"][1]["content"]
    assert decision["body"]["reasons"][0]["code"] == "dnc.internal"  # every reason, with its evidence
    assert [r["content"]["action"] for r in logs["dnc_history"]["records"]] == ["add", "add", "remove", "add"]
    assert logs["consent_grants"]["records"][0]["content"]["evidence"] == {"form": "f-0142"}
    # Bob's rows share Ann's checkpoints: their hashes are there, nothing of their content.
    text = json.dumps(bundle)
    assert BOB not in text and "f-0199" not in text
    sealing_rows = logs["decisions"]["checkpoints"][0]["rows"]
    assert [len(r) for r in sealing_rows] == [1, 2, 1]  # Ann, Bob (by hash), Ann
    report = checked(bundle, key=KEY)
    assert report.ok, report.problems
    assert {t: (s.records, s.sealed, s.unsealed) for t, s in report.logs.items()} == {
        t: (n, n, 0) for t, n in counts.items()
    }


async def test_one_altered_byte_in_a_decision_is_found_and_named(pool: asyncpg.Pool, tmp_path: Path) -> None:
    bundle = await sealed_history(pool)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({k: v for k, v in bundle.items() if not k.startswith("_")}, indent=1))
    code, out, _ = await dialguard("postgresql://unused", "verify", str(path))
    assert code == 0 and "bundle intact" in out, out
    # One byte: the blocked call's reason, as it stands in the file.
    data = path.read_bytes()
    at = data.index(b'"reason": "dnc.internal"')
    path.write_bytes(data[:at] + data[at:].replace(b"dnc.internal", b"dnc.internaL", 1))
    code, out, _ = await dialguard("postgresql://unused", "verify", str(path))
    assert code == 1, out
    decision_id = bundle["logs"]["decisions"]["records"][1]["id"]
    call = bundle["_calls"][1]
    assert f"ALTERED: decision {decision_id} (call {call}): its content does not match its row hash" in out
    assert "bundle has been altered" in out


async def test_a_dropped_row_is_found_whether_the_record_or_its_seal_goes(pool: asyncpg.Pool) -> None:
    bundle = await sealed_history(pool)
    without_record = json.loads(json.dumps(bundle))
    gone = without_record["logs"]["decisions"]["records"].pop()
    problems = checked(without_record).problems
    assert any(f"seals decision {gone['id']} of this bundle's subject, but the bundle does not hold it" in p
               for p in problems), problems  # fmt: skip

    without_seal = json.loads(json.dumps(bundle))
    checkpoint = without_seal["logs"]["consent_revocations"]["checkpoints"][0]
    checkpoint["rows"] = []
    problems = checked(without_seal).problems
    assert "consent revocation checkpoint 1 (" in problems[0] and "do not hash to its digest" in problems[0]
    assert any("yet no checkpoint in the bundle seals it" in p for p in problems)


async def test_reordered_rows_are_found(pool: asyncpg.Pool) -> None:
    bundle = await sealed_history(pool)
    reordered = json.loads(json.dumps(bundle))
    rows = reordered["logs"]["decisions"]["checkpoints"][0]["rows"]
    rows[0], rows[1] = rows[1], rows[0]
    problems = checked(reordered).problems
    assert len(problems) == 1 and problems[0].startswith("decision checkpoint 1 ("), problems
    # Two records swapping places in the chain (their ids exchanged) is found too.
    swapped = json.loads(json.dumps(bundle))
    records = swapped["logs"]["decisions"]["records"]
    records[0]["id"], records[1]["id"] = records[1]["id"], records[0]["id"]
    assert checked(swapped).problems[0].startswith("decision checkpoint 1 (")


async def test_rows_newer_than_the_last_checkpoint_are_reported_not_yet_sealed(pool: asyncpg.Pool) -> None:
    await sealed_history(pool)
    async with pool.acquire() as conn:
        await decide(conn, ANN)  # after the seal: not sealed until settled
        bundle = await export_number(conn, ANN, at=NOW, by="test")
    report = checked(bundle)
    assert report.ok, report.problems
    assert (report.logs["decisions"].records, report.logs["decisions"].unsealed) == (3, 1)


async def test_a_number_with_nothing_recorded_gets_an_empty_bundle_that_checks(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        bundle = await export_number(conn, "+12125550100", at=NOW, by="test")
    assert all(part["records"] == [] and part["checkpoints"] == [] for part in bundle["logs"].values())
    assert checked(bundle).ok


async def test_with_the_key_and_the_anchor_the_operator_confirms_the_gateway_sealed_it(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    anchor = AnchorFile(tmp_path / "anchor.jsonl")
    bundle = await sealed_history(pool, anchor)
    state = AnchorFile(anchor.path, keep_all=True).read()
    report = checked(bundle, key=KEY, anchored=state.anchored())
    assert report.ok and not report.notes, (report.problems, report.notes)
    wrong = checked(bundle, key=bytes(32))
    assert any("its mac does not match the seal key" in p for p in wrong.problems)
    # A forger who rebuilt a checkpoint consistently (new digest over altered rows) still fails both.
    cp = bundle["logs"]["decisions"]["checkpoints"][0]
    cp["digest"] = cp["digest"][::-1]
    forged = checked(bundle, key=KEY, anchored=state.anchored())
    assert any("differs from the anchor file's copy" in p for p in forged.problems)
    assert any("its mac does not match" in p for p in forged.problems)


async def test_verify_file_exit_codes_for_unreadable_bundles(tmp_path: Path) -> None:
    cases = {
        "garbage.json": b"\x00\x01 not json",
        "other.json": b'{"format": "something-else"}',
        "shape.json": json.dumps({"format": FORMAT, "subject": {}, "logs": {"decisions": []}}).encode(),
        "rows.json": json.dumps(
            {
                "format": FORMAT,
                "subject": {},
                "logs": {
                    "decisions": {
                        "records": [],
                        "checkpoints": [
                            {
                                "log": "decisions",
                                "id": 1,
                                "from_at": "2026-01-01T00:00:00+00:00",
                                "to_at": "2026-01-01T00:00:10+00:00",
                                "row_count": 1,
                                "digest": "00",
                                "prev_digest": None,
                                "mac": None,
                                "rows": [["x", "y", "z"]],
                            }
                        ],
                    }
                },
            }
        ).encode(),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        code, _, err = await dialguard("postgresql://unused", "verify", str(tmp_path / name))
        assert code == 2 and "unreadable" in err, (name, err)
    code, _, err = await dialguard("postgresql://unused", "verify", str(tmp_path / "missing.json"))
    assert code == 2 and "unreadable: No such file or directory" in err
    with pytest.raises(UnreadableBundle, match="not JSON"):
        load_bundle(b"{")


async def test_the_cli_exports_a_number_and_the_bundle_checks_with_the_key_file(
    pool: asyncpg.Pool, db_dsn: str, tmp_path: Path
) -> None:
    await sealed_history(pool)
    out_file = tmp_path / "ann.json"
    code, _, err = await dialguard(db_dsn, "evidence", "(212) 555-0142", "-o", str(out_file),
                                   numbers_default_region="US")  # fmt: skip
    assert code == 0, err
    assert "2 decisions (1 checkpoints)" in err
    bundle = json.loads(out_file.read_text())
    assert bundle["subject"] == {"number": ANN} and bundle["exported_by"] == "cli"
    key_file = tmp_path / "seal.key"
    key_file.write_text(KEY.hex() + "\n")
    code, out, _ = await dialguard(db_dsn, "verify", str(out_file), "--key-file", str(key_file))
    assert code == 0 and "macs checked" in out, out
    key_file.write_text(bytes(32).hex())
    code, out, _ = await dialguard(db_dsn, "verify", str(out_file), "--key-file", str(key_file))
    assert code == 1 and "its mac does not match the seal key" in out
    for bad in (["evidence"], ["evidence", ANN, "--campaign", "spring"], ["evidence", ANN, "--since",
                "2026-01-01T00:00:00Z"], ["verify", "--key-file", str(key_file)]):  # fmt: skip
        code, _, err = await dialguard(db_dsn, *bad)
        assert code == 2, (bad, err)


async def test_a_campaign_bundle_holds_the_calls_of_its_window(
    pool: asyncpg.Pool, db_dsn: str, tmp_path: Path
) -> None:
    async with pool.acquire() as conn:
        await record_history(conn)
        early = await decide(conn, BOB, campaign="spring", at=NOW - timedelta(days=30))
        await decide(conn, BOB, campaign="autumn")
        await settle(conn)
        await seal(conn, key=KEY)
        window = await export_campaign(
            conn, "spring", since=NOW - timedelta(days=1), until=NOW + timedelta(days=1), at=NOW, by="t"
        )
        everything = await export_campaign(conn, "spring", since=None, until=None, at=NOW, by="t")
    assert len(window["logs"]["decisions"]["records"]) == 3  # Ann twice, Bob once; not the early one
    assert len(everything["logs"]["decisions"]["records"]) == 4
    assert str(early) in json.dumps(everything) and str(early) not in json.dumps(window)
    # The numbers called: their consent and list history came along.
    assert len(window["logs"]["consent_grants"]["records"]) == 2
    assert checked(window).ok and checked(everything).ok
    out_file = tmp_path / "spring.json"
    code, _, err = await dialguard(db_dsn, "evidence", "--campaign", "spring", "--since",
                                   "2026-11-22T00:00:00Z", "-o", str(out_file))  # fmt: skip
    assert code == 0, err
    assert len(json.loads(out_file.read_text())["logs"]["decisions"]["records"]) == 3


async def test_a_bundle_past_its_size_is_refused_not_built(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sealed_history(pool)
    monkeypatch.setattr(evidence, "MAX_ROWS", 4)  # Ann's 2 decisions fit; the 3 rows sealing them do not
    async with pool.acquire() as conn:
        with pytest.raises(BundleTooLarge, match="more than 4 rows"):
            await export_number(conn, ANN, at=NOW, by="test")


# ---------------------------------------------------------------- GET /v1/evidence


@pytest.fixture
async def api(pool: asyncpg.Pool, aiohttp_client: Any) -> tuple[Client, dict[str, str]]:
    gate = Gate(pool=pool, rulebook=load_rulebook(), clock=fixed_clock(NOW), default_region="US")
    client = await aiohttp_client(create_app(settings=Settings(), pool=pool, gate=gate))
    async with pool.acquire() as conn:
        tokens = {str(role): await create_token(conn, name=f"{role}-1", role=role) for role in Role}
    return client, {role: f"Bearer {token}" for role, token in tokens.items()}


async def test_supervisors_and_admins_download_a_bundle_dialers_may_not(
    pool: asyncpg.Pool, api: tuple[Client, dict[str, str]]
) -> None:
    client, auth = api
    await sealed_history(pool)
    for role in ("supervisor", "admin"):
        response = await client.get("/v1/evidence/(212) 555-0142", headers={"Authorization": auth[role]})
        assert response.status == 200, await response.text()
        assert response.headers["Content-Disposition"] == (
            'attachment; filename="dialguard-evidence-+12125550142-20261123T160000Z.json"'
        )
        bundle = json.loads(await response.read())
        assert bundle["exported_by"] == f"{role}-1" and checked(bundle).ok
    response = await client.get(f"/v1/evidence/{ANN}", headers={"Authorization": auth["dialer"]})
    assert response.status == 403 and (await response.json())["error_id"] == "forbidden"
    assert (await client.get(f"/v1/evidence/{ANN}")).status == 401
    campaign = await client.get("/v1/evidence?campaign=spring", headers={"Authorization": auth["dialer"]})
    assert campaign.status == 403


async def test_a_campaign_download_and_bad_requests(
    pool: asyncpg.Pool, api: tuple[Client, dict[str, str]]
) -> None:
    client, auth = api
    await sealed_history(pool)
    headers = {"Authorization": auth["supervisor"]}
    response = await client.get(
        "/v1/evidence", params={"campaign": "spring", "since": "2026-11-23T00:00:00Z"}, headers=headers
    )
    assert response.status == 200
    assert (
        'filename="dialguard-evidence-campaign-spring-20261123T160000Z.json"'
        in response.headers["Content-Disposition"]
    )
    assert len(json.loads(await response.read())["logs"]["decisions"]["records"]) == 3
    for query, status, error_id in (
        ({}, 400, "bad_query"),
        ({"campaign": "spring", "since": "yesterday"}, 400, "bad_field"),
        ({"campaign": "spring", "since": "2026-11-23T00:00:00"}, 400, "bad_field"),
        ({"campaign": "spring", "since": "2026-11-23T00:00:00Z", "until": "2026-11-22T00:00:00Z"}, 400,
         "bad_query"),
        ({"campaign": "spring", "colour": "red"}, 400, "bad_query"),
    ):  # fmt: skip
        response = await client.get("/v1/evidence", params=query, headers=headers)
        assert (response.status, (await response.json())["error_id"]) == (status, error_id), query
    response = await client.get("/v1/evidence/not-a-number", headers=headers)
    assert (response.status, (await response.json())["error_id"]) == (422, "invalid_number")


async def test_a_bundle_too_large_is_a_clear_422(
    pool: asyncpg.Pool, api: tuple[Client, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, auth = api
    await sealed_history(pool)
    monkeypatch.setattr(evidence, "MAX_ROWS", 4)
    response = await client.get(f"/v1/evidence/{ANN}", headers={"Authorization": auth["admin"]})
    assert (response.status, (await response.json())["error_id"]) == (422, "bundle_too_large")
