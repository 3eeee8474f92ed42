"""FastAGI routes for an answered call: the recording notice with the opt-out armed, and consent by phone.

``AGI(agi://GATE:4573/announce,CALL_ID[,NUMBER,CAMPAIGN])`` from ``Dial(...,U(dialguard-answer^...))``
(the number and campaign serve when the database is away);
``AGI(agi://GATE:4573/consent,CALL_ID)`` from the ``dialguard-consent`` context.

The order that makes an opt-out safe: the key press is stored (PostgreSQL, or the fsynced journal when
the database is away) *before* the confirmation plays. What the law says about recording is asked of
the policy; these routes only drive the channel and keep the evidence.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from dialguard.asterisk.agi_server import AgiSession, ChannelHungUp, PlaybackResult
from dialguard.clock import Clock
from dialguard.journal import STORE_ERRORS, OptOutJournal
from dialguard.language import language_for
from dialguard.numbers import NumberFacts, parse_number
from dialguard.policy.model import Purpose
from dialguard.policy.recording import recording_allowed
from dialguard.policy.rulebook import RuleBook
from dialguard.store.calls import CallRecord, OptOut, call_by_id, record_event, store_optout
from dialguard.store.consent import grant_consent

log = logging.getLogger(__name__)

PLAY_WITHIN = 120.0  # seconds a prompt may take to play before the session is judged hung
FALLBACK_LANGUAGE = "en"
CONSENT_KEY = "1"
CONSENT_WAIT_MS = 6000


@dataclass(frozen=True, slots=True)
class CallContext:
    """What the routes need to know about the answered call."""

    record: CallRecord
    number: NumberFacts
    language: str
    optout_digit: str
    settings: dict[str, Any]
    purpose: Purpose


class CallRoutes:
    """Shared by ``announce`` and ``consent``: the call's decision, language, prompts and evidence."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        journal: OptOutJournal,
        rulebook: RuleBook,
        clock: Clock,
        optout_digit: str = "9",
        listen_after_ms: int = 5000,
        sound_prefix: str = "dialguard",
        db_within: float = 2.0,
    ) -> None:
        self.pool = pool
        self.journal = journal
        self.rulebook = rulebook
        self.clock = clock
        self.optout_digit = optout_digit
        self.listen_after_ms = listen_after_ms
        self.sound_prefix = sound_prefix
        self.db_within = db_within

    # ------------------------------------------------------------ shared steps

    async def context(self, session: AgiSession) -> CallContext | None:
        args = session.request.args
        try:
            call_id = uuid.UUID(args[0].strip()) if args else None
        except ValueError:
            call_id = None
        if call_id is None:
            await session.verbose(f"dialguard: {session.request.route} needs the call id, got {args!r}")
            return None
        try:
            async with self.pool.acquire(timeout=self.db_within) as conn:
                record = await call_by_id(conn, call_id)
            campaign = record.known_campaign if record else None
        except STORE_ERRORS as exc:
            # The database is away: the dialplan passes the number and campaign along with the call id,
            # so the notice still plays and an opt-out still reaches the journal.
            record, campaign = self._from_arguments(call_id, args), None
            log.warning("call %s: database away (%s); using the dialplan's arguments", call_id, exc)
        if record is None:
            await session.verbose(f"dialguard: no decision for call {call_id}; the opt-out cannot be stored")
            return None
        number = parse_number(record.number)
        if not isinstance(number, NumberFacts):
            await session.verbose(f"dialguard: call {call_id} has no valid number ({record.number!r})")
            return None
        settings = dict(campaign.settings) if campaign else {}
        language = str(settings.get("language") or language_for(number.region))
        digit = str(settings.get("optout_digit") or self.optout_digit)
        purpose = campaign.purpose if campaign else Purpose.MARKETING  # an unknown campaign: the strictest
        return CallContext(record, number, language, digit, settings, purpose)

    @staticmethod
    def _from_arguments(call_id: uuid.UUID, args: tuple[str, ...]) -> CallRecord | None:
        """``announce,CALL_ID,NUMBER[,CAMPAIGN]``: what the dialplan knows when the database does not."""
        number = args[1].strip() if len(args) > 1 else ""
        if not number:
            return None
        campaign = args[2].strip() if len(args) > 2 and args[2].strip() else "unknown"
        return CallRecord(call_id, number, campaign)

    def prompt(self, language: str, name: str) -> str:
        return f"{self.sound_prefix}/{language}/dialguard-{name}"

    async def play(
        self, session: AgiSession, ctx: CallContext, name: str, escape: str = ""
    ) -> tuple[PlaybackResult, str]:
        """Play a prompt in the call's language; a missing file falls back to English, logged."""
        result = await session.stream_file(self.prompt(ctx.language, name), escape, reply_within=PLAY_WITHIN)
        if result.failed and result.endpos == 0 and ctx.language != FALLBACK_LANGUAGE:
            log.warning("prompt %s missing in %s; playing English", name, ctx.language)
            fallback = self.prompt(FALLBACK_LANGUAGE, name)
            return await session.stream_file(fallback, escape, reply_within=PLAY_WITHIN), FALLBACK_LANGUAGE
        return result, ctx.language

    async def event(self, ctx: CallContext, kind: str, detail: dict[str, Any] | None = None) -> None:
        """Evidence is best effort: a call event lost to a database outage never stops the call."""
        try:
            async with self.pool.acquire(timeout=self.db_within) as conn:
                await record_event(conn, ctx.record.call_id, kind, detail, at=self.clock())
        except STORE_ERRORS as exc:
            log.warning("call %s: event %s not stored (%s)", ctx.record.call_id, kind, exc)

    async def opt_out(self, ctx: CallContext, digit: str, at: datetime) -> str:
        """Store the opt-out durably; returns where it went ("database" or "journal")."""
        optout = OptOut(uuid.uuid4(), ctx.record.number, ctx.record.call_id, ctx.record.campaign, digit, at)
        try:
            async with self.pool.acquire(timeout=self.db_within) as conn:
                await store_optout(conn, optout, via="database", stored_at=self.clock())
            return "database"
        except STORE_ERRORS as exc:
            log.warning("call %s: database away (%s); opt-out journaled", ctx.record.call_id, exc)
            await self.journal.append(optout)
            return "journal"

    async def listen(self, session: AgiSession, ctx: CallContext, wait_ms: int) -> str | None:
        """Wait up to ``wait_ms`` for the opt-out key; other keys are not armed: kept as evidence, ignored."""
        deadline = time.monotonic() + wait_ms / 1000
        while (left := int((deadline - time.monotonic()) * 1000)) > 0:
            pressed = await session.wait_for_digit(left)
            if pressed.failed or pressed.digit is None:
                return None
            if pressed.digit == ctx.optout_digit:
                return pressed.digit
            await self.event(ctx, "digit.ignored", {"digit": pressed.digit})
        return None


class AnnounceRoute:
    """``announce``: the notice, the opt-out armed during it and after, then DIALGUARD_RECORD."""

    def __init__(self, *, calls: CallRoutes) -> None:
        self.calls = calls

    async def __call__(self, session: AgiSession) -> None:
        ctx = await self.calls.context(session)
        if ctx is None:
            await session.set_variable("DIALGUARD_RECORD", "NO")
            return
        await session.set_variable("DIALGUARD_LANG", ctx.language)
        pressed: str | None = None
        notice_played = False
        try:
            result, language = await self.calls.play(session, ctx, "notice", ctx.optout_digit)
            notice_played = not result.failed
            kind = "notice.played" if notice_played else "notice.failed"
            await self.calls.event(ctx, kind, {"language": language, "endpos": result.endpos})
            if not notice_played and result.endpos == 0:
                # Neither the notice nor its fallback exists: still offer the opt-out on its own.
                result, _ = await self.calls.play(session, ctx, "optout-offer", ctx.optout_digit)
            pressed = result.digit if result.digit == ctx.optout_digit else None
            if pressed is None and not result.failed:
                pressed = await self.calls.listen(session, ctx, self.calls.listen_after_ms)
        except ChannelHungUp:
            await self.calls.event(ctx, "hangup", {"during": "notice"})
        if pressed is not None:
            via = await self.calls.opt_out(ctx, pressed, self.calls.clock())
            await self.calls.event(ctx, "optout", {"digit": pressed, "stored_in": via})
            await session.set_variable("DIALGUARD_OPTOUT", "1")
            await session.set_variable("DIALGUARD_RECORD", "NO")
            try:
                await self.calls.play(session, ctx, "optout-confirmed")  # only now: the opt-out is durable
            except ChannelHungUp:
                await self.calls.event(ctx, "hangup", {"during": "confirmation"})
            return
        rules = self.calls.rulebook.rules_for(ctx.number)
        answer = recording_allowed(rules, notice_played=notice_played, objected=False)
        await self.calls.event(ctx, "recording", {"allowed": answer.allowed, **answer.detail})
        await session.set_variable("DIALGUARD_RECORD", "YES" if answer.allowed else "NO")


def _consent_outcome(pressed: PlaybackResult, on_key: str, on_silence: str, other: str) -> str:
    """What one prompt of the consent question came to; -1 is a channel gone (or a prompt missing)."""
    if pressed.failed:
        return "hung up"
    if pressed.digit == CONSENT_KEY:
        return on_key
    return on_silence if pressed.digit is None else f"{other} {pressed.digit}"


class ConsentRoute:
    """``consent``: "press 1 to agree", then "press 1 again to confirm"; only both presses make consent."""

    def __init__(self, *, calls: CallRoutes) -> None:
        self.calls = calls

    async def __call__(self, session: AgiSession) -> None:
        ctx = await self.calls.context(session)
        if ctx is None:
            await session.set_variable("DIALGUARD_CONSENT", "NO")
            return
        outcome = "refused"
        try:
            first = await session.get_option(
                self.calls.prompt(ctx.language, "consent-ask"),
                "0123456789",
                CONSENT_WAIT_MS,
                reply_within=PLAY_WITHIN,
            )
            if first.digit == CONSENT_KEY:
                second = await session.get_option(
                    self.calls.prompt(ctx.language, "consent-confirm"),
                    "0123456789",
                    CONSENT_WAIT_MS,
                    reply_within=PLAY_WITHIN,
                )
                outcome = _consent_outcome(second, "granted", "not confirmed", "second key")
            else:
                outcome = _consent_outcome(first, "?", "no answer", "key")
        except ChannelHungUp:
            outcome = "hung up"
        if outcome != "granted":
            await self.calls.event(ctx, "consent.refused", {"outcome": outcome})
            await session.set_variable("DIALGUARD_CONSENT", "NO")
            return
        evidence = {
            "call_id": str(ctx.record.call_id),
            "prompt": str(ctx.settings.get("consent_text") or "press 1 to agree, then 1 again to confirm"),
            "language": ctx.language,
            "presses": [CONSENT_KEY, CONSENT_KEY],
            "recording": await session.get_variable("MIXMONITOR_FILENAME"),
        }
        async with self.calls.pool.acquire(timeout=self.calls.db_within) as conn:
            consent_id = await grant_consent(
                conn,
                number=ctx.record.number,
                kind="verbal",
                source="call",
                at=self.calls.clock(),
                purpose=ctx.purpose,
                evidence=evidence,
                actor="agi",
            )
        await self.calls.event(ctx, "consent.granted", {"consent_id": consent_id})
        await session.set_variable("DIALGUARD_CONSENT", "YES")
