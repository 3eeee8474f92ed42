"""Do-not-call entries: current rows per (list, number), with every change kept in dnc_history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dialguard.policy.model import INTERNAL, DncHit, is_company_list
from dialguard.store.audit import record_audit
from dialguard.store.db import Connection


class NotACompanyList(ValueError):
    """Entries one by one go to the company's own lists only: a national list changes only by import."""


def _company_list(list_name: str) -> None:
    if not is_company_list(list_name):
        raise NotACompanyList(
            f"{list_name!r} is a national list: it changes only by importing the publisher's file "
            f"(dialguard dnc import); add single numbers to {INTERNAL!r} or 'campaign:NAME'"
        )


def hit_from_row(row: Any) -> DncHit:
    return DncHit(
        list_name=row["list_name"],
        source=row["source"],
        added_at=row["added_at"],
        entry_id=row["id"],
        prefix=row.get("prefix"),
    )


async def add_dnc(
    conn: Connection,
    *,
    number: str,
    at: datetime,
    list_name: str = INTERNAL,
    source: str = "cli",
    evidence: dict[str, Any] | None = None,
    actor: str = "cli",
    expires_at: datetime | None = None,
) -> bool:
    """Put a number on a list; False when it already was there (the history still records the request).

    A number ending in ``*`` is a wildcard: every number starting with the digits before it (a
    wildcard does not expire).
    """
    _company_list(list_name)
    evidence = evidence or {}
    async with conn.transaction():
        if number.endswith("*"):
            added = await conn.fetchval(
                """INSERT INTO dnc_prefixes (list_name, prefix, source, evidence, added_by, added_at)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true""",
                list_name,
                number[:-1],
                source,
                evidence,
                actor,
                at,
            )
        else:
            # An expired entry is renewed: an UPDATE the gateway's role may make only this way (roles.py).
            added = await conn.fetchval(
                "SELECT dialguard_dnc_renew($1, $2, $3, $4, $5, $6, $7)",
                list_name,
                number,
                source,
                evidence,
                actor,
                expires_at,
                at,
            )
        await conn.execute(
            """INSERT INTO dnc_history (list_name, number, action, source, evidence, actor, at)
               VALUES ($1, $2, 'add', $3, $4, $5, $6)""",
            list_name,
            number,
            source,
            evidence,
            actor,
            at,
        )
        detail = {"list": list_name, "source": source, "added": bool(added)}
        await record_audit(conn, actor=actor, action="dnc.add", subject=number, detail=detail)
    return bool(added)


async def remove_dnc(
    conn: Connection,
    *,
    number: str,
    at: datetime,
    list_name: str = INTERNAL,
    source: str = "cli",
    actor: str = "cli",
) -> bool:
    _company_list(list_name)
    async with conn.transaction():
        # The removal and its history row in one call: the gateway's role may not delete otherwise.
        removed = await conn.fetchval(
            "SELECT dialguard_dnc_remove($1, $2, $3, $4, $5)", list_name, number, source, actor, at
        )
        if removed:
            await record_audit(
                conn, actor=actor, action="dnc.remove", subject=number, detail={"list": list_name}
            )
    return bool(removed)


async def list_dnc(conn: Connection, list_name: str | None = None, limit: int = 1000) -> list[Any]:
    """Entries and wildcards (shown as ``+1212*``), newest first."""
    return list(
        await conn.fetch(
            """SELECT * FROM (
                 SELECT id, list_name, number, source, added_at, added_by, expires_at FROM dnc_entries
                 UNION ALL
                 SELECT id, list_name, prefix || '*', source, added_at, added_by, NULL FROM dnc_prefixes
               ) e WHERE $1::text IS NULL OR list_name = $1 ORDER BY added_at DESC, id DESC LIMIT $2""",
            list_name,
            limit,
        )
    )
