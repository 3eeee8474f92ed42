"""Complaints: a person who complains is never called again, and the complaint is kept for reporting."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dialguard.policy.model import INTERNAL
from dialguard.store.audit import record_audit
from dialguard.store.consent import revoke_consent
from dialguard.store.db import Connection
from dialguard.store.dnc import add_dnc


async def file_complaint(
    conn: Connection,
    *,
    number: str,
    channel: str,
    at: datetime,
    note: str = "",
    campaign: str | None = None,
    actor: str = "cli",
) -> int:
    """Revoke every consent of the number, put it on the internal list, keep the complaint: all or nothing."""
    async with conn.transaction():
        complaint_id: int = await conn.fetchval(
            """INSERT INTO complaints (number, campaign, channel, note, created_by, received_at)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
            number,
            campaign,
            channel,
            note,
            actor,
            at,
        )
        evidence = {"complaint_id": complaint_id, "channel": channel}
        await revoke_consent(conn, number=number, source="complaint", at=at, evidence=evidence, actor=actor)
        await add_dnc(
            conn, number=number, at=at, list_name=INTERNAL, source="complaint", evidence=evidence, actor=actor
        )
        await record_audit(
            conn, actor=actor, action="complaint.file", subject=number, detail={**evidence, "note": note}
        )
    return complaint_id


async def list_complaints(conn: Connection, *, limit: int = 100) -> list[Any]:
    return list(
        await conn.fetch(
            """SELECT id, number, campaign, channel, note, received_at, created_by
                 FROM complaints ORDER BY id DESC LIMIT $1""",
            limit,
        )
    )
