"""Originations keyed per client: a request's key claimed once, and the answer it got, for any retry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dialguard.store.db import Connection


@dataclass(frozen=True, slots=True)
class Claimed:
    """What an earlier request with the same key was: its body's fingerprint and, once known, its answer."""

    call_id: uuid.UUID
    fingerprint: bytes
    status: str
    answer: dict[str, Any]


async def claim(
    conn: Connection,
    *,
    caller: str,
    key: str,
    call_id: uuid.UUID,
    fingerprint: bytes,
    number: str,
    campaign: str,
    at: datetime,
) -> Claimed | None:
    """None: the key is ours now. Else the request that holds it (two at once: one wins, the other
    reads the winner's row, committed or not yet answered)."""
    won = await conn.fetchval(
        """INSERT INTO originations (caller, idempotency_key, call_id, request_hash, number, campaign, status,
                                     created_at)
           VALUES ($1, $2, $3, $4, $5, $6, 'sending', $7)
           ON CONFLICT (caller, idempotency_key) DO NOTHING RETURNING true""",
        caller, key, call_id, fingerprint, number, campaign, at,
    )  # fmt: skip
    if won:
        return None
    row = await conn.fetchrow(
        """SELECT call_id, request_hash, status, answer FROM originations
            WHERE caller = $1 AND idempotency_key = $2""",
        caller,
        key,
    )
    if row is None:  # given back between our insert and this read: the caller may simply retry
        return Claimed(call_id, fingerprint, "sending", {})
    return Claimed(row["call_id"], bytes(row["request_hash"]), row["status"], row["answer"] or {})


async def give_back(conn: Connection, *, caller: str, key: str) -> None:
    """Nothing was sent for this key (AMI down, over pace): a retry with it may try again."""
    await conn.execute(
        "DELETE FROM originations WHERE caller = $1 AND idempotency_key = $2 AND status = 'sending'",
        caller,
        key,
    )


async def settle(conn: Connection, *, caller: str, key: str, status: str, answer: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE originations SET status = $3, answer = $4 WHERE caller = $1 AND idempotency_key = $2",
        caller,
        key,
        status,
        answer,
    )
