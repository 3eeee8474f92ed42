"""A recorded history to export and seal: two people's calls, consent, do-not-call changes and an opt-out,
written through the stores (real PostgreSQL), then settled so the sealer may seal them now."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dialguard.policy.model import Purpose
from dialguard.store.calls import OptOut, record_event, store_optout
from dialguard.store.consent import grant_consent, revoke_consent
from dialguard.store.db import Connection
from dialguard.store.decisions import insert_decision
from dialguard.store.dnc import add_dnc, remove_dnc
from dialguard.store.sealing import LOGS
from tests.conftest import as_owner

NOW = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
ANN = "+12125550142"
BOB = "+13055550199"
KEY = bytes(range(32))


@dataclass
class History:
    calls: dict[str, list[uuid.UUID]] = field(default_factory=dict)  # number -> its call ids


async def decide(
    conn: Connection, number: str, *, verdict: str = "ALLOW", campaign: str = "spring", at: datetime = NOW
) -> uuid.UUID:
    call_id = uuid.uuid4()
    reason = "ok" if verdict == "ALLOW" else "dnc.internal"
    body = {
        "call_id": str(call_id), "number": number, "campaign": campaign, "verdict": verdict, "reason": reason,
        "reasons": [{"code": "dnc.clear" if verdict == "ALLOW" else reason, "passed": verdict == "ALLOW",
                     "detail": {"lists": ["internal"]}}],
        "next_callable_at": None, "rules_version": "r1", "decided_at": at.isoformat(), "recorded": True,
    }  # fmt: skip
    await insert_decision(
        conn, call_id=call_id, number=number, campaign=campaign, purpose="marketing", verdict=verdict,
        reason=reason, body=body, rules_version="r1", decided_at=at, recorded=True, writer="test",
    )  # fmt: skip
    await record_event(conn, call_id, "notice.played", {"lang": "en"}, at=at)
    return call_id


async def record_history(conn: Connection) -> History:
    """Ann: two calls, consent given then withdrawn, on the internal list and off it, an opt-out; a
    wildcard over her area code; Bob: a call and a consent, sealed in the same checkpoints as Ann's."""
    history = History()
    history.calls[ANN] = [await decide(conn, ANN)]
    history.calls[BOB] = [await decide(conn, BOB, verdict="BLOCK")]
    history.calls[ANN].append(await decide(conn, ANN, verdict="BLOCK"))
    for number in (ANN, BOB):
        await grant_consent(
            conn, number=number, kind="express_written", source="web_form", at=NOW,
            purpose=Purpose.MARKETING, evidence={"form": f"f-{number[-4:]}"},
        )  # fmt: skip
    await revoke_consent(conn, number=ANN, source="call", at=NOW)
    await add_dnc(conn, number=ANN, at=NOW, source="complaint")
    await add_dnc(conn, number="+1212*", at=NOW, source="cli")
    await add_dnc(conn, number=BOB, at=NOW, source="complaint")
    await remove_dnc(conn, number=ANN, at=NOW)
    optout = OptOut(uuid.uuid4(), ANN, history.calls[ANN][0], "spring", "9", NOW)
    await store_optout(conn, optout, via="database", stored_at=NOW)
    return history


async def settle(conn: Connection) -> None:
    """Move every row a minute back, as if written then: settled, so it can be sealed now."""
    async with as_owner(conn) as owner, owner.transaction():
        await owner.execute("SET LOCAL session_replication_role = replica")  # past the append-only triggers
        for log in LOGS:
            await owner.execute(
                f"UPDATE {log.table} SET inserted_at = inserted_at - interval '1 minute' "
                "WHERE inserted_at > now() - interval '1 minute'"
            )
