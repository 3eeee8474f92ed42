"""The gate: facts -> policy -> stored decision. The one entry for AGI, HTTP and the CLI.

Fail-closed: when the facts cannot be read in time, the call is blocked with ``gate.unavailable``.
The deadline covers reading the facts, never the decision's insert: the verdict the channel hears is
the verdict stored. When an insert's answer is lost, the gate ends that backend and reads back what
landed before it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from dialguard.clock import Clock
from dialguard.hlr.service import RoamingService
from dialguard.journal import DecisionJournal
from dialguard.language import language_for
from dialguard.numbers import (
    EmergencyNumber,
    InvalidLeadState,
    InvalidNumber,
    NumberFacts,
    emergency_number,
    parse_lead_state,
    parse_number,
)
from dialguard.outage import DatabaseOutage
from dialguard.policy.abandon import read_windows
from dialguard.policy.checks import check_lead_state, check_number
from dialguard.policy.engine import STRICTEST_PURPOSE, evaluate
from dialguard.policy.frequency import caps_apply, counted_purposes
from dialguard.policy.model import (
    CallFacts,
    Campaign,
    Decision,
    EffectiveRules,
    Purpose,
    Reason,
    RoamingFact,
    Verdict,
)
from dialguard.policy.roaming import roaming_required
from dialguard.policy.rulebook import RuleBook
from dialguard.store.db import (
    DATABASE_FAILURES,
    Connection,
    StoreUnavailable,
    connection,
    describe_failure,
)
from dialguard.store.decisions import DecisionRow, insert_decision, stored_verdict
from dialguard.store.facts import AttemptWindow, StoredFacts, lock_number, read_facts, read_many_facts

log = logging.getLogger(__name__)
DECISIONS = logging.getLogger("dialguard.decisions")  # one INFO line a decision

T = TypeVar("T")

FACT_FAILURES: tuple[type[Exception], ...] = (*DATABASE_FAILURES, StoreUnavailable)

# What the rules get when they ask about roaming and no HLR provider is configured.
NO_PROVIDER = RoamingFact("unknown", cause="no_provider")


class _NoFacts(Exception):
    """The facts could not be read in time: no decision was made and nothing was stored."""


class _Unsettled(Exception):
    """The decision's insert (or its commit) failed without saying whether it landed."""

    def __init__(self, result: GateDecision, backend_pid: int) -> None:
        super().__init__(str(result.call_id))
        self.result = result
        self.backend_pid = backend_pid


@dataclass(frozen=True, slots=True)
class CheckRequest:
    number: str
    campaign: str | None = None
    record: bool = False  # True: the call will be placed, so it counts as an attempt
    lead_subdivision: str | None = None  # as given (FL, US-FL, Florida): the gate reads it by the number
    at: datetime | None = None  # dry runs may ask about another instant
    channel: str = "cli"  # agi, http, cli, scrub: kept as evidence
    keep: bool = True  # False: a lead-list scrub's look-ahead, not stored (its output file is its record)
    call_id: uuid.UUID | None = None  # given by an origination, whose call id was promised first

    def __post_init__(self) -> None:
        if self.record and self.at is not None:
            # An attempt dated in the past would drop out of the caps' windows early.
            raise ValueError(
                "a recorded check counts as a call placed now: it cannot be judged at another time"
            )


# Told of a decision just before its insert (Gate.check's ``announce``).
Announce = Callable[["GateDecision"], None]


@dataclass(frozen=True, slots=True)
class _Call:
    """One call being decided: the request with its number parsed and its rules chosen."""

    id: uuid.UUID
    request: CheckRequest
    number: NumberFacts
    campaign_name: str
    rules: EffectiveRules
    now: datetime
    # How far back the abandon rule's facts are read (policy/abandon.py); None: not at all.
    abandon_since: datetime | None
    repeat_since: datetime | None


@dataclass(frozen=True, slots=True)
class GateDecision:
    """A decision with everything the outside world is told about it."""

    call_id: uuid.UUID
    number: NumberFacts | InvalidNumber | EmergencyNumber
    campaign: str
    decision: Decision
    rules_version: str
    decided_at: datetime
    recorded: bool
    purpose: Purpose = Purpose.MARKETING
    stored: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    journaled: bool = False  # not stored now: in the decision journal, stored when the database returns

    @property
    def verdict(self) -> Verdict:
        return self.decision.verdict

    @property
    def number_text(self) -> str:
        if isinstance(self.number, NumberFacts):
            return self.number.e164
        if isinstance(self.number, EmergencyNumber):
            return self.number.digits  # what the dialplan dials: 911, not the 9911 dialled
        return self.number.raw

    def channel_variables(self) -> dict[str, str]:
        """The DIALGUARD_* channel variables of the contract, as a check route or an origination sets them."""
        d = self.decision
        region = self.number.region if isinstance(self.number, NumberFacts) else None
        return {
            "DIALGUARD_CALL_ID": str(self.call_id),
            # E.164; for an emergency number the digits the service is dialled as (911, not 9911).
            "DIALGUARD_NUMBER": "" if isinstance(self.number, InvalidNumber) else self.number_text,
            "DIALGUARD_REASONS": ",".join(d.codes),
            "DIALGUARD_REASON": d.reason,
            "DIALGUARD_LANG": language_for(region),
            "DIALGUARD_NEXT_CALLABLE": d.next_callable_at.isoformat() if d.next_callable_at else "",
            "DIALGUARD_VERDICT": str(d.verdict),
        }

    def to_json(self) -> dict[str, Any]:
        """The decision JSON of the contract (API, ``check --json``, evidence)."""
        d = self.decision
        return {
            "call_id": str(self.call_id),
            "number": self.number_text,
            "campaign": self.campaign,
            "verdict": str(d.verdict),
            "reason": d.reason,
            "reasons": [{"code": r.code, "passed": r.passed, "detail": r.detail} for r in d.reasons],
            "next_callable_at": d.next_callable_at.isoformat() if d.next_callable_at else None,
            "rules_version": self.rules_version,
            "decided_at": self.decided_at.isoformat(),
            "recorded": self.recorded,
            **self.extra,
        }


async def _carry_on() -> None:
    """No pause: the look-ahead runs its batch in one go."""


def default_writer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Gate:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        rulebook: RuleBook,
        clock: Clock,
        default_region: str = "US",
        dial_prefix: str = "9",
        default_campaign: str = "default",
        default_purpose: Purpose = Purpose.MARKETING,
        fact_timeout: float = 2.0,
        writer: str | None = None,
        shadow_rulebook: RuleBook | None = None,
        roaming: RoamingService | None = None,
        on_stored: Callable[[], None] | None = None,
        observe: Callable[[GateDecision, float], None] | None = None,
        outage: DatabaseOutage | None = None,
        journal: DecisionJournal | None = None,
    ) -> None:
        self.pool = pool
        self.rulebook = rulebook
        self.clock = clock
        self.default_region = default_region
        self.dial_prefix = dial_prefix
        self.default_campaign = default_campaign
        self.default_purpose = default_purpose
        self.fact_timeout = fact_timeout
        self.writer = writer or default_writer_name()
        self.shadow_rulebook = shadow_rulebook
        self.shadow_differences = 0
        self.roaming = roaming  # None: no HLR configured; a look-up the rules ask for is unknown
        self.on_stored = on_stored  # told once a decision is committed (the live feed's wake-up)
        self.observe = observe  # told of every decision and the seconds it took (the metrics)
        self.outage = outage or DatabaseOutage(clock=clock)  # the database away: one state, not a line a call
        self.journal = journal  # where decisions the database did not take wait for it (None: nowhere)

    def parse(self, raw: str) -> NumberFacts | InvalidNumber:
        return parse_number(raw, default_region=self.default_region, dial_prefix=self.dial_prefix)

    async def check(self, request: CheckRequest, *, announce: Announce | None = None) -> GateDecision:
        """Decide one call, store the decision, and log one line for it (every entry point comes here).

        ``announce`` is told a decision judged on facts just before its insert, so that what is not the
        verdict may travel while it commits (the check route's MSet). The verdict is what this returns:
        it may differ from the one announced (an insert that failed blocks the call).
        """
        started, epoch = time.perf_counter(), self.outage.epoch
        result = await self._check(request, announce)
        if result.stored:
            self.outage.answered(epoch)
            if self.on_stored is not None:
                self.on_stored()
        elif request.keep and self.journal is not None:
            # Every decision is stored: this one when the database returns.
            result = dataclasses.replace(result, journaled=await self.journal.keep(self._row(result)))
        seconds = time.perf_counter() - started
        if self.observe is not None:
            self.observe(result, seconds)
        latency_ms = round(seconds * 1000, 1)
        DECISIONS.info(
            "%s %s campaign %s call %s number %s via %s in %.1f ms%s",
            result.verdict, result.decision.reason, result.campaign, result.call_id, result.number_text,
            request.channel, latency_ms,
            "" if result.stored else " (journaled)" if result.journaled else " (not stored)",
            extra={
                "call_id": str(result.call_id), "campaign": result.campaign, "verdict": str(result.verdict),
                "reason": result.decision.reason, "number": result.number_text, "channel": request.channel,
                "latency_ms": latency_ms, "stored": result.stored, "journaled": result.journaled,
            },
        )  # fmt: skip
        return result

    async def _check(self, request: CheckRequest, announce: Announce | None) -> GateDecision:
        call = self._call(request)
        if isinstance(call, GateDecision):
            if not request.keep:
                return dataclasses.replace(call, stored=False)
            return await self._store_invalid(call)
        deadline = asyncio.get_running_loop().time() + self.fact_timeout
        try:
            return await self._decide(call, deadline, announce)
        except _NoFacts as exc:
            return self._unavailable(call, str(exc))
        except _Unsettled as unsettled:
            return await self._settle(call, unsettled)

    async def look_ahead(
        self, requests: Sequence[CheckRequest], *, pause: Callable[[], Awaitable[None]] = _carry_on
    ) -> list[GateDecision]:
        """Judge many numbers of one campaign at one instant with a single fact query (a lead-list
        scrub): nothing is stored or counted. Every request must share its campaign and ``at``.
        ``pause`` is awaited after each number parsed and each judged: where a caller that shares the
        event loop hands it back (slicing.Slicer), so that a batch never holds it for long."""
        calls: list[_Call | GateDecision] = []
        for r in requests:
            calls.append(self._call(dataclasses.replace(r, keep=False, record=False)))
            await pause()
        valid = [c for c in calls if isinstance(c, _Call)]
        facts: dict[str, StoredFacts] = {}
        failure: Exception | None = None
        if valid:
            first = valid[0]
            try:
                async with asyncio.timeout(self.fact_timeout), connection(self.pool) as conn:
                    facts = await read_many_facts(
                        conn,
                        numbers=sorted({c.number.e164 for c in valid}),
                        campaign=first.campaign_name,
                        attempts=AttemptWindow.widest(self._attempts(c) for c in valid),
                        now=first.now,
                        abandon_windows={c.number.e164: (c.abandon_since, c.repeat_since) for c in valid},
                        pause=pause,
                    )
            except (StoreUnavailable, TimeoutError) as exc:
                failure = exc
        roaming: dict[str, RoamingFact] = {}
        if valid and failure is None:
            stored_campaign = next(iter(facts.values())).campaign if facts else None
            campaign = self._campaign(valid[0].campaign_name, stored_campaign)
            roaming = await self._roaming(
                valid, campaign, campaign.purpose if campaign else STRICTEST_PURPOSE
            )
        out = []
        for call in calls:
            if isinstance(call, GateDecision):
                out.append(dataclasses.replace(call, stored=False))
            elif failure is not None:
                out.append(self._unavailable(call, describe_failure(failure)))
            else:
                stored = facts[call.number.e164]
                campaign = self._campaign(call.campaign_name, stored.campaign)
                judged = self._judge(call, campaign, stored, roaming.get(call.number.e164))
                out.append(dataclasses.replace(judged, stored=False))
            await pause()
        return out

    def _call(self, request: CheckRequest) -> _Call | GateDecision:
        """The request with its number parsed and its rules chosen. Decided here, with no facts read:
        an emergency number (allowed), an unparsable number and an unreadable lead state (blocked)."""
        now = request.at or self.clock()
        campaign_name = request.campaign or self.default_campaign
        call_id = request.call_id or uuid.uuid4()
        channel = {"channel": request.channel}
        emergency = emergency_number(request.number, region=self.default_region, dial_prefix=self.dial_prefix)
        if emergency is not None:
            # Not an attempt of any campaign (recorded False): no cap counts it.
            facts = CallFacts(request.number, emergency, campaign_name, None, now)
            decision = evaluate(facts, None)
            return GateDecision(call_id, emergency, campaign_name, decision, "", now, False, extra=channel)
        number = self.parse(request.number)
        if isinstance(number, InvalidNumber):
            facts = CallFacts(request.number, number, campaign_name, None, now)
            return GateDecision(call_id, number, campaign_name, evaluate(facts, None), "", now, False)
        lead = parse_lead_state(request.lead_subdivision, number)
        if isinstance(lead, InvalidLeadState):
            # The state's rules cannot be chosen: judging without them is what a dropped state did.
            decision = Decision(Verdict.BLOCK, (check_number(number), check_lead_state(lead)))
            return GateDecision(call_id, number, campaign_name, decision, "", now, False, extra=channel)
        if lead != request.lead_subdivision:
            request = dataclasses.replace(request, lead_subdivision=lead)  # "FL" -> "US-FL", as packs say
        rules = self.rulebook.rules_for(number, lead_subdivision=request.lead_subdivision)
        return _Call(call_id, request, number, campaign_name, rules, now, *read_windows(rules, now))

    def _unavailable(self, call: _Call, cause: str) -> GateDecision:
        # No facts, no call. The decision carries the cause as evidence; the log hears of it once an outage.
        self.outage.failed(cause, blocked=True)
        decision = Decision(Verdict.BLOCK, (Reason("gate.unavailable", False, {"cause": cause}),))
        rules_version = call.rules.version
        return GateDecision(
            call.id, call.number, call.campaign_name, decision, rules_version, call.now, False, stored=False
        )

    async def _decide(self, call: _Call, deadline: float, announce: Announce | None) -> GateDecision:
        window = self._attempts(call)
        e164 = call.number.e164
        async with self._connection(deadline) as conn:
            stored = await _within(
                deadline,
                read_facts(
                    conn,
                    number=e164,
                    campaign=call.campaign_name,
                    attempts=window,
                    now=call.now,
                    **_abandon_windows(call),
                ),
            )
            campaign = self._campaign(call.campaign_name, stored.campaign)
            purpose = campaign.purpose if campaign else STRICTEST_PURPOSE
            settled, roaming = self._roaming_without_vendor(call, campaign, purpose, stored)
            if settled:  # no vendor to ask: finish on this connection
                return await self._finish(conn, call, campaign, purpose, stored, roaming, deadline, announce)
        # The HLR is asked with no connection held: a slow vendor must not drain the pool.
        asked = await _within(deadline, self._roaming([call], campaign, purpose))
        async with self._connection(deadline) as conn:
            # Read again: an opt-out or a revocation that arrived while the vendor answered must count.
            stored = await _within(
                deadline,
                read_facts(
                    conn,
                    number=e164,
                    campaign=call.campaign_name,
                    attempts=window,
                    now=call.now,
                    **_abandon_windows(call),
                ),
            )
            campaign = self._campaign(call.campaign_name, stored.campaign)
            purpose = campaign.purpose if campaign else STRICTEST_PURPOSE
            roaming = asked.get(e164)
            return await self._finish(conn, call, campaign, purpose, stored, roaming, deadline, announce)

    @asynccontextmanager
    async def _connection(self, deadline: float) -> AsyncIterator[Connection]:
        """A pooled connection acquired before ``deadline``. One that a failure or a deadline left
        mid-command is terminated, not released gracefully: its reset would wait out the command timeout."""
        try:
            # Our own deadline, not acquire(timeout=): on Python 3.11 asyncpg makes a task for that.
            async with asyncio.timeout_at(deadline):
                conn = await self.pool.acquire()
        except DATABASE_FAILURES as exc:
            raise _NoFacts(describe_failure(exc)) from exc
        finished = False
        try:
            yield conn
            finished = True
        finally:
            if not finished:
                # The pool lets go of a connection whose link died by itself: nothing left to end then.
                with contextlib.suppress(asyncpg.InterfaceError):
                    conn.terminate()
            await self.pool.release(conn)

    def _roaming_without_vendor(
        self, call: _Call, campaign: Campaign | None, purpose: Purpose, stored: StoredFacts
    ) -> tuple[bool, RoamingFact | None]:
        """(settled, fact): settled when no vendor call is needed — none asked for (fact None), no
        provider configured, or a fresh answer in the cache read with the other facts."""
        if not _asks_roaming(call, campaign, purpose):
            return True, None
        if self.roaming is None:
            return True, NO_PROVIDER
        cached = self.roaming.from_cache(stored.hlr, call.now) if stored.hlr is not None else None
        return cached is not None, cached

    async def _finish(
        self,
        conn: Connection,
        call: _Call,
        campaign: Campaign | None,
        purpose: Purpose,
        stored: StoredFacts,
        roaming: RoamingFact | None,
        deadline: float,
        announce: Announce | None = None,
    ) -> GateDecision:
        result: GateDecision | None = None
        # Read now: asyncpg hands a connection whose link dies back to its pool at once, and its
        # proxy then answers nothing, the backend's pid included, which _settle needs to end it.
        backend_pid = conn.get_server_pid()
        try:
            if call.request.record and caps_apply(call.rules, purpose, call.now):
                # A cap counts this call: decide under the number's lock, on facts read after taking it,
                # so two gateways cannot both take the last slot. Calls no cap counts skip the lock.
                async with conn.transaction():
                    stored = await _within(deadline, self._read_locked(conn, call))
                    result = self._judge(call, campaign, stored, roaming)
                    _announce(announce, result)
                    await self._insert(conn, result)
                return result
            result = self._judge(call, campaign, stored, roaming)
            if not call.request.keep:
                return dataclasses.replace(result, stored=False)
            _announce(announce, result)
            await self._insert(conn, result)
            return result
        except DATABASE_FAILURES as exc:
            if result is None:  # failed before a decision existed (the lock's rollback, say)
                raise _NoFacts(describe_failure(exc)) from exc
            raise _Unsettled(result, backend_pid) from exc

    async def _read_locked(self, conn: Connection, call: _Call) -> StoredFacts:
        e164 = call.number.e164
        await lock_number(conn, e164)
        return await read_facts(
            conn, number=e164, campaign=call.campaign_name, attempts=self._attempts(call), now=call.now,
            **_abandon_windows(call),
        )  # fmt: skip

    async def _settle(self, call: _Call, unsettled: _Unsettled) -> GateDecision:
        """The insert's answer was lost: the channel hears what the database holds. That backend is
        ended first (``pg_terminate_backend`` with a timeout waits for it, PostgreSQL 14+), so its
        transaction has committed or rolled back for good before we look."""
        cause = describe_failure(unsettled.__cause__ or unsettled)
        try:
            async with asyncio.timeout(self.fact_timeout), connection(self.pool) as conn:
                verdict = await stored_verdict(
                    conn,
                    unsettled.result.call_id,
                    end_backend=unsettled.backend_pid,
                    within=self.fact_timeout,
                )
        except (StoreUnavailable, TimeoutError) as exc:
            # Unknowable now: the channel is blocked; the row, if it landed, over-counts an attempt.
            log.error(
                "decision %s: the insert's outcome is unknown (%s; read-back: %s); the call is blocked",
                call.id, cause, describe_failure(exc),
            )  # fmt: skip
            return self._unavailable(call, f"decision not confirmed: {cause}")
        if verdict is None:
            return self._unavailable(call, f"decision not stored: {cause}")
        log.info("decision %s landed although its answer was lost (%s)", call.id, cause)
        return unsettled.result

    def _attempts(self, call: _Call) -> AttemptWindow | None:
        """The attempts a cap may count for this call (the shadow rules' caps too): those inside the
        longest cap's period, for the purposes a cap counts. None: no cap, nothing to read."""
        rules = [call.rules]
        if self.shadow_rulebook is not None:
            rules.append(
                self.shadow_rulebook.rules_for(call.number, lead_subdivision=call.request.lead_subdivision)
            )
        periods = [p for r in rules if (p := _longest_cap(r))]
        purposes = frozenset().union(*(counted_purposes(r) for r in rules))
        if not periods or not purposes:
            return None
        implicit = self._campaign(call.campaign_name, None)
        return AttemptWindow(
            call.now - max(periods), purposes, implicit.purpose if implicit else STRICTEST_PURPOSE
        )

    def _campaign(self, name: str, stored: Campaign | None) -> Campaign | None:
        if stored is None and name == self.default_campaign:
            # The default campaign exists implicitly until an administrator defines it.
            return Campaign(name, self.default_purpose)
        return stored

    async def _roaming(
        self, calls: list[_Call], campaign: Campaign | None, purpose: Purpose
    ) -> dict[str, RoamingFact]:
        """HLR answers for the calls whose rules or campaign ask, for possibly-mobile numbers only."""
        asked = [c.number.e164 for c in calls if _asks_roaming(c, campaign, purpose)]
        if not asked:
            return {}
        if self.roaming is None:
            return dict.fromkeys(asked, NO_PROVIDER)
        return await self.roaming.prefetch(asked)

    def _judge(
        self, call: _Call, campaign: Campaign | None, stored: StoredFacts, roaming: RoamingFact | None = None
    ) -> GateDecision:
        facts = CallFacts(
            raw_number=call.request.number,
            number=call.number,
            campaign_name=call.campaign_name,
            campaign=campaign,
            now=call.now,
            dnc_hits=stored.dnc_hits,
            consents=stored.consents,
            attempts=stored.attempts,
            registries=stored.registries,
            emergencies=stored.emergencies,
            lead_subdivision=call.request.lead_subdivision,
            roaming=roaming,
            campaign_answers=stored.campaign_answers(call.abandon_since, call.now),
            last_abandoned=stored.last_abandoned,
        )
        decision = evaluate(facts, call.rules)
        extra: dict[str, Any] = {"channel": call.request.channel}
        if self.shadow_rulebook is not None:
            extra.update(self._shadow(facts, decision))
        return GateDecision(
            call.id,
            call.number,
            call.campaign_name,
            decision,
            call.rules.version,
            call.now,
            call.request.record,
            campaign.purpose if campaign else STRICTEST_PURPOSE,
            extra=extra,
        )

    def _shadow(self, facts: CallFacts, enforced: Decision) -> dict[str, Any]:
        """Judge again by the candidate rules; report differences, never enforce them."""
        assert self.shadow_rulebook is not None and isinstance(facts.number, NumberFacts)
        rules = self.shadow_rulebook.rules_for(facts.number, lead_subdivision=facts.lead_subdivision)
        candidate = evaluate(facts, rules)
        if candidate.verdict == enforced.verdict and candidate.codes == enforced.codes:
            return {}
        self.shadow_differences += 1
        log.info(
            "shadow rules differ: enforced %s (%s), candidate %s (%s)",
            enforced.verdict,
            enforced.reason,
            candidate.verdict,
            candidate.reason,
        )
        return {
            "shadow": {
                "rules_version": rules.version,
                "verdict": str(candidate.verdict),
                "reason": candidate.reason,
                "codes": list(candidate.codes),
            }
        }

    def _row(self, result: GateDecision) -> DecisionRow:
        return DecisionRow(
            call_id=result.call_id,
            number=result.number_text,
            campaign=result.campaign,
            purpose=str(result.purpose),
            verdict=str(result.verdict),
            reason=result.decision.reason,
            body=result.to_json(),
            rules_version=result.rules_version,
            decided_at=result.decided_at,
            recorded=result.recorded,
            writer=self.writer,
        )

    async def _insert(self, conn: Connection, result: GateDecision) -> None:
        await insert_decision(conn, **self._row(result).fields())

    async def _store_invalid(self, result: GateDecision) -> GateDecision:
        """A decision made without facts (an unparsable number or lead state, an emergency number) stands
        whatever happens; it is stored when the database allows."""
        try:
            async with asyncio.timeout(self.fact_timeout), connection(self.pool) as conn:
                await self._insert(conn, result)
        except (StoreUnavailable, TimeoutError) as exc:
            self.outage.failed(describe_failure(exc))
            return dataclasses.replace(result, stored=False)
        return result


def _longest_cap(rules: EffectiveRules) -> timedelta | None:
    periods = [cap.period for layer in rules.layers for cap in layer.frequency_caps]
    return max(periods) if periods else None


def _abandon_windows(call: _Call) -> dict[str, datetime | None]:
    return {"abandon_since": call.abandon_since, "repeat_since": call.repeat_since}


def _asks_roaming(call: _Call, campaign: Campaign | None, purpose: Purpose) -> bool:
    """An HLR answer is needed: the rules or the campaign ask, and the number may be a mobile."""
    return call.number.possibly_mobile and roaming_required(call.rules, campaign, purpose)


def _announce(announce: Announce | None, result: GateDecision) -> None:
    """Tell ``announce`` of a decision about to be stored; its failure never stops the insert."""
    if announce is None:
        return
    try:
        announce(result)
    except Exception:
        log.exception("decision %s: announcing it failed; storing it all the same", result.call_id)


async def _within(deadline: float, step: Awaitable[T]) -> T:
    """A step of reading the facts: before ``deadline``, and any failure means no facts."""
    try:
        async with asyncio.timeout_at(deadline):
            return await step
    except TimeoutError as exc:
        raise _NoFacts("timeout reading facts") from exc
    except FACT_FAILURES as exc:
        raise _NoFacts(describe_failure(exc)) from exc
