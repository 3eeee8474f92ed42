"""DNC file parsing: every format, broken lines with their line numbers, fast path agreeing with slow."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialguard.dnc_files import FileFormat, LineParser, WrongFormat, check_format


def parse(fmt: FileFormat, *chunks: bytes) -> tuple[list[bytes], list[bytes], list[tuple[int, str]]]:
    parser = LineParser(fmt, default_region="US")
    added: list[bytes] = []
    deleted: list[bytes] = []
    rejects: list[tuple[int, str]] = []
    for chunk in chunks:
        out = parser.feed(chunk)
        added += out.added.splitlines()
        deleted += out.deleted.splitlines()
        rejects += [(r.line, r.why) for r in out.rejects]
    return added, deleted, rejects


def test_us_registry_full_list_both_layouts_and_crlf() -> None:
    added, _, rejects = parse(FileFormat.US_REGISTRY, b"2125550100\n212,5550101\r\n3105550100")
    assert added == [b"12125550100", b"12125550101", b"13105550100"]
    assert rejects == []


def test_us_registry_reports_broken_lines_with_their_numbers() -> None:
    # Line numbers run across chunks; an area code or exchange starting with 0/1 is not NANP.
    added, _, rejects = parse(
        FileFormat.US_REGISTRY, b"2125550100\nhello\n", b"\n1125550100\n2121550100\n21255501\n2125550199\n"
    )
    assert added == [b"12125550100", b"12125550199"]
    assert [line for line, _ in rejects] == [2, 4, 5, 6]


def test_us_change_file_splits_additions_and_deletions() -> None:
    added, deleted, rejects = parse(
        FileFormat.US_REGISTRY_CHANGES,
        b"212,5550100,A,2026-11-20\n212,5550101,D\n2125550102,a\n212,5550103\n",
    )
    assert added == [b"12125550100", b"12125550102"]
    assert deleted == [b"12125550101"]
    assert rejects == [(4, "not a change record (area code, number, A or D)")]


def test_tps_national_numbers_become_e164_digits() -> None:
    added, _, rejects = parse(FileFormat.TPS, b"01632960001\n07700900123\n0044123\n")
    assert added == [b"441632960001", b"447700900123"]
    assert [line for line, _ in rejects] == [3]


def test_csv_takes_the_number_column_in_any_usual_form() -> None:
    added, _, rejects = parse(
        FileFormat.CSV, b'name,Number\n"Doe, Ann",+1 212 555 0100\nBob,(310) 555-0100\nEve,nope\nTim\n'
    )
    assert added == [b"12125550100", b"13105550100"]
    assert [line for line, _ in rejects] == [4, 5]


def test_csv_without_a_number_column_is_the_wrong_format() -> None:
    with pytest.raises(WrongFormat, match="'number' column"):
        parse(FileFormat.CSV, b"name,phone_no\nAnn,2125550100\n")


def test_a_file_of_another_format_is_refused_with_what_was_expected() -> None:
    parser = LineParser(FileFormat.US_REGISTRY)
    first = parser.feed(b"number,name\n+12125550100,Ann\n+12125550101,Bob\n")
    with pytest.raises(WrongFormat, match=r"expected ten-digit US numbers.*line 1 is 'number,name'"):
        check_format(parser, first, sample_lines=3)


def test_a_big_chunk_with_broken_lines_past_the_opening_is_dirty_not_another_format() -> None:
    parser = LineParser(FileFormat.US_REGISTRY)
    chunk = b"2125550100\n" * 300 + b"broken\n" * 150  # 150 broken lines, all after line 200
    first = parser.feed(chunk)
    check_format(parser, first, sample_lines=200)  # no WrongFormat: the broken-line threshold decides
    assert len(first.rejects) == 150


good = st.builds(
    lambda a, b, sep: f"{a}{sep}{b}",
    st.integers(200, 999),
    st.integers(2_000_000, 9_999_999),
    st.sampled_from(["", ","]),
)
bad = st.text("0123456789,x ", max_size=12)


@given(st.lists(st.one_of(good, bad), max_size=60), st.integers(1, 40))
def test_any_cut_into_chunks_gives_the_same_numbers_and_line_numbers(lines: list[str], cut: int) -> None:
    data = "".join(line + "\n" for line in lines).encode()
    whole = parse(FileFormat.US_REGISTRY, data)
    # The importer cuts chunks at line ends: cut after every `cut` lines.
    chunks = ["".join(line + "\n" for line in lines[i : i + cut]).encode() for i in range(0, len(lines), cut)]
    assert parse(FileFormat.US_REGISTRY, *chunks) == whole
    assert len(whole[0]) + len(whole[2]) == sum(1 for line in lines if line.strip())


def test_lapsed_registrations_are_skipped_and_counted_not_rejected() -> None:
    # Texas: a registration lasts 3 years. At the list's date 2026-11-23 the cut is 2023-11-24.
    parser = LineParser(FileFormat.CSV, lapse_after=timedelta(days=1095), as_of=date(2026, 11, 23))
    out = parser.feed(
        b"number,registered_on\n"
        b"+15125550100,2023-11-24\n"  # lapses today: gone
        b"+15125550101,2023-11-25\n"  # lapses tomorrow: still listed
        b"+15125550102,2026-01-02\n"
        b"+15125550103,23/11/2024\n"  # not ISO: broken, not silently kept or dropped
        b"+15125550104\n"
    )
    assert out.added.splitlines() == [b"15125550101", b"15125550102"]
    assert out.lapsed == 1
    assert [(r.line, r.why) for r in out.rejects] == [
        (5, "registered_on is not a date (YYYY-MM-DD)"),
        (6, "registered_on is not a date (YYYY-MM-DD)"),
    ]


def test_a_lapsing_list_needs_a_csv_with_registration_dates() -> None:
    three_years = timedelta(days=1095)
    with pytest.raises(WrongFormat, match="registered_on"):
        LineParser(FileFormat.US_REGISTRY, lapse_after=three_years)
    with pytest.raises(WrongFormat, match="needs a registered_on column"):
        LineParser(FileFormat.CSV, lapse_after=three_years, as_of=date(2026, 11, 23)).feed(
            b"number\n+15125550100\n"
        )
    # Without a lifetime the column is not needed, and ignored when present.
    plain = LineParser(FileFormat.CSV).feed(b"number,registered_on\n+15125550100,1999-01-01\n")
    assert (plain.added, plain.lapsed) == (b"15125550100\n", 0)


@pytest.mark.parametrize("fmt", [FileFormat.CSV, FileFormat.US_REGISTRY, FileFormat.TPS])
def test_a_utf8_bom_is_not_part_of_the_first_field(fmt: FileFormat) -> None:
    """Excel's "CSV UTF-8" starts with a byte-order mark (issue 11)."""
    body = {
        FileFormat.CSV: b"number\n+12025550143\n",
        FileFormat.US_REGISTRY: b"2025550143\n",
        FileFormat.TPS: b"01632960001\n",
    }[fmt]
    plain = LineParser(fmt, default_region="US").feed(body)
    with_bom = LineParser(fmt, default_region="US").feed(b"\xef\xbb\xbf" + body)
    assert with_bom.added == plain.added and with_bom.added and not with_bom.rejects
