"""Read every fact one call needs in a single round trip."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from dialguard.policy.model import (
    AbandonedCall,
    AnswerCounts,
    Attempt,
    Campaign,
    ConsentRecord,
    DncHit,
    Emergency,
    Purpose,
    RegistryStatus,
)
from dialguard.store.abandons import answer_hours_sql
from dialguard.store.consent import CURRENT_CONSENTS_SQL, consent_from_row
from dialguard.store.db import Connection
from dialguard.store.dnc import hit_from_row

_FACTS_SQL = f"""
SELECT
  (SELECT jsonb_build_object('name', name, 'purpose', purpose, 'settings', settings)
     FROM campaigns WHERE name = $2) AS campaign,
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
            'id', id, 'list_name', list_name, 'source', source, 'added_at', added_at)), '[]')
     FROM dnc_entries
    WHERE number = $1 AND (expires_at IS NULL OR expires_at > $4)
      -- another campaign's own list does not bind this one
      AND (list_name NOT LIKE 'campaign:%' OR list_name = 'campaign:' || $2)) AS dnc,
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
            'id', id, 'list_name', list_name, 'source', source, 'added_at', added_at,
            'prefix', prefix)), '[]')
     FROM dnc_prefixes
    WHERE prefix = ANY($8::text[])
      AND (list_name NOT LIKE 'campaign:%' OR list_name = 'campaign:' || $2)) AS prefixes,
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
            'list_name', r.name, 'list_date', v.list_date, 'version_id', v.id,
            'hit', EXISTS (SELECT 1 FROM dnc_registry_numbers n
                            WHERE n.version_id = r.live_version AND n.number = $7))), '[]')
     FROM dnc_registries r JOIN dnc_registry_versions v ON v.id = r.live_version) AS registries,
  (SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]') FROM ({CURRENT_CONSENTS_SQL}) c) AS consents,
  (SELECT jsonb_build_object('status', status, 'visited_country', visited_country, 'provider', provider,
                             'fetched_at', fetched_at)
     FROM hlr_cache WHERE number = $1) AS hlr,
  -- Only for a campaign whose purpose a cap counts ($6: the purpose of one with no row), and then
  -- through the index whatever the planner believes (migration 0009).
  CASE WHEN coalesce((SELECT purpose FROM campaigns WHERE name = $2), $6) = ANY($5::text[])
       THEN dialguard_recent_attempts($1, $3) ELSE '[]' END AS attempts,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'area', area, 'reason', reason,
                                                'ends_at', ends_at)), '[]')
     FROM emergencies
    WHERE starts_at <= $4 AND ends_at > $4
      AND (cardinality(prefixes) = 0 OR prefixes && $8::text[])) AS emergencies,
  -- The abandoned-call rule's facts, read only when the callee's rules have one ($9, $10 not NULL).
  {answer_hours_sql("$2", "$9::timestamptz", "$4")} AS answer_hours,
  (SELECT jsonb_build_object('call_id', call_id, 'campaign', campaign, 'answered_at', answered_at)
     FROM call_outcomes
    WHERE number = $1 AND abandoned AND $10::timestamptz IS NOT NULL AND answered_at > $10::timestamptz
      AND answered_at <= $4
    ORDER BY answered_at DESC LIMIT 1) AS last_abandoned
"""

# The same facts for many numbers in one round trip (a lead-list scrub): $1 becomes an array whose
# elements the per-number parameters ($7, $8) are computed from; $7 and $8 the arrays of each number's
# abandon windows (its rules say how far back, so they are per number too).
_MANY_FACTS_SQL = (
    "SELECT q.number, f.* FROM unnest($1::text[], $7::timestamptz[], $8::timestamptz[])"
    " AS q(number, abandon_since, repeat_since) CROSS JOIN LATERAL ("
    + re.sub(r"\$1\b", "q.number", _FACTS_SQL)
    .replace("$9::timestamptz", "q.abandon_since")
    .replace("$10::timestamptz", "q.repeat_since")
    .replace("$7", "substr(q.number, 2)::bigint")
    .replace("$8::text[]", "ARRAY(SELECT left(q.number, i) FROM generate_series(2, length(q.number) - 1) i)")
    + ") f"
)

LOCK_NUMBER_SQL = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"


@dataclass(frozen=True, slots=True)
class StoredFacts:
    campaign: Campaign | None
    dnc_hits: tuple[DncHit, ...]
    consents: tuple[ConsentRecord, ...]
    attempts: tuple[Attempt, ...]
    registries: tuple[RegistryStatus, ...] = ()
    hlr: dict[str, Any] | None = None  # the cached HLR answer, fresh or not (the roaming service judges)
    emergencies: tuple[Emergency, ...] = ()
    answer_counts: dict[str, int] | None = None  # the campaign's, over the abandon rule's window
    last_abandoned: AbandonedCall | None = None

    def campaign_answers(self, since: datetime | None, now: datetime) -> AnswerCounts | None:
        """The counts read for the window from ``since`` (what read_facts was given) to ``now``."""
        if since is None or self.answer_counts is None:
            return None
        return AnswerCounts(self.answer_counts["answered"], self.answer_counts["abandoned"], since, now)


def _with_times(item: dict[str, Any], *names: str) -> dict[str, Any]:
    """jsonb carries timestamps as ISO text; the row mappers expect datetimes."""
    return {**item, **{n: _instant(item[n]) if item[n] else None for n in names}}


def _instant(text: str) -> datetime:
    """A timestamptz as jsonb writes it; PostgreSQL's ±infinity as the farthest instants."""
    if text in ("infinity", "-infinity"):
        return (datetime.max if text == "infinity" else datetime.min).replace(tzinfo=UTC)
    return datetime.fromisoformat(text)


def _day(text: str) -> date:
    """A national list's date as the database holds it. One no calendar has (``infinity``, written
    past the edge's checks) reads as the oldest day: the list is judged stale, never fresh forever."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        return date.min


def _parse(row: Any) -> StoredFacts:
    camp = row["campaign"]
    return StoredFacts(
        campaign=Campaign(camp["name"], Purpose(camp["purpose"]), camp["settings"] or {}) if camp else None,
        dnc_hits=tuple(hit_from_row(_with_times(d, "added_at")) for d in [*row["dnc"], *row["prefixes"]]),
        consents=tuple(
            consent_from_row(_with_times(g, "granted_at", "expires_at", "revoked_at"))
            for g in row["consents"]
        ),
        attempts=tuple(
            Attempt(at=_instant(a["at"]), campaign=a["campaign"], purpose=Purpose(a["purpose"]))
            for a in row["attempts"]
        ),
        hlr=_with_times(row["hlr"], "fetched_at") if row["hlr"] else None,
        registries=tuple(
            RegistryStatus(r["list_name"], _day(r["list_date"]), r["version_id"], r["hit"])
            for r in row["registries"]
        ),
        emergencies=tuple(
            Emergency(e["id"], e["area"], e["reason"], _instant(e["ends_at"])) for e in row["emergencies"]
        ),
        answer_counts=row["answer_hours"],
        last_abandoned=(
            AbandonedCall(last["call_id"], last["campaign"], _instant(last["answered_at"]))
            if (last := row["last_abandoned"])
            else None
        ),
    )


def prefixes_of(e164: str) -> list[str]:
    """Every proper prefix a wildcard entry could be: "+1", "+12", ... up to one digit short."""
    return [e164[:i] for i in range(2, len(e164))]


@dataclass(frozen=True, slots=True)
class AttemptWindow:
    """The attempts a call's caps may count: those after ``since``, of a campaign whose purpose is one of
    ``purposes``. ``purpose_without_row``: the purpose of a campaign that has no row (the implicit default
    campaign's, or the strictest for an unknown one)."""

    since: datetime
    purposes: frozenset[Purpose]
    purpose_without_row: Purpose

    @staticmethod
    def widest(windows: Iterable[AttemptWindow | None]) -> AttemptWindow | None:
        """One window covering every call of one campaign (a lead-list scrub); None when none reads any."""
        given = [w for w in windows if w is not None]
        if not given:
            return None
        purposes = frozenset().union(*(w.purposes for w in given))
        return AttemptWindow(min(w.since for w in given), purposes, given[0].purpose_without_row)


def _window_args(window: AttemptWindow | None) -> tuple[datetime | None, list[str], str | None]:
    if window is None:
        return None, [], None
    return window.since, sorted(str(p) for p in window.purposes), str(window.purpose_without_row)


async def read_facts(
    conn: Connection,
    *,
    number: str,
    campaign: str,
    attempts: AttemptWindow | None,
    now: datetime,
    abandon_since: datetime | None = None,
    repeat_since: datetime | None = None,
) -> StoredFacts:
    """``attempts``: which attempts to read; None reads none (no cap counts this call).
    ``abandon_since``/``repeat_since``: the abandon rule's windows (policy/abandon.py), None: not read."""
    since, purposes, purpose = _window_args(attempts)
    row = await conn.fetchrow(
        _FACTS_SQL, number, campaign, since, now, purposes, purpose, int(number[1:]), prefixes_of(number),
        abandon_since, repeat_since,
    )  # fmt: skip
    return _parse(row)


async def read_many_facts(
    conn: Connection,
    *,
    numbers: list[str],
    campaign: str,
    attempts: AttemptWindow | None,
    now: datetime,
    abandon_windows: dict[str, tuple[datetime | None, datetime | None]] | None = None,
    pause: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, StoredFacts]:
    """Facts for many E.164 numbers of one campaign at one instant, keyed by number; ``abandon_windows``
    gives each number's (abandon_since, repeat_since), as read_facts takes them (absent: not read).
    ``pause`` is awaited after each number's facts are made model objects (slicing.Slicer: ~5 µs a
    number)."""
    since, purposes, purpose = _window_args(attempts)
    windows = [(abandon_windows or {}).get(n, (None, None)) for n in numbers]
    rows = await conn.fetch(
        _MANY_FACTS_SQL, numbers, campaign, since, now, purposes, purpose,
        [w[0] for w in windows], [w[1] for w in windows],
    )  # fmt: skip
    facts = {}
    for row in rows:
        facts[row["number"]] = _parse(row)
        if pause is not None:
            await pause()
    return facts


async def lock_number(conn: Connection, number: str) -> None:
    """Serialise checks of one number (inside a transaction): caps then hold across gateways."""
    await conn.execute(LOCK_NUMBER_SQL, number)
