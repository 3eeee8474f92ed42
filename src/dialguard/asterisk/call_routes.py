"""FastAGI routes for an answered call: the recording notice with the opt-out armed, and consent by phone.

``AGI(agi://GATE:4573/announce,CALL_ID[,NUMBER,CAMPAIGN])`` from ``Dial(...,U(dialguard-answer^...))``
(the number and campaign serve when the database is away);
``AGI(agi://GATE:4573/consent,CALL_ID)`` from the ``dialguard-consent`` context.

``announce`` admits only a call that an ALLOW decision stands behind: the call id must name a stored
ALLOW for the same number, not older than ``calls.decision_max_age``, and not announced before. Anything
else is refused (``DIALGUARD_ANNOUNCE=REFUSED``, the reason in ``DIALGUARD_REFUSED_REASON``, a call
event) and the dialplan ends the call. With the database away nothing can be checked: the notice plays
on the dialplan's arguments, so that an opt-out still reaches the journal.

The order that makes an opt-out safe: the key press is kept (PostgreSQL, or the fsynced journal) *before*
the confirmation plays, by one owner (:class:`~dialguard.optouts.OptOutKeeper`) that says which it was;
when neither could be written the call still ends and the session ends with AGISTATUS=FAILURE.
What the law says about recording is asked of the policy; these routes only drive the channel and
keep the evidence, which says exactly what was heard.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dialguard.asterisk.agi_server import AgiSession, ChannelHungUp, PlaybackResult
from dialguard.clock import Clock
from dialguard.language import language_for
from dialguard.numbers import NumberFacts, parse_number
from dialguard.optouts import Kept, OptOutKeeper
from dialguard.policy.campaign_settings import usable
from dialguard.policy.engine import STRICTEST_PURPOSE
from dialguard.policy.model import Purpose
from dialguard.policy.recording import recording_allowed
from dialguard.policy.rulebook import RuleBook
from dialguard.store.calls import CallRecord, OptOut, call_by_id, claim_announce, record_event
from dialguard.store.consent import grant_consent
from dialguard.store.db import Pool, StoreUnavailable, connection

log = logging.getLogger(__name__)

PLAY_WITHIN = 120.0  # seconds a prompt may take to play before the session is judged hung
FALLBACK_LANGUAGE = "en"
CONSENT_KEY = "1"
CONSENT_WAIT_MS = 6000
SOUND_FORMAT = "wav"  # what asterisk-conf/sounds ships, and what a prompt's presence is checked by


@dataclass(frozen=True, slots=True)
class CallContext:
    """What the routes need to know about the answered call."""

    record: CallRecord
    number: NumberFacts
    language: str
    optout_digit: str
    settings: dict[str, Any]
    purpose: Purpose
    verified: bool = True  # False: the database was away, the dialplan's arguments were taken on trust


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the gate will not let an answered call go on: a short code and the words for the log."""

    code: str
    why: str
    call_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt as the callee heard it: which file, in which language, and what it said."""

    name: str
    language: str
    file: str  # as Asterisk was asked to play it (no extension)
    text: str | None = None  # the words, from the .txt beside the audio
    sha256: str | None = None  # of the audio file, when the gateway can read the prompts

    def as_detail(self) -> dict[str, Any]:
        return {"prompt": self.name, "language": self.language, "file": self.file,
                "text": self.text, "sha256": self.sha256}  # fmt: skip


class CallRoutes:
    """Shared by ``announce`` and ``consent``: the call's decision, language, prompts and evidence."""

    def __init__(
        self,
        *,
        pool: Pool,
        keeper: OptOutKeeper,
        rulebook: RuleBook,
        clock: Clock,
        optout_digit: str = "9",
        listen_after_ms: int = 5000,
        sound_prefix: str = "dialguard",
        sounds_dir: Path | None = None,
        decision_max_age: float = 600.0,
        db_within: float = 2.0,
    ) -> None:
        self.pool = pool
        self.keeper = keeper
        self.rulebook = rulebook
        self.clock = clock
        self.optout_digit = optout_digit
        self.listen_after_ms = listen_after_ms
        self.sound_prefix = sound_prefix
        self.sounds_dir = sounds_dir  # the gateway's copy of the prompts, for the evidence's text and hash
        self.decision_max_age = timedelta(seconds=decision_max_age)
        self.db_within = db_within

    # ------------------------------------------------------------ admission

    async def admit(self, session: AgiSession, *, claim: bool, optout: bool = False) -> CallContext | Refusal:
        """The call's context, or why it must not go on. ``claim``: this answer uses up the call id.
        ``optout``: the callee asked to stop; that is honoured whatever the decision's age or verdict,
        and from the dialplan's arguments when no decision has the call id."""
        args = session.request.args
        try:
            call_id = uuid.UUID(args[0].strip()) if args and args[0].strip() else None
        except ValueError:
            return Refusal("call_id.invalid", f"{args[0]!r} is not a call id")
        if call_id is None:
            return Refusal("call_id.missing", "no call id: no decision stands behind this call")
        given = _argument_number(args)
        try:
            async with connection(self.pool, within=self.db_within) as conn:
                record = await call_by_id(conn, call_id)
                if optout:
                    record = record or self._from_arguments(call_id, args)
                    if record is None:
                        return Refusal(
                            "call_id.unknown", "no decision has this call id, no number given", call_id
                        )
                    return self._context(record, verified=True)
                refusal = self._refusal(call_id, record, given)
                if refusal is None and claim and not await claim_announce(conn, call_id, at=self.clock()):
                    refusal = Refusal("call_id.used", "this call id was announced before", call_id)
        except StoreUnavailable as exc:
            # The database is away: the dialplan passes the number and campaign along with the call id,
            # so the notice still plays and an opt-out still reaches the journal. Nothing can be verified.
            log.warning("call %s: database away (%s); using the dialplan's arguments", call_id, exc)
            record, refusal = self._from_arguments(call_id, args), None
            if record is None:
                return Refusal("call_id.unverified", "database away and no number given", call_id)
            return self._context(record, verified=False)
        if refusal is not None:
            return refusal
        assert record is not None
        return self._context(record, verified=True)

    def _refusal(self, call_id: uuid.UUID, record: CallRecord | None, given: str | None) -> Refusal | None:
        if record is None:
            return Refusal("call_id.unknown", "no decision has this call id", call_id)
        if record.verdict != "ALLOW":
            return Refusal("decision.block", f"the decision was {record.verdict} ({record.reason})", call_id)
        if record.decided_at is not None and self.clock() - record.decided_at > self.decision_max_age:
            age = int((self.clock() - record.decided_at).total_seconds())
            return Refusal("decision.stale", f"decided {age} s ago (calls.decision_max_age)", call_id)
        if given is not None and given != record.number:
            return Refusal("number.mismatch", "the call's number is not the decision's", call_id)
        return None

    def _context(self, record: CallRecord, *, verified: bool) -> CallContext | Refusal:
        number = parse_number(record.number)
        if not isinstance(number, NumberFacts):
            return Refusal("number.invalid", f"{record.number!r} is not a valid number", record.call_id)
        campaign = record.known_campaign
        settings = dict(campaign.settings) if campaign else {}
        language = str(usable(settings, "language") or language_for(number.region))
        digit = str(usable(settings, "optout_digit") or self.optout_digit)
        purpose = campaign.purpose if campaign else STRICTEST_PURPOSE  # an unknown campaign: the strictest
        return CallContext(record, number, language, digit, settings, purpose, verified)

    @staticmethod
    def _from_arguments(call_id: uuid.UUID, args: tuple[str, ...]) -> CallRecord | None:
        """``announce,CALL_ID,NUMBER[,CAMPAIGN]``: what the dialplan knows when the database does not."""
        number = _argument_number(args)
        if number is None:
            return None
        campaign = args[2].strip() if len(args) > 2 and args[2].strip() else "unknown"
        return CallRecord(call_id, number, campaign)

    async def refuse(self, session: AgiSession, refusal: Refusal, variable: str) -> None:
        log.warning(
            "FastAGI %s %s refused: %s (%s)",
            session.request.route,
            refusal.call_id,
            refusal.code,
            refusal.why,
        )
        if refusal.call_id is not None:
            detail = {"route": session.request.route, "code": refusal.code, "why": refusal.why}
            await self.event(refusal.call_id, "answer.refused", detail)
        await session.set_variable("DIALGUARD_REFUSED_REASON", refusal.code)
        await session.set_variable(variable, "REFUSED" if variable == "DIALGUARD_ANNOUNCE" else "NO")

    # ------------------------------------------------------------ prompts

    def prompt_file(self, language: str, name: str) -> str:
        return f"{self.sound_prefix}/{language}/dialguard-{name}"

    def prompt(self, language: str, name: str) -> Prompt:
        """The prompt's evidence: its words and the hash of its audio, from the gateway's copy."""
        file = self.prompt_file(language, name)
        text = sha256 = None
        if self.sounds_dir is not None:
            base = self.sounds_dir / language / f"dialguard-{name}"
            try:
                text = base.with_suffix(".txt").read_text(encoding="utf-8").strip()
                sha256 = hashlib.sha256(base.with_suffix(f".{SOUND_FORMAT}").read_bytes()).hexdigest()
            except OSError as exc:
                log.warning("prompt %s: the gateway's copy is not readable (%s)", base, exc.strerror)
        return Prompt(name, language, file, text, sha256)

    async def exists(self, session: AgiSession, file: str) -> bool:
        """Ask Asterisk whether a prompt file is there, before playing it: a STREAM FILE of a missing
        file ends the whole AGI step with AGISTATUS=FAILURE, fallback or not."""
        where = file if file.startswith("/") else f"${{ASTDATADIR}}/sounds/{file}"
        value = await session.get_full_variable(f"${{STAT(e,{where}.{SOUND_FORMAT})}}")
        return value == "1"

    async def choose(self, session: AgiSession, ctx: CallContext, name: str) -> Prompt | None:
        """The prompt in the call's language, else in English, else None (logged)."""
        for language in dict.fromkeys((ctx.language, FALLBACK_LANGUAGE)):
            if await self.exists(session, self.prompt_file(language, name)):
                if language != ctx.language:
                    log.warning("prompt %s missing in %s; playing English", name, ctx.language)
                return self.prompt(language, name)
        log.error("prompt %s is missing in %s and in English: copy asterisk-conf/sounds", name, ctx.language)
        return None

    async def play(self, session: AgiSession, prompt: Prompt, escape: str = "") -> PlaybackResult:
        return await session.stream_file(prompt.file, escape, reply_within=PLAY_WITHIN)

    # ------------------------------------------------------------ evidence and the opt-out

    async def event(self, call_id: uuid.UUID, kind: str, detail: dict[str, Any] | None = None) -> None:
        """Evidence is best effort: a call event lost to a database outage never stops the call."""
        try:
            async with connection(self.pool, within=self.db_within) as conn:
                await record_event(conn, call_id, kind, detail, at=self.clock())
        except StoreUnavailable as exc:
            log.warning("call %s: event %s not stored (%s)", call_id, kind, exc)

    async def opt_out(self, session: AgiSession, ctx: CallContext, digit: str, at: datetime) -> None:
        """Keep the opt-out, then end the call: confirmed only when it was kept."""
        optout = OptOut(uuid.uuid4(), ctx.record.number, ctx.record.call_id, ctx.record.campaign, digit, at)
        kept = await self.keeper.keep(optout)
        await self.event(ctx.record.call_id, "optout", {"digit": digit, "kept": str(kept)})
        await session.set_variable("DIALGUARD_OPTOUT", "1")  # the call ends whatever happened to the write
        await session.set_variable("DIALGUARD_RECORD", "NO")
        if kept is Kept.LOST:
            session.fail("the opt-out could not be stored nor journaled")
            return
        confirmation = await self.choose(session, ctx, "optout-confirmed")
        if confirmation is not None:
            await self.play(session, confirmation)  # only now: the opt-out is durable

    async def listen(self, session: AgiSession, ctx: CallContext, wait_ms: int) -> str | None:
        """Wait up to ``wait_ms`` for the opt-out key; other keys are not armed: kept as evidence, ignored."""
        deadline = time.monotonic() + wait_ms / 1000
        while (left := int((deadline - time.monotonic()) * 1000)) > 0:
            pressed = await session.wait_for_digit(left)
            if pressed.failed or pressed.digit is None:
                return None
            if pressed.digit == ctx.optout_digit:
                return pressed.digit
            await self.event(ctx.record.call_id, "digit.ignored", {"digit": pressed.digit})
        return None


def _argument_number(args: tuple[str, ...]) -> str | None:
    """The dialplan's NUMBER argument in E.164, or None when it gave none (or nothing parseable)."""
    raw = args[1].strip() if len(args) > 1 else ""
    number = parse_number(raw) if raw else None
    return number.e164 if isinstance(number, NumberFacts) else None


class AnnounceRoute:
    """``announce``: the notice, the opt-out armed during it and after, then DIALGUARD_RECORD."""

    def __init__(self, *, calls: CallRoutes) -> None:
        self.calls = calls

    async def __call__(self, session: AgiSession) -> None:
        calls = self.calls
        ctx = await calls.admit(session, claim=True)
        if isinstance(ctx, Refusal):
            await calls.refuse(session, ctx, "DIALGUARD_ANNOUNCE")
            await session.set_variable("DIALGUARD_RECORD", "NO")
            return
        call_id = ctx.record.call_id
        await session.set_variable("DIALGUARD_LANG", ctx.language)
        pressed: str | None = None
        notice_played = False
        try:
            notice = await calls.choose(session, ctx, "notice")
            offer = notice or await calls.choose(session, ctx, "optout-offer")  # no notice: the offer alone
            result: PlaybackResult | None = None
            if offer is not None:
                result = await calls.play(session, offer, ctx.optout_digit)
                pressed = result.digit if result.digit == ctx.optout_digit else None
                notice_played = notice is not None and not result.failed and pressed is None
                kind = _notice_event(notice is not None, pressed, result)
                detail = {**offer.as_detail(), "endpos": result.endpos, "digit": pressed}
                await calls.event(call_id, kind, detail)
            else:
                await calls.event(call_id, "notice.missing", {"language": ctx.language})
            if pressed is None and (result is None or not result.failed):
                pressed = await calls.listen(session, ctx, calls.listen_after_ms)
        except ChannelHungUp:
            await calls.event(call_id, "hangup", {"during": "notice"})
        if pressed is not None:
            try:
                await calls.opt_out(session, ctx, pressed, calls.clock())
            except ChannelHungUp:
                await calls.event(call_id, "hangup", {"during": "confirmation"})
            return
        rules = calls.rulebook.rules_for(ctx.number)
        answer = recording_allowed(rules, notice_played=notice_played, objected=False)
        await calls.event(call_id, "recording", {"allowed": answer.allowed, **answer.detail})
        await session.set_variable("DIALGUARD_RECORD", "YES" if answer.allowed else "NO")
        await session.set_variable("DIALGUARD_ANNOUNCE", "OK")


class OptOutRoute:
    """``optout``: the callee pressed the opt-out key during the call (an agent_first call's
    features.conf key): the opt-out is kept (database, or the journal), then DIALGUARD_OPTOUT=1."""

    def __init__(self, *, calls: CallRoutes) -> None:
        self.calls = calls

    async def __call__(self, session: AgiSession) -> None:
        ctx = await self.calls.admit(session, claim=False, optout=True)
        if isinstance(ctx, Refusal):
            await self.calls.refuse(session, ctx, "DIALGUARD_OPTOUT")
            return
        try:
            await self.calls.opt_out(session, ctx, ctx.optout_digit, self.calls.clock())
        except ChannelHungUp:
            await self.calls.event(ctx.record.call_id, "hangup", {"during": "confirmation"})


def _notice_event(had_notice: bool, pressed: str | None, result: PlaybackResult) -> str:
    """What the evidence says of the notice: played in full, cut short by the opt-out key, failed
    (the channel went), or missing (only the opt-out offer could play)."""
    if not had_notice:
        return "notice.missing"
    if pressed is not None:
        return "notice.interrupted"
    return "notice.failed" if result.failed else "notice.played"


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
        calls = self.calls
        ctx = await calls.admit(session, claim=False)
        if isinstance(ctx, Refusal):
            await calls.refuse(session, ctx, "DIALGUARD_CONSENT")
            return
        call_id = ctx.record.call_id
        outcome = "refused"
        heard: list[Prompt] = []
        try:
            ask = await calls.choose(session, ctx, "consent-ask")
            confirm = await calls.choose(session, ctx, "consent-confirm")
            if ask is None or confirm is None:
                outcome = "prompts missing"
            else:
                heard.append(ask)
                first = await session.get_option(
                    ask.file, "0123456789", CONSENT_WAIT_MS, reply_within=PLAY_WITHIN
                )
                if first.digit == CONSENT_KEY:
                    heard.append(confirm)
                    second = await session.get_option(
                        confirm.file, "0123456789", CONSENT_WAIT_MS, reply_within=PLAY_WITHIN
                    )
                    outcome = _consent_outcome(second, "granted", "not confirmed", "second key")
                else:
                    outcome = _consent_outcome(first, "?", "no answer", "key")
        except ChannelHungUp:
            outcome = "hung up"
        prompts = [p.as_detail() for p in heard]
        if outcome != "granted" or not ctx.verified:
            # Consent is never taken on the dialplan's word alone: with the database away, no grant.
            outcome = outcome if ctx.verified else f"{outcome}; database away, not recorded"
            await calls.event(call_id, "consent.refused", {"outcome": outcome, "prompts": prompts})
            await session.set_variable("DIALGUARD_CONSENT", "NO")
            return
        evidence = {
            "call_id": str(call_id),
            "prompts": prompts,  # exactly what was played: file, language, words and the audio's hash
            "presses": [CONSENT_KEY, CONSENT_KEY],
            "recording": await session.get_variable("MIXMONITOR_FILENAME"),
        }
        try:
            async with connection(calls.pool, within=calls.db_within) as conn:
                consent_id = await grant_consent(
                    conn, number=ctx.record.number, kind="verbal", source="call", at=calls.clock(),
                    purpose=ctx.purpose, evidence=evidence, actor="agi",
                )  # fmt: skip
        except StoreUnavailable as exc:
            log.warning("call %s: consent given but not stored (%s)", call_id, exc)
            await calls.event(
                call_id, "consent.refused", {"outcome": "granted; not stored", "prompts": prompts}
            )
            await session.set_variable("DIALGUARD_CONSENT", "NO")
            return
        await calls.event(call_id, "consent.granted", {"consent_id": consent_id, "prompts": prompts})
        await session.set_variable("DIALGUARD_CONSENT", "YES")
