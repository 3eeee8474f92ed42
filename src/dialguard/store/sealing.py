"""Tamper evidence for the append-only logs (decisions, call events): each row hashed as it is
written, ranges of rows sealed in checkpoints that chain one to the next.

Why checkpoints rather than a hash chain per row: a chain needs each row to know the previous one,
which orders every insert of a writer behind the last; checkpoints are computed afterwards, off the
per-call path. A range of ``inserted_at`` is sealed only when no transaction that could still insert
into it is open, so a sealed range is final; afterwards any changed, removed or slipped-in row breaks
the digest of its checkpoint, and any changed row also breaks its own row hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from dialguard.store.db import Connection

# Sealing waits this long after a transaction began before its range is final (covers clock reads).
SETTLE = timedelta(seconds=5)
SEAL_LOCK_ID = 0x7365616C  # "seal": one sealer at a time across every gateway
BACKLOG_TIMEOUT = 600.0  # a backlog (no serve sealing every few seconds) is not bound by a call's timeout
RANGE_BATCH = 10_000  # rows fetched at a time: a backlog of millions is never held in memory
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Row = Mapping[str, Any] | asyncpg.Record


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _hash(row: Row, names: tuple[str, ...], instant: str) -> bytes:
    fields = {name: row[name] for name in names}
    fields["call_id"] = str(fields["call_id"])
    fields[instant] = fields[instant].astimezone(UTC).isoformat()
    return hashlib.sha256(canonical(fields)).digest()


# What a row's hash covers: every column but the id, the hash itself and inserted_at.
DECISION_FIELDS = (
    "call_id", "number", "campaign", "verdict", "reason", "body", "rules_version", "decided_at", "recorded",
    "writer",
)  # fmt: skip
EVENT_FIELDS = ("call_id", "at", "kind", "detail")


def decision_hash(row: Row) -> bytes:
    """The hash of one decision, from the values about to be inserted or a row read back."""
    return _hash(row, DECISION_FIELDS, "decided_at")


def event_hash(row: Row) -> bytes:
    """The hash of one call event, from the values about to be inserted or a row read back."""
    return _hash(row, EVENT_FIELDS, "at")


@dataclass(frozen=True, slots=True)
class Log:
    table: str
    checkpoints: str
    noun: str  # what a row is called in a report
    hashed: tuple[str, ...]
    hash_row: Callable[[Row], bytes]


LOGS = (
    Log("decisions", "decision_checkpoints", "decision", DECISION_FIELDS, decision_hash),
    Log("call_events", "call_event_checkpoints", "call event", EVENT_FIELDS, event_hash),
)


async def _range_digest(
    conn: Connection, log: Log, prev: bytes | None, from_at: datetime, to_at: datetime
) -> tuple[int, bytes]:
    """The rows of [from_at, to_at) and their chained digest, streamed (inside a transaction)."""
    h = hashlib.sha256(prev or b"")
    count = 0
    rows = conn.cursor(
        f"""SELECT id, row_hash FROM {log.table}
             WHERE inserted_at >= $1 AND inserted_at < $2 ORDER BY inserted_at, id""",
        from_at,
        to_at,
        prefetch=RANGE_BATCH,
        timeout=BACKLOG_TIMEOUT,
    )
    async for r in rows:
        h.update(r["id"].to_bytes(8, "big"))
        h.update(bytes(r["row_hash"]))
        count += 1
    return count, h.digest()


async def seal(conn: Connection) -> dict[str, int] | None:
    """Write each log's next checkpoint over the rows that can no longer change; rows sealed per log.

    None when another gateway holds the sealer lock right now.
    """
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SEAL_LOCK_ID):
            return None
        # The end of the range: no open transaction began before it, and it is settled by SETTLE.
        to_at = await conn.fetchval(
            """SELECT least(now() - $1::interval,
                            coalesce((SELECT min(xact_start) FROM pg_stat_activity
                                       WHERE datname = current_database() AND pid <> pg_backend_pid()
                                         AND xact_start IS NOT NULL), 'infinity'))""",
            SETTLE,
        )
        return {log.table: await _seal_log(conn, log, to_at) for log in LOGS}


async def _seal_log(conn: Connection, log: Log, to_at: datetime) -> int:
    last = await conn.fetchrow(f"SELECT to_at, digest FROM {log.checkpoints} ORDER BY id DESC LIMIT 1")
    from_at = last["to_at"] if last else _EPOCH
    if to_at <= from_at:
        return 0
    prev = bytes(last["digest"]) if last else None
    count, digest = await _range_digest(conn, log, prev, from_at, to_at)
    if count:
        await conn.execute(
            f"""INSERT INTO {log.checkpoints} (from_at, to_at, row_count, digest, prev_digest)
                VALUES ($1, $2, $3, $4, $5)""",
            from_at,
            to_at,
            count,
            digest,
            prev,
        )
    return count


@dataclass
class LogReport:
    checkpoints: int = 0
    sealed_rows: int = 0
    unsealed_rows: int = 0


@dataclass
class VerifyReport:
    logs: dict[str, LogReport] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(conn: Connection) -> VerifyReport:
    """Recompute every row hash and every checkpoint digest of every log; list what does not match."""
    report = VerifyReport()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for log in LOGS:
            report.logs[log.table] = await _verify_log(conn, log, report.problems)
    return report


async def _verify_log(conn: Connection, log: Log, problems: list[str]) -> LogReport:
    counts = LogReport()
    rows = conn.cursor(
        f"SELECT id, {', '.join(log.hashed)}, row_hash FROM {log.table} ORDER BY id",
        prefetch=RANGE_BATCH,
        timeout=BACKLOG_TIMEOUT,
    )
    async for row in rows:
        if log.hash_row(row) != bytes(row["row_hash"]):
            problems.append(f"{log.noun} {row['id']} (call {row['call_id']}) was altered")
    prev: bytes | None = None
    last_to: datetime | None = None
    for cp in await conn.fetch(f"SELECT * FROM {log.checkpoints} ORDER BY id"):
        counts.checkpoints += 1
        where = f"{log.noun} checkpoint {cp['id']}"
        if (cp["prev_digest"] and bytes(cp["prev_digest"])) != (prev or None) or (
            last_to is not None and cp["from_at"] != last_to
        ):
            problems.append(f"{where} does not follow the one before it")
        count, digest = await _range_digest(conn, log, prev, cp["from_at"], cp["to_at"])
        if count != cp["row_count"] or digest != bytes(cp["digest"]):
            problems.append(
                f"{where} ({cp['from_at']:%Y-%m-%d %H:%M:%S} to {cp['to_at']:%H:%M:%S}): "
                f"{cp['row_count']} rows were sealed, {count} are there now, or their content changed"
            )
        counts.sealed_rows += count
        prev = bytes(cp["digest"])
        last_to = cp["to_at"]
    counts.unsealed_rows = await conn.fetchval(
        f"SELECT count(*) FROM {log.table} WHERE inserted_at >= $1", last_to or _EPOCH
    )
    return counts
