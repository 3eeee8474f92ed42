"""A call's timeline: the AMI steps in call_events beside the gateway's own, and answered calls' outcomes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from dialguard.asterisk.ami_calls import Answered, Step
from dialguard.store.abandons import Outcome, record_outcomes
from dialguard.store.db import Connection
from dialguard.store.sealing import event_hash

_INSERT_EVENT = "INSERT INTO call_events (call_id, at, kind, detail, row_hash) VALUES ($1, $2, $3, $4, $5)"


async def write(conn: Connection, steps: Sequence[Step], answered: Sequence[tuple[Answered, bool]]) -> None:
    """Steps and outcomes in one transaction: all of a batch is stored, or none of it."""
    async with conn.transaction():
        if steps:
            rows = []
            for s in steps:
                event = {"call_id": s.call_id, "at": s.at, "kind": s.kind, "detail": s.detail}
                rows.append((*event.values(), event_hash(event)))
            await conn.executemany(_INSERT_EVENT, rows)
        await record_outcomes(conn, [Outcome(a.call_id, a.answered_at, a.agent_at, ab) for a, ab in answered])


async def timeline_of(conn: Connection, call_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every step of one call, gateway's and Asterisk's, in the order they were stored."""
    rows = await conn.fetch(
        "SELECT id, at, kind, detail FROM call_events WHERE call_id = $1 ORDER BY at, id", call_id
    )
    return [{"at": r["at"].isoformat(), "kind": r["kind"], "detail": r["detail"]} for r in rows]


async def outcome_of(conn: Connection, call_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT answered_at, agent_at, abandoned FROM call_outcomes WHERE call_id = $1", call_id
    )
    if row is None:
        return None
    return {
        "answered_at": row["answered_at"].isoformat(),
        "agent_at": row["agent_at"].isoformat() if row["agent_at"] else None,
        "abandoned": row["abandoned"],
    }
