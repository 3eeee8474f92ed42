"""Do-not-call entries: current rows per (list, number), with every change kept in dnc_history."""

from __future__ import annotations

from typing import Any

from dialguard.policy.model import DncHit
from dialguard.store.db import Connection

INTERNAL = "internal"


def hit_from_row(row: Any) -> DncHit:
    return DncHit(
        list_name=row["list_name"],
        source=row["source"],
        added_at=row["added_at"],
        entry_id=row["id"],
    )


async def add_dnc(
    conn: Connection,
    *,
    number: str,
    list_name: str = INTERNAL,
    source: str = "cli",
    evidence: dict[str, Any] | None = None,
    actor: str = "cli",
) -> bool:
    """Put a number on a list; False when it already was there (the history still records the request)."""
    async with conn.transaction():
        added = await conn.fetchval(
            """INSERT INTO dnc_entries (list_name, number, source, evidence, added_by)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true""",
            list_name,
            number,
            source,
            evidence or {},
            actor,
        )
        await conn.execute(
            """INSERT INTO dnc_history (list_name, number, action, source, evidence, actor)
               VALUES ($1, $2, 'add', $3, $4, $5)""",
            list_name,
            number,
            source,
            evidence or {},
            actor,
        )
    return bool(added)


async def remove_dnc(
    conn: Connection,
    *,
    number: str,
    list_name: str = INTERNAL,
    source: str = "cli",
    actor: str = "cli",
) -> bool:
    async with conn.transaction():
        removed = await conn.fetchval(
            "DELETE FROM dnc_entries WHERE list_name = $1 AND number = $2 RETURNING true", list_name, number
        )
        if removed:
            await conn.execute(
                """INSERT INTO dnc_history (list_name, number, action, source, actor)
                   VALUES ($1, $2, 'remove', $3, $4)""",
                list_name,
                number,
                source,
                actor,
            )
    return bool(removed)


async def list_dnc(conn: Connection, list_name: str | None = None, limit: int = 1000) -> list[Any]:
    return list(
        await conn.fetch(
            """SELECT id, list_name, number, source, added_at, added_by FROM dnc_entries
                WHERE $1::text IS NULL OR list_name = $1 ORDER BY added_at DESC, id DESC LIMIT $2""",
            list_name,
            limit,
        )
    )
