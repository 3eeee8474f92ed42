"""Lead-list scrub: every row of a CSV judged as a call would be, streamed in and out in order.

Rows are read, judged in bounded batches (one fact query for a whole batch), and written before the
next batch is read, so a million-row file never sits in memory. The work is cut into slices of
``SLICE`` seconds, between which the event loop serves whatever else is ready: in the gateway, the
FastAGI checks that share it (slicing.py). A scrub is a look-ahead, not a call:
nothing counts as an attempt and no decision is stored; the output file is the record. Each row gets
the verdict, the reason codes, next_callable_at and a row error; the summary counts rows by reason.

Whatever a row holds, a reader finds the fresh verdict under ``dialguard_verdict`` and nowhere else:

- A ragged row (more or fewer cells than the header) is not judged: which cell is the number is
  anyone's guess. It is written BLOCK with empty reasons and ``dialguard_row_error`` saying why, fitted
  to the header's width (cells past it are left out, so none can sit under a verdict heading), and
  counted in the summary as ``not_judged``.
- A row whose lead state the gate cannot read for its number (``US-XX``, ``Narnia``; ``FL``,
  ``US-FL`` and ``Florida`` are read alike, numbers.parse_lead_state) is not judged either: judging it
  without that state's rules would be the very mistake. So is an emergency or short service number
  (``911``): it is no lead, and a campaign never dials it. Both are written BLOCK with the row error.
- A file scrubbed before (its header already has ``dialguard_*`` columns, in any case) gets those
  columns overwritten in place, not a second set beside them: each holds the fresh answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dialguard.gate import CheckRequest, Gate
from dialguard.policy.model import Decision
from dialguard.slicing import Slicer

NUMBER_COLUMNS = ("number", "phone", "phone_number", "telephone")
STATE_COLUMNS = ("lead_state", "state")
OUT_COLUMNS = [
    "dialguard_verdict",
    "dialguard_reason",
    "dialguard_reasons",
    "dialguard_next_callable_at",
    "dialguard_row_error",
]
# Seconds a scrub runs before it hands the event loop back: FastAGI checks share the gateway's loop,
# and each step of a check may wait this long behind a scrub. 0.25 ms kept check p99 within 1.5x
# during a 100k-row scrub, 1 ms did not (docs/benchmarks.md, bench/scrub_isolation.py).
SLICE = 0.00025


class ScrubError(Exception):
    """The lead file cannot be scrubbed as given (no number column, empty file)."""


@dataclass(slots=True)
class ScrubSummary:
    by_reason: Counter[str] = field(default_factory=Counter)  # "ok" is an allowed row
    not_judged: int = 0  # ragged rows, unreadable lead states, emergency numbers: BLOCK with a row error

    @property
    def rows(self) -> int:
        return self.by_reason.total() + self.not_judged

    @property
    def allowed(self) -> int:
        return self.by_reason["ok"]

    @property
    def blocked(self) -> int:
        return self.rows - self.allowed

    def as_json(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "rows": self.rows,
            "allowed": self.allowed,
            "blocked": self.blocked,
            "by_reason": dict(self.by_reason.most_common()),
        }
        if self.not_judged:  # like by_reason, only what happened
            summary["not_judged"] = self.not_judged
        return summary


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a lead file's cells and the verdict columns go in the output."""

    header: list[str]  # the output header
    width: int  # the input header's
    lead_at: list[int]  # the lead's own columns: not a verdict column of an earlier scrub
    out_at: list[list[int]]  # for each of OUT_COLUMNS, its places in the output

    @classmethod
    def of(cls, header: list[str]) -> Layout:
        names = [h.strip().lower() for h in header]
        out = [name if name in OUT_COLUMNS else heading for name, heading in zip(names, header, strict=True)]
        out_at = []
        for column in OUT_COLUMNS:
            at = [i for i, name in enumerate(names) if name == column]
            if not at:
                at = [len(out)]
                out.append(column)
            out_at.append(at)
        lead_at = [i for i, name in enumerate(names) if name not in OUT_COLUMNS]
        return cls(header=out, width=len(header), lead_at=lead_at, out_at=out_at)


@dataclass(frozen=True, slots=True)
class Scrubbed:
    """One lead row and what the scrub made of it."""

    layout: Layout
    cells: list[str]  # the row fitted to the header's width
    verdict: str  # ALLOW | BLOCK
    reason: str  # "" when not judged
    codes: tuple[str, ...]
    next_callable_at: datetime | None
    row_error: str | None  # why the row was not judged

    def lead(self) -> dict[str, str]:
        """The lead's own columns by heading."""
        return {self.layout.header[i]: self.cells[i] for i in self.layout.lead_at}

    def out(self) -> list[str]:
        """The output row: every cell under its heading."""
        row = self.cells + [""] * (len(self.layout.header) - self.layout.width)
        nxt = self.next_callable_at.isoformat() if self.next_callable_at else ""
        values = (self.verdict, self.reason, ",".join(self.codes), nxt, self.row_error or "")
        for places, value in zip(self.layout.out_at, values, strict=True):
            for i in places:
                row[i] = value
        return row


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    return next((lowered.index(n) for n in names if n in lowered), None)


def _cell(row: list[str], at: int | None) -> str:
    return row[at] if at is not None else ""  # judged rows have the header's width


def _not_a_lead(decision: Decision) -> str | None:
    """Why a row the gate answered is still not judged: its lead state, or an emergency number."""
    for reason in decision.reasons:
        if reason.code == "lead_state.invalid":
            return f"{reason.detail['why']}; not judged"
        if reason.code == "number.emergency":
            return (
                f"{reason.detail['dialled']!r} is an emergency or short service number "
                f"({reason.detail['service']}): not a lead, never dialled by a campaign"
            )
    return None


def _ragged(cells: int, width: int) -> str:
    error = f"{cells} cell{'' if cells == 1 else 's'} where the header has {width}: not judged"
    return error + ("; the cells past the header's are left out" if cells > width else "")


class Scrubber:
    def __init__(
        self,
        *,
        gate: Gate,
        campaign: str | None,
        at: datetime | None = None,
        batch: int = 200,
        slice_seconds: float | None = SLICE,
    ) -> None:
        self.gate = gate
        self.campaign = campaign
        self.at = at
        self.batch = batch  # rows judged with one fact query
        self.slice_seconds = slice_seconds  # None: the loop is never handed back mid-batch

    async def run(
        self,
        rows: AsyncIterable[list[str]],
        emit: Callable[[list[str]], Awaitable[None]],
    ) -> ScrubSummary:
        """CSV in, CSV out: ``emit`` gets the output header, then each output row."""

        async def each(scrubbed: Scrubbed) -> None:
            await emit(scrubbed.out())

        return await self.scrub(rows, started=lambda layout: emit(layout.header), each=each)

    async def scrub(
        self,
        rows: AsyncIterable[list[str]],
        *,
        started: Callable[[Layout], Awaitable[None]],
        each: Callable[[Scrubbed], Awaitable[None]],
    ) -> ScrubSummary:
        """The header, then lead rows in; ``started`` once the header is read, then ``each`` row in order."""
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
        layout = Layout.of(header)
        await started(layout)
        slicer = Slicer(self.slice_seconds)
        pending: list[list[str]] = []
        async for row in iterator:
            pending.append(row)
            await slicer.pause()  # reading a row costs too (an NDJSON lead is decoded as it is read)
            if len(pending) >= self.batch:
                await self._judge(pending, layout, at, number_at, state_at, each, summary, slicer)
                pending = []
        if pending:
            await self._judge(pending, layout, at, number_at, state_at, each, summary, slicer)
        return summary

    async def _judge(
        self,
        rows: list[list[str]],
        layout: Layout,
        at: datetime,
        number_at: int,
        state_at: int | None,
        each: Callable[[Scrubbed], Awaitable[None]],
        summary: ScrubSummary,
        slicer: Slicer,
    ) -> None:
        width = layout.width
        whole = [row for row in rows if len(row) == width]  # a ragged row is not judged
        requests = [
            CheckRequest(
                number=row[number_at],
                campaign=self.campaign,
                at=at,
                lead_subdivision=_cell(row, state_at),  # the gate reads it, as every entry point's
                channel="scrub",
                keep=False,
            )
            for row in whole
        ]
        results = iter(await self.gate.look_ahead(requests, pause=slicer.pause) if requests else [])
        for row in rows:  # in order, ragged rows in their places
            await slicer.pause()  # each row's line is written (JSON, CSV) before the next
            if len(row) != width:
                summary.not_judged += 1
                cells = (row + [""] * width)[:width]
                await each(Scrubbed(layout, cells, "BLOCK", "", (), None, _ragged(len(row), width)))
                continue
            d = next(results).decision
            if (error := _not_a_lead(d)) is not None:
                summary.not_judged += 1
                await each(Scrubbed(layout, row, "BLOCK", "", (), None, error))
                continue
            summary.by_reason[d.reason] += 1
            await each(Scrubbed(layout, row, str(d.verdict), d.reason, d.codes, d.next_callable_at, None))
