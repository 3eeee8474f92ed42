"""One error for a failing database on the call path (issue 10, item 21; issue 14, item 2)."""

from __future__ import annotations

import ast
from pathlib import Path

import asyncpg
import pytest

from dialguard.store.db import StoreUnavailable, connection

SRC = Path(__file__).resolve().parents[2] / "src" / "dialguard"


@pytest.mark.parametrize(
    "failure",
    [
        asyncpg.InternalClientError("cannot switch to state 12; another operation is in progress"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        TimeoutError(),
        OSError(104, "Connection reset by peer"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_every_database_failure_is_store_unavailable(pool: asyncpg.Pool, failure: Exception) -> None:
    """InternalClientError, seen after a database kill -9, once escaped the announce route and lost a 9."""

    async def fail_on_a_connection() -> None:
        async with connection(pool) as conn:
            await conn.fetchval("SELECT 1")
            raise failure

    with pytest.raises(StoreUnavailable) as caught:
        await fail_on_a_connection()
    assert caught.value.__cause__ is failure


def test_the_web_layer_never_imports_asyncpg() -> None:
    for path in (SRC / "web").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        }
        assert "asyncpg" not in imported, path
