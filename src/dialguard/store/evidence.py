"""Evidence bundles (bundle.py) read from the database: a number's records, or a campaign's calls, with
the checkpoints that seal them; read in one snapshot, so the bundle is one consistent moment."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dialguard import __version__
from dialguard.bundle import ABOUT, FORMAT
from dialguard.clock import EARLIEST, LATEST
from dialguard.store.db import Connection
from dialguard.store.sealing import (
    BACKLOG_TIMEOUT,
    CALL_EVENTS,
    CONSENT_GRANTS,
    CONSENT_REVOCATIONS,
    DECISIONS,
    DNC_HISTORY,
    LOGS,
    OPTOUTS,
    Log,
    bounds,
    checkpoint_header,
    last_checkpoint,
    plain,
    range_hashes,
)

# Rows in one bundle, its records and the others' hashes together (about 80 bytes each): past this,
# ask for a narrower window rather than build a document of hundreds of megabytes in memory.
MAX_ROWS = 250_000


class BundleTooLarge(Exception):
    """The bundle would hold more rows than one document should: narrow it (since/until)."""


# Which rows are the subject's, per log: SQL conditions on the log's table.
_BY_NUMBER = {
    DECISIONS.table: "number = $1",
    CALL_EVENTS.table: "call_id IN (SELECT call_id FROM decisions WHERE number = $1)",
    CONSENT_GRANTS.table: "number = $1",
    CONSENT_REVOCATIONS.table: "number = $1",
    # The number itself, and every wildcard (+1212*) that covers it.
    DNC_HISTORY.table: "number = $1 OR (right(number, 1) = '*' AND starts_with($1, rtrim(number, '*')))",
    OPTOUTS.table: "number = $1",
}
_CAMPAIGN_CALLS = (
    "SELECT {} FROM decisions d WHERE d.campaign = $1 AND d.decided_at >= $2 AND d.decided_at < $3"
)
_BY_CAMPAIGN = {
    DECISIONS.table: "campaign = $1 AND decided_at >= $2 AND decided_at < $3",
    CALL_EVENTS.table: f"call_id IN ({_CAMPAIGN_CALLS.format('d.call_id')})",
    CONSENT_GRANTS.table: f"number IN ({_CAMPAIGN_CALLS.format('d.number')})",
    CONSENT_REVOCATIONS.table: f"number IN ({_CAMPAIGN_CALLS.format('d.number')})",
    DNC_HISTORY.table: f"""number IN ({_CAMPAIGN_CALLS.format("d.number")})
        OR (right(number, 1) = '*' AND EXISTS ({_CAMPAIGN_CALLS.format(1)}
                                              AND starts_with(d.number, rtrim(dnc_history.number, '*'))))""",
    OPTOUTS.table: f"call_id IN ({_CAMPAIGN_CALLS.format('d.call_id')})",
}


async def export_number(conn: Connection, number: str, *, at: datetime, by: str) -> dict[str, Any]:
    """Everything recorded about ``number`` (E.164), with what is needed to check it."""
    return await _export(conn, {"number": number}, _BY_NUMBER, (number,), at=at, by=by)


async def export_campaign(
    conn: Connection,
    campaign: str,
    *,
    since: datetime | None,
    until: datetime | None,
    at: datetime,
    by: str,
) -> dict[str, Any]:
    """The calls ``campaign`` decided in [since, until), their events and opt-outs, and the consent and
    do-not-call history of the numbers called."""
    subject = {"campaign": campaign, "since": plain(since), "until": plain(until)}
    args = (campaign, since or EARLIEST, until or LATEST)
    return await _export(conn, subject, _BY_CAMPAIGN, args, at=at, by=by)


async def _export(
    conn: Connection,
    subject: dict[str, Any],
    conditions: dict[str, str],
    args: tuple[Any, ...],
    *,
    at: datetime,
    by: str,
) -> dict[str, Any]:
    budget = [MAX_ROWS]
    logs = {}
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for log in LOGS:
            logs[log.table] = await _log_part(conn, log, conditions[log.table], args, budget)
    return {
        "format": FORMAT,
        "subject": subject,
        "exported_at": plain(at),
        "exported_by": by,
        "dialguard": __version__,
        "about": ABOUT,
        "logs": logs,
    }


def _spend(budget: list[int], rows: int) -> None:
    budget[0] -= rows
    if budget[0] < 0:
        raise BundleTooLarge(
            f"the bundle would hold more than {MAX_ROWS:,} rows (its records and the other rows their "
            "checkpoints seal): ask for a shorter time window"
        )


async def _log_part(
    conn: Connection, log: Log, condition: str, args: tuple[Any, ...], budget: list[int]
) -> dict[str, Any]:
    stored = ", row_hash" if log.stored_hash else ""
    rows = await conn.fetch(
        f"""SELECT id, inserted_at, {", ".join(log.hashed)}{stored} FROM {log.table}
             WHERE {condition} ORDER BY inserted_at, id LIMIT {budget[0] + 1}""",
        *args,
        timeout=BACKLOG_TIMEOUT,
    )
    _spend(budget, len(rows))
    records = [
        {
            "id": plain(r["id"]),
            "inserted_at": plain(r["inserted_at"]),
            "row_hash": log.row_hash(r).hex(),
            "content": log.content(r),
        }
        for r in rows
    ]
    ours = {r["id"] for r in rows}
    # Each record's checkpoint: the first to end after the record's place in the sealing order.
    places = sorted({(r["inserted_at"], 0 if log.uuid_ids else r["id"]) for r in rows})
    covering = await conn.fetch(
        f"""SELECT DISTINCT cp.* FROM unnest($1::timestamptz[], $2::bigint[]) AS t(at, id)
              CROSS JOIN LATERAL (SELECT * FROM {log.checkpoints} c WHERE (c.to_at, c.to_id) > (t.at, t.id)
                                   ORDER BY c.to_at, c.to_id LIMIT 1) cp
             WHERE (cp.from_at, cp.from_id) <= (t.at, t.id) ORDER BY cp.id""",
        [at for at, _ in places],
        [row_id for _, row_id in places],
        timeout=BACKLOG_TIMEOUT,
    )
    checkpoints = []
    for cp in covering:
        sealed: list[list[Any]] = []
        async for batch in range_hashes(conn, log, *bounds(cp)):
            _spend(budget, len(batch))
            sealed.extend([plain(i)] if i in ours else [plain(i), h.hex()] for i, h in batch)
        checkpoints.append({**checkpoint_header(log.table, cp), "rows": sealed})
    last = await last_checkpoint(conn, log)
    return {
        "records": records,
        "checkpoints": checkpoints,
        "last_checkpoint": checkpoint_header(log.table, last) if last else None,
    }
