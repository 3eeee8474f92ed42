"""What vouches for the seal chain from outside the database: the seal key and the anchor file.

Whoever holds the gateway's DSN can rewrite rows and compute fresh SHA-256 digests for every checkpoint
after them, or truncate a log with its checkpoints: the chain alone would still look whole. So:

- the **seal key** (``gate.seal_key``, or ``seal.key`` in the data directory, made with mode 0600 at
  serve's first start) signs each checkpoint's header (HMAC-SHA256, the checkpoint's ``mac``). The
  database never sees it: a rewritten chain carries macs that do not match, or none;
- the **anchor file** (``seal-anchor.jsonl`` in the data directory) gets each checkpoint's header, one
  JSON line, fsynced, once the checkpoint is committed. Its first line pins the head of each log as it
  stood when the anchor began. A truncated or cut-back log lacks checkpoints the anchor has; a rewritten
  one has other digests. Each seal round first checks the newest anchored checkpoints are still there,
  unchanged (and stops, reported as the sealer being down, if not), and anchors a new checkpoint only
  when it follows the last one anchored and carries the key's mac.

Safe across processes (serve, and ``dialguard verify`` beside it): appends hold an exclusive ``flock``
on ``<anchor>.lock`` and skip what another process anchored first.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialguard.clock import Clock, system_clock
from dialguard.config import Settings
from dialguard.store.db import Connection
from dialguard.store.sealing import (
    LOGS,
    Anchored,
    checkpoint,
    checkpoint_header,
    checkpoint_mac,
    checkpoints_after,
    last_checkpoint,
    seal,
)

log = logging.getLogger(__name__)

KEY_BYTES = 32
ANCHOR_FORMAT = "dialguard-seal-anchor/1"


class SealKeyError(Exception):
    """The seal key cannot be read or made; the message names the file and what to do."""


class AnchorError(Exception):
    """The anchor file disagrees with the database (a log truncated or rewritten), or cannot be used."""


# ---------------------------------------------------------------- the seal key


def key_id(key: bytes) -> str:
    """A name for a key that gives nothing of it away: which key sealed, in reports and the anchor."""
    return hashlib.sha256(b"dialguard seal key id\x00" + key).hexdigest()[:16]


def parse_key(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise SealKeyError(f"{where}: not a seal key (hex digits for {KEY_BYTES} bytes or more)")
    return key


def read_key_file(path: Path) -> bytes | None:
    """The key in ``path``; None when there is no such file."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SealKeyError(f"cannot read the seal key {path}: {exc.strerror}") from None
    if path.stat().st_mode & 0o077:
        log.warning("the seal key %s can be read by other users: chmod 600 it", path)
    return parse_key(text, str(path))


def _create_key_file(path: Path) -> bytes:
    """A new random key in ``path`` (mode 0600), unless another process made one first: then that one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (secrets.token_hex(KEY_BYTES) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # all or nothing, and never over a key already there
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    key = read_key_file(path)
    assert key is not None  # it was just linked, or another process's is there
    return key


def load_seal_key(settings: Settings) -> bytes | None:
    """``gate.seal_key``, else the key file; None when neither is there. Only ``serve`` makes a key
    (:func:`ensure_seal_key`): one made by a command on another host would seal under the wrong key."""
    if settings.gate.seal_key is not None:
        return parse_key(settings.gate.seal_key.value, "gate.seal_key")
    return read_key_file(settings.gate.seal_key_file)


def ensure_seal_key(settings: Settings) -> bytes:
    """The seal key, made (mode 0600) in ``gate.seal_key_file`` at the first start (blocking)."""
    try:
        return load_seal_key(settings) or _create_key_file(settings.gate.seal_key_file)
    except OSError as exc:
        raise SealKeyError(
            f"cannot make the seal key {settings.gate.seal_key_file} ({exc.strerror}); set "
            "gate.seal_key_file to a writable place, or gate.seal_key"
        ) from None


# ---------------------------------------------------------------- the anchor file


@dataclass
class AnchorState:
    """What the anchor file says: how each log stood when it began, the last checkpoint anchored per
    log, and (read in full) every anchored digest."""

    began: dict[str, dict[str, Any] | None] | None = None  # None: the file has no first line yet
    last: dict[str, dict[str, Any]] = field(default_factory=dict)
    digests: dict[str, dict[int, bytes]] = field(default_factory=dict)
    unreadable: list[int] = field(default_factory=list)  # line numbers
    lines: int = 0

    def head(self, table: str) -> dict[str, Any] | None:
        """The newest checkpoint of ``table`` the anchor vouches for: the last anchored, or the pinned one."""
        return self.last.get(table) or (self.began or {}).get(table)

    def anchored(self) -> Anchored:
        began = self.began or {}
        digests = {t: dict(d) for t, d in self.digests.items()}
        for table, head in began.items():
            if head is not None:
                digests.setdefault(table, {})[head["id"]] = bytes.fromhex(head["digest"])
        return Anchored(digests=digests, began_after={t: (h["id"] if h else 0) for t, h in began.items()})


class AnchorFile:
    def __init__(self, path: Path, *, keep_all: bool = False) -> None:
        """``keep_all``: hold every anchored digest (verify); a gateway keeps only each log's last."""
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.keep_all = keep_all
        self._state = AnchorState()
        self._offset = 0  # bytes already read into _state

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The anchor's cross-process lock (blocking: call it from a worker thread)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> AnchorState:
        """The file as it stands (blocking). Lines appended since the last read are read now."""
        with self._locked():
            return self._refresh()

    def _refresh(self) -> AnchorState:
        try:
            with self.path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self._offset:
                    raise AnchorError(f"the anchor file {self.path} shrank: it was cut or replaced")
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            if self._offset:
                raise AnchorError(f"the anchor file {self.path} is gone") from None
            return self._state
        complete = data[: data.rfind(b"\n") + 1]  # a line torn by a crash waits for its end
        for raw in complete.splitlines():
            self._state.lines += 1
            self._take(raw)
        self._offset += len(complete)
        return self._state

    def _take(self, raw: bytes) -> None:
        state = self._state
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if state.began is None:
            first = isinstance(line, dict) and line.get("anchor") == ANCHOR_FORMAT
            if state.lines == 1 and first and isinstance(line.get("heads"), dict):
                state.began = dict(line["heads"])
                return
            raise AnchorError(f"{self.path} is not a dialguard anchor file (its first line says otherwise)")
        try:
            table, cp_id, digest = line["log"], int(line["id"]), bytes.fromhex(line["digest"])
        except (ValueError, KeyError, TypeError):
            state.unreadable.append(state.lines)
            log.error("seal anchor %s line %d is unreadable: %r", self.path, state.lines, raw[:200])
            return
        head = state.last.get(table)
        if head is None or cp_id > head["id"]:
            state.last[table] = line
        if self.keep_all:
            state.digests.setdefault(table, {})[cp_id] = digest

    def _is_new(self, line: dict[str, Any]) -> bool:
        if "anchor" in line:  # the first line
            return self._state.began is None
        head = self._state.head(line["log"])
        return bool(line["id"] > (head["id"] if head else 0))

    def append(self, lines: list[dict[str, Any]]) -> None:
        """Append, fsynced, the checkpoint headers not anchored yet (another process may have been first),
        or the first line when the file has none (blocking)."""
        with self._locked():
            self._refresh()
            fresh = [line for line in lines if self._is_new(line)]
            if not fresh:
                return
            data = b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in fresh)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # a torn line stays on its own, never glued to these
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")
                os.fsync(fd)
            finally:
                os.close(fd)
            self._refresh()


# ---------------------------------------------------------------- a seal round


async def seal_round(
    conn: Connection, *, key: bytes, anchor: AnchorFile, clock: Clock = system_clock
) -> dict[str, int] | None:
    """Check the anchored heads are still in the database, seal, anchor the new checkpoints.

    Raises :class:`AnchorError` (and seals nothing) when the database lost or changed an anchored
    checkpoint: a new chain is never built over a truncated one.
    """
    state = await asyncio.to_thread(anchor.read)
    if state.began is None:
        heads = {}
        for lg in LOGS:
            cp = await last_checkpoint(conn, lg)
            heads[lg.table] = checkpoint_header(lg.table, cp) if cp else None
        first = {
            "anchor": ANCHOR_FORMAT, "began_at": clock().isoformat(), "key_id": key_id(key), "heads": heads,
        }  # fmt: skip
        await asyncio.to_thread(anchor.append, [first])
        state = await asyncio.to_thread(anchor.read)
    for lg in LOGS:
        head = state.head(lg.table)
        if head is None:
            continue
        cp = await checkpoint(conn, lg, head["id"])
        if cp is None or bytes(cp["digest"]).hex() != head["digest"]:
            what = "is missing from" if cp is None else "differs in"
            raise AnchorError(
                f"{lg.noun} checkpoint {head['id']}, anchored in {anchor.path}, {what} the database: "
                "the log was truncated or rewritten (dialguard verify says more); sealing stops"
            )
    sealed = await seal(conn, key=key)
    await _extend(conn, key=key, anchor=anchor, state=state)
    return sealed


async def _extend(conn: Connection, *, key: bytes, anchor: AnchorFile, state: AnchorState) -> None:
    """Anchor every checkpoint after the last anchored one, each only if it follows it and is keyed."""
    lines: list[dict[str, Any]] = []
    problem: AnchorError | None = None
    for lg in LOGS:
        head = state.head(lg.table)
        expected = head["digest"] if head else None
        for cp in await checkpoints_after(conn, lg, head["id"] if head else 0):
            header = checkpoint_header(lg.table, cp)
            mac = cp["mac"]
            if header["prev_digest"] != expected:
                problem = AnchorError(
                    f"{lg.noun} checkpoint {cp['id']} does not follow the last one anchored: not anchored"
                )
                break
            if mac is None or not hmac.compare_digest(bytes(mac), checkpoint_mac(key, header)):
                problem = AnchorError(
                    f"{lg.noun} checkpoint {cp['id']} is not signed with this gateway's seal key "
                    f"({key_id(key)}): forged, or another gateway seals with another key; not anchored"
                )
                break
            lines.append(header)
            expected = header["digest"]
    if lines:
        await asyncio.to_thread(anchor.append, lines)
    if problem is not None:
        raise problem
