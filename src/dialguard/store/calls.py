"""What happened in a call after it was allowed: events, opt-outs, and the decision it belongs to."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dialguard.policy.model import Campaign
from dialguard.policy.optout import OPTOUT_EFFECTS
from dialguard.store.campaigns import campaign_from_row
from dialguard.store.consent import revoke_consent
from dialguard.store.db import Connection
from dialguard.store.dnc import add_dnc
from dialguard.store.sealing import event_hash


@dataclass(frozen=True, slots=True)
class OptOut:
    """A callee's key press that stops all further calls; its id makes storing it idempotent."""

    id: uuid.UUID
    number: str
    call_id: uuid.UUID
    campaign: str
    digit: str
    at: datetime

    def as_json(self) -> dict[str, str]:
        return {
            "id": str(self.id),
            "number": self.number,
            "call_id": str(self.call_id),
            "campaign": self.campaign,
            "digit": self.digit,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OptOut:
        return cls(
            id=uuid.UUID(data["id"]),
            number=str(data["number"]),
            call_id=uuid.UUID(data["call_id"]),
            campaign=str(data["campaign"]),
            digit=str(data["digit"]),
            at=datetime.fromisoformat(data["at"]),
        )


@dataclass(frozen=True, slots=True)
class CallRecord:
    """The decision a call in progress belongs to, and its campaign as it stands (None: not known)."""

    call_id: uuid.UUID
    number: str
    campaign: str
    known_campaign: Campaign | None = None
    verdict: str = "ALLOW"  # what the dialplan's arguments stand for when the database is away
    reason: str = "ok"
    decided_at: datetime | None = None


async def call_by_id(conn: Connection, call_id: uuid.UUID) -> CallRecord | None:
    row = await conn.fetchrow(
        """SELECT d.call_id, d.number, d.campaign, d.verdict, d.reason, d.decided_at,
                  c.name, c.purpose, c.settings
             FROM decisions d LEFT JOIN campaigns c ON c.name = d.campaign
            WHERE d.call_id = $1""",
        call_id,
    )
    if row is None:
        return None
    known = campaign_from_row(row) if row["name"] is not None else None
    return CallRecord(
        row["call_id"],
        row["number"],
        row["campaign"],
        known,
        row["verdict"],
        row["reason"],
        row["decided_at"],
    )


async def claim_announce(conn: Connection, call_id: uuid.UUID, *, at: datetime) -> bool:
    """Mark the call id as announced, once: False when an earlier answer already used it (a call id is
    one call; a second channel answering under it is refused). Serialised per call id across gateways."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))", str(call_id))
        used = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM call_events WHERE call_id = $1 AND kind = 'announce.claimed')",
            call_id,
        )
        if used:
            return False
        await record_event(conn, call_id, "announce.claimed", {}, at=at)
    return True


async def record_event(
    conn: Connection,
    call_id: uuid.UUID,
    kind: str,
    detail: dict[str, Any] | None = None,
    *,
    at: datetime,
) -> None:
    """An append-only, hashed row: ``at`` comes from the caller's clock, as the hash covers it."""
    event = {"call_id": call_id, "at": at, "kind": kind, "detail": detail or {}}
    await conn.execute(
        "INSERT INTO call_events (call_id, at, kind, detail, row_hash) VALUES ($1, $2, $3, $4, $5)",
        *event.values(),
        event_hash(event),
    )


async def store_optout(conn: Connection, optout: OptOut, *, via: str, stored_at: datetime) -> bool:
    """The number on the internal list, once per opt-out id; False when this opt-out was already stored."""
    async with conn.transaction():
        fresh = await conn.fetchval(
            """INSERT INTO optouts (id, number, call_id, campaign, digit, at, via)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING RETURNING true""",
            optout.id,
            optout.number,
            optout.call_id,
            optout.campaign,
            optout.digit,
            optout.at,
            via,
        )
        if not fresh:
            return False
        evidence = {**optout.as_json(), "via": via}
        # What an opt-out does is the policy's (OPTOUT_EFFECTS); both take the key press's own time, so a
        # replayed opt-out counts from when it was pressed.
        for list_name in OPTOUT_EFFECTS.lists:
            await add_dnc(
                conn, number=optout.number, at=optout.at, list_name=list_name, source="dtmf",
                evidence=evidence, actor="agi",
            )  # fmt: skip
        if OPTOUT_EFFECTS.revokes_consent:
            await revoke_consent(
                conn, number=optout.number, source="dtmf", at=optout.at, evidence=evidence, actor="agi"
            )
        stored = {"optout_id": str(optout.id), "via": via}
        await record_event(conn, optout.call_id, "optout.stored", stored, at=stored_at)
    return True


async def events_of(conn: Connection, call_id: uuid.UUID) -> list[Any]:
    return list(
        await conn.fetch("SELECT at, kind, detail FROM call_events WHERE call_id = $1 ORDER BY id", call_id)
    )
