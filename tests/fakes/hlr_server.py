"""A fake HLR vendor over real HTTP (aiohttp, port 0) that can be slow, fail, rate-limit and talk nonsense.

Its answers look like a typical vendor's JSON:
``{"data": {"roaming": true, "visited": {"mcc": "214"}}, "network": "Orange PL", "ported": false}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

API_KEY = "secret-key"
MAPPING = {
    "roaming": "data.roaming",
    "visited_country": "data.visited.mcc",
    "home_network": "network",
    "ported": "ported",
}


@dataclass
class FakeHlr:
    mode: str = "ok"  # ok | 500 | 429 | bad_json | missing_field | unknown_country
    delay: float = 0.0  # seconds before answering: a slow vendor
    roaming: dict[str, str] = field(default_factory=dict)  # digits -> visited MCC; absent: at home
    hits: int = 0
    in_flight: int = 0
    most_in_flight: int = 0  # how many look-ups the client had open at once, at most
    # Run while a look-up is being answered: the world may change while the gate waits for the vendor.
    while_answering: Callable[[], Awaitable[None]] | None = None
    runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/lookup?msisdn={{digits}}"

    async def lookup(self, request: web.Request) -> web.Response:
        self.hits += 1
        if request.headers.get("X-Api-Key") != API_KEY:
            return web.json_response({"error": "bad key"}, status=401)
        if self.while_answering is not None:
            await self.while_answering()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.mode == "500":
            return web.Response(status=500, text="internal error")
        if self.mode == "429":
            return web.json_response({"error": "slow down"}, status=429)
        if self.mode == "bad_json":
            return web.Response(text="{not json", content_type="application/json")
        digits = request.query.get("msisdn", "")
        mcc = self.roaming.get(digits)
        visited: dict[str, str] = {"mcc": "999" if self.mode == "unknown_country" else (mcc or "260")}
        data: dict[str, object] = {
            "roaming": mcc is not None or self.mode == "unknown_country",
            "visited": visited,
        }
        if self.mode == "missing_field":
            data = {"status": "ok"}
        return web.json_response({"data": data, "network": "Plus PL", "ported": False})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/lookup", self.lookup)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
