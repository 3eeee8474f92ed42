"""National do-not-call registries: a whole list loaded as a new version and swapped in atomically.

An import runs in one transaction: a fresh partition is created, filled with COPY, indexed, attached,
and made live. A check reads only the live version, so it never sees half a list; an import that is
killed, refused or fails leaves the previous version live and nothing behind (the transaction's DDL
rolls back with it). After the swap the previous version is retired (``drop_retired``): detached
concurrently, then dropped, so that no check ever waits behind it.

Nothing here takes a lock a check needs: ATTACH and DETACH ... CONCURRENTLY take SHARE UPDATE EXCLUSIVE
on the parent, which a check's ACCESS SHARE does not conflict with; only a plain DROP or DETACH of a
partition would take ACCESS EXCLUSIVE on the parent, and queue every check behind it. That is why
dialguard needs PostgreSQL 14 or newer (store/migrate.py checks it at start).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from dialguard.dnc_files import FileFormat, LineParser, Parsed, Reject, check_format
from dialguard.policy.model import is_company_list
from dialguard.store.audit import record_audit
from dialguard.store.db import Connection

log = logging.getLogger(__name__)

KEEP_REJECTS = 1000  # rejected lines reported in full; the rest are only counted
FORMAT_SAMPLE_LINES = 200  # the opening lines that decide "wrong format" vs "a few broken rows"
INDEX_BUILD_MEMORY = "512MB"
DROP_LOCK_TIMEOUT = "2s"
# How long a retirement may wait for the reads in flight that may still see the old version (checks take
# milliseconds; a long report query may not). Past it the detach is left pending, and the next
# retirement finishes it.
RETIRE_TIMEOUT = 60.0
# Bulk statements (COPY of 100M rows, the index build, a change file's merge, the commit that flushes
# them) run far past the pool's per-command timeout, which is sized for a call's facts: every statement
# of an import, BEGIN and COMMIT included, gets hours instead.
BULK_TIMEOUT = 6 * 3600.0
EARLIEST_LIST_DATE = date(2000, 1, 1)  # before any national do-not-call register


@asynccontextmanager
async def _bulk_transaction(conn: Connection) -> AsyncIterator[None]:
    """conn.transaction(), but asyncpg would give its COMMIT the pool's per-command timeout."""
    await conn.execute("BEGIN", timeout=BULK_TIMEOUT)
    committed = False
    try:
        yield
        await conn.execute("COMMIT", timeout=BULK_TIMEOUT)
        committed = True
    finally:  # refused, failed or cancelled: nothing of it stays
        if not committed and not conn.is_closed():
            await conn.execute("ROLLBACK", timeout=BULK_TIMEOUT)


class InvalidListName(ValueError):
    """A national list's name is lower-case letters, digits and _ (the database's CHECK says so too)."""


LIST_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


class ImportRefused(Exception):
    """An import was refused (wrong format, too many broken rows, no base); the live list stands."""


@dataclass(slots=True)
class ImportReport:
    registry: str
    list_date: date
    version_id: int | None = None
    rows: int = 0
    deleted: int = 0
    lapsed: int = 0
    rejected: int = 0
    rejects: list[Reject] = field(default_factory=list)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "list_date": self.list_date.isoformat(),
            "version_id": self.version_id,
            "rows": self.rows,
            "deleted": self.deleted,
            "lapsed": self.lapsed,
            "rejected": self.rejected,
            "rejects": [{"line": r.line, "text": r.text, "why": r.why} for r in self.rejects],
            "seconds": round(self.seconds, 3),
        }


async def _lines(source: AsyncIterable[bytes]) -> AsyncIterator[tuple[bytes, int]]:
    """Re-cut arbitrary chunks at line ends; yields (whole lines, raw bytes consumed)."""
    rest = b""
    async for chunk in source:
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        if cut:
            yield data[:cut], len(chunk)
        else:
            yield b"", len(chunk)
    if rest:
        yield rest, 0


class _Collector:
    """Feeds chunks through the parser, keeps the count and the first rejects, reports progress."""

    def __init__(
        self,
        parser: LineParser,
        report: ImportReport,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.parser = parser
        self.report = report
        self.progress = progress
        self.first = True
        self.deleted: list[bytes] = []

    def take(self, lines: bytes, consumed: int) -> bytes:
        parsed: Parsed = self.parser.feed(lines) if lines else Parsed()
        if self.first and lines:
            self.first = False
            check_format(self.parser, parsed, sample_lines=min(self.parser.line, FORMAT_SAMPLE_LINES))
        self.report.rejected += len(parsed.rejects)
        room = KEEP_REJECTS - len(self.report.rejects)
        if room > 0:
            self.report.rejects += parsed.rejects[:room]
        self.report.rows += parsed.count
        self.report.lapsed += parsed.lapsed
        if parsed.deleted:
            self.deleted.append(parsed.deleted)
        if self.progress is not None and consumed:
            self.progress(consumed)
        return parsed.added

    async def numbers(self, source: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for lines, consumed in _lines(source):
            if added := self.take(lines, consumed):
                yield added


async def import_list(
    conn: Connection,
    source: AsyncIterable[bytes],
    *,
    list_name: str,
    fmt: FileFormat,
    list_date: date | None,
    now: datetime,
    actor: str,
    source_file: str | None = None,
    default_region: str = "US",
    max_reject_ratio: float = 0.01,
    lapse_after: timedelta | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """A company list (internal, campaign:NAME) gains the file's numbers as entries; any other name is
    a national list, which the file replaces as its next version.

    A national list's freshness counts from the publisher's date, so ``list_date`` must be given for one
    (none of the formats carries it): no silent default to the import day."""
    common: dict[str, Any] = {
        "now": now,
        "fmt": fmt,
        "actor": actor,
        "source_file": source_file,
        "default_region": default_region,
        "max_reject_ratio": max_reject_ratio,
        "lapse_after": lapse_after,
        "progress": progress,
    }
    if is_company_list(list_name):
        return await import_entries(conn, source, list_name=list_name, **common)
    if not LIST_NAME.fullmatch(list_name):
        raise InvalidListName(f"{list_name!r} is not a list name: lower-case letters, digits and _")
    if list_date is None:
        raise ImportRefused(
            f"{list_name} is a national list: give the publisher's date of the data (--date YYYY-MM-DD, "
            "or ?date= over HTTP); its freshness rule counts from that date, not from the import"
        )
    return await import_registry(conn, source, registry=list_name, list_date=list_date, **common)


def check_list_date(list_date: date, now: datetime) -> None:
    """A publisher's date cannot lie in the future (it would make the list look fresher than it is)
    nor before national lists existed; dates are UTC days, as the freshness rule counts them."""
    today = now.astimezone(UTC).date()
    if list_date > today:
        raise ImportRefused(
            f"the list's date {list_date} is after today ({today}, UTC): give the date of the data"
        )
    if list_date < EARLIEST_LIST_DATE:
        raise ImportRefused(
            f"the list's date {list_date} is before {EARLIEST_LIST_DATE}: give the date of the data"
        )


async def import_registry(
    conn: Connection,
    source: AsyncIterable[bytes],
    *,
    registry: str,
    fmt: FileFormat,
    list_date: date,
    now: datetime,
    actor: str,
    source_file: str | None = None,
    default_region: str = "US",
    max_reject_ratio: float = 0.01,
    lapse_after: timedelta | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Load ``source`` (the file's bytes, in any chunks) as the registry's next live version.

    ``lapse_after``: registrations on this list last that long (its pack rule says); entries lapsed by
    ``list_date`` are skipped, and one that lapses later stays until the publisher's next file replaces
    the version: it blocks a little longer than the law asks, never shorter.
    """
    check_list_date(list_date, now)
    report = ImportReport(registry=registry, list_date=list_date)
    parser = LineParser(fmt, default_region=default_region, lapse_after=lapse_after, as_of=report.list_date)
    collector = _Collector(parser, report, progress)
    started = time.perf_counter()
    started_at = now
    async with _bulk_transaction(conn):
        await conn.execute(
            "INSERT INTO dnc_registries (name) VALUES ($1) ON CONFLICT DO NOTHING",
            registry,
            timeout=BULK_TIMEOUT,
        )
        # FOR UPDATE: one import of a registry at a time; checks (plain reads) never wait on it.
        try:
            live = await conn.fetchval(
                "SELECT live_version FROM dnc_registries WHERE name = $1 FOR UPDATE NOWAIT",
                registry,
                timeout=BULK_TIMEOUT,
            )
        except asyncpg.LockNotAvailableError:
            raise ImportRefused(f"another import of {registry} is running; try again when it ends") from None
        changes = fmt is FileFormat.US_REGISTRY_CHANGES
        if changes and live is None:
            raise ImportRefused(
                f"{registry} has no live version to apply a change file to: import a full list"
            )
        version = int(
            await conn.fetchval("SELECT nextval('dnc_registry_versions_id_seq')", timeout=BULK_TIMEOUT)
        )
        table = f"dnc_registry_numbers_v{version}"
        await conn.execute(
            f"""CREATE TABLE {table} (
                    version_id bigint NOT NULL DEFAULT {version} CHECK (version_id = {version}),
                    number bigint NOT NULL)""",
            timeout=BULK_TIMEOUT,
        )
        await conn.copy_to_table(
            table, source=collector.numbers(source), columns=["number"], format="text", timeout=BULK_TIMEOUT
        )
        if changes:
            report.deleted = await _apply_changes(conn, table=table, base=live, deleted=collector.deleted)
            report.rows = int(await conn.fetchval(f"SELECT count(*) FROM {table}", timeout=BULK_TIMEOUT))
        _refuse_if_broken(report, max_reject_ratio)
        # One sort for the whole index: far faster for 100M rows than the server's 64 MB default.
        await conn.execute(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'", timeout=BULK_TIMEOUT)
        await conn.execute(f"CREATE INDEX {table}_number ON {table} (number)", timeout=BULK_TIMEOUT)
        await conn.execute(f"ANALYZE {table}", timeout=BULK_TIMEOUT)
        await conn.execute(
            f"ALTER TABLE dnc_registry_numbers ATTACH PARTITION {table} FOR VALUES IN ({version})",
            timeout=BULK_TIMEOUT,
        )
        await conn.execute(
            """INSERT INTO dnc_registry_versions (id, registry, format, list_date, based_on, row_count,
                                                  rejected, source_file, imported_by, started_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
            version,
            registry,
            str(fmt),
            list_date,
            live if changes else None,
            report.rows,
            report.rejected,
            source_file,
            actor,
            started_at,
            timeout=BULK_TIMEOUT,
        )
        await conn.execute(
            "UPDATE dnc_registries SET live_version = $2 WHERE name = $1",
            registry,
            version,
            timeout=BULK_TIMEOUT,
        )
        detail = {
            "version_id": version,
            "list_date": list_date.isoformat(),
            "rows": report.rows,
            "file": source_file,
        }
        await record_audit(
            conn,
            actor=actor,
            action="registry.import",
            subject=registry,
            detail=detail,
            command_timeout=BULK_TIMEOUT,
        )
    report.version_id = version
    report.seconds = time.perf_counter() - started
    try:
        await drop_retired(conn)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        # The new version is live and the report true; the old one waits for the next retirement.
        log.warning(
            "%s is live; retiring the old version failed (%s): the next import retires it", table, exc
        )
    return report


async def import_entries(
    conn: Connection,
    source: AsyncIterable[bytes],
    *,
    list_name: str,
    fmt: FileFormat,
    now: datetime,
    actor: str,
    source_file: str | None = None,
    default_region: str = "US",
    max_reject_ratio: float = 0.01,
    lapse_after: timedelta | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Add a file's numbers to a company list (internal, campaign:NAME) as entries, all or none."""
    report = ImportReport(registry=list_name, list_date=now.astimezone(UTC).date())
    parser = LineParser(fmt, default_region=default_region, lapse_after=lapse_after, as_of=report.list_date)
    collector = _Collector(parser, report, progress)
    started = time.perf_counter()
    async with _bulk_transaction(conn):
        await conn.execute(
            "CREATE TEMP TABLE dnc_import (number bigint) ON COMMIT DROP", timeout=BULK_TIMEOUT
        )
        await conn.copy_to_table(
            "dnc_import",
            source=collector.numbers(source),
            columns=["number"],
            format="text",
            timeout=BULK_TIMEOUT,
        )
        _refuse_if_broken(report, max_reject_ratio)
        added = await conn.fetchval(
            """WITH added AS (
                 INSERT INTO dnc_entries (list_name, number, source, evidence, added_by)
                 SELECT $1, '+' || number, 'import', jsonb_build_object('file', $2::text), $3
                   FROM (SELECT DISTINCT number FROM dnc_import) d
                 ON CONFLICT DO NOTHING RETURNING number),
               logged AS (
                 INSERT INTO dnc_history (list_name, number, action, source, evidence, actor)
                 SELECT $1, number, 'add', 'import', jsonb_build_object('file', $2::text), $3 FROM added)
               SELECT count(*) FROM added""",
            list_name,
            source_file,
            actor,
            timeout=BULK_TIMEOUT,
        )
        detail = {"rows": int(added), "rejected": report.rejected, "file": source_file}
        await record_audit(
            conn,
            actor=actor,
            action="dnc.import",
            subject=list_name,
            detail=detail,
            command_timeout=BULK_TIMEOUT,
        )
    report.rows = int(added)
    if added:
        # Fresh statistics, and every cached plan on the table made again: a plan made while the list was
        # small would go on reading it whole on each check until autovacuum analyzes it, if ever (issue 15).
        try:
            await conn.execute("SELECT dialguard_analyze('dnc_entries')", timeout=BULK_TIMEOUT)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("%s: the numbers are in; analyzing dnc_entries failed (%s)", list_name, exc)
    report.seconds = time.perf_counter() - started
    return report


def _refuse_if_broken(report: ImportReport, max_reject_ratio: float) -> None:
    total = report.rows + report.deleted + report.lapsed + report.rejected
    if total == 0:
        raise ImportRefused("the file holds no numbers")
    if report.rejected > max_reject_ratio * total:
        first = report.rejects[0]
        raise ImportRefused(
            f"{report.rejected} of {total} lines are broken (more than {max_reject_ratio:.1%}); "
            f"first: line {first.line} {first.text!r} ({first.why})"
        )


async def _apply_changes(conn: Connection, *, table: str, base: int, deleted: list[bytes]) -> int:
    """The new version = the live one, minus the change file's deletions, plus its additions."""
    await conn.execute("CREATE TEMP TABLE dnc_deletions (number bigint) ON COMMIT DROP", timeout=BULK_TIMEOUT)

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in deleted:
            yield chunk

    await conn.copy_to_table(
        "dnc_deletions", source=chunks(), columns=["number"], format="text", timeout=BULK_TIMEOUT
    )
    await conn.execute("CREATE INDEX ON dnc_deletions (number)", timeout=BULK_TIMEOUT)
    await conn.execute(
        f"DELETE FROM {table} t USING dnc_deletions d WHERE t.number = d.number", timeout=BULK_TIMEOUT
    )
    await conn.execute(
        f"""INSERT INTO {table} (number)
            SELECT o.number FROM dnc_registry_numbers_v{base} o
             WHERE NOT EXISTS (SELECT 1 FROM dnc_deletions d WHERE d.number = o.number)""",
        timeout=BULK_TIMEOUT,
    )
    return int(await conn.fetchval("SELECT count(DISTINCT number) FROM dnc_deletions", timeout=BULK_TIMEOUT))


async def drop_retired(conn: Connection) -> list[str]:
    """Retire the versions no longer live without ever locking a check out; return the tables dropped.

    Three steps, each of which a crash or a timeout may cut short, and each safe to repeat: the next
    call (every import ends with one) finishes what an earlier one left.

    1. A detach left pending by an interrupted call is finished (``DETACH ... FINALIZE``; PostgreSQL
       allows one pending detach per table, so it goes first).
    2. Each retired partition is detached ``CONCURRENTLY``: it waits for the reads in flight that may
       still see it, and blocks none. Once it is marked pending, new checks no longer plan it.
    3. Each detached version table is dropped. No check can reach it any more, so the ACCESS EXCLUSIVE
       lock of the DROP is on that table alone, not on the parent every check reads.

    ``DETACH ... CONCURRENTLY`` runs its own two transactions: ``conn`` must not be in one.
    """
    retired = await conn.fetch(
        """SELECT c.relname, i.inhdetachpending FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'dnc_registry_numbers'::regclass
              AND NOT EXISTS (SELECT 1 FROM dnc_registries r
                               WHERE c.relname = 'dnc_registry_numbers_v' || r.live_version)
            ORDER BY i.inhdetachpending DESC, c.relname""",
        timeout=BULK_TIMEOUT,
    )
    for table, pending in retired:
        how = "FINALIZE" if pending else "CONCURRENTLY"
        try:
            await conn.execute(
                f'ALTER TABLE dnc_registry_numbers DETACH PARTITION "{table}" {how}', timeout=RETIRE_TIMEOUT
            )
        except (asyncpg.PostgresError, TimeoutError) as exc:
            # Still read by a long query, or another gateway is retiring it: left for the next import.
            log.warning("retired list %s is not detached yet (%s); the next import retires it", table, exc)
            break
    # Version tables that are no partition any more (detached now, or by a call cut short) and not live.
    # An import's new table is invisible here until it commits, and by then it is attached.
    detached = await conn.fetch(
        """SELECT c.relname FROM pg_class c
            WHERE c.relkind = 'r' AND NOT c.relispartition
              AND c.relname ~ '^dnc_registry_numbers_v[0-9]+$'
              AND c.relnamespace = (SELECT relnamespace FROM pg_class
                                     WHERE oid = 'dnc_registry_numbers'::regclass)
              AND NOT EXISTS (SELECT 1 FROM dnc_registries r
                               WHERE c.relname = 'dnc_registry_numbers_v' || r.live_version)
            ORDER BY c.relname""",
        timeout=BULK_TIMEOUT,
    )
    dropped = []
    for (table,) in detached:
        try:
            # Only a query naming the table itself could hold it; unlinking a 4 GB table's files is
            # bounded by the bulk timeout, and blocks no check either way.
            async with _bulk_transaction(conn):
                await conn.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'", timeout=BULK_TIMEOUT)
                await conn.execute(f'DROP TABLE "{table}"', timeout=BULK_TIMEOUT)
            dropped.append(table)
        except asyncpg.LockNotAvailableError:
            log.warning("retired list %s is still in use; it will be dropped after the next import", table)
    return dropped


async def registry_status(conn: Connection) -> list[Any]:
    """Every registry with its live version: date of the data, rows, when it went live."""
    return list(
        await conn.fetch(
            """SELECT r.name, v.id AS version_id, v.list_date, v.row_count, v.rejected, v.format,
                      v.live_at, v.imported_by, v.source_file
                 FROM dnc_registries r LEFT JOIN dnc_registry_versions v ON v.id = r.live_version
                ORDER BY r.name"""
        )
    )
