"""The live feed's reads: decisions and call events by id, as the event hub (events.py) and a resumed
stream want them. Each row comes with its JSON already built by PostgreSQL, as text, so that it goes
out to every subscriber without being decoded and encoded again.

A call event carries its decision's campaign and verdict (joined by call id), for the filters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from dialguard.store.db import Connection


class Kind(StrEnum):
    DECISION = "decision"
    CALL = "call"


_SELECT = {
    Kind.DECISION: """
        SELECT d.id, d.inserted_at, d.campaign, d.verdict,
               (d.body || jsonb_build_object('id', d.id))::text AS data
          FROM decisions d""",
    Kind.CALL: """
        SELECT e.id, e.inserted_at, d.campaign, d.verdict,
               jsonb_build_object('call_id', e.call_id, 'at', e.at, 'kind', e.kind, 'detail', e.detail,
                                  'id', e.id)::text AS data
          FROM call_events e LEFT JOIN decisions d ON d.call_id = e.call_id""",
}
_ID = {Kind.DECISION: "d.id", Kind.CALL: "e.id"}


@dataclass(frozen=True, slots=True)
class FeedRow:
    kind: Kind
    id: int
    inserted_at: datetime  # the writing transaction's start: the order a merged read is shown in
    campaign: str | None  # a call event's decision's; None when no decision has its call id
    verdict: str | None
    data: str  # JSON text: the decision as stored plus "id", or {call_id, at, kind, detail, id}


def _rows(kind: Kind, records: list[asyncpg.Record]) -> list[FeedRow]:
    return [FeedRow(kind, r["id"], r["inserted_at"], r["campaign"], r["verdict"], r["data"]) for r in records]


async def last_ids(conn: Connection, *, within: float | None = None) -> dict[Kind, int]:
    """The highest id of each log (0 when empty): where a feed that starts now begins. ``within``: the
    seconds each read may take here and below (the hub's link may die silently)."""
    row = await conn.fetchrow(
        """SELECT (SELECT coalesce(max(id), 0) FROM decisions) AS decision,
                  (SELECT coalesce(max(id), 0) FROM call_events) AS call""",
        timeout=within,
    )
    assert row is not None
    return {Kind.DECISION: row["decision"], Kind.CALL: row["call"]}


async def rows_after(
    conn: Connection,
    kind: Kind,
    after: int,
    *,
    limit: int,
    upto: int | None = None,
    campaign: str | None = None,
    within: float | None = None,
) -> list[FeedRow]:
    """Rows with ``after < id <= upto``, in id order, at most ``limit``; only ``campaign``'s when given."""
    ident = _ID[kind]
    sql = f"""{_SELECT[kind]}
        WHERE {ident} > $1 AND {ident} <= $2 AND ($3::text IS NULL OR d.campaign = $3)
        ORDER BY {ident} LIMIT $4"""
    upper = upto if upto is not None else 2**63 - 1
    return _rows(kind, await conn.fetch(sql, after, upper, campaign, limit, timeout=within))


async def rows_between(
    conn: Connection, kind: Kind, ranges: list[tuple[int, int]], *, within: float | None = None
) -> list[FeedRow]:
    """Rows whose id lies in any of the inclusive ``ranges``, in id order (one index probe a range)."""
    if not ranges:
        return []
    ident = _ID[kind]
    sql = f"""{_SELECT[kind]}
        JOIN unnest($1::bigint[], $2::bigint[]) AS r(lo, hi) ON {ident} BETWEEN r.lo AND r.hi
        ORDER BY {ident}"""
    los, his = [lo for lo, _ in ranges], [hi for _, hi in ranges]
    return _rows(kind, await conn.fetch(sql, los, his, timeout=within))
