"""Decisions: append-only rows, each hashed as it is written; store/sealing.py seals and verifies them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from dialguard.store.db import Connection
from dialguard.store.sealing import decision_hash

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
    digest = decision_hash(locals())  # the keyword arguments carry every hashed field by its column name
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


async def stored_verdict(
    conn: Connection, call_id: uuid.UUID, *, end_backend: int, within: float
) -> str | None:
    """The verdict stored for ``call_id``, asked once the backend that was writing it has gone.

    ``pg_terminate_backend`` with a timeout (PostgreSQL 14+) waits until that backend has exited, so its
    transaction has committed or rolled back for good: what this reads is final.
    """
    await conn.execute("SELECT pg_terminate_backend($1, $2)", end_backend, max(int(within * 1000), 1))
    verdict: str | None = await conn.fetchval("SELECT verdict FROM decisions WHERE call_id = $1", call_id)
    return verdict
