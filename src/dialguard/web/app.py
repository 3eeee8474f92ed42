"""The HTTP application factory: health, the /v1 API and its OpenAPI document, the supervisors' console,
wired explicitly."""

from __future__ import annotations

from aiohttp import web

from dialguard.asterisk.ami import AmiClient
from dialguard.config import Settings
from dialguard.events import EventHub
from dialguard.gate import Gate
from dialguard.metrics import Metrics
from dialguard.originate import Originator
from dialguard.store.db import Pool
from dialguard.store.roles import check_role
from dialguard.watchdog import Supervisor
from dialguard.web.api import (
    ADMIN_GATE_KEY,
    ADMIN_POOL_KEY,
    ADMIN_WAIT_KEY,
    GATE_KEY,
    MAX_BODY_KEY,
    POOL_KEY,
    REGION_KEY,
    TOKENS_KEY,
    add_api_routes,
)
from dialguard.web.calls_routes import ORIGINATOR_KEY
from dialguard.web.errors import json_errors
from dialguard.web.openapi import openapi_document
from dialguard.web.page import add_page_routes
from dialguard.web.routes import ROUTES
from dialguard.web.supervise import EVENTS_KEY, STREAM_KEY, StreamSettings, end_streams
from dialguard.web.token_cache import TokenCache

TASKS_KEY = web.AppKey("tasks", Supervisor)  # the background work /healthz reports on
AMI_KEY = web.AppKey("ami", AmiClient)  # the AMI link /healthz reports on, when one is configured


# Read in the one round trip /healthz makes anyway: autovacuum works only with track_counts on.
_SETTINGS_SQL = "SELECT ARRAY[current_setting('autovacuum'), current_setting('track_counts')]"


def statistics_warnings(*, autovacuum: str, track_counts: str) -> dict[str, str]:
    """A warning when nothing keeps the planner's statistics fresh (issue 15): with autovacuum off, a
    table analyzed while small stays "small" as it grows, and plans made on that belief read it whole."""
    if autovacuum == "on" and track_counts == "on":
        return {}
    return {
        "autovacuum": f"autovacuum is {autovacuum} and track_counts {track_counts}: table statistics go "
        "stale as attempts, consents and lists grow, and checks slow down; turn both on (postgresql.conf)"
    }


async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers: ``ok``, or ``degraded`` with the background tasks that are down
    (``down``: name -> last error and failures in a row; calls are still judged); 503 ``unavailable``
    when the database does not answer (the gate would block every call), with the outage's counters
    (``outage``: since, cause, checks blocked) once the gate has met it. ``warnings`` (name -> message)
    reports what needs an administrator but fails nothing: autovacuum off, a gateway whose database
    role could rewrite history."""
    pool = request.app[POOL_KEY]
    tasks = request.app.get(TASKS_KEY)
    down = {n: {"error": d.error, "failures": d.failures} for n, d in (tasks.down() if tasks else {}).items()}
    try:
        async with pool.acquire(timeout=2) as conn:
            autovacuum, track_counts = await conn.fetchval(_SETTINGS_SQL)
            roles = await check_role(conn)
    except Exception as exc:  # any failure to reach the database means unhealthy
        body: dict[str, object] = {"status": "unavailable", "database": type(exc).__name__}
        if (outage := request.app[GATE_KEY].outage.status()) is not None:
            body["outage"] = outage
        if down:
            body["down"] = down
        return web.json_response(body, status=503)
    ami = request.app.get(AMI_KEY)
    if ami is not None and not ami.is_up:
        # Checks go on without AMI; originations and timelines wait for it.
        down["ami"] = {"error": f"{ami.status.state}: {ami.status.error}".rstrip(": "), "failures": 0}
    body = {"status": "degraded", "down": down} if down else {"status": "ok"}
    warnings = statistics_warnings(autovacuum=autovacuum, track_counts=track_counts)
    if role_warning := roles.warning():
        warnings["roles"] = role_warning
    if warnings:
        body["warnings"] = warnings
    return web.json_response(body)


def create_app(
    *,
    settings: Settings,
    pool: Pool,
    gate: Gate,
    admin_pool: Pool | None = None,
    admin_gate: Gate | None = None,
    metrics: Metrics | None = None,
    tasks: Supervisor | None = None,
    originator: Originator | None = None,
    ami: AmiClient | None = None,
    events: EventHub | None = None,
    event_stream: StreamSettings | None = None,
    token_cache: TokenCache | None = None,
) -> web.Application:
    """``pool`` and ``gate`` serve the call path (POST /v1/checks, /healthz); ``admin_pool`` and
    ``admin_gate`` (the same rules on the admin pool) every other route. ``serve`` always passes both;
    without them (tests, tools) admin work shares the call path's pool. ``tasks``: the background work
    /healthz reports on. ``events``: the process's event hub, which GET /v1/events streams from
    (none: that route answers 503). ``token_cache``: tokens kept between requests, trusted only while the
    hub's link that it watches is up (none: every request looks its token up)."""
    if (admin_pool is None) != (admin_gate is None):
        raise ValueError("give both admin_pool and admin_gate, or neither")
    app = web.Application(client_max_size=settings.http.max_body_bytes, middlewares=[json_errors])
    app[POOL_KEY] = pool
    app[GATE_KEY] = gate
    app[ADMIN_POOL_KEY] = admin_pool or pool
    app[ADMIN_GATE_KEY] = admin_gate or gate
    app[ADMIN_WAIT_KEY] = settings.database.admin_acquire_timeout
    app[REGION_KEY] = settings.numbers.default_region
    app[MAX_BODY_KEY] = settings.http.max_body_bytes
    app[TOKENS_KEY] = token_cache if token_cache is not None else TokenCache(max_age=0)  # it has a len
    if tasks is not None:
        app[TASKS_KEY] = tasks
    if originator is not None:
        app[ORIGINATOR_KEY] = originator
    if ami is not None:
        app[AMI_KEY] = ami
    if events is not None:
        app[EVENTS_KEY] = events
        app.on_shutdown.append(end_streams)
    app[STREAM_KEY] = event_stream or StreamSettings()
    document = openapi_document()

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get("/healthz", healthz)
    if metrics is not None:
        exposition = metrics

        async def prometheus(request: web.Request) -> web.Response:
            """Prometheus text exposition; no numbers or secrets are in it, so no token (as /healthz).
            What it reads from the database is cached, so scraping it often costs the database nothing."""
            body = await exposition.scrape()
            return web.Response(body=body, content_type="text/plain", charset="utf-8")

        app.router.add_get("/metrics", prometheus)
    app.router.add_get("/v1/openapi.json", openapi)
    add_api_routes(app, ROUTES)
    add_page_routes(app)
    app.on_response_prepare.append(_plain_headers)
    return app


async def _plain_headers(request: web.Request, response: web.StreamResponse) -> None:
    """No content sniffing, no caching of answers that hold numbers and decisions, no versions
    advertised to whoever scans the port."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Server"] = "dialguard"
