"""Read every fact one call needs in a single round trip."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dialguard.policy.model import Attempt, Campaign, ConsentRecord, DncHit, Purpose
from dialguard.store.consent import CURRENT_CONSENTS_SQL, consent_from_row
from dialguard.store.db import Connection
from dialguard.store.dnc import hit_from_row

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


def _with_times(item: dict[str, Any], *names: str) -> dict[str, Any]:
    """jsonb carries timestamps as ISO text; the row mappers expect datetimes."""
    return {**item, **{n: datetime.fromisoformat(item[n]) if item[n] else None for n in names}}


def _parse(row: Any) -> StoredFacts:
    camp = row["campaign"]
    return StoredFacts(
        campaign=Campaign(camp["name"], Purpose(camp["purpose"]), camp["settings"] or {}) if camp else None,
        dnc_hits=tuple(hit_from_row(_with_times(d, "added_at")) for d in row["dnc"]),
        consents=tuple(
            consent_from_row(_with_times(g, "granted_at", "expires_at", "revoked_at"))
            for g in row["consents"]
        ),
        attempts=tuple(
            Attempt(at=datetime.fromisoformat(a["at"]), campaign=a["campaign"], purpose=Purpose(a["purpose"]))
            for a in row["attempts"]
        ),
    )


async def read_facts(
    conn: Connection, *, number: str, campaign: str, attempts_since: datetime | None
) -> StoredFacts:
    return _parse(await conn.fetchrow(_FACTS_SQL, number, campaign, attempts_since))


async def lock_number(conn: Connection, number: str) -> None:
    """Serialise checks of one number (inside a transaction): caps then hold across gateways."""
    await conn.execute(LOCK_NUMBER_SQL, number)
