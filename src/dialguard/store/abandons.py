"""Answered calls' outcomes and the hourly counts the abandoned-call rule is governed by (migration 0008).

The counts are kept an hour a row, so a window's rate is a sum of at most its hours in rows. A window rarely
starts on the hour; its first hour is read on the safe side: its abandoned calls count, its answered calls
do not (they may have been answered before the window). The rate read is never below the true rate; the
price is up to an hour of answered calls left out at the window's old edge.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from dialguard.policy.model import AnswerCounts
from dialguard.store.db import Connection

# Answered calls' outcomes, each once, with its number and campaign from its decision. The hour's counts
# move only when the outcome is new (a replayed batch counts nothing twice). One statement, so outcomes
# and counts land together; two writers of one hour meet on the row's lock.
_RECORD_SQL = """
WITH given AS (
    SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::boolean[])
        AS g(call_id, answered_at, agent_at, abandoned)
), fresh AS (
    INSERT INTO call_outcomes (call_id, number, campaign, answered_at, agent_at, abandoned)
    SELECT g.call_id, d.number, d.campaign, g.answered_at, g.agent_at, g.abandoned
      FROM given g JOIN decisions d ON d.call_id = g.call_id
    ON CONFLICT (call_id) DO NOTHING
    RETURNING campaign, answered_at, abandoned
), counted AS (
    INSERT INTO campaign_answer_hours AS h (campaign, hour, answered, abandoned)
    SELECT campaign, date_trunc('hour', answered_at, 'UTC'), count(*), count(*) FILTER (WHERE abandoned)
      FROM fresh GROUP BY 1, 2
    ON CONFLICT (campaign, hour) DO UPDATE
       SET answered = h.answered + EXCLUDED.answered, abandoned = h.abandoned + EXCLUDED.abandoned
)
SELECT count(*) FROM fresh
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    """An answered call, as the abandon rule counts it."""

    call_id: uuid.UUID
    answered_at: datetime
    agent_at: datetime | None  # None: no agent joined
    abandoned: bool


def answer_hours_sql(campaign: str, since: str, until: str) -> str:
    """A subquery: jsonb {answered, abandoned} of ``campaign`` from ``since`` to ``until`` (SQL expressions),
    NULL when ``since`` is NULL (the rules ask for no count). A row covers [hour, hour + 1 h): abandoned
    calls from every row that overlaps the window, answered calls from the rows wholly inside it."""
    return f"""(SELECT jsonb_build_object(
              'answered', coalesce(sum(answered) FILTER (WHERE hour >= {since}), 0),
              'abandoned', coalesce(sum(abandoned), 0))
         FROM campaign_answer_hours
        WHERE campaign = {campaign} AND hour > {since} - interval '1 hour' AND hour <= {until}
       HAVING {since} IS NOT NULL)"""


_RATE_SQL = f"SELECT {answer_hours_sql('$1', '$2::timestamptz', '$3::timestamptz')} AS counts"
# Every campaign with answered calls in the window, counted as the gate counts one (the metrics).
_RATES_SQL = f"""
SELECT c.campaign, {answer_hours_sql("c.campaign", "$1::timestamptz", "$2::timestamptz")} AS counts
  FROM (SELECT DISTINCT campaign FROM campaign_answer_hours
         WHERE hour > $1::timestamptz - interval '1 hour' AND hour <= $2::timestamptz) c
"""


async def record_outcomes(conn: Connection, outcomes: Sequence[Outcome]) -> int:
    """Keep answered calls' outcomes and count each in its hour; return how many were new (a call kept
    already keeps its first outcome: call_outcomes is append-only). A call without a decision is left
    out: the gate decided every call it counts."""
    if not outcomes:
        return 0
    new: int = await conn.fetchval(
        _RECORD_SQL,
        [o.call_id for o in outcomes],
        [o.answered_at for o in outcomes],
        [o.agent_at for o in outcomes],
        [o.abandoned for o in outcomes],
    )
    return new


async def campaign_rate(conn: Connection, campaign: str, *, window: timedelta, now: datetime) -> AnswerCounts:
    """The campaign's answered and abandoned calls over ``window`` up to ``now``, as the gate reads them."""
    since = now - window
    counts = await conn.fetchval(_RATE_SQL, campaign, since, now)
    return AnswerCounts(counts["answered"], counts["abandoned"], since, now)


async def campaign_rates(conn: Connection, *, window: timedelta, now: datetime) -> dict[str, AnswerCounts]:
    """Every campaign's counts over ``window`` up to ``now`` (those with calls in it), as campaign_rate."""
    since = now - window
    rows = await conn.fetch(_RATES_SQL, since, now)
    return {
        r["campaign"]: AnswerCounts(r["counts"]["answered"], r["counts"]["abandoned"], since, now)
        for r in rows
    }
