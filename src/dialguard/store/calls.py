"""What happened in a call after it was allowed: events, opt-outs, and the decision it belongs to."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dialguard.policy.model import INTERNAL, Campaign
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


async def call_by_id(conn: Connection, call_id: uuid.UUID) -> CallRecord | None:
    row = await conn.fetchrow(
        """SELECT d.call_id, d.number, d.campaign, c.name, c.purpose, c.settings
             FROM decisions d LEFT JOIN campaigns c ON c.name = d.campaign
            WHERE d.call_id = $1""",
        call_id,
    )
    if row is None:
        return None
    known = campaign_from_row(row) if row["name"] is not None else None
    return CallRecord(row["call_id"], row["number"], row["campaign"], known)


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
        # Both take the key press's own time: a replayed opt-out counts from when it was pressed.
        await add_dnc(
            conn, number=optout.number, at=optout.at, list_name=INTERNAL, source="dtmf",
            evidence=evidence, actor="agi",
        )  # fmt: skip
        # A key press is a revocation "by any reasonable means" (47 CFR 64.1200): consent goes too.
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
