"""The supervisors' console in a real browser: Debian's chromium driven by Playwright, against a real
`dialguard serve` process on a database of its own, with Asterisk played by the FastAGI fake.

One gateway and one browser serve the whole module; each test gets a fresh browser context (its own
sessionStorage) at 1280×720, which refuses and records any request to anywhere but the gateway: the
page must work with no internet access.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dialguard.rules.loader import default_pack_dir
from dialguard.store.db import Pool, create_pool
from dialguard.store.tokens import Role, create_token
from tests.e2e.test_two_gateways import _free_port

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright's own browser downloads are never used
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

# Every country without a pack of its own: open around the clock and no consent asked, so that a check
# of an Australian number is allowed whatever the hour the suite runs at (the other packs are the
# shipped ones: a US number is judged by the real US rules).
OPEN_DEFAULT = """
[pack]
country = "DEFAULT"
name = "browser tests: open around the clock, no consent asked"

[hours]
source = "test pack"
policy = true
all = ["00:00-24:00"]
"""


@dataclass
class Gateway:
    base: str
    agi_port: int
    pool: Pool  # to its database, for the tests' own setup
    tokens: dict[str, str]  # by role
    routes: dict[str, bool] = field(default_factory=dict)  # the contract routes this build serves
    log: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=200))

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def api(self, method: str, path: str, role: str = "admin", **kw: Any) -> Any:
        headers = {**self.headers(role), **kw.pop("headers", {})}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.base + path, headers=headers, **kw) as response,
        ):
            body = await response.json()
            assert response.status < 300, (method, path, response.status, body)
            return body


async def _serves(http: aiohttp.ClientSession, gw: Gateway, method: str, path: str, probe: str) -> bool:
    """Whether the gateway has a route: named in its OpenAPI document, or answering a probe with anything
    but aiohttp's own "no such route" (a 404 ``not_found`` or a 405)."""
    async with http.get(gw.base + "/v1/openapi.json") as response:
        document = await response.json()
    if method.lower() in document["paths"].get(path, {}):
        return True
    async with http.request(method, gw.base + probe, headers=gw.headers("supervisor")) as response:
        if response.status == 405:
            return False
        if response.status != 404:
            return True
        with contextlib.suppress(aiohttp.ContentTypeError, ValueError):
            return (await response.json()).get("error_id") != "not_found"
        return False


@pytest.fixture(scope="module")
async def gateway(
    new_database: Callable[[], Awaitable[str]], tmp_path_factory: Any
) -> AsyncIterator[Gateway]:
    dsn = await new_database()
    work = tmp_path_factory.mktemp("console")
    packs = work / "packs"
    shutil.copytree(default_pack_dir(), packs, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (packs / "DEFAULT.toml").write_text(OPEN_DEFAULT)
    agi_port, http_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "DIALGUARD_DATABASE_DSN": dsn,
        "DIALGUARD_AGI_PORT": str(agi_port),
        "DIALGUARD_HTTP_PORT": str(http_port),
        "DIALGUARD_RULES_PACK_DIR": str(packs),
        "DIALGUARD_CALLS_JOURNAL_PATH": str(work / "journal.jsonl"),
    }
    pool = await create_pool(dsn, size=2)
    async with pool.acquire() as conn:
        tokens = {str(r): await create_token(conn, name=f"{r}-1", role=r) for r in Role}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialguard", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    gw = Gateway(f"http://127.0.0.1:{http_port}", agi_port, pool, tokens)
    assert proc.stderr is not None
    stderr = proc.stderr
    draining: asyncio.Task[None] | None = None

    async def drain() -> None:
        # Read the gateway's log for as long as it runs: a full pipe would stall its loop.
        while line := await stderr.readline():
            gw.log.append(line.decode(errors="replace").rstrip())

    try:
        async with asyncio.timeout(30):
            while b"dialguard ready" not in (line := await stderr.readline()):
                assert line, "the gateway exited before it was ready"
        draining = asyncio.create_task(drain())
        async with aiohttp.ClientSession() as http:
            gw.routes = {
                "decisions": await _serves(http, gw, "GET", "/v1/decisions", "/v1/decisions?limit=1"),
                "calls": await _serves(
                    http, gw, "GET", "/v1/calls/{call_id}", "/v1/calls/00000000-0000-0000-0000-000000000000"
                ),
                "evidence": await _serves(
                    http, gw, "GET", "/v1/evidence/{number}", "/v1/evidence/+61212345678"
                ),
                "events": await _events_served(http, gw),
            }
        yield gw
    finally:
        proc.terminate()
        await proc.wait()
        if draining is not None:
            await draining
        await pool.close()


async def _events_served(http: aiohttp.ClientSession, gw: Gateway) -> bool:
    """GET /v1/events is a stream: its status is read and the stream let go at once (a stream that
    sends no headers for seconds is there, if slow to start)."""
    try:
        async with (
            asyncio.timeout(5),
            http.get(gw.base + "/v1/events", headers=gw.headers("supervisor")) as response,
        ):
            return response.status not in (404, 405)
    except TimeoutError:
        return True


def needs(gw: Gateway, *routes: str) -> None:
    """Skip, naming what is missing, until the routes this test drives exist in this build."""
    missing = [r for r in routes if not gw.routes.get(r)]
    if missing:
        paths = {
            "decisions": "GET /v1/decisions", "events": "GET /v1/events",
            "calls": "GET /v1/calls/{id}", "evidence": "GET /v1/evidence/{number}",
        }  # fmt: skip
        pytest.skip(f"this gateway build has no {' nor '.join(paths[m] for m in missing)} yet")


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright  # the test modules skip when it is not installed

    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@dataclass
class Console:
    """A browser tab on the console, with what it tried to reach outside the gateway and its errors."""

    page: Any
    gateway: Gateway
    outside: list[str]
    errors: list[str]

    async def open(self, hash_: str = "") -> None:
        await self.page.goto(self.gateway.base + "/" + hash_)

    async def sign_in(self, role: str = "supervisor") -> None:
        await self.open()
        await self.page.fill("#token", self.gateway.tokens[role])
        await self.page.click("#signin-form button[type=submit]")
        await self.page.wait_for_selector(f"#who:has-text('{role}-1')")

    async def shot(self, name: str) -> None:
        """Save the view as docs/screenshots/NAME.png, once it fits the window's width. Not under
        faketime (`make test-future`): the README's pictures show today, not two years ahead."""
        overflow = await self.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the {name} view is {overflow}px wider than the window"
        if "FAKETIME" in os.environ:
            return
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


@pytest.fixture
async def console(browser: Any, gateway: Gateway, request: Any) -> AsyncIterator[Console]:
    marker = request.node.get_closest_marker("viewport")
    width, height = marker.args if marker else (1280, 720)
    context = await browser.new_context(
        viewport={"width": width, "height": height}, locale="en-GB", timezone_id="UTC", accept_downloads=True
    )
    outside: list[str] = []
    errors: list[str] = []

    async def only_the_gateway(route: Any) -> None:
        if route.request.url.startswith(gateway.base + "/"):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_the_gateway)
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    # Chromium reports every 4xx answer as a console error; a refused policy or a script error is kept.
    page.on(
        "console",
        lambda m: (
            m.type == "error" and not m.text.startswith("Failed to load resource") and errors.append(m.text)
        ),
    )
    tab = Console(page, gateway, outside, errors)
    yield tab
    await context.close()
    assert not outside, f"the page reached outside the gateway: {outside}"
    assert not errors, f"the page reported errors: {errors}"
