"""Read-only routes the supervisors' console needs: one number explained (may it be called now, and if
not, why and from when), verdicts counted by reason over a window, and whose token this is.

routes.py adds ``ROUTES`` to the one table, so the role check, the router and the OpenAPI document
cover them as every other route. Nothing here writes: the explanation is a dry run that is
neither stored nor counted as an attempt (a lead-list scrub's look-ahead, for one number).
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from dialguard.gate import CheckRequest
from dialguard.numbers import InvalidNumber, NumberFacts
from dialguard.rules.explain import explain
from dialguard.store.db import Connection
from dialguard.web.api import (
    ADMIN_GATE_KEY,
    ALL,
    ROLE_KEY,
    Route,
    _lead_state,
    admin_connection,
    caller,
    now,
)
from dialguard.web.errors import ApiError
from dialguard.web.validate import Field, parse_instant

EXPLAIN_QUERY = (
    Field("campaign", doc="judge as a call of this campaign (default: campaigns.default)"),
    Field("at", instant=True, doc="judge at this instant (default now)"),
    Field("lead_state", doc="the lead's own state or province: FL, US-FL or Florida"),
)
COUNT_QUERY = (
    Field("campaign", doc="only this campaign"),
    Field("since", instant=True, doc="from this instant (default: 24 hours before until)"),
    Field("until", instant=True, doc="up to this instant, included (default now)"),
)
LONGEST_WINDOW = timedelta(days=31)  # a month of decisions is counted within the pool's command timeout


async def get_explain(request: web.Request) -> web.Response:
    """The decision a call to the number would get (not stored, not an attempt), and the rules' own
    account of its hours and consent: what the console's "A number" view shows."""
    raw, query = request.match_info["number"], request.query
    at = parse_instant(query["at"], "at") if "at" in query else now(request)
    lead = _lead_state(request, raw, query.get("lead_state"))
    gate = request.app[ADMIN_GATE_KEY]
    judge = CheckRequest(
        number=raw, campaign=query.get("campaign") or None, lead_subdivision=lead, at=at, keep=False,
        channel=f"http:{caller(request)}",
    )  # fmt: skip
    (result,) = await gate.look_ahead([judge])  # the gate knows emergency numbers before parsing
    if isinstance(result.number, InvalidNumber):
        raise ApiError(422, "invalid_number", f"{raw!r} is not a valid phone number: {result.number.reason}")
    decision = result.to_json()
    lines: list[str] = []
    if isinstance(result.number, NumberFacts):  # an emergency number has no rules to explain
        lines = explain(
            gate.rulebook, result.number, at, result.purpose, lead_subdivision=judge.lead_subdivision
        ).splitlines()
    return web.json_response(
        {
            "number": decision["number"],
            "campaign": result.campaign,
            "purpose": str(result.purpose),
            "at": at.isoformat(),
            "may_call": decision["verdict"] == "ALLOW",
            "reason": decision["reason"],
            "next_callable_at": decision["next_callable_at"],
            "decision": decision,
            "explanation": lines,
        }
    )


COUNT_SQL = """
SELECT campaign, verdict, reason, count(*) AS count
  FROM decisions
 WHERE decided_at >= $1 AND decided_at <= $2 AND ($3::text IS NULL OR campaign = $3)
 GROUP BY campaign, verdict, reason
 ORDER BY campaign, verdict, count DESC, reason
"""


async def _count(conn: Connection, query: str, *args: object) -> list[dict[str, object]]:
    try:
        rows = await conn.fetch(query, *args)
    except TimeoutError:
        raise ApiError(
            503, "too_slow", "counting took longer than the database allows: choose a shorter window"
        ) from None
    return [dict(r) for r in rows]


async def get_verdict_counts(request: web.Request) -> web.Response:
    """Decisions counted by campaign, verdict and first failed reason over a window (at most 31 days)."""
    query = request.query
    until = parse_instant(query["until"], "until") if "until" in query else now(request)
    since = parse_instant(query["since"], "since") if "since" in query else until - timedelta(hours=24)
    if since >= until:
        raise ApiError(400, "bad_query", "since must be before until", {"field": "since"})
    if until - since > LONGEST_WINDOW:
        raise ApiError(400, "bad_query", "the window is at most 31 days", {"field": "since"})
    campaign = query.get("campaign") or None
    async with admin_connection(request) as conn:
        rows = await _count(conn, COUNT_SQL, since, until, campaign)
    return web.json_response(
        {"since": since.isoformat(), "until": until.isoformat(), "campaign": campaign, "counts": rows}
    )


async def get_whoami(request: web.Request) -> web.Response:
    """The token's name and role: the console signs in with it and shows write actions only to writers."""
    return web.json_response({"name": caller(request), "role": str(request[ROLE_KEY])})


ROUTES = (
    Route(
        "GET",
        "/v1/numbers/{number}/explain",
        get_explain,
        ALL,
        "May this number be called (now or at an instant), and if not, why and from when; a dry run",
        query=EXPLAIN_QUERY,
    ),
    Route(
        "GET",
        "/v1/stats/verdicts",
        get_verdict_counts,
        ALL,
        "Decisions counted by campaign, verdict and reason over a window of at most 31 days",
        query=COUNT_QUERY,
    ),
    Route("GET", "/v1/whoami", get_whoami, ALL, "The token's own name and role"),
)
