"""The evidence bundle: one JSON document holding what dialguard recorded about a number (or a campaign's
calls) and what is needed to check it; and its offline check, which needs no database.

One JSON document rather than a zip with a manifest: every part of it is covered by the same check
anyway (a manifest of file hashes would add nothing the row hashes and digests do not), it opens in any
text editor or ``jq``, and reading it cannot unpack anything unexpected onto a disk.

For each log (decisions, call events, consent grants and revocations, do-not-call history, opt-outs)
the bundle holds the subject's ``records`` (each row's content, its row hash and when it was inserted),
every ``checkpoint`` that seals one of them, and the log's ``last_checkpoint`` when exported. A
checkpoint's digest covers other people's rows too: those appear as ``[id, row_hash]`` only, never their
content; the subject's rows as ``[id]``, their hash recomputed from the record. What the check does and
what it proves is in :data:`ABOUT`, which every bundle carries.
"""

from __future__ import annotations

import hmac
import itertools
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dialguard.store.sealing import (
    LOG_BY_TABLE,
    Anchored,
    chain_digest,
    checkpoint_mac,
    content_hash,
    id_bytes,
)

FORMAT = "dialguard-evidence/1"

ABOUT = [
    "A row's hash is SHA-256 of its content as canonical JSON (keys sorted, separators ',' and ':', "
    "UTF-8, no ASCII escaping).",
    "A checkpoint's digest is SHA-256 over its prev_digest (nothing for a log's first checkpoint), then "
    "for each of its rows, in the order listed, the row's id (8 bytes big-endian; for a UUID id, its 16 "
    "bytes) and the row's hash. Rows listed as [id] are this bundle's records: hash their content; rows "
    "listed as [id, hash] belong to others and are shown by hash only.",
    "Checkpoints chain: each one's prev_digest is the digest of the one before it in its log. A checkpoint "
    "seals the rows from (from_at, from_id) up to, not including, (to_at, to_id) in (inserted_at, id) "
    "order (an id of 0: the time alone; opt-outs, whose ids are UUIDs, by time alone); the next one "
    "begins where it ends.",
    "`dialguard verify BUNDLE` (no database needed) recomputes every record's hash and every included "
    "checkpoint's digest, checks the links between adjacent included checkpoints, and says which records "
    "were not yet sealed when the bundle was made (newer than last_checkpoint).",
    "Without the gateway's seal key this proves the bundle is internally consistent: no record was "
    "altered, removed from or reordered within a checkpoint since the bundle was made, and each record "
    "sits in the sealed chain as the checkpoint says. It cannot prove on its own that the chain is the "
    "one the gateway sealed (anyone could build a consistent bundle), nor that no other row of the "
    "subject exists (others' rows are shown by hash only).",
    "Each checkpoint's mac is HMAC-SHA256, under the gateway's seal key (which the database never sees), "
    "of the canonical JSON of {log, from_at, from_id, to_at, to_id, row_count, digest, prev_digest}. "
    "The operator checks them with `dialguard verify BUNDLE --gateway` (or --key-file): a matching mac "
    "shows the gateway itself sealed that checkpoint. The gateway's anchor file (--anchor) holds every "
    "checkpoint's digest as sealed; a match shows the database was not rewritten or cut back since.",
]


class UnreadableBundle(Exception):
    """The file is not an evidence bundle this version can read: not JSON, or not in its shape."""


@dataclass
class LogSummary:
    records: int = 0
    sealed: int = 0  # records whose checkpoint is in the bundle and checked
    unsealed: int = 0  # newer than the log's last checkpoint when the bundle was made
    checkpoints: int = 0


@dataclass
class BundleReport:
    subject: dict[str, Any]
    logs: dict[str, LogSummary] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_bundle(data: bytes) -> dict[str, Any]:
    """The bundle's document; :class:`UnreadableBundle` when it is not one."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise UnreadableBundle(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UnreadableBundle(f"not a dialguard evidence bundle (its format is not {FORMAT!r})")
    return doc


def _need(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UnreadableBundle(f"{where} is missing or of the wrong type")
    return value


def _hex(value: Any, where: str, *, optional: bool = False) -> bytes | None:
    if value is None and optional:
        return None
    try:
        return bytes.fromhex(_need(value, str, where))
    except ValueError:
        raise UnreadableBundle(f"{where} is not hex") from None


def _instant(value: Any, where: str) -> datetime:
    try:
        at = datetime.fromisoformat(_need(value, str, where))
    except ValueError:
        raise UnreadableBundle(f"{where} is not an ISO-8601 time") from None
    if at.tzinfo is None:
        raise UnreadableBundle(f"{where} has no UTC offset")
    return at


def _row_id(value: Any, where: str) -> int | uuid.UUID:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise UnreadableBundle(f"{where} is not an id") from None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63:
        return value
    raise UnreadableBundle(f"{where} is not an id")


Place = tuple[datetime, int]  # where a row sits in its log's sealing order: (inserted_at, id or 0)


@dataclass
class _Record:
    name: str  # as a report names it: "decision 12 (call …)"
    place: Place
    computed: bytes  # the hash of its content, as found in the bundle
    sealed_in: int | None = None


@dataclass(frozen=True)
class _Checkpoint:
    id: int
    header: dict[str, Any]
    start: Place
    end: Place
    digest: bytes
    prev: bytes | None
    mac: bytes | None


def check_bundle(
    doc: Mapping[str, Any], *, key: bytes | None = None, anchored: Anchored | None = None
) -> BundleReport:
    """Check a bundle offline; ``key`` and ``anchored`` (the gateway's seal key and anchor file) add
    the checks only the operator can make. Raises :class:`UnreadableBundle` on a document out of shape."""
    report = BundleReport(subject=_need(doc.get("subject"), dict, "subject"))
    logs = _need(doc.get("logs"), dict, "logs")
    for table, part in logs.items():
        if table not in LOG_BY_TABLE:
            raise UnreadableBundle(f"logs.{table}: not a log dialguard keeps")
        report.logs[table] = _check_log(table, _need(part, dict, f"logs.{table}"), key, anchored, report)
    return report


def _check_log(
    table: str, part: Mapping[str, Any], key: bytes | None, anchored: Anchored | None, report: BundleReport
) -> LogSummary:
    noun = LOG_BY_TABLE[table].noun
    summary = LogSummary()
    records = _records(table, noun, _need(part.get("records"), list, f"logs.{table}.records"), report)
    summary.records = len(records)
    raw_cps = _need(part.get("checkpoints"), list, f"logs.{table}.checkpoints")
    checkpoints = []
    for n, raw in enumerate(raw_cps):
        where = f"logs.{table}.checkpoints[{n}]"
        cp = _checkpoint(table, _need(raw, dict, where), where)
        checkpoints.append(cp)
        _check_rows(noun, cp, _need(raw.get("rows"), list, f"{where}.rows"), records, where, report)
    checkpoints.sort(key=lambda c: c.id)
    summary.checkpoints = len(checkpoints)
    last_raw = part.get("last_checkpoint")
    last = None if last_raw is None else _checkpoint(table, _need(last_raw, dict, "last"), f"{table} last")
    _check_chain(noun, checkpoints, last, report)
    outside = {cp.id: cp for cp in checkpoints}
    if last is not None:
        outside.setdefault(last.id, last)
    for cp in outside.values():
        _check_outside(table, noun, cp, key, anchored, report)
    for record in records.values():
        if record.sealed_in is not None:
            summary.sealed += 1
        elif last is None or record.place >= last.end:
            summary.unsealed += 1
        else:
            report.problems.append(
                f"{record.name} is older than the last checkpoint, yet no checkpoint in the bundle seals it"
            )
    return summary


def _records(table: str, noun: str, raw: list[Any], report: BundleReport) -> dict[int | uuid.UUID, _Record]:
    records: dict[int | uuid.UUID, _Record] = {}
    for n, item in enumerate(raw):
        where = f"logs.{table}.records[{n}]"
        item = _need(item, dict, where)
        row_id = _row_id(item.get("id"), f"{where}.id")
        content = _need(item.get("content"), dict, f"{where}.content")
        call = f" (call {content['call_id']})" if isinstance(content.get("call_id"), str) else ""
        name = f"{noun} {row_id}{call}"
        computed = content_hash(content)
        if _hex(item.get("row_hash"), f"{where}.row_hash") != computed:
            report.problems.append(f"{name}: its content does not match its row hash: it was altered")
        if row_id in records:
            report.problems.append(f"{name} appears twice")
        at = _instant(item.get("inserted_at"), f"{where}.inserted_at")
        records[row_id] = _Record(name, (at, row_id if isinstance(row_id, int) else 0), computed)
    return records


def _checkpoint(table: str, raw: Mapping[str, Any], where: str) -> _Checkpoint:
    if raw.get("log") != table:
        raise UnreadableBundle(f"{where}.log is not {table!r}")
    _need(raw.get("row_count"), int, f"{where}.row_count")
    return _Checkpoint(
        id=_need(raw.get("id"), int, f"{where}.id"),
        header=dict(raw),
        start=_place(raw, "from", where),
        end=_place(raw, "to", where),
        digest=_hex(raw.get("digest"), f"{where}.digest") or b"",
        prev=_hex(raw.get("prev_digest"), f"{where}.prev_digest", optional=True),
        mac=_hex(raw.get("mac"), f"{where}.mac", optional=True),
    )


def _place(raw: Mapping[str, Any], which: str, where: str) -> Place:
    """A checkpoint's start (``from``) or end (``to``)."""
    at = _instant(raw.get(f"{which}_at"), f"{where}.{which}_at")
    return at, _need(raw.get(f"{which}_id"), int, f"{where}.{which}_id")


def _check_rows(
    noun: str,
    cp: _Checkpoint,
    rows: list[Any],
    records: Mapping[int | uuid.UUID, _Record],
    where: str,
    report: BundleReport,
) -> None:
    """Recompute the checkpoint's digest from its rows: the records' own hashes, others' as listed."""
    chained: list[tuple[bytes, bytes]] = []
    for n, raw in enumerate(rows):
        at = f"{where}.rows[{n}]"
        if not isinstance(raw, list) or len(raw) not in (1, 2):
            raise UnreadableBundle(f"{at} is not [id] or [id, row_hash]")
        row_id = _row_id(raw[0], at)
        record = records.get(row_id)
        if len(raw) == 2:
            row_hash = _hex(raw[1], at) or b""
            if record is not None and record.computed != row_hash:
                report.problems.append(f"{record.name} differs from what {noun} checkpoint {cp.id} sealed")
        elif record is None:
            report.problems.append(
                f"{noun} checkpoint {cp.id} seals {noun} {row_id} of this bundle's subject, "
                "but the bundle does not hold it: it was removed"
            )
            row_hash = b""
        else:
            row_hash = record.computed
        if record is not None:
            if record.sealed_in is not None:
                report.problems.append(f"{record.name} is sealed twice")
            elif not cp.start <= record.place < cp.end:
                report.problems.append(f"{record.name}: its inserted_at is outside {noun} checkpoint {cp.id}")
            record.sealed_in = cp.id
        chained.append((id_bytes(row_id), row_hash))
    if len(rows) != cp.header["row_count"] or chain_digest(cp.prev, chained) != cp.digest:
        report.problems.append(
            f"{noun} checkpoint {cp.id} ({cp.header['from_at']} to {cp.header['to_at']}): its rows do not "
            f"hash to its digest: a row was altered, added, removed or reordered"
        )


def _check_chain(
    noun: str, checkpoints: list[_Checkpoint], last: _Checkpoint | None, report: BundleReport
) -> None:
    """Links between adjacent included checkpoints; the last checkpoint comes after all of them."""
    gaps = 0
    for before, after in itertools.pairwise(checkpoints):
        if after.id == before.id:
            report.problems.append(f"{noun} checkpoint {after.id} appears twice")
        elif after.prev == before.digest:
            if after.start != before.end:
                report.problems.append(f"{noun} checkpoint {after.id} does not begin where {before.id} ends")
        elif after.id == before.id + 1:
            report.problems.append(f"{noun} checkpoint {after.id} does not follow checkpoint {before.id}")
        else:
            gaps += 1
    if gaps:
        report.notes.append(
            f"{noun} checkpoints: {gaps} link(s) between included checkpoints pass through checkpoints "
            "not in the bundle; the seal key's macs and the anchor file vouch for those"
        )
    if last is not None and checkpoints:
        newest = checkpoints[-1]
        if newest.id > last.id or (newest.id == last.id and newest.digest != last.digest):
            report.problems.append(f"{noun} checkpoint {newest.id} does not agree with the last checkpoint")
    if last is None and checkpoints:
        report.problems.append(f"{noun}: the bundle has checkpoints but no last checkpoint")


def _check_outside(
    table: str,
    noun: str,
    cp: _Checkpoint,
    key: bytes | None,
    anchored: Anchored | None,
    report: BundleReport,
) -> None:
    """What only the operator can check: the mac under the seal key, the digest in the anchor file."""
    where = f"{noun} checkpoint {cp.id}"
    if key is not None:
        if cp.mac is None:
            report.notes.append(f"{where} carries no mac (sealed before the seal key existed, or forged)")
        elif not hmac.compare_digest(cp.mac, checkpoint_mac(key, cp.header)):
            report.problems.append(f"{where}: its mac does not match the seal key: not sealed by the gateway")
    if anchored is not None:
        found = anchored.digests.get(table, {}).get(cp.id)
        if found is not None and found != cp.digest:
            report.problems.append(f"{where} differs from the anchor file's copy")
        elif found is None and cp.id > anchored.began_after.get(table, 0):
            report.notes.append(f"{where} is not in the anchor file (anchored later, or elsewhere)")
