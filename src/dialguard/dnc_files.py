"""Do-not-call list files turned into E.164 digits for COPY, line by line errors kept. Pure: no I/O.

Formats (``dialguard dnc import --format``):

- ``us-registry``: the US National DNC Registry's full-list flat file: one ten-digit number per line,
  ``2125550100`` or ``212,5550100`` (area code, comma, number).
- ``us-registry-changes``: its change-list file: ``212,5550100,A`` (added) or ``...,D`` (deleted); any
  further comma-separated fields are ignored. Applied to the live version, it makes the next one.
- ``tps``: the UK TPS/CTPS files: one national number per line, ``01632960001`` or ``07700900123``.
- ``csv``: a header row with a ``number`` column; numbers in E.164 (``+12125550100``) or in the national
  format of the default region. For a list whose registrations lapse (Texas: 3 years), a
  ``registered_on`` column (YYYY-MM-DD) too: entries lapsed by the list's date are skipped and counted.

The parser takes the file in chunks of whole lines and returns, per chunk, the COPY text (one
E.164-digits number per line) and the rejected lines with their numbers and why. The common case, a
chunk with no bad line, runs in two regular-expression passes in C.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import Enum, StrEnum

from dialguard.numbers import NumberFacts, parse_number

UTF8_BOM = b"\xef\xbb\xbf"


class FileFormat(StrEnum):
    US_REGISTRY = "us-registry"
    US_REGISTRY_CHANGES = "us-registry-changes"
    TPS = "tps"
    CSV = "csv"


EXPECTED = {
    FileFormat.US_REGISTRY: "ten-digit US numbers, one per line (2125550100 or 212,5550100)",
    FileFormat.US_REGISTRY_CHANGES: "change records, one per line: 212,5550100,A or 212,5550100,D",
    FileFormat.TPS: "UK national numbers, one per line (01632960001)",
    FileFormat.CSV: "a CSV file whose header row has a 'number' column",
}


class WrongFormat(Exception):
    """The file is not in the format asked for; nothing was imported."""


@dataclass(frozen=True, slots=True)
class Reject:
    line: int
    text: str
    why: str


@dataclass(slots=True)
class Parsed:
    """One chunk's result: COPY text of numbers to add (and, for change files, to delete)."""

    added: bytes = b""
    deleted: bytes = b""
    count: int = 0  # numbers in ``added``
    lapsed: int = 0  # registrations older than the list's entry lifetime, skipped
    rejects: list[Reject] = field(default_factory=list)


class _Skip(Enum):
    HEADER = "header"
    LAPSED = "lapsed"


_LineResult = tuple[bytes, bool] | str | _Skip  # (digits, is a deletion) | why rejected | not a number


_US_LINE = rb"([2-9][0-9]{2}),?([2-9][0-9]{6})\r?"
_US_FULL_SUB = re.compile(rb"^%s$" % _US_LINE, re.M)
_US_CHANGE = re.compile(rb"([2-9][0-9]{2}),?([2-9][0-9]{6}),\s*([AaDd])\b[^\n]*")
_TPS_LINE = rb"0([1-9][0-9]{8,9})\r?"
_TPS_CHUNK = re.compile(rb"(?:%s\n)*" % _TPS_LINE)
_TPS_SUB = re.compile(rb"^%s$" % _TPS_LINE, re.M)
_E164 = re.compile(r"\+([1-9][0-9]{6,14})")


def _us_fast(chunk: bytes, lines: int) -> bytes | None:
    """A chunk of clean ten-digit lines as COPY text with slicing and C string methods only; else None."""
    body = chunk.replace(b"\r\n", b"\n") if b"\r" in chunk else chunk
    if b"," in body:
        if len(body) != 12 * lines or body[3::12] != b"," * lines:
            return None
        body = body.replace(b",", b"")
    if len(body) != 11 * lines or body[10::11] != b"\n" * lines or body.translate(None, b"0123456789\n"):
        return None
    # NANP: neither the area code nor the exchange starts with 0 or 1.
    if body[0::11].translate(None, b"23456789") or body[3::11].translate(None, b"23456789"):
        return None
    return b"1" + body[:-1].replace(b"\n", b"\n1") + b"\n"


def _show(raw: bytes) -> str:
    return raw[:80].decode("utf-8", "replace").strip()


class LineParser:
    """Turns whole-line chunks of one file into COPY text; remembers the line count between chunks.

    ``lapse_after`` (a list whose registrations last that long) needs a CSV with ``registered_on``:
    an entry registered on or before ``as_of - lapse_after`` has lapsed and is skipped.
    """

    def __init__(
        self,
        fmt: FileFormat,
        *,
        default_region: str = "US",
        lapse_after: timedelta | None = None,
        as_of: date | None = None,
    ) -> None:
        if lapse_after is not None and fmt is not FileFormat.CSV:
            raise WrongFormat(
                f"entries of this list lapse {lapse_after.days} days after registration: import it as "
                "--format csv with number and registered_on (YYYY-MM-DD) columns"
            )
        self.format = fmt
        self.default_region = default_region
        if lapse_after is not None and as_of is None:
            raise ValueError("a lapsing list needs the date to count lapses from (as_of)")
        self.lapsed_on_or_before = as_of - lapse_after if lapse_after and as_of else None
        self.line = 0  # lines consumed so far (1-based numbers in rejects)
        self._csv_column: int | None = None
        self._registered_column: int | None = None
        self._line_rules: dict[FileFormat, Callable[[bytes], _LineResult]] = {
            FileFormat.US_REGISTRY: self._us_line,
            FileFormat.US_REGISTRY_CHANGES: self._us_change_line,
            FileFormat.TPS: self._tps_line,
            FileFormat.CSV: self._csv_line,
        }

    def feed(self, chunk: bytes) -> Parsed:
        """Parse a chunk that ends at a line end (or the file's end)."""
        if not chunk:
            return Parsed()
        if self.line == 0 and chunk.startswith(UTF8_BOM):
            chunk = chunk[len(UTF8_BOM) :]  # Excel writes one before the header: not part of any field
        lines = chunk.count(b"\n") + (0 if chunk.endswith(b"\n") or not chunk else 1)
        if self.format is FileFormat.US_REGISTRY and (added := _us_fast(chunk, lines)) is not None:
            self.line += lines
            return Parsed(added=added, count=lines)
        if self.format is FileFormat.TPS and _TPS_CHUNK.fullmatch(chunk):
            self.line += lines
            return Parsed(added=_TPS_SUB.sub(rb"44\1", chunk), count=lines)
        return self._slow(chunk)

    def _slow(self, chunk: bytes) -> Parsed:
        added: list[bytes] = []
        deleted: list[bytes] = []
        out = Parsed()
        rule = self._line_rules[self.format]
        for raw in chunk.split(b"\n"):
            self.line += 1
            text = raw.strip()
            if not text:
                continue
            result = rule(text)
            if isinstance(result, str):
                out.rejects.append(Reject(self.line, _show(raw), result))
                continue
            if isinstance(result, _Skip):
                out.lapsed += result is _Skip.LAPSED
                continue
            digits, is_delete = result
            (deleted if is_delete else added).append(digits)
        if chunk.endswith(b"\n"):
            self.line -= 1  # split() made an empty last piece that is not a line
        out.added = b"".join(d + b"\n" for d in added)
        out.deleted = b"".join(d + b"\n" for d in deleted)
        out.count = len(added)
        return out

    def _us_line(self, text: bytes) -> _LineResult:
        if m := _US_FULL_SUB.fullmatch(text):
            return b"1" + m[1] + m[2], False
        return "not a ten-digit US number"

    def _us_change_line(self, text: bytes) -> _LineResult:
        if m := _US_CHANGE.fullmatch(text):
            return b"1" + m[1] + m[2], m[3] in b"Dd"
        return "not a change record (area code, number, A or D)"

    def _tps_line(self, text: bytes) -> _LineResult:
        if m := _TPS_SUB.fullmatch(text):
            return b"44" + m[1], False
        return "not a UK national number (0 and 10 or 11 digits)"

    def _csv_line(self, text: bytes) -> _LineResult:
        try:
            row = next(csv.reader(io.StringIO(text.decode("utf-8"))))
        except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
            return f"not a CSV row ({exc})"
        if self._csv_column is None:
            return self._csv_header(row, text)
        if self._csv_column >= len(row):
            return "no number in this row"
        if self._registered_column is not None and self.lapsed_on_or_before is not None:
            try:
                registered = date.fromisoformat(row[self._registered_column].strip())
            except (IndexError, ValueError):
                return "registered_on is not a date (YYYY-MM-DD)"
            if registered <= self.lapsed_on_or_before:
                return _Skip.LAPSED
        value = row[self._csv_column].strip()
        if m := _E164.fullmatch(value.replace(" ", "")):
            return m[1].encode(), False
        parsed = parse_number(value, default_region=self.default_region)
        if isinstance(parsed, NumberFacts):
            return parsed.e164[1:].encode(), False
        return f"not a phone number ({parsed.reason})"

    def _csv_header(self, row: list[str], text: bytes) -> _LineResult:
        names = [c.strip().lower() for c in row]
        if "number" not in names:
            raise WrongFormat(f"expected {EXPECTED[FileFormat.CSV]}; the first row is {_show(text)!r}")
        if self.lapsed_on_or_before is not None and "registered_on" not in names:
            raise WrongFormat(
                "entries of this list lapse after a set time: the CSV needs a registered_on column "
                f"(YYYY-MM-DD); the first row is {_show(text)!r}"
            )
        self._csv_column = names.index("number")
        self._registered_column = names.index("registered_on") if "registered_on" in names else None
        return _Skip.HEADER


def check_format(parser: LineParser, first: Parsed, *, sample_lines: int) -> None:
    """Refuse a file whose opening lines are mostly rejects: it is another format, not a dirty one.

    Only the first ``sample_lines`` lines count: a big first chunk with a few broken lines further on
    is a dirty file, for the broken-line threshold to judge.
    """
    opening = [r for r in first.rejects if r.line <= sample_lines]
    if sample_lines and len(opening) > sample_lines // 2:
        example = opening[0]
        raise WrongFormat(
            f"expected {EXPECTED[parser.format]}; line {example.line} is {example.text!r} ({example.why})"
        )
