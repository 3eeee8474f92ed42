"""Read every fact one call needs in a single round trip."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dialguard.policy.model import Attempt, Campaign, ConsentRecord, DncHit, Purpose
from dialguard.store.consent import CURRENT_CONSENTS_SQL
from dialguard.store.db import Connection

_FACTS_SQL = f"""
SELECT
  (SELECT jsonb_build_object('name', name, 'purpose', purpose, 'settings', settings)
     FROM campaigns WHERE name = $2) AS campaign,
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
            'id', id, 'list_name', list_name, 'source', source, 'added_at', added_at)), '[]')
     FROM dnc_entries WHERE number = $1) AS dnc,
  (SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]') FROM ({CURRENT_CONSENTS_SQL}) c) AS consents,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('at', at, 'campaign', campaign, 'purpose', purpose)), '[]')
     FROM attempts WHERE number = $1 AND $3::timestamptz IS NOT NULL AND at > $3) AS attempts
"""

LOCK_NUMBER_SQL = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"


@dataclass(frozen=True, slots=True)
class StoredFacts:
    campaign: Campaign | None
    dnc_hits: tuple[DncHit, ...]
    consents: tuple[ConsentRecord, ...]
    attempts: tuple[Attempt, ...]


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _parse(row: Any) -> StoredFacts:
    c = row["campaign"]
    campaign = Campaign(c["name"], Purpose(c["purpose"]), c["settings"] or {}) if c else None
    dnc = tuple(
        DncHit(list_name=d["list_name"], source=d["source"], added_at=_ts(d["added_at"]), entry_id=d["id"])  # type: ignore[arg-type]
        for d in row["dnc"]
    )
    consents = tuple(
        ConsentRecord(
            id=g["id"],
            kind=g["kind"],
            source=g["source"],
            granted_at=_ts(g["granted_at"]),  # type: ignore[arg-type]
            purpose=Purpose(g["purpose"]) if g["purpose"] else None,
            campaign=g["campaign"],
            expires_at=_ts(g["expires_at"]),
            revoked_at=_ts(g["revoked_at"]),
        )
        for g in row["consents"]
    )
    attempts = tuple(
        Attempt(at=_ts(a["at"]), campaign=a["campaign"], purpose=Purpose(a["purpose"]))  # type: ignore[arg-type]
        for a in row["attempts"]
    )
    return StoredFacts(campaign, dnc, consents, attempts)


async def read_facts(
    conn: Connection, *, number: str, campaign: str, attempts_since: datetime | None
) -> StoredFacts:
    return _parse(await conn.fetchrow(_FACTS_SQL, number, campaign, attempts_since))


async def lock_number(conn: Connection, number: str) -> None:
    """Serialise checks of one number (inside a transaction): caps then hold across gateways."""
    await conn.execute(LOCK_NUMBER_SQL, number)
