"""Decisions and call events written as the gateway writes them (its own store functions), with the
instants, campaigns and reasons a test needs; and a reader of server-sent events."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from dialguard.store.calls import record_event
from dialguard.store.db import Connection
from dialguard.store.decisions import insert_decision


async def store_decision(
    conn: Connection,
    *,
    at: datetime,
    campaign: str = "spring",
    number: str = "+12125550142",
    failed: tuple[str, ...] = (),
    padding: str = "",
) -> uuid.UUID:
    """A decision as the gate stores it: BLOCK with ``failed`` codes (the first is its reason), else ALLOW."""
    call_id = uuid.uuid4()
    reasons = [{"code": "number.ok", "passed": True, "detail": {}}]
    reasons += [{"code": code, "passed": False, "detail": {"padding": padding}} for code in failed]
    reasons += [{"code": "hours.within_window", "passed": True, "detail": {}}]
    verdict = "BLOCK" if failed else "ALLOW"
    body = {
        "call_id": str(call_id),
        "number": number,
        "campaign": campaign,
        "verdict": verdict,
        "reason": failed[0] if failed else "ok",
        "reasons": reasons,
        "next_callable_at": None,
        "rules_version": "test",
        "decided_at": at.isoformat(),
        "recorded": False,
    }
    await insert_decision(
        conn, call_id=call_id, number=number, campaign=campaign, purpose="marketing", verdict=verdict,
        reason=body["reason"], body=body, rules_version="test", decided_at=at, recorded=False, writer="test",
    )  # fmt: skip
    return call_id


async def store_event(
    conn: Connection, call_id: uuid.UUID, kind: str, *, at: datetime, **detail: Any
) -> None:
    await record_event(conn, call_id, kind, detail, at=at)


@dataclass
class Sse:
    """One dispatched block of a text/event-stream: its fields, and any comment lines."""

    event: str | None = None
    data: str | None = None
    id: str | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


class SseReader:
    """Reads blocks off a streamed response as an EventSource would split them."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.last_id: str | None = None

    async def block(self, within: float = 5.0) -> Sse | None:
        """The next block (None at the end of the stream)."""
        out = Sse()
        async with asyncio.timeout(within):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    return None
                line = raw.decode().rstrip("\n")
                if not line:
                    if out.id is not None:
                        self.last_id = out.id
                    if out.event or out.data or out.id or out.comments:
                        return out
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    out.comments.append(value)
                elif name in ("event", "data", "id"):
                    setattr(out, name, value)

    async def event(self, within: float = 5.0) -> Sse:
        """The next block that carries an event (heartbeats and bare ids are read past)."""
        async with asyncio.timeout(within):
            while True:
                got = await self.block(within)
                assert got is not None, "the stream ended"
                if got.event is not None:
                    return got

    async def events(self, n: int, within: float = 5.0) -> list[Sse]:
        async with asyncio.timeout(within):
            return [await self.event(within) for _ in range(n)]
