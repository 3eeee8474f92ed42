"""Declared emergencies: entered by an administrator from the declaration, ended early if it is lifted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dialguard.store.audit import record_audit
from dialguard.store.db import Connection


async def declare_emergency(
    conn: Connection,
    *,
    area: str,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    prefixes: list[str],
    actor: str,
) -> int:
    """In force from ``starts_at`` to ``ends_at`` in ``area`` (only ``prefixes`` there, if any)."""
    async with conn.transaction():
        emergency_id: int = await conn.fetchval(
            """INSERT INTO emergencies (area, prefixes, starts_at, ends_at, reason, declared_by)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
            area,
            prefixes,
            starts_at,
            ends_at,
            reason,
            actor,
        )
        detail = {
            "id": emergency_id,
            "prefixes": prefixes,
            "starts_at": starts_at.isoformat(),
            "ends_at": ends_at.isoformat(),
            "reason": reason,
        }
        await record_audit(conn, actor=actor, action="emergency.declare", subject=area, detail=detail)
    return emergency_id


async def end_emergency(conn: Connection, emergency_id: int, *, at: datetime, actor: str) -> bool:
    """Lifted at ``at`` (one yet to begin is called off): False when none such, or it had ended already."""
    async with conn.transaction():
        area = await conn.fetchval(
            """UPDATE emergencies SET ends_at = greatest($2, starts_at)
                WHERE id = $1 AND ends_at > $2 RETURNING area""",
            emergency_id,
            at,
        )
        if area is None:
            return False
        detail = {"id": emergency_id, "ended_at": at.isoformat()}
        await record_audit(conn, actor=actor, action="emergency.end", subject=area, detail=detail)
    return True


async def list_emergencies(conn: Connection, *, now: datetime, include_ended: bool = False) -> list[Any]:
    return list(
        await conn.fetch(
            """SELECT id, area, prefixes, starts_at, ends_at, reason, declared_by, declared_at
                 FROM emergencies WHERE $2 OR ends_at > $1 ORDER BY starts_at, id""",
            now,
            include_ended,
        )
    )
