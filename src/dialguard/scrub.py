"""Lead-list scrub: every row of a CSV judged as a call would be, streamed in and out in order.

Rows are read, judged in bounded batches (one fact query for a whole batch), and written before the
next batch is read, so a million-row file never sits in memory. A scrub is a look-ahead, not a call:
nothing counts as an attempt and no decision is stored; the output file is the record. Each row gets
the verdict, the reason codes and next_callable_at; the summary counts rows by reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dialguard.gate import CheckRequest, Gate

NUMBER_COLUMNS = ("number", "phone", "phone_number", "telephone")
STATE_COLUMNS = ("lead_state", "state")
OUT_COLUMNS = ["dialguard_verdict", "dialguard_reason", "dialguard_reasons", "dialguard_next_callable_at"]


class ScrubError(Exception):
    """The lead file cannot be scrubbed as given (no number column, empty file)."""


@dataclass(slots=True)
class ScrubSummary:
    by_reason: Counter[str] = field(default_factory=Counter)  # "ok" is an allowed row

    @property
    def rows(self) -> int:
        return self.by_reason.total()

    @property
    def allowed(self) -> int:
        return self.by_reason["ok"]

    @property
    def blocked(self) -> int:
        return self.rows - self.allowed

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "allowed": self.allowed,
            "blocked": self.blocked,
            "by_reason": dict(self.by_reason.most_common()),
        }


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    return next((lowered.index(n) for n in names if n in lowered), None)


def _cell(row: list[str], at: int | None) -> str:
    return row[at] if at is not None else ""  # rows are padded to the header's width


def _state(value: str) -> str | None:
    value = value.strip().upper()
    if not value:
        return None
    return value if "-" in value else f"US-{value}"  # a bare "TX" in a US lead list


class Scrubber:
    def __init__(
        self, *, gate: Gate, campaign: str | None, at: datetime | None = None, batch: int = 200
    ) -> None:
        self.gate = gate
        self.campaign = campaign
        self.at = at
        self.batch = batch

    async def run(
        self,
        rows: AsyncIterable[list[str]],
        emit: Callable[[list[str]], Awaitable[None]],
    ) -> ScrubSummary:
        summary = ScrubSummary()
        at = self.at or self.gate.clock()  # one instant for the whole list: one fact query per batch
        iterator = aiter(rows)
        try:
            header = await anext(iterator)
        except StopAsyncIteration:
            raise ScrubError("the lead file is empty: expected a header row with a 'number' column") from None
        number_at = _column(header, NUMBER_COLUMNS)
        if number_at is None:
            raise ScrubError(f"no number column: expected one of {', '.join(NUMBER_COLUMNS)} in {header!r}")
        state_at = _column(header, STATE_COLUMNS)
        await emit([*header, *OUT_COLUMNS])
        pending: list[list[str]] = []
        width = len(header)
        async for row in iterator:
            # A short row is padded, so the verdict columns stay under their headings.
            pending.append(row + [""] * (width - len(row)))
            if len(pending) >= self.batch:
                await self._judge(pending, at, number_at, state_at, emit, summary)
                pending = []
        if pending:
            await self._judge(pending, at, number_at, state_at, emit, summary)
        return summary

    async def _judge(
        self,
        rows: list[list[str]],
        at: datetime,
        number_at: int,
        state_at: int | None,
        emit: Callable[[list[str]], Awaitable[None]],
        summary: ScrubSummary,
    ) -> None:
        requests = [
            CheckRequest(
                number=_cell(row, number_at),
                campaign=self.campaign,
                at=at,
                lead_subdivision=_state(_cell(row, state_at)),
                channel="scrub",
                keep=False,
            )
            for row in rows
        ]
        results = await self.gate.look_ahead(requests)
        for row, result in zip(rows, results, strict=True):
            d = result.decision
            summary.by_reason[d.reason] += 1
            nxt = d.next_callable_at.isoformat() if d.next_callable_at else ""
            await emit([*row, str(d.verdict), d.reason, ",".join(d.codes), nxt])
