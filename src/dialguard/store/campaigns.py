"""Campaigns: a name and the purpose its calls serve (which decides what consent they need)."""

from __future__ import annotations

from typing import Any

import asyncpg

from dialguard.policy.campaign_settings import setting_problems
from dialguard.policy.model import Campaign, Purpose
from dialguard.store.audit import record_audit
from dialguard.store.db import Connection


class CampaignExists(Exception):
    """A campaign of that name is already defined."""


class InvalidCampaignSettings(ValueError):
    """A setting the code does not know, or a value it cannot use (the message lists each)."""


class InvalidCampaignName(ValueError):
    """The name is not letters, digits, _ . - (at most 64), as the database's CHECK wants."""


def campaign_from_row(row: Any) -> Campaign:
    return Campaign(name=row["name"], purpose=Purpose(row["purpose"]), settings=row["settings"] or {})


async def add_campaign(
    conn: Connection,
    *,
    name: str,
    purpose: Purpose,
    settings: dict[str, Any] | None = None,
    actor: str = "cli",
) -> Campaign:
    if problems := setting_problems(settings or {}):
        raise InvalidCampaignSettings("; ".join(problems))
    try:
        async with conn.transaction():
            row = await conn.fetchrow(
                """INSERT INTO campaigns (name, purpose, settings, created_by) VALUES ($1, $2, $3, $4)
                   RETURNING name, purpose, settings""",
                name,
                str(purpose),
                settings or {},
                actor,
            )
            detail = {"purpose": str(purpose), "settings": settings or {}}
            await record_audit(conn, actor=actor, action="campaign.add", subject=name, detail=detail)
    except asyncpg.UniqueViolationError:
        raise CampaignExists(f"campaign {name!r} already exists") from None
    except asyncpg.CheckViolationError:
        raise InvalidCampaignName(
            f"{name!r} is not a usable campaign name: letters, digits, '_', '.', '-', up to 64"
        ) from None
    return campaign_from_row(row)


async def get_campaign(conn: Connection, name: str) -> Campaign | None:
    row = await conn.fetchrow("SELECT name, purpose, settings FROM campaigns WHERE name = $1", name)
    return campaign_from_row(row) if row else None


async def list_campaigns(conn: Connection) -> list[Campaign]:
    rows = await conn.fetch("SELECT name, purpose, settings FROM campaigns ORDER BY name")
    return [campaign_from_row(r) for r in rows]
