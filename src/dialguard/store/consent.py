"""The consent ledger: grants and revocations, both append-only; the current state is derived."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dialguard.policy.model import ConsentRecord, Purpose
from dialguard.policy.relationship import relationship_ends
from dialguard.store.audit import record_audit
from dialguard.store.db import Connection

# The state of each grant now: revoked by the first revocation (of it, or of the whole number) after it.
_CONSENT_STATE = """
SELECT g.id, g.number, g.purpose, g.campaign, g.kind, g.source, g.evidence, g.granted_at, g.expires_at,
       (SELECT min(r.revoked_at) FROM consent_revocations r
         WHERE r.number = g.number AND (r.consent_id = g.id OR r.consent_id IS NULL)
           AND r.revoked_at >= g.granted_at) AS revoked_at
  FROM consent_grants g
"""
CURRENT_CONSENTS_SQL = _CONSENT_STATE + " WHERE g.number = $1 ORDER BY g.granted_at, g.id"
RECENT_CONSENTS_SQL = _CONSENT_STATE + " ORDER BY g.id DESC LIMIT $1"


def consent_from_row(row: Any) -> ConsentRecord:
    return ConsentRecord(
        id=row["id"],
        kind=row["kind"],
        source=row["source"],
        granted_at=row["granted_at"],
        purpose=Purpose(row["purpose"]) if row["purpose"] else None,
        campaign=row["campaign"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


async def grant_consent(
    conn: Connection,
    *,
    number: str,
    kind: str,
    source: str,
    at: datetime,
    purpose: Purpose | None = None,
    campaign: str | None = None,
    expires_at: datetime | None = None,
    granted_at: datetime | None = None,
    evidence: dict[str, Any] | None = None,
    actor: str = "cli",
) -> int:
    """Record a grant; returns its id. ``purpose`` and ``campaign`` are the two ways to scope it.

    ``at`` is now by the caller's clock: the grant's date unless ``granted_at`` says it was given earlier.
    """
    if (purpose is None) == (campaign is None):
        raise ValueError("a consent is scoped by a purpose or by a campaign, exactly one of them")
    granted_at = granted_at or at
    if expires_at is None:
        expires_at = relationship_ends(kind, granted_at)
    async with conn.transaction():
        consent_id: int = await conn.fetchval(
            """INSERT INTO consent_grants
                   (number, purpose, campaign, kind, source, evidence, granted_at, expires_at, created_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id""",
            number,
            str(purpose) if purpose else None,
            campaign,
            kind,
            source,
            evidence or {},
            granted_at,
            expires_at,
            actor,
        )
        scope = {"purpose": str(purpose)} if purpose else {"campaign": campaign}
        detail = {"consent_id": consent_id, "kind": kind, "source": source, **scope}
        await record_audit(conn, actor=actor, action="consent.grant", subject=number, detail=detail)
    return consent_id


class UnknownConsent(LookupError):
    """No consent grant of that id for that number."""


async def revoke_consent(
    conn: Connection,
    *,
    number: str,
    source: str,
    at: datetime,
    consent_id: int | None = None,
    evidence: dict[str, Any] | None = None,
    actor: str = "cli",
) -> int:
    """Withdraw one grant, or (``consent_id`` None) every grant of the number; effective from ``at``."""
    async with conn.transaction():
        if consent_id is not None and not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM consent_grants WHERE id = $1 AND number = $2)", consent_id, number
        ):
            raise UnknownConsent(f"no consent {consent_id} for {number}")
        revocation_id: int = await conn.fetchval(
            """INSERT INTO consent_revocations (number, consent_id, source, evidence, created_by, revoked_at)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
            number,
            consent_id,
            source,
            evidence or {},
            actor,
            at,
        )
        detail = {"revocation_id": revocation_id, "consent_id": consent_id, "source": source}
        await record_audit(conn, actor=actor, action="consent.revoke", subject=number, detail=detail)
    return revocation_id


async def list_consents(conn: Connection, number: str | None = None, limit: int = 1000) -> list[Any]:
    """Grants with their derived state: of one number, or the most recent ones."""
    if number is not None:
        return list(await conn.fetch(CURRENT_CONSENTS_SQL, number))
    return list(await conn.fetch(RECENT_CONSENTS_SQL, limit))
