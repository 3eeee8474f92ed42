"""A call's timeline: the AMI steps in call_events beside the gateway's own, and answered calls' outcomes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from dialguard.asterisk.ami_calls import Answered, Step
from dialguard.store.db import Connection
from dialguard.store.sealing import event_hash

_INSERT_EVENT = "INSERT INTO call_events (call_id, at, kind, detail, row_hash) VALUES ($1, $2, $3, $4, $5)"

# An answered call's outcome, once, with its number and campaign from its decision; the hour's counts
# move only when the outcome is new (a replayed batch counts nothing twice).
_INSERT_OUTCOMES = """
WITH given AS (
    SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::boolean[])
        AS g(call_id, answered_at, agent_at, abandoned)
), fresh AS (
    INSERT INTO call_outcomes (call_id, number, campaign, answered_at, agent_at, abandoned)
    SELECT g.call_id, d.number, d.campaign, g.answered_at, g.agent_at, g.abandoned
      FROM given g JOIN decisions d ON d.call_id = g.call_id
    ON CONFLICT (call_id) DO NOTHING
    RETURNING campaign, answered_at, abandoned
)
INSERT INTO campaign_answer_hours AS h (campaign, hour, answered, abandoned)
SELECT campaign, date_trunc('hour', answered_at, 'UTC'), count(*), count(*) FILTER (WHERE abandoned)
  FROM fresh GROUP BY 1, 2
ON CONFLICT (campaign, hour) DO UPDATE
   SET answered = h.answered + EXCLUDED.answered, abandoned = h.abandoned + EXCLUDED.abandoned
"""


async def write(conn: Connection, steps: Sequence[Step], answered: Sequence[tuple[Answered, bool]]) -> None:
    """Steps and outcomes in one transaction: all of a batch is stored, or none of it."""
    async with conn.transaction():
        if steps:
            rows = []
            for s in steps:
                event = {"call_id": s.call_id, "at": s.at, "kind": s.kind, "detail": s.detail}
                rows.append((*event.values(), event_hash(event)))
            await conn.executemany(_INSERT_EVENT, rows)
        if answered:
            await conn.execute(
                _INSERT_OUTCOMES,
                [a.call_id for a, _ in answered],
                [a.answered_at for a, _ in answered],
                [a.agent_at for a, _ in answered],
                [abandoned for _, abandoned in answered],
            )


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
