"""GET /v1/calls over real HTTP and PostgreSQL: newest first by the decision log's keyset, each call's
answered outcome beside its decision, the outcome filters, and bad queries a clear 4xx."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg

from dialguard.store.abandons import Outcome, record_outcomes
from tests.decision_rows import store_decision
from tests.integration.test_decision_log import NOW, Client, api

__all__ = ["api"]


async def calls(client: Client, headers: dict[str, str], **query: Any) -> dict[str, Any]:
    response = await client.get("/v1/calls", params=query, headers=headers)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    assert set(body) == {"calls", "next_cursor"}
    return body


async def test_outcomes_filters_and_pages(api: tuple[Client, dict[str, str]], pool: asyncpg.Pool) -> None:
    client, headers = api
    async with pool.acquire() as conn:
        blocked = await store_decision(conn, at=NOW - timedelta(minutes=5), failed=("dnc.national",))
        unanswered = await store_decision(conn, at=NOW - timedelta(minutes=4))
        connected = await store_decision(conn, at=NOW - timedelta(minutes=3))
        abandoned = await store_decision(conn, at=NOW - timedelta(minutes=2))
        answered_at = NOW - timedelta(minutes=2)
        await record_outcomes(
            conn,
            [
                Outcome(connected, answered_at, answered_at, False),
                Outcome(abandoned, answered_at, None, True),
            ],
        )
    every = (await calls(client, headers))["calls"]
    assert [c["call_id"] for c in every] == [str(abandoned), str(connected), str(unanswered), str(blocked)]
    assert every[0]["outcome"]["abandoned"] is True and every[0]["outcome"]["agent_at"] is None
    assert every[1]["outcome"]["abandoned"] is False and every[1]["outcome"]["agent_at"] is not None
    assert every[2]["outcome"] is None and every[3]["outcome"] is None

    async def ids(outcome: str) -> list[str]:
        return [c["call_id"] for c in (await calls(client, headers, outcome=outcome))["calls"]]

    assert await ids("blocked") == [str(blocked)]
    assert await ids("allowed") == [str(abandoned), str(connected), str(unanswered)]
    assert await ids("answered") == [str(abandoned), str(connected)]
    assert await ids("connected") == [str(connected)]
    assert await ids("abandoned") == [str(abandoned)]

    first = await calls(client, headers, limit=2)
    async with pool.acquire() as conn:  # a newer decision does not shift the next page
        await store_decision(conn, at=NOW)
    second = await calls(client, headers, limit=2, cursor=first["next_cursor"])
    assert [c["call_id"] for c in first["calls"] + second["calls"]] == [c["call_id"] for c in every]
    assert second["next_cursor"] is None


async def test_bad_queries_are_4xx(api: tuple[Client, dict[str, str]]) -> None:
    client, headers = api
    for query in ({"outcome": "maybe"}, {"cursor": "!!"}, {"limit": "0"}, {"since": "yesterday"}):
        response = await client.get("/v1/calls", params=query, headers=headers)
        assert 400 <= response.status < 500, (query, response.status)
    response = await client.get("/v1/calls", params={"outcome": "maybe"}, headers=headers)
    assert response.status == 422
