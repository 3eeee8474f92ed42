"""Tamper evidence that survives the gateway's own credentials (issue 14, item 11): whoever holds the DSN
rewrites rows and re-chains the SHA-256 checkpoints, or truncates a log with its checkpoints. The
plain chain then looks whole; the seal key's macs and the anchor file do not."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import asyncpg
import pytest

from dialguard.anchor import (
    AnchorError,
    AnchorFile,
    SealKeyError,
    ensure_seal_key,
    key_id,
    load_seal_key,
    seal_round,
)
from dialguard.bundle import check_bundle
from dialguard.clock import fixed_clock
from dialguard.config import ConfigError, load_settings
from dialguard.store import sealing
from dialguard.store.evidence import export_number
from dialguard.store.sealing import content_hash, decision_hash, seal, verify
from tests.cli import dialguard
from tests.conftest import as_owner
from tests.integration.evidence_history import KEY, NOW, record_history, settle

CLOCK = fixed_clock(NOW)


async def anchored_history(pool: asyncpg.Pool, anchor: AnchorFile) -> None:
    async with pool.acquire() as conn:
        await record_history(conn)
        await settle(conn)
        sealed = await seal_round(conn, key=KEY, anchor=anchor, clock=CLOCK)
    assert sealed is not None and sealed["decisions"] == 3


async def verified(
    pool: asyncpg.Pool, anchor: AnchorFile | None = None, key: bytes | None = None
) -> list[str]:
    anchored = AnchorFile(anchor.path, keep_all=True).read().anchored() if anchor is not None else None
    async with pool.acquire() as conn:
        return (await verify(conn, key=key, anchored=anchored)).problems


async def rewrite_a_decision_and_rechain(conn: asyncpg.Connection) -> None:
    """What the owner's credentials allow (the gateway's role may not: test_roles.py): change a verdict,
    give the row a fresh hash, and seal the log again from scratch with plain SHA-256 (no key: the
    database never had it)."""
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        row = await conn.fetchrow("SELECT * FROM decisions WHERE verdict = 'BLOCK' ORDER BY id LIMIT 1")
        changed = {**dict(row), "verdict": "ALLOW", "reason": "ok"}
        await conn.execute(
            "UPDATE decisions SET verdict = 'ALLOW', reason = 'ok', row_hash = $2 WHERE id = $1",
            row["id"],
            decision_hash(changed),
        )
        await conn.execute("DELETE FROM decision_checkpoints")
    await seal(conn)


async def test_a_rewritten_and_rechained_log_passes_the_plain_chain_but_not_the_key_or_the_anchor(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    anchor = AnchorFile(tmp_path / "anchor.jsonl")
    await anchored_history(pool, anchor)
    assert await verified(pool, anchor, KEY) == []
    async with as_owner(pool) as conn:
        await rewrite_a_decision_and_rechain(conn)
    assert await verified(pool) == []  # the plain chain is whole again: why the key and the anchor exist
    problems = await verified(pool, anchor, KEY)
    assert "decision checkpoint 2 carries no mac: it was not sealed with the seal key (forged)" in problems
    assert any("decision checkpoint 1 is in the anchor file but not in the database" in p for p in problems)
    async with pool.acquire() as conn:
        with pytest.raises(AnchorError, match=r"decision checkpoint 1, anchored in .* is missing"):
            await seal_round(conn, key=KEY, anchor=anchor, clock=CLOCK)


async def test_a_forged_mac_is_found_by_verify_and_refused_by_the_anchor(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    anchor = AnchorFile(tmp_path / "anchor.jsonl")
    await anchored_history(pool, anchor)
    # A checkpoint after the anchored one, linked to it, but signed under some other key.
    async with pool.acquire() as conn:
        last = await conn.fetchrow("SELECT * FROM decision_checkpoints ORDER BY id DESC LIMIT 1")
        await conn.execute(
            """INSERT INTO decision_checkpoints (from_at, to_at, row_count, digest, prev_digest, mac)
               VALUES ($1, $1::timestamptz + interval '1 microsecond', 0, $2, $3, $4)""",
            last["to_at"],
            content_hash({"forged": True}),
            last["digest"],
            b"\x00" * 32,
        )
        with pytest.raises(AnchorError, match=f"not signed with this gateway's seal key \\({key_id(KEY)}\\)"):
            await seal_round(conn, key=KEY, anchor=anchor, clock=CLOCK)
    problems = await verified(pool, anchor, KEY)
    assert any("decision checkpoint 2: its mac does not match the seal key" in p for p in problems)


async def test_a_truncated_log_is_found_by_the_anchor_and_by_the_command(
    pool: asyncpg.Pool, db_dsn: str, tmp_path: Path
) -> None:
    key_file, anchor_path = tmp_path / "seal.key", tmp_path / "seal-anchor.jsonl"
    key_file.write_text(KEY.hex() + "\n")
    key_file.chmod(0o600)
    env = {"gate_seal_key_file": str(key_file), "gate_seal_anchor": str(anchor_path)}
    await anchored_history(pool, AnchorFile(anchor_path))
    code, out, _ = await dialguard(db_dsn, "verify", **env)
    assert code == 0, out
    assert f"seal key {key_id(KEY)}: every checkpoint's mac checked" in out
    assert "anchor " in out and "6 checkpoints anchored" in out and "evidence logs intact" in out
    async with as_owner(pool) as conn:
        await conn.execute("TRUNCATE decisions, decision_checkpoints, attempts")
        assert (await verify(conn)).ok  # the database alone cannot tell an emptied log from a new one
    code, out, _ = await dialguard(db_dsn, "verify", **env)
    assert code == 1, out
    assert "TAMPERED: decision checkpoint 1 is in the anchor file but not in the database" in out
    assert "TAMPERED: decision checkpoint 1, anchored in" in out  # and sealing stopped
    # Without the key and the anchor here, the command says what it could not check.
    code, out, _ = await dialguard(
        db_dsn, "verify", gate_seal_key_file=str(tmp_path / "none"), gate_seal_anchor=str(tmp_path / "none")
    )
    assert code == 0 and "no seal key here" in out and "no anchor file at" in out


async def test_an_anchor_begun_over_an_existing_chain_pins_its_head(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """An upgrade: checkpoints sealed before the key had no mac; the anchor begins at their head."""
    async with pool.acquire() as conn:
        await record_history(conn)
        await settle(conn)
        await seal(conn)  # as before this change: no mac
    anchor = AnchorFile(tmp_path / "anchor.jsonl")
    async with pool.acquire() as conn:
        assert await seal_round(conn, key=KEY, anchor=anchor, clock=CLOCK) is not None
        report = await verify(
            conn, key=KEY, anchored=AnchorFile(anchor.path, keep_all=True).read().anchored()
        )
    assert report.ok, report.problems
    assert report.logs["decisions"].unkeyed == 1
    async with as_owner(pool) as conn:
        await rewrite_a_decision_and_rechain(conn)
    problems = await verified(pool, anchor, KEY)
    assert any("decision checkpoint 1 is in the anchor file but not in the database" in p for p in problems)


def test_the_seal_key_is_made_once_private_and_read_back(tmp_path: Path) -> None:
    settings = load_settings(env={"DIALGUARD_DATABASE_DATA_DIR": str(tmp_path / "data")})
    assert settings.gate.seal_key_file == tmp_path / "data" / "seal.key"
    assert settings.gate.seal_anchor == tmp_path / "data" / "seal-anchor.jsonl"
    assert load_seal_key(settings) is None  # commands never make one
    key = ensure_seal_key(settings)
    assert len(key) == 32 and ensure_seal_key(settings) == key == load_seal_key(settings)
    assert stat.S_IMODE(os.stat(settings.gate.seal_key_file).st_mode) == 0o600
    assert [p.name for p in settings.gate.seal_key_file.parent.iterdir()] == ["seal.key"]  # no temp left
    settings.gate.seal_key_file.write_text("not hex")
    with pytest.raises(SealKeyError, match="not a seal key"):
        load_seal_key(settings)
    configured = load_settings(env={"DIALGUARD_GATE_SEAL_KEY": KEY.hex()})
    assert load_seal_key(configured) == KEY and "seal_key=Secret('********')" in repr(configured.gate)
    with pytest.raises(ConfigError, match=r"gate\.seal_key: hex digits for 32 bytes") as raised:
        load_settings(env={"DIALGUARD_GATE_SEAL_KEY": "abcd"})
    assert "abcd" not in str(raised.value)


def test_two_writers_of_one_anchor_write_each_line_once_and_a_torn_line_is_kept_apart(tmp_path: Path) -> None:
    path = tmp_path / "anchor.jsonl"
    first = {"anchor": "dialguard-seal-anchor/1", "began_at": NOW.isoformat(), "key_id": "k", "heads": {}}
    line = {"log": "decisions", "id": 1, "digest": "00" * 32}
    a, b = AnchorFile(path), AnchorFile(path)
    a.append([first])
    b.append([first, line])
    a.append([line, {**line, "id": 2}])
    assert len(path.read_text().splitlines()) == 3
    with path.open("a") as f:
        f.write('{"log": "decisions", "id": 3, "dig')  # a crash mid-write
    assert b.read().last["decisions"]["id"] == 2  # the torn line waits for its end
    b.append([{**line, "id": 3}])
    state = AnchorFile(path, keep_all=True).read()
    assert sorted(state.digests["decisions"]) == [1, 2, 3] and state.unreadable == [4]
    path.write_text("")
    with pytest.raises(AnchorError, match="shrank"):
        a.read()
    path.write_text('{"log": "decisions"}\n')
    with pytest.raises(AnchorError, match="not a dialguard anchor file"):
        AnchorFile(path).read()


async def test_one_bulk_import_is_sealed_in_checkpoints_of_bounded_size(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A company-list import writes its rows in one transaction, all with one inserted_at: split by id,
    so that an evidence bundle of one of its numbers carries a checkpoint's worth of hashes, not all."""
    monkeypatch.setattr(sealing, "CHECKPOINT_ROWS", 3)
    async with as_owner(pool) as conn:
        await conn.execute(
            """INSERT INTO dnc_history (list_name, number, action, source, actor)
               SELECT 'internal', '+1212555' || lpad(g::text, 4, '0'), 'add', 'import', 'cli'
                 FROM generate_series(1, 10) g"""
        )
        await settle(conn)
        assert (await seal(conn, key=KEY) or {})["dnc_history"] == 10
        spans = await conn.fetch("SELECT from_id, to_id, row_count FROM dnc_history_checkpoints ORDER BY id")
        assert [tuple(s) for s in spans] == [(0, 4, 3), (4, 7, 3), (7, 10, 3), (10, 0, 1)]
        assert (await verify(conn, key=KEY)).ok
        bundle = await export_number(conn, "+12125550005", at=NOW, by="test")
        cited = bundle["logs"]["dnc_history"]["checkpoints"]
        assert [(c["id"], len(c["rows"])) for c in cited] == [(2, 3)]
        assert check_bundle(bundle, key=KEY).ok
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("DELETE FROM dnc_history WHERE id = 6")
        problems = (await verify(conn)).problems
    assert len(problems) == 1 and problems[0].startswith("do-not-call change checkpoint 2 ("), problems
