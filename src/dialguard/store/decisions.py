"""Decisions: append-only rows, each hashed as it is written; store/sealing.py seals and verifies them."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dialguard.store.db import Connection
from dialguard.store.sealing import decision_hash, decision_hash_and_body

INSERT_DECISION_SQL = """
WITH d AS (
    INSERT INTO decisions (call_id, number, campaign, verdict, reason, body, rules_version,
                           decided_at, recorded, writer, row_hash)
    VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8, $9, $10, $11)
    RETURNING call_id
)
INSERT INTO attempts (number, campaign, purpose, call_id, at)
SELECT $2, $3, $12, call_id, $8 FROM d WHERE $9 AND $4 = 'ALLOW'
"""


# A decision stored after the database came back (from the decision journal): once per call id, and
# never an attempt (no attempts row: a journaled decision was a block, or a call no cap counts).
INSERT_LATE_DECISION_SQL = """
INSERT INTO decisions (call_id, number, campaign, verdict, reason, body, rules_version,
                       decided_at, recorded, writer, row_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (call_id) DO NOTHING RETURNING true
"""


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """One decision as :func:`insert_decision` takes it; as JSON, a line of the decision journal."""

    call_id: uuid.UUID
    number: str
    campaign: str
    purpose: str
    verdict: str
    reason: str
    body: dict[str, Any]
    rules_version: str
    decided_at: datetime
    recorded: bool
    writer: str

    def fields(self) -> dict[str, Any]:
        """The keyword arguments of :func:`insert_decision` (shallow: the body is not copied)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def as_json(self) -> dict[str, Any]:
        return {**self.fields(), "call_id": str(self.call_id), "decided_at": self.decided_at.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DecisionRow:
        decided_at = datetime.fromisoformat(data["decided_at"])
        if decided_at.tzinfo is None or not isinstance(data["body"], dict):
            raise ValueError("a decision needs a time with its offset and a body")
        return cls(
            call_id=uuid.UUID(data["call_id"]),
            number=str(data["number"]),
            campaign=str(data["campaign"]),
            purpose=str(data["purpose"]),
            verdict=str(data["verdict"]),
            reason=str(data["reason"]),
            body=data["body"],
            rules_version=str(data["rules_version"]),
            decided_at=decided_at,
            recorded=bool(data["recorded"]),
            writer=str(data["writer"]),
        )


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
    # The keyword arguments carry every hashed field by its column name; the body goes as the text the
    # hash encoded (one JSON encoding, not one for the hash and one for the jsonb codec).
    digest, body_text = decision_hash_and_body(locals())
    await conn.execute(
        INSERT_DECISION_SQL,
        call_id,
        number,
        campaign,
        verdict,
        reason,
        body_text,
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


async def insert_late_decision(conn: Connection, row: DecisionRow, *, journaled_at: datetime) -> bool:
    """Store a journaled decision, marked in its body (``stored_late``, ``journaled_at``); False when its
    call id is already stored (a replay run twice, or an insert whose answer was lost but which landed)."""
    fields = {
        **row.fields(),
        "body": {**row.body, "stored_late": True, "journaled_at": journaled_at.isoformat()},
    }
    digest = decision_hash(fields)
    fresh: bool | None = await conn.fetchval(
        INSERT_LATE_DECISION_SQL,
        fields["call_id"],
        fields["number"],
        fields["campaign"],
        fields["verdict"],
        fields["reason"],
        fields["body"],
        fields["rules_version"],
        fields["decided_at"],
        fields["recorded"],
        fields["writer"],
        digest,
    )
    return bool(fresh)
