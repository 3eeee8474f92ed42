"""The decision log as supervisors page through it: newest first, filtered, a page at a time.

Pages are read by keyset, ``(decided_at, id)`` descending from a cursor, never by OFFSET: a decision
stored while someone pages neither shifts nor repeats a row of the pages that follow, and a deep page
costs what the first does (one index range read, migration 0007).

``reason`` matches the decision's ``reason`` column: its first failed code (what DIALGUARD_REASON
says), or ``ok`` for an allowed call. Matching any failed code would mean reading every row's body
from the cursor on: fast when the code is common, a scan of the whole log when it is rare.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dialguard.store.db import Connection

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_MAX_ID = 2**63 - 1


class InvalidCursor(ValueError):
    """A cursor this log did not hand out (or one damaged on the way)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: just after (older than) this decision."""

    decided_at: datetime
    id: int

    def encode(self) -> str:
        """Opaque to clients: url-safe base64 of ``MICROSECONDS.ID`` (exact to PostgreSQL's microsecond)."""
        micros = (self.decided_at - _EPOCH) // _MICRO
        return base64.urlsafe_b64encode(f"{micros}.{self.id}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidCursor("not a cursor of this log") from None
        micros, dot, ident = raw.partition(".")
        if not (dot and _integer(micros.removeprefix("-")) and _integer(ident)):
            raise InvalidCursor("not a cursor of this log")
        try:
            at = _EPOCH + int(micros) * _MICRO
        except OverflowError:
            raise InvalidCursor("the cursor's time is out of range") from None
        if not 0 < int(ident) <= _MAX_ID:
            raise InvalidCursor("the cursor's id is out of range")
        return cls(at, int(ident))


def _integer(text: str) -> bool:
    # ASCII digits only ("²".isdigit() is True), and short: int() refuses past 4,300 digits.
    return text.isascii() and text.isdigit() and len(text) <= 19


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Every given field must match; ``since`` is inclusive, ``until`` exclusive (on decided_at)."""

    campaign: str | None = None
    verdict: str | None = None
    reason: str | None = None
    number: str | None = None  # E.164
    since: datetime | None = None
    until: datetime | None = None
    outcome: str | None = None  # one of OUTCOMES


# What a call came to, as a condition on the decision (d) and its answered call's outcome (o, or NULLs).
OUTCOMES = {
    "blocked": "d.verdict = 'BLOCK'",
    "allowed": "d.verdict = 'ALLOW'",
    "answered": "o.call_id IS NOT NULL",
    "connected": "o.agent_at IS NOT NULL",
    "abandoned": "o.abandoned",
}

# The call's outcome as the calls list shows it: null when it was never answered (or not yet).
_OUTCOME_JSON = """CASE WHEN o.call_id IS NULL THEN NULL ELSE jsonb_build_object(
    'answered_at', o.answered_at, 'agent_at', o.agent_at, 'abandoned', o.abandoned) END"""


@dataclass(frozen=True, slots=True)
class Page:
    decisions: list[str]  # each the decision JSON as stored, with its "id", as JSON text
    next_cursor: Cursor | None  # None: this was the last page


async def page(
    conn: Connection, where: LogFilter, *, after: Cursor | None, limit: int, with_outcome: bool = False
) -> Page:
    """One page of decisions, newest first. The JSON is built by PostgreSQL and passed on as text: a
    page of 500 is never decoded and encoded again on its way out. ``with_outcome`` adds each call's
    ``"outcome"`` (GET /v1/calls); call_outcomes is read only when that or an outcome filter asks."""
    args: list[object] = []

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    # Only the conditions given: each combination is its own prepared statement, planned for its index.
    conditions = [
        f"d.{column} = {arg(value)}"
        for column, value in (
            ("campaign", where.campaign),
            ("verdict", where.verdict),
            ("reason", where.reason),
            ("number", where.number),
        )
        if value is not None
    ]
    if where.outcome is not None:
        conditions.append(OUTCOMES[where.outcome])
    if where.since is not None:
        conditions.append(f"d.decided_at >= {arg(where.since)}")
    if where.until is not None:
        conditions.append(f"d.decided_at < {arg(where.until)}")
    if after is not None:
        conditions.append(f"(d.decided_at, d.id) < ({arg(after.decided_at)}, {arg(after.id)})")
    joined = with_outcome or where.outcome is not None
    extra = f", 'outcome', {_OUTCOME_JSON}" if with_outcome else ""
    sql = f"""SELECT d.id, d.decided_at, (d.body || jsonb_build_object('id', d.id{extra}))::text AS json
                FROM decisions d
                {"LEFT JOIN call_outcomes o ON o.call_id = d.call_id" if joined else ""}
                {"WHERE " + " AND ".join(conditions) if conditions else ""}
               ORDER BY d.decided_at DESC, d.id DESC LIMIT {arg(limit + 1)}"""
    rows = await conn.fetch(sql, *args)
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    return Page(
        [r["json"] for r in rows], Cursor(last["decided_at"], last["id"]) if last is not None else None
    )
