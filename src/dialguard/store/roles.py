"""Two database roles: the owner applies migrations; the gateway may add to history, never rewrite it.

A role that owns a table may truncate it, drop or disable its append-only trigger and re-chain its
checkpoints. So the gateway's role (``database.dsn``) owns none of the history: it may read and insert
there, change only the working tables, and reach the two list changes an INSERT cannot make through
functions that leave a sealed trace (migration 0011). The owner (``database.owner_dsn``; the embedded
server's superuser) applies migrations and grants this on every start, so a new table is never forgotten:
a table this module does not name stops the start-up (``UnknownTable``).

The gateway owns the national-list copies alone: an import swaps partitions (ATTACH, DETACH ...
CONCURRENTLY, DROP), which only a table's owner may do and which cannot run inside a function. They are
copies of public registries, rebuilt by the next import; the README's trust model says so.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass

import asyncpg

from dialguard.store.db import Connection

log = logging.getLogger(__name__)

# The role the embedded server's gateway logs in as (trust authentication, on its own socket).
EMBEDDED_GATEWAY_ROLE = "dialguard_gateway"

# Evidence: read and appended to, never changed.
HISTORY = frozenset(
    {
        "attempts",
        "audit_log",
        "call_event_checkpoints",
        "call_events",
        "call_outcomes",
        "complaints",
        "consent_grant_checkpoints",
        "consent_grants",
        "consent_revocation_checkpoints",
        "consent_revocations",
        "decision_checkpoints",
        "decisions",
        "dnc_history",
        "dnc_history_checkpoints",
        "optout_checkpoints",
        "optouts",
        # Company lists: entries are added; renewed and removed only through migration 0011's functions.
        "dnc_entries",
        "dnc_prefixes",
    }
)
# State the gateway keeps up to date; what each may have done to it besides SELECT.
WORKING = {
    "api_tokens": "INSERT, UPDATE",  # revocation
    "campaign_answer_hours": "INSERT, UPDATE",  # hourly counters
    "campaigns": "INSERT, UPDATE",
    "emergencies": "INSERT, UPDATE",  # an end date
    "hlr_cache": "INSERT, UPDATE, DELETE",
    "originations": "INSERT, UPDATE, DELETE",  # an idempotency key given back
}
READ_ONLY = frozenset({"schema_migrations"})
# Owned by the gateway (see the module's docstring), with every version partition of the national lists.
GATEWAY_OWNED = frozenset({"dnc_registries", "dnc_registry_versions", "dnc_registry_numbers"})
_VERSION_PARTITION = re.compile(r"^dnc_registry_numbers_v\d+$")
FUNCTIONS = ("dialguard_dnc_renew", "dialguard_dnc_remove", "dialguard_analyze")


class UnknownTable(Exception):
    """A table in the schema that this module does not say what the gateway may do with."""


@dataclass(frozen=True, slots=True)
class RoleCheck:
    """Whether the role a connection uses could rewrite history (owns it, or is a superuser)."""

    role: str
    can_rewrite_history: bool

    def warning(self) -> str | None:
        if not self.can_rewrite_history:
            return None
        return (
            f"the gateway's database role {self.role!r} owns the history tables (or is a superuser): with "
            "its credentials the log can be truncated or rewritten; give database.owner_dsn a role of its "
            "own for migrations (README: Trust model)"
        )


async def check_role(conn: Connection) -> RoleCheck:
    row = await conn.fetchrow(
        """SELECT current_user AS role, pg_has_role(c.relowner, 'USAGE') AS owns
             FROM pg_class c WHERE c.oid = 'public.decisions'::regclass"""
    )
    assert row is not None
    return RoleCheck(role=row["role"], can_rewrite_history=bool(row["owns"]))


async def ensure_login_role(conn: Connection, role: str) -> None:
    """Create ``role`` (LOGIN, no password: the embedded server trusts its own socket) unless it exists.
    Several processes may race here; the loser finds it made."""
    if await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role):
        return
    with contextlib.suppress(asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
        await conn.execute(f"CREATE ROLE {_ident(role)} LOGIN")


_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
_TABLES_SQL = f"""
SELECT c.relname, pg_get_userbyid(c.relowner) AS owner,
       ARRAY[{", ".join(f"has_table_privilege($1, c.oid, '{p}')" for p in _PRIVILEGES)}] AS held
  FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
 ORDER BY c.relname"""
_REST_SQL = f"""
SELECT has_schema_privilege($1, 'public', 'CREATE')
   AND {" AND ".join(f"has_function_privilege($1, '{f}'::regproc, 'EXECUTE')" for f in FUNCTIONS)}"""


def _allowed(name: str) -> frozenset[str] | None:
    """What the gateway may do with a table of the owner's, or None for a table of its own."""
    if name in GATEWAY_OWNED or _VERSION_PARTITION.match(name):
        return None
    if name in HISTORY:
        return frozenset({"SELECT", "INSERT"})
    if name in WORKING:
        return frozenset({"SELECT", *WORKING[name].split(", ")})
    if name in READ_ONLY:
        return frozenset({"SELECT"})
    raise UnknownTable(
        f"table {name!r} is not classified in dialguard.store.roles: say what the gateway may do with it "
        "(HISTORY, WORKING or READ_ONLY)"
    )


async def grant_gateway(conn: Connection, role: str, *, force: bool = False) -> bool:
    """As the owner: give ``role`` exactly what the gateway needs, and take back anything else it had on
    the owner's tables; True when something had to change. What is in force already is left alone (no
    catalog writes on every start and command) unless ``force`` (new migrations: new sequences)."""
    if role == await conn.fetchval("SELECT current_user"):
        return False  # one role for both: nothing to separate (check_role warns)
    plan = []  # (table, its owner, what the gateway may do with it, None: its own table)
    in_force = True
    for t in await conn.fetch(_TABLES_SQL, role):
        allowed = _allowed(t["relname"])
        held = {p for p, has in zip(_PRIVILEGES, t["held"], strict=True) if has}
        in_force &= t["owner"] == role if allowed is None else held == allowed
        plan.append((t["relname"], t["owner"], allowed))
    if in_force and not force and await conn.fetchval(_REST_SQL, role):
        return False
    who = _ident(role)
    async with conn.transaction():
        for name, owner, allowed in plan:
            quoted = _ident(name)
            if allowed is None:
                if owner != role:
                    await conn.execute(f"ALTER TABLE {quoted} OWNER TO {who}")
                continue
            await conn.execute(f"REVOKE ALL ON {quoted} FROM {who}")
            await conn.execute(f"GRANT {', '.join(sorted(allowed))} ON {quoted} TO {who}")
        await conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {who}")
        # New national-list versions are tables of the gateway's own; temporary tables come with PUBLIC.
        await conn.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {who}")
        for function in FUNCTIONS:
            await conn.execute(f"GRANT EXECUTE ON FUNCTION {function} TO {who}")
    return True


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
