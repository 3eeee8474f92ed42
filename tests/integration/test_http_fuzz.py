"""No request, however hostile, gets a 500 (issue 14, item 9): hypothesis over the route table's own
declared fields — the table that also makes the router and the OpenAPI document."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialguard.clock import fixed_clock
from dialguard.config import HttpSettings, Settings
from dialguard.gate import Gate
from dialguard.rules.loader import load_rulebook
from dialguard.store.tokens import Role, create_token
from dialguard.web.app import create_app
from dialguard.web.routes import ROUTES
from tests.integration.test_http_api import NOW, concrete

HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from([
        "\x00", "a\x00b", "+1 212 555 0142\x00", "²", "-1", "0", "9" * 30, "9" * 5000, "+0212*", "*",
        "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-11-23T16:00:00Z", "US-XX",
        "campaign:", "internal", "us_national", "../../etc/passwd", "\u202e", "\ud7ff", "null",
    ]),
)  # fmt: skip
SCALARS = st.one_of(
    HOSTILE_TEXT,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([-1, 0, 1, 2**63 - 1, 2**63, 10**400]),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(HOSTILE_TEXT, inner, max_size=3),
    max_leaves=6,
)


def examples(strategy: st.SearchStrategy[Any], n: int) -> list[Any]:
    """Draw ``n`` examples with hypothesis's generation (its edge cases first). Drawn up front: the
    requests are async, which hypothesis's runner does not drive; a failing example is printed whole."""
    drawn: list[Any] = []

    @settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    @given(strategy)
    def collect(example: Any) -> None:
        drawn.append(example)

    collect()
    return drawn


def _body(route: Any) -> st.SearchStrategy[dict[str, Any]]:
    names = [f.name for f in route.body]
    return st.dictionaries(st.sampled_from(names) | HOSTILE_TEXT, VALUES, max_size=len(names) + 1)


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if r.body is not None], ids=lambda r: f"{r.method} {r.path}"
)
async def test_no_body_gets_a_500(pool: asyncpg.Pool, aiohttp_client: Any, route: Any) -> None:
    settings_ = dataclasses.replace(Settings(), http=HttpSettings(max_body_bytes=65536))
    gate = Gate(pool=pool, rulebook=load_rulebook(), clock=fixed_clock(NOW), default_region="US")
    client = await aiohttp_client(create_app(settings=settings_, pool=pool, gate=gate))
    async with pool.acquire() as conn:
        token = await create_token(conn, name="fuzz", role=Role.ADMIN)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    seen: list[int] = []
    for body in examples(_body(route), 80):
        response = await client.request(
            route.method, concrete(route.path), data=json.dumps(body), headers=headers
        )
        seen.append(response.status)
        assert response.status < 500, (body, await response.text())
    # Deep nesting and raw NULs, beyond what the strategy makes.
    for raw in (
        "[" * 100_000 + "]" * 100_000,
        '{"number": "\\u0000"}',
        '{"evidence": ' + "[" * 50 + "]" * 50 + "}",
    ):
        response = await client.request(route.method, concrete(route.path), data=raw, headers=headers)
        assert response.status < 500, raw[:40]
    assert seen


@pytest.mark.parametrize("route", [r for r in ROUTES if r.query], ids=lambda r: f"{r.method} {r.path}")
async def test_no_query_gets_a_500(pool: asyncpg.Pool, aiohttp_client: Any, route: Any) -> None:
    gate = Gate(pool=pool, rulebook=load_rulebook(), clock=fixed_clock(NOW), default_region="US")
    client = await aiohttp_client(create_app(settings=Settings(), pool=pool, gate=gate))
    async with pool.acquire() as conn:
        token = await create_token(conn, name="fuzz", role=Role.ADMIN)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": route.content}

    queries = st.dictionaries(st.sampled_from([f.name for f in route.query]), HOSTILE_TEXT, max_size=4)
    for query in examples(queries, 50):
        response = await client.request(
            route.method, concrete(route.path), params=query, data=b"", headers=headers
        )
        assert response.status < 500, (query, await response.text())
