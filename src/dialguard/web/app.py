"""The HTTP application factory: health and metrics now; the API routes are added per area."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from dialguard.config import Settings
from dialguard.gate import Gate

POOL_KEY = web.AppKey("pool", asyncpg.Pool)
GATE_KEY = web.AppKey("gate", Gate)
SETTINGS_KEY = web.AppKey("settings", Settings)


async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers; 503 otherwise (the gate would block every call)."""
    pool = request.app[POOL_KEY]
    try:
        async with pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
    except Exception as exc:  # any failure to reach the database means unhealthy
        return web.json_response({"status": "unavailable", "database": type(exc).__name__}, status=503)
    return web.json_response({"status": "ok"})


def create_app(*, settings: Settings, pool: asyncpg.Pool, gate: Gate) -> web.Application:
    app = web.Application(client_max_size=settings.http.max_body_bytes)
    app[POOL_KEY] = pool
    app[GATE_KEY] = gate
    app[SETTINGS_KEY] = settings
    app.router.add_get("/healthz", healthz)
    return app
