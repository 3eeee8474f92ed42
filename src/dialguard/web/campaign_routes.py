"""GET /v1/campaigns/{name}: a campaign, and where it stands against each abandoned-call rule."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from dialguard.policy.abandon import rate_reason, rules_in_force
from dialguard.policy.model import Campaign
from dialguard.store import abandons, campaigns
from dialguard.web.api import ALL, GATE_KEY, Route, admin_connection, now
from dialguard.web.errors import ApiError

CAMPAIGN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # as the campaigns table's CHECK


async def get_campaign(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    gate = request.app[GATE_KEY]
    at = now(request)
    rules = rules_in_force(gate.rulebook, at.date())
    counted: list[dict[str, Any]] = []
    async with admin_connection(request) as conn:
        found = await campaigns.get_campaign(conn, name) if CAMPAIGN_NAME.fullmatch(name) else None
        if found is None and name == gate.default_campaign:
            found = Campaign(name, gate.default_purpose)  # the gate's implicit default, until defined
        if found is None:
            raise ApiError(404, "unknown_campaign", f"no campaign {name!r}")
        for key, rule in rules:
            counts = await abandons.campaign_rate(conn, name, window=rule.window, now=at)
            reason = rate_reason(counts, key, rule, name)
            counted.append(
                {
                    "pack": key,
                    "held": not reason.passed,  # a call judged by this pack now is blocked
                    "purposes": sorted(rule.purposes),
                    "repeat_block_hours": rule.repeat_block.total_seconds() / 3600
                    if rule.repeat_block
                    else None,
                    **reason.detail,
                }
            )
    return web.json_response(
        {
            "name": found.name,
            "purpose": str(found.purpose),
            "settings": dict(found.settings),
            "abandon": counted,
        }
    )


ROUTES = (
    Route(
        "GET",
        "/v1/campaigns/{name}",
        get_campaign,
        ALL,
        "A campaign: purpose, settings, and its abandoned-call rate against each pack's limit",
    ),
)
