"""Decisions: append-only rows, each hashed, sealed in checkpoints that chain one to the next.

Why checkpoints rather than a hash chain per row: a chain needs each row to know the previous one,
which orders every insert of a writer behind the last; checkpoints are computed afterwards, off the
per-call path. A range of ``inserted_at`` is sealed only when no transaction that could still insert
into it is open, so a sealed range is final; afterwards any changed, removed or slipped-in row breaks
the digest of its checkpoint, and any changed row also breaks its own row hash.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from dialguard.store.db import Connection

# Sealing waits this long after a transaction began before its range is final (covers clock reads).
SETTLE = timedelta(seconds=5)
SEAL_LOCK_ID = 0x7365616C  # "seal": one sealer at a time across every gateway


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# What a decision row's hash covers: every column but the id, the hash itself and inserted_at.
HASHED_FIELDS = (
    "call_id", "number", "campaign", "verdict", "reason", "body", "rules_version", "decided_at", "recorded",
    "writer",
)  # fmt: skip


def row_hash(row: Mapping[str, Any] | asyncpg.Record) -> bytes:
    """The hash of one decision, from the values about to be inserted or a row read back."""
    fields = {name: row[name] for name in HASHED_FIELDS}
    fields["call_id"] = str(fields["call_id"])
    fields["decided_at"] = fields["decided_at"].astimezone(UTC).isoformat()
    return hashlib.sha256(canonical(fields)).digest()


INSERT_DECISION_SQL = """
WITH d AS (
    INSERT INTO decisions (call_id, number, campaign, verdict, reason, body, rules_version,
                           decided_at, recorded, writer, row_hash)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    RETURNING call_id
)
INSERT INTO attempts (number, campaign, purpose, call_id, at)
SELECT $2, $3, $12, call_id, $8 FROM d WHERE $9 AND $4 = 'ALLOW'
"""


async def insert_decision(
    conn: Connection,
    *,
    call_id: uuid.UUID,
    number: str,
    campaign: str,
    purpose: str,
    verdict: str,
    reason: str,
    body: dict[str, Any],
    rules_version: str,
    decided_at: datetime,
    recorded: bool,
    writer: str,
) -> None:
    """Store a decision; an allowed, recorded one also counts as an attempt (in the same statement)."""
    digest = row_hash(locals())  # the keyword arguments carry every hashed field by its column name
    await conn.execute(
        INSERT_DECISION_SQL,
        call_id,
        number,
        campaign,
        verdict,
        reason,
        body,
        rules_version,
        decided_at,
        recorded,
        writer,
        digest,
        purpose,
    )


BACKLOG_TIMEOUT = 600.0
_RANGE_BATCH = 10_000  # rows fetched at a time: a backlog of millions is never held in memory

_RANGE_SQL = """SELECT id, row_hash FROM decisions
                 WHERE inserted_at >= $1 AND inserted_at < $2 ORDER BY inserted_at, id"""


async def _range_digest(
    conn: Connection, prev: bytes | None, from_at: datetime, to_at: datetime
) -> tuple[int, bytes]:
    """The rows of [from_at, to_at) and their chained digest, streamed (inside a transaction)."""
    h = hashlib.sha256(prev or b"")
    count = 0
    async for r in conn.cursor(_RANGE_SQL, from_at, to_at, prefetch=_RANGE_BATCH, timeout=BACKLOG_TIMEOUT):
        h.update(r["id"].to_bytes(8, "big"))
        h.update(bytes(r["row_hash"]))
        count += 1
    return count, h.digest()


async def seal(conn: Connection) -> int | None:
    """Write the next checkpoint over every decision that can no longer change; return its row count.

    None when another gateway holds the sealer lock right now.
    """
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SEAL_LOCK_ID):
            return None
        last = await conn.fetchrow("SELECT to_at, digest FROM decision_checkpoints ORDER BY id DESC LIMIT 1")
        # The end of the range: no open transaction began before it, and it is settled by SETTLE.
        to_at = await conn.fetchval(
            """SELECT least(now() - $1::interval,
                            coalesce((SELECT min(xact_start) FROM pg_stat_activity
                                       WHERE datname = current_database() AND pid <> pg_backend_pid()
                                         AND xact_start IS NOT NULL), 'infinity'))""",
            SETTLE,
        )
        from_at = last["to_at"] if last else datetime(1970, 1, 1, tzinfo=UTC)
        if to_at <= from_at:
            return 0
        # A backlog (no serve running to seal every few seconds) can be large: not bound by a call's timeout.
        prev = bytes(last["digest"]) if last else None
        count, digest = await _range_digest(conn, prev, from_at, to_at)
        if not count:
            return 0
        await conn.execute(
            """INSERT INTO decision_checkpoints (from_at, to_at, row_count, digest, prev_digest)
               VALUES ($1, $2, $3, $4, $5)""",
            from_at,
            to_at,
            count,
            digest,
            prev,
        )
        return count


@dataclass
class VerifyReport:
    checkpoints: int = 0
    sealed_rows: int = 0
    unsealed_rows: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(conn: Connection) -> VerifyReport:
    """Recompute every row hash and every checkpoint digest; list what does not match."""
    report = VerifyReport()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for row in conn.cursor(
            """SELECT id, call_id, number, campaign, verdict, reason, body, rules_version, decided_at,
                      recorded, writer, row_hash FROM decisions ORDER BY id""",
            prefetch=_RANGE_BATCH,
            timeout=BACKLOG_TIMEOUT,
        ):
            if row_hash(row) != bytes(row["row_hash"]):
                report.problems.append(f"decision {row['id']} (call {row['call_id']}) was altered")
        prev: bytes | None = None
        last_to: datetime | None = None
        for cp in await conn.fetch("SELECT * FROM decision_checkpoints ORDER BY id"):
            report.checkpoints += 1
            if (cp["prev_digest"] and bytes(cp["prev_digest"])) != (prev or None) or (
                last_to is not None and cp["from_at"] != last_to
            ):
                report.problems.append(f"checkpoint {cp['id']} does not follow the one before it")
            count, digest = await _range_digest(conn, prev, cp["from_at"], cp["to_at"])
            if count != cp["row_count"] or digest != bytes(cp["digest"]):
                report.problems.append(
                    f"checkpoint {cp['id']} ({cp['from_at']:%Y-%m-%d %H:%M:%S} to {cp['to_at']:%H:%M:%S}): "
                    f"{cp['row_count']} rows were sealed, {count} are there now, or their content changed"
                )
            report.sealed_rows += count
            prev = bytes(cp["digest"])
            last_to = cp["to_at"]
        report.unsealed_rows = await conn.fetchval(
            "SELECT count(*) FROM decisions WHERE inserted_at >= $1",
            last_to or datetime(1970, 1, 1, tzinfo=UTC),
        )
    return report
