"""/v1/calls: a dialer's call placed through the gate, and any call's decision with its timeline."""

from __future__ import annotations

import json
import math
import re
import uuid

from aiohttp import web

from dialguard.originate import CallRequest, Originator
from dialguard.store import decision_log, timeline
from dialguard.web.api import ALL, WRITERS, Route, _lead_state, _query_int, admin_connection, caller
from dialguard.web.errors import ApiError
from dialguard.web.validate import Field, parse_instant, read_body

ORIGINATOR_KEY = web.AppKey("originator", Originator)

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_VARIABLES = 32
MAX_VALUE = 1024
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII, no spaces: what clients send

CALL_BODY = (
    Field("number", required=True, doc="the number to call, E.164 or national"),
    Field("campaign", doc="the campaign (its purpose and settings apply); none: the default campaign"),
    Field("lead_state", doc="the lead's state of residence (FL, US-FL, Florida), when the lead list has it"),
    Field("variables", dict, doc="channel variables for the dialplan, NAME: value (not DIALGUARD_*)"),
)


def _variables(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    assert isinstance(raw, dict)  # read_body checked the kind
    if len(raw) > MAX_VARIABLES:
        raise ApiError(422, "bad_field", f"variables: at most {MAX_VARIABLES}")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if not VARIABLE_NAME.fullmatch(name) or name.upper().startswith("DIALGUARD_"):
            raise ApiError(
                422, "bad_field", f"variables: {name!r} is not a variable name dialers may set",
                {"field": "variables", "name": name},
            )  # fmt: skip
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ApiError(422, "bad_field", f"variables: {name} must be text or a number")
        text = str(value)
        if len(text) > MAX_VALUE or any(c in text for c in "\r\n\0"):
            raise ApiError(
                422, "bad_field", f"variables: {name} must be one line of at most {MAX_VALUE} characters"
            )
        out[name] = text
    return out


async def post_call(request: web.Request) -> web.Response:
    key = request.headers.get("Idempotency-Key", "")
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(
            400,
            "idempotency_key.missing",
            "send an Idempotency-Key header (1-200 printable characters, e.g. a UUID): a retry with the same "
            "key never places a second call",
        )
    body = await read_body(request, CALL_BODY)
    call = CallRequest(
        number=body["number"],
        campaign=body.get("campaign"),
        lead_state=_lead_state(request, body["number"], body.get("lead_state")),
        variables=_variables(body.get("variables")),
    )
    originator = request.app.get(ORIGINATOR_KEY)
    if originator is None:
        raise ApiError(503, "ami.not_configured", "this gateway has no AMI link configured (ami.secret)")
    placed = await originator.place(call, caller=caller(request), key=key)
    response = web.json_response(placed.body, status=placed.status)
    if placed.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(placed.retry_after)))
    return response


async def get_call(request: web.Request) -> web.Response:
    try:
        call_id = uuid.UUID(request.match_info["call_id"])
    except ValueError:
        raise ApiError(422, "bad_field", "call_id: not a UUID", {"field": "call_id"}) from None
    async with admin_connection(request) as conn:
        decision = await conn.fetchval("SELECT body FROM decisions WHERE call_id = $1", call_id)
        if decision is None:
            raise ApiError(404, "not_found", f"no call {call_id}")
        steps = await timeline.timeline_of(conn, call_id)
        outcome = await timeline.outcome_of(conn, call_id)
    return web.json_response(
        {"call_id": str(call_id), "decision": decision, "outcome": outcome, "timeline": steps}
    )


CALLS_QUERY = (
    Field("campaign"),
    Field("since", instant=True, doc="decided at or after"),
    Field("until", instant=True, doc="decided before"),
    Field("outcome", choices=tuple(decision_log.OUTCOMES), doc="what the call came to"),
    Field("cursor", doc="next_cursor of the page before"),
    Field("limit", int, doc="1 to 500, default 50"),
)


async def list_calls(request: web.Request) -> web.Response:
    """``{"calls": [decision JSON + "id" + "outcome", ...], "next_cursor": str | null}``, newest first:
    the decision log's pager (store/decision_log.py) with each call's answered outcome beside it."""
    q = request.query
    outcome = q.get("outcome")
    if outcome is not None and outcome not in decision_log.OUTCOMES:
        choices = ", ".join(decision_log.OUTCOMES)
        raise ApiError(422, "bad_field", f"outcome must be one of {choices}", {"field": "outcome"})
    where = decision_log.LogFilter(
        campaign=q.get("campaign"),
        since=parse_instant(q["since"], "since") if "since" in q else None,
        until=parse_instant(q["until"], "until") if "until" in q else None,
        outcome=outcome,
    )
    try:
        after = decision_log.Cursor.decode(q["cursor"]) if "cursor" in q else None
    except decision_log.InvalidCursor as exc:
        message = f"cursor: {exc}; pass next_cursor back as it was given"
        raise ApiError(422, "invalid_cursor", message, {"field": "cursor"}) from None
    limit = _query_int(request, "limit", 50, most=500)
    async with admin_connection(request) as conn:
        page = await decision_log.page(conn, where, after=after, limit=limit, with_outcome=True)
    cursor = json.dumps(page.next_cursor.encode() if page.next_cursor else None)
    text = f'{{"calls": [{",".join(page.decisions)}], "next_cursor": {cursor}}}'
    return web.Response(text=text, content_type="application/json")


ROUTES = (
    Route(
        "POST",
        "/v1/calls",
        post_call,
        WRITERS,
        "Place a call through the gate: checked, then originated over AMI only if allowed, never twice "
        "for one Idempotency-Key",
        body=CALL_BODY,
        call_path=True,
    ),
    Route(
        "GET",
        "/v1/calls",
        list_calls,
        ALL,
        "Calls newest first, each decision with its answered outcome; filter by outcome, page by cursor",
        query=CALLS_QUERY,
    ),
    Route("GET", "/v1/calls/{call_id}", get_call, ALL, "A call's decision, every reason, and its timeline"),
)
