"""Every /v1 route, from the modules that define them: the router, the role checks and the OpenAPI
document are all built from this one table."""

from __future__ import annotations

from dialguard.web import api, calls_routes, campaign_routes, numbers_route, supervise

ROUTES = (
    *api.ROUTES,
    *calls_routes.ROUTES,
    *campaign_routes.ROUTES,
    *numbers_route.ROUTES,
    *supervise.ROUTES,
)
