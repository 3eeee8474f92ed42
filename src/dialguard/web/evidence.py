"""GET /v1/evidence: evidence bundles (bundle.py) to download, for a number or for a campaign's calls.

Supervisors and admins only: a bundle holds every decision, consent and opt-out of the people in it.
Built on the admin pool, in one read-only snapshot; the JSON is encoded off the loop (it can run to
megabytes).
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from typing import Any

from aiohttp import web

from dialguard.numbers import InvalidNumber
from dialguard.store.evidence import BundleTooLarge, export_campaign, export_number
from dialguard.store.tokens import Role
from dialguard.web.api import GATE_KEY, Route, admin_connection, caller, now
from dialguard.web.errors import ApiError
from dialguard.web.validate import Field, parse_instant

READERS = frozenset({Role.ADMIN, Role.SUPERVISOR})
CAMPAIGN_QUERY = (
    Field("campaign", required=True),
    Field("since", instant=True, doc="decided at or after (default: from the first)"),
    Field("until", instant=True, doc="decided before (default: up to now)"),
)


def _download(bundle: dict[str, Any], name: str, at: datetime) -> web.Response:
    body = json.dumps(bundle, ensure_ascii=False, indent=1).encode()
    filename = f"dialguard-evidence-{name}-{at:%Y%m%dT%H%M%SZ}.json"
    return web.Response(
        body=body,
        content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _respond(bundle: dict[str, Any], name: str, at: datetime) -> web.Response:
    return await asyncio.to_thread(_download, bundle, name, at)


async def get_number_evidence(request: web.Request) -> web.Response:
    raw = request.match_info["number"]
    parsed = request.app[GATE_KEY].parse(raw)  # as the checks read it: region and outside-line prefix
    if isinstance(parsed, InvalidNumber):
        raise ApiError(422, "invalid_number", f"{raw!r} is not a valid phone number: {parsed.reason}")
    at = now(request)
    try:
        async with admin_connection(request) as conn:
            bundle = await export_number(conn, parsed.e164, at=at, by=caller(request))
    except BundleTooLarge as exc:
        raise ApiError(422, "bundle_too_large", str(exc)) from None
    return await _respond(bundle, parsed.e164, at)


async def get_campaign_evidence(request: web.Request) -> web.Response:
    query = request.query
    if unknown := sorted(set(query) - {f.name for f in CAMPAIGN_QUERY}):
        raise ApiError(400, "bad_query", f"unknown parameters: {', '.join(unknown)}")
    campaign = query.get("campaign", "")
    if not campaign:
        raise ApiError(400, "bad_query", "give ?campaign=NAME (and since, until), or ask /v1/evidence/NUMBER")
    since = parse_instant(query["since"], "since") if "since" in query else None
    until = parse_instant(query["until"], "until") if "until" in query else None
    if since is not None and until is not None and until <= since:
        raise ApiError(400, "bad_query", "until must come after since")
    at = now(request)
    try:
        async with admin_connection(request) as conn:
            bundle = await export_campaign(
                conn, campaign, since=since, until=until, at=at, by=caller(request)
            )
    except BundleTooLarge as exc:
        raise ApiError(422, "bundle_too_large", str(exc)) from None
    return await _respond(bundle, "campaign-" + re.sub(r"[^A-Za-z0-9_.-]", "_", campaign)[:64], at)


ROUTES = (
    Route(
        "GET",
        "/v1/evidence/{number}",
        get_number_evidence,
        READERS,
        "Evidence bundle of a number: decisions, consent, do-not-call, opt-outs, call events, seals",
    ),
    Route(
        "GET",
        "/v1/evidence",
        get_campaign_evidence,
        READERS,
        "Evidence bundle of a campaign's calls in a time window",
        query=CAMPAIGN_QUERY,
    ),
)
