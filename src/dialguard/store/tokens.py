"""API bearer tokens: random, shown once, stored as a SHA-256 hash with a role.

Every change to the table is announced on the ``dialguard_tokens`` channel by a trigger (migration 0012),
in the changing transaction: gateways that keep looked-up tokens forget them at its commit."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from enum import StrEnum

from dialguard.store.audit import record_audit
from dialguard.store.db import Connection


class Role(StrEnum):
    ADMIN = "admin"
    DIALER = "dialer"
    SUPERVISOR = "supervisor"


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_token(conn: Connection, *, name: str, role: Role, actor: str = "cli") -> str:
    """A new token for ``name`` (replacing a revoked one of that name); the plain token is returned once."""
    token = "dg_" + secrets.token_urlsafe(32)
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO api_tokens (name, role, token_hash, created_by) VALUES ($1, $2, $3, $4)""",
            name,
            str(role),
            token_hash(token),
            actor,
        )
        await record_audit(conn, actor=actor, action="token.create", subject=name, detail={"role": str(role)})
    return token


async def revoke_token(conn: Connection, *, name: str, at: datetime, actor: str = "cli") -> bool:
    async with conn.transaction():
        revoked = await conn.fetchval(
            "UPDATE api_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL RETURNING true",
            name,
            at,
        )
        if revoked:
            await record_audit(conn, actor=actor, action="token.revoke", subject=name)
    return bool(revoked)


async def identify(conn: Connection, token: str) -> tuple[str, Role] | None:
    """The (name, role) a presented token belongs to, or None. The lookup is by hash: nothing to time."""
    return await identify_hash(conn, token_hash(token))


async def identify_hash(conn: Connection, digest: bytes) -> tuple[str, Role] | None:
    """As :func:`identify`, given the token's hash (the HTTP layer's cache is keyed by it)."""
    row = await conn.fetchrow(
        "SELECT name, role FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL", digest
    )
    return (row["name"], Role(row["role"])) if row else None
