"""The audit log: every change to consent, lists, campaigns and tokens, with who, when and what.

Written in the same transaction as the change it records, so neither exists without the other.
"""

from __future__ import annotations

from typing import Any

from dialguard.store.db import Connection


async def record_audit(
    conn: Connection,
    *,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any] | None = None,
    command_timeout: float | None = None,
) -> None:
    """Written inside the change's own transaction; ``command_timeout`` for a bulk import's budget."""
    await conn.execute(
        "INSERT INTO audit_log (actor, action, subject, detail) VALUES ($1, $2, $3, $4)",
        actor,
        action,
        subject,
        detail or {},
        timeout=command_timeout,
    )


async def list_audit(
    conn: Connection, *, subject: str | None = None, after_id: int = 0, limit: int = 100
) -> list[Any]:
    return list(
        await conn.fetch(
            """SELECT id, at, actor, action, subject, detail FROM audit_log
                WHERE id > $1 AND ($2::text IS NULL OR subject = $2) ORDER BY id LIMIT $3""",
            after_id,
            subject,
            limit,
        )
    )
