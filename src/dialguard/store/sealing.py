"""Tamper evidence for the append-only logs (decisions, call events, the consent ledger, the do-not-call
history, opt-outs): each row hashed, ranges of rows sealed in checkpoints that chain one to the next,
and each checkpoint signed with a key the database never sees.

Why checkpoints rather than a hash chain per row: a chain needs each row to know the previous one,
which orders every insert of a writer behind the last; checkpoints are computed afterwards, off the
per-call path. A range of ``inserted_at`` is sealed only when no transaction that could still insert
into it is open, so a sealed range is final; afterwards any changed, removed or slipped-in row breaks
the digest of its checkpoint, and a changed decision or call event also breaks its own row hash (those
two are hashed as they are written; the other logs when they are sealed).

Whoever holds the database's credentials can still rewrite rows and re-chain plain SHA-256 digests, or
truncate a log with its checkpoints. Two things outside the database catch that: each checkpoint's
``mac`` (HMAC-SHA256 of its header under the seal key, anchor.py), and the anchor file, where every
checkpoint's header is appended once committed; :func:`verify` compares the database with both.

The formulas, which the offline check of an evidence bundle (bundle.py) uses too:
- a row's hash: SHA-256 of its content (the hashed columns; times in UTC ISO-8601, UUIDs as text) as
  canonical JSON: keys sorted, no spaces, UTF-8;
- a checkpoint's digest: SHA-256 of the previous checkpoint's digest (nothing for the first), then for
  each row in (inserted_at, id) order its id (8 bytes big-endian; a UUID's 16 bytes) and its hash;
- a checkpoint's mac: HMAC-SHA256 under the seal key of the canonical JSON of its header (log, from_at,
  from_id, to_at, to_id, row_count, digest and prev_digest in hex).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
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
# Rows in one checkpoint at most: an evidence bundle carries every row hash of each checkpoint it cites.
CHECKPOINT_ROWS = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# A place in a log's sealing order, (inserted_at, id): a checkpoint covers [its start, its end). The id
# is 0 for a bound set by time alone (ids start at 1), and always for opt-outs (their ids are UUIDs).
Bound = tuple[datetime, int]

Row = Mapping[str, Any] | asyncpg.Record


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def plain(value: Any) -> Any:
    """A column's value as a row's hashed content holds it: times in UTC ISO-8601, UUIDs as text."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def content_hash(content: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(canonical(content)).digest()


def id_bytes(row_id: int | uuid.UUID) -> bytes:
    """A row's id as a checkpoint digest takes it."""
    return row_id.bytes if isinstance(row_id, uuid.UUID) else row_id.to_bytes(8, "big")


def chain_digest(prev: bytes | None, rows: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A checkpoint's digest: the previous one, then each row's (id bytes, hash), in order."""
    h = hashlib.sha256(prev or b"")
    for row_id, row_hash in rows:
        h.update(row_id)
        h.update(row_hash)
    return h.digest()


SIGNED = ("log", "from_at", "from_id", "to_at", "to_id", "row_count", "digest", "prev_digest")


def checkpoint_mac(key: bytes, header: Mapping[str, Any]) -> bytes:
    """The seal key's HMAC of a checkpoint's header (:func:`checkpoint_header`; its id and mac aside)."""
    signed = {k: header[k] for k in SIGNED}
    return hmac.new(key, canonical(signed), hashlib.sha256).digest()


def _hex(value: bytes | None) -> str | None:
    return bytes(value).hex() if value is not None else None


def checkpoint_header(table: str, cp: Row) -> dict[str, Any]:
    """A checkpoint as JSON (anchor file, evidence bundle): what its mac signs, with its id and mac."""
    return {
        "log": table,
        "id": cp["id"],
        "from_at": plain(cp["from_at"]),
        "from_id": cp["from_id"],
        "to_at": plain(cp["to_at"]),
        "to_id": cp["to_id"],
        "row_count": cp["row_count"],
        "digest": _hex(cp["digest"]),
        "prev_digest": _hex(cp["prev_digest"]),
        "mac": _hex(cp["mac"]),
    }


@dataclass(frozen=True, slots=True)
class Log:
    table: str
    checkpoints: str
    noun: str  # what a row is called in a report
    hashed: tuple[str, ...]  # what a row's hash covers: its content
    stored_hash: bool = False  # the hash is written with the row (row_hash); else computed when sealed
    uuid_ids: bool = False  # opt-outs: checkpoints bounded by time alone

    def in_range(self, start: Bound, end: Bound | None = None) -> tuple[str, list[Any]]:
        """The SQL condition for this log's rows in [start, end) (no end: from start on), and its args."""
        if self.uuid_ids:
            return (
                ("inserted_at >= $1", [start[0]])
                if end is None
                else ("inserted_at >= $1 AND inserted_at < $2", [start[0], end[0]])
            )
        after = "(inserted_at, id) >= ($1::timestamptz, $2::bigint)"
        if end is None:
            return after, [*start]
        return f"{after} AND (inserted_at, id) < ($3::timestamptz, $4::bigint)", [*start, *end]

    def content(self, row: Row) -> dict[str, Any]:
        return {name: plain(row[name]) for name in self.hashed}

    def row_hash(self, row: Row) -> bytes:
        """The hash the sealer chains: the stored one, or the content's."""
        return bytes(row["row_hash"]) if self.stored_hash else content_hash(self.content(row))

    @property
    def columns(self) -> str:
        """What to select to hash a row."""
        return "id, row_hash" if self.stored_hash else f"id, {', '.join(self.hashed)}"


# Every column but the id, the hash itself and inserted_at.
DECISION_FIELDS = (
    "call_id", "number", "campaign", "verdict", "reason", "body", "rules_version", "decided_at", "recorded",
    "writer",
)  # fmt: skip
EVENT_FIELDS = ("call_id", "at", "kind", "detail")

DECISIONS = Log("decisions", "decision_checkpoints", "decision", DECISION_FIELDS, stored_hash=True)
CALL_EVENTS = Log("call_events", "call_event_checkpoints", "call event", EVENT_FIELDS, stored_hash=True)
CONSENT_GRANTS = Log(
    "consent_grants", "consent_grant_checkpoints", "consent grant",
    ("number", "purpose", "campaign", "kind", "source", "evidence", "granted_at", "expires_at",
     "created_by", "salt"),
)  # fmt: skip
CONSENT_REVOCATIONS = Log(
    "consent_revocations", "consent_revocation_checkpoints", "consent revocation",
    ("number", "consent_id", "source", "evidence", "revoked_at", "created_by", "salt"),
)  # fmt: skip
DNC_HISTORY = Log(
    "dnc_history", "dnc_history_checkpoints", "do-not-call change",
    ("list_name", "number", "action", "source", "evidence", "at", "actor", "salt"),
)  # fmt: skip
OPTOUTS = Log(
    "optouts", "optout_checkpoints", "opt-out",
    ("number", "call_id", "campaign", "digit", "at", "via", "stored_at"), uuid_ids=True,
)  # fmt: skip
LOGS = (DECISIONS, CALL_EVENTS, CONSENT_GRANTS, CONSENT_REVOCATIONS, DNC_HISTORY, OPTOUTS)
LOG_BY_TABLE = {log.table: log for log in LOGS}


def decision_hash(row: Row) -> bytes:
    """The hash of one decision, from the values about to be inserted or a row read back."""
    return content_hash(DECISIONS.content(row))


def decision_hash_and_body(row: Row) -> tuple[bytes, str]:
    """:func:`decision_hash` and the body as canonical JSON text, the body encoded once for both: it
    is the canonical row's first member, since "body" sorts first among the decision's fields."""
    content = DECISIONS.content(row)
    body = canonical(content.pop("body"))
    digest = hashlib.sha256(b'{"body":' + body + b"," + canonical(content)[1:]).digest()
    return digest, body.decode()


def event_hash(row: Row) -> bytes:
    """The hash of one call event, from the values about to be inserted or a row read back."""
    return content_hash(CALL_EVENTS.content(row))


def _hashed(log: Log, rows: list[asyncpg.Record]) -> list[tuple[Any, bytes]]:
    return [(r["id"], log.row_hash(r)) for r in rows]


def bounds(cp: Row) -> tuple[Bound, Bound]:
    """A checkpoint's [start, end)."""
    return (cp["from_at"], cp["from_id"]), (cp["to_at"], cp["to_id"])


async def range_hashes(
    conn: Connection, log: Log, start: Bound, end: Bound
) -> AsyncIterator[list[tuple[Any, bytes]]]:
    """The (id, hash) of each row of [start, end) in sealing order, a batch at a time (inside a
    transaction). Content is hashed in a worker thread: a bulk import's rows never stall the loop."""
    where, args = log.in_range(start, end)
    cursor = await conn.cursor(
        f"SELECT {log.columns} FROM {log.table} WHERE {where} ORDER BY inserted_at, id",
        *args,
        timeout=BACKLOG_TIMEOUT,
    )
    while rows := await cursor.fetch(RANGE_BATCH, timeout=BACKLOG_TIMEOUT):
        yield _hashed(log, rows) if log.stored_hash else await asyncio.to_thread(_hashed, log, rows)


async def _range_digest(
    conn: Connection, log: Log, prev: bytes | None, start: Bound, end: Bound
) -> tuple[int, bytes]:
    """The rows of [start, end) and their chained digest, streamed (inside a transaction)."""
    h = hashlib.sha256(prev or b"")
    count = 0
    async for batch in range_hashes(conn, log, start, end):
        for row_id, row_hash in batch:
            h.update(id_bytes(row_id))
            h.update(row_hash)
        count += len(batch)
    return count, h.digest()


async def seal(conn: Connection, *, key: bytes | None = None) -> dict[str, int] | None:
    """Write each log's next checkpoint over the rows that can no longer change; rows sealed per log.
    ``key``: the seal key, whose HMAC each checkpoint carries (None: no mac, as before keys existed).

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
        return {log.table: await _seal_log(conn, log, to_at, key) for log in LOGS}


async def _seal_log(conn: Connection, log: Log, to_at: datetime, key: bytes | None) -> int:
    """Checkpoints over the log's rows from its last checkpoint up to ``to_at``, each of at most
    CHECKPOINT_ROWS rows; rows sealed."""
    last = await conn.fetchrow(f"SELECT to_at, to_id, digest FROM {log.checkpoints} ORDER BY id DESC LIMIT 1")
    start: Bound = (last["to_at"], last["to_id"]) if last else (_EPOCH, 0)
    prev = bytes(last["digest"]) if last else None
    sealed = 0
    while start < (to_at, 0):
        end = await _split(conn, log, start, (to_at, 0))
        count, digest = await _range_digest(conn, log, prev, start, end)
        if not count:
            break  # nothing to seal: the next checkpoint begins where the last one ended, as before
        header = {
            "log": log.table, "from_at": plain(start[0]), "from_id": start[1], "to_at": plain(end[0]),
            "to_id": end[1], "row_count": count, "digest": digest.hex(), "prev_digest": _hex(prev),
        }  # fmt: skip
        await conn.execute(
            f"""INSERT INTO {log.checkpoints}
                       (from_at, from_id, to_at, to_id, row_count, digest, prev_digest, mac)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            *start,
            *end,
            count,
            digest,
            prev,
            checkpoint_mac(key, header) if key is not None else None,
        )
        sealed += count
        start, prev = end, digest
    return sealed


async def _split(conn: Connection, log: Log, start: Bound, end: Bound) -> Bound:
    """Where a checkpoint from ``start`` ends: ``end``, or sooner, at its CHECKPOINT_ROWS-th row."""
    if log.uuid_ids:
        return end
    where, args = log.in_range(start, end)
    row = await conn.fetchrow(
        f"""SELECT inserted_at, id FROM {log.table} WHERE {where}
             ORDER BY inserted_at, id OFFSET {CHECKPOINT_ROWS} LIMIT 1""",
        *args,
        timeout=BACKLOG_TIMEOUT,
    )
    return (row["inserted_at"], row["id"]) if row else end


async def last_checkpoint(conn: Connection, log: Log) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT * FROM {log.checkpoints} ORDER BY id DESC LIMIT 1"
    )
    return row


async def checkpoint(conn: Connection, log: Log, checkpoint_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT * FROM {log.checkpoints} WHERE id = $1", checkpoint_id
    )
    return row


async def checkpoints_after(conn: Connection, log: Log, after_id: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(f"SELECT * FROM {log.checkpoints} WHERE id > $1 ORDER BY id", after_id))


@dataclass(frozen=True, slots=True)
class Anchored:
    """What an anchor file vouches for, per log: the digest of each checkpoint it recorded, and the id
    of the last checkpoint sealed before the anchor began (those may carry no mac; 0: none)."""

    digests: Mapping[str, Mapping[int, bytes]]
    began_after: Mapping[str, int]


@dataclass
class LogReport:
    checkpoints: int = 0
    sealed_rows: int = 0
    unsealed_rows: int = 0
    unkeyed: int = 0  # checked against a key: checkpoints sealed before the key existed (no mac)


@dataclass
class VerifyReport:
    logs: dict[str, LogReport] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(
    conn: Connection, *, key: bytes | None = None, anchored: Anchored | None = None
) -> VerifyReport:
    """Recompute every row hash and every checkpoint digest of every log; with ``key``, check every
    checkpoint's mac; with ``anchored``, that every anchored checkpoint is there unchanged. The report
    lists what does not match."""
    report = VerifyReport()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for log in LOGS:
            report.logs[log.table] = await _verify_log(conn, log, key, anchored, report.problems)
    return report


async def _verify_log(
    conn: Connection, log: Log, key: bytes | None, anchored: Anchored | None, problems: list[str]
) -> LogReport:
    counts = LogReport()
    if log.stored_hash:
        cursor = await conn.cursor(
            f"SELECT id, {', '.join(log.hashed)}, row_hash FROM {log.table} ORDER BY id",
            timeout=BACKLOG_TIMEOUT,
        )
        while rows := await cursor.fetch(RANGE_BATCH, timeout=BACKLOG_TIMEOUT):
            for row in rows:
                if content_hash(log.content(row)) != bytes(row["row_hash"]):
                    problems.append(f"{log.noun} {row['id']} (call {row['call_id']}) was altered")
    to_check = dict(anchored.digests.get(log.table, {})) if anchored else {}
    began_after = anchored.began_after.get(log.table, 0) if anchored else None
    prev: bytes | None = None
    last_end: Bound | None = None
    keyed = False
    for cp in await conn.fetch(f"SELECT * FROM {log.checkpoints} ORDER BY id"):
        counts.checkpoints += 1
        where = f"{log.noun} checkpoint {cp['id']}"
        start, end = bounds(cp)
        if (cp["prev_digest"] and bytes(cp["prev_digest"])) != (prev or None) or (
            last_end is not None and start != last_end
        ):
            problems.append(f"{where} does not follow the one before it")
        count, digest = await _range_digest(conn, log, prev, start, end)
        if count != cp["row_count"] or digest != bytes(cp["digest"]):
            problems.append(
                f"{where} ({cp['from_at']:%Y-%m-%d %H:%M:%S} to {cp['to_at']:%H:%M:%S}): "
                f"{cp['row_count']} rows were sealed, {count} are there now, or their content changed"
            )
        if key is not None:
            keyed = _check_mac(log, cp, key, keyed, began_after, counts, problems)
        if (anchored_digest := to_check.pop(cp["id"], None)) is not None and anchored_digest != bytes(
            cp["digest"]
        ):
            problems.append(f"{where} differs from the anchor file's copy: the log was rewritten")
        counts.sealed_rows += count
        prev = bytes(cp["digest"])
        last_end = end
    for missing in sorted(to_check):
        problems.append(
            f"{log.noun} checkpoint {missing} is in the anchor file but not in the database: "
            "the log was truncated or cut back"
        )
    newer, args = log.in_range(last_end or (_EPOCH, 0))
    counts.unsealed_rows = await conn.fetchval(f"SELECT count(*) FROM {log.table} WHERE {newer}", *args)
    return counts


def _check_mac(
    log: Log,
    cp: asyncpg.Record,
    key: bytes,
    keyed: bool,
    began_after: int | None,
    counts: LogReport,
    problems: list[str],
) -> bool:
    """Check one checkpoint's mac; True once a checkpoint of the log carried one (later ones must)."""
    where = f"{log.noun} checkpoint {cp['id']}"
    if cp["mac"] is None:
        if keyed or (began_after is not None and cp["id"] > began_after):
            problems.append(f"{where} carries no mac: it was not sealed with the seal key (forged)")
        else:
            counts.unkeyed += 1
        return keyed
    if not hmac.compare_digest(bytes(cp["mac"]), checkpoint_mac(key, checkpoint_header(log.table, cp))):
        problems.append(
            f"{where}: its mac does not match the seal key: sealed without the key (forged), "
            "or under another gateway's key"
        )
    return True
