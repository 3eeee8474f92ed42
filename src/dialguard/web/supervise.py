"""The supervisors' API: the decision log a page at a time, and the live stream of every gateway.

``GET /v1/decisions`` pages newest first by keyset (store/decision_log.py); the cursor it hands out is
opaque. ``GET /v1/events`` is server-sent events from this process's event hub (events.py): each
event's id is the hub's position after it, so a reconnecting client (``Last-Event-ID``) gets what it
missed replayed from the tables, at most ``replay_limit`` rows of each log, then the live stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from dialguard.events import (
    EventHub,
    FeedClosed,
    FeedUnavailable,
    Interest,
    Overflowed,
    Position,
    Subscription,
)
from dialguard.store import decision_log
from dialguard.store.event_feed import FeedRow, Kind, rows_after
from dialguard.web.api import ALL, Route, _number, _query_int, admin_connection
from dialguard.web.errors import ApiError
from dialguard.web.validate import Field, parse_instant

VERDICTS = ("ALLOW", "BLOCK")


@dataclass(frozen=True, slots=True)
class StreamSettings:
    heartbeat: float = 15.0  # seconds of quiet before a comment line keeps proxies from closing the stream
    write_within: float = 30.0  # seconds a client may leave the stream unread before it is cut off
    replay_limit: int = 1000  # rows of each log replayed on a resume; older ones: GET /v1/decisions
    retry_ms: int = 1000  # what EventSource waits before reconnecting (after an overflow, say)


EVENTS_KEY = web.AppKey("events", EventHub)
STREAM_KEY = web.AppKey("event_stream", StreamSettings)


# ---------------------------------------------------------------- the decision log

DECISIONS_QUERY = (
    Field("campaign"),
    Field("verdict", choices=VERDICTS),
    Field("reason", doc="the decision's reason: its first failed code, or ok"),
    Field("number", doc="any usual form, read as the checks read it"),
    Field("since", instant=True, doc="decided at or after"),
    Field("until", instant=True, doc="decided before"),
    Field("cursor", doc="next_cursor of the page before"),
    Field("limit", int, doc="1 to 500, default 50"),
)


async def get_decisions(request: web.Request) -> web.Response:
    """``{"decisions": [decision JSON + "id", ...], "next_cursor": str | null}``, newest first."""
    q = request.query
    verdict = q.get("verdict")
    if verdict is not None and verdict not in VERDICTS:
        raise ApiError(400, "bad_query", "verdict must be ALLOW or BLOCK", {"field": "verdict"})
    where = decision_log.LogFilter(
        campaign=q.get("campaign"),
        verdict=verdict,
        reason=q.get("reason"),
        number=_number(request, q["number"]) if "number" in q else None,
        since=parse_instant(q["since"], "since") if "since" in q else None,
        until=parse_instant(q["until"], "until") if "until" in q else None,
    )
    try:
        after = decision_log.Cursor.decode(q["cursor"]) if "cursor" in q else None
    except decision_log.InvalidCursor as exc:
        message = f"cursor: {exc}; pass next_cursor back as it was given"
        raise ApiError(422, "invalid_cursor", message, {"field": "cursor"}) from None
    limit = _query_int(request, "limit", 50, most=500)
    async with admin_connection(request) as conn:
        page = await decision_log.page(conn, where, after=after, limit=limit)
    cursor = json.dumps(page.next_cursor.encode() if page.next_cursor else None)
    # The rows are JSON text from PostgreSQL already: joined, not decoded and encoded again.
    text = f'{{"decisions": [{",".join(page.decisions)}], "next_cursor": {cursor}}}'
    return web.Response(text=text, content_type="application/json")


# ---------------------------------------------------------------- the live stream

EVENTS_QUERY = (
    Field("campaign", doc="only this campaign's decisions and their calls' events"),
    Field("last_event_id", doc="resume after this event id, for clients that cannot send Last-Event-ID"),
)


def _frame(row: FeedRow, position: Position) -> bytes:
    return f"id: {position}\nevent: {row.kind}\ndata: {row.data}\n\n".encode()


async def get_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``decision`` (the decision JSON + id) and ``call`` ({call_id, at, kind,
    detail, id}); ``overflow`` when the client fell too far behind (the stream then ends);
    ``truncated`` when a resume was further back than the replay goes."""
    hub = request.app.get(EVENTS_KEY)
    if hub is None:
        raise ApiError(503, "events_unavailable", "this gateway serves no event stream")
    settings = request.app[STREAM_KEY]
    interest = Interest(campaign=request.query.get("campaign") or None)
    resume_text = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    try:
        resume = Position.parse(resume_text) if resume_text else None
    except ValueError as exc:
        raise ApiError(422, "invalid_event_id", str(exc), {"field": "Last-Event-ID"}) from None
    try:
        sub = await hub.subscribe(interest)
    except FeedUnavailable as exc:
        raise ApiError(503, "events_unavailable", str(exc)) from None
    with sub:
        replay: list[FeedRow] = []
        truncated: dict[str, int] = {}
        if resume is not None:
            replay, truncated = await _replay(request, resume, sub.start, interest, settings.replay_limit)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}  # no proxy buffering
        )
        await response.prepare(request)

        async def write(data: bytes) -> None:
            async with asyncio.timeout(settings.write_within):
                await response.write(data)

        try:
            await _stream(write, sub, resume, replay, truncated, settings)
        except TimeoutError:
            # Unread for write_within seconds: a stalled client holds no more than it has now.
            if request.transport is not None:
                request.transport.abort()
        except ConnectionError:
            pass  # the client went away
    return response


async def _replay(
    request: web.Request, resume: Position, upto: Position, interest: Interest, limit: int
) -> tuple[list[FeedRow], dict[str, int]]:
    """What a resuming client missed, from the tables: at most ``limit`` rows of each log, the newest;
    with the positions before which older ones were left out (``truncated``)."""
    rows: list[FeedRow] = []
    truncated: dict[str, int] = {}
    async with admin_connection(request) as conn:
        for kind in Kind:
            after, last = resume.of(kind), upto.of(kind)
            if last - after > limit:
                after = last - limit
                truncated[f"{kind}_before"] = after + 1
            rows += await rows_after(conn, kind, after, upto=last, limit=limit, campaign=interest.campaign)
    rows.sort(key=lambda r: (r.inserted_at, r.kind is Kind.CALL, r.id))
    return [r for r in rows if interest.matches(r)], truncated


async def _stream(
    write: Callable[[bytes], Awaitable[None]],
    sub: Subscription,
    resume: Position | None,
    replay: list[FeedRow],
    truncated: dict[str, int],
    settings: StreamSettings,
) -> None:
    """The replay, then live events until the feed ends or the client overflows. ``sent``: the last id
    written, which says that every event up to it (of this client's interest) was delivered."""
    await write(f"retry: {settings.retry_ms}\n\n".encode())
    if truncated:
        note = {**truncated, "message": "older events were not replayed: read them with GET /v1/decisions"}
        await write(f"event: truncated\ndata: {json.dumps(note)}\n\n".encode())
    sent = position = resume or sub.start
    replayed = {(r.kind, r.id) for r in replay}
    for row in replay:
        position = position.moved(row.kind, row.id)
        await write(_frame(row, position))
    position = position.joined(sub.start)  # the replay went up to where the subscription starts
    if position != sent:
        await write(f"id: {position}\n\n".encode())
        sent = position
    while True:
        try:
            async with asyncio.timeout(settings.heartbeat):
                event = await sub.next()
        except TimeoutError:
            # A comment keeps proxies from closing the link; an id with no data moves a filtered
            # client's resume point past what the hub read meanwhile (an EventSource keeps it).
            position = position.joined(sub.position)
            await write(b": ping\n\n" if position == sent else f": ping\nid: {position}\n\n".encode())
            sent = position
            continue
        except Overflowed:
            note = {"message": "fell too far behind; reconnect with Last-Event-ID", "resume": str(sent)}
            await write(f"event: overflow\ndata: {json.dumps(note)}\n\n".encode())
            return
        except FeedClosed:
            return
        row = event.row
        if (row.kind, row.id) in replayed or (resume is not None and row.id <= resume.of(row.kind)):
            continue  # in the replay already, or the client said it had it
        position = position.joined(event.position)
        await write(_frame(row, position))
        sent = position


ROUTES = (
    Route(
        "GET",
        "/v1/decisions",
        get_decisions,
        ALL,
        "The decision log, newest first, a page at a time (keyset: pass next_cursor back)",
        query=DECISIONS_QUERY,
    ),
    Route(
        "GET",
        "/v1/events",
        get_events,
        ALL,
        "Live decisions and call events of every gateway (server-sent events; resumes with Last-Event-ID)",
        query=EVENTS_QUERY,
    ),
)


async def end_streams(app: web.Application) -> None:
    """on_shutdown: end the open streams, so that the server need not wait for them to stop."""
    hub = app.get(EVENTS_KEY)
    if hub is not None:
        hub.end_streams()
