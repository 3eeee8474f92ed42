"""A dialer's call placed through the gate: checked as the dialplan's are, then originated over AMI, once.

The order is what keeps a consumer from being called when they must not be, or twice:
1. an emergency or short service number is refused outright (a dialer never originates one);
2. the request's key is claimed in ``originations`` (per client): a retry finds the first answer
   there and never reaches AMI again; a key still being worked on answers ``in progress``;
3. with the AMI link down, or the campaign over its pace, nothing is judged, counted or sent, and
   the claim is given back so that the client may retry with the same key;
4. the check, recorded as an attempt, with the call id promised in step 2;
5. only on ALLOW, one ``Originate`` (Async). Its answer lost (the link dropped, the deadline passed)
   is ``unknown``: never sent again; the call's events will tell what happened.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dialguard.asterisk.agi_protocol import mset_escape
from dialguard.asterisk.ami import AmiActionFailed, AmiClient, AmiOutcomeUnknown, AmiUnavailable
from dialguard.asterisk.ami_calls import Step
from dialguard.clock import Clock
from dialguard.gate import CheckRequest, Gate, GateDecision
from dialguard.numbers import NumberFacts, emergency_number
from dialguard.pacing import Pacer
from dialguard.policy.abandon import governing
from dialguard.policy.answer_path import answer_path
from dialguard.policy.campaign_settings import usable
from dialguard.policy.model import Verdict
from dialguard.policy.rulebook import in_force
from dialguard.store import originations
from dialguard.store.campaigns import get_campaign
from dialguard.store.db import Pool, connection
from dialguard.timeline import CallTimeline

log = logging.getLogger(__name__)

LIVE = ("originated", "unknown")  # statuses of a call that may be ringing: it holds its place in the pace


@dataclass(frozen=True, slots=True)
class CallRequest:
    number: str
    campaign: str | None = None
    lead_state: str | None = None
    variables: dict[str, str] = field(default_factory=dict)

    def fingerprint(self) -> bytes:
        """What makes a retry the same request: the same key with another body is a client's bug."""
        text = json.dumps(
            [self.number, self.campaign, self.lead_state, sorted(self.variables.items())],
            separators=(",", ":"),
        )
        return hashlib.sha256(text.encode()).digest()


@dataclass(frozen=True, slots=True)
class Placed:
    """The answer to give: an HTTP status and its JSON, kept for a retry with the same key."""

    status: int
    body: dict[str, Any]
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class OriginateSettings:
    channel: str  # "PJSIP/{e164}@trunk"
    context: str
    ring_seconds: int
    caller_id: str = ""
    sound_prefix: str = "dialguard"  # calls.sound_prefix: where the prompts are under Asterisk's sounds


class Originator:
    def __init__(
        self,
        *,
        gate: Gate,
        pool: Pool,
        ami: AmiClient | None,
        timeline: CallTimeline | None,
        pacer: Pacer,
        clock: Clock,
        settings: OriginateSettings,
    ) -> None:
        self.gate = gate
        self.pool = pool
        self.ami = ami
        self.timeline = timeline
        self.pacer = pacer
        self.clock = clock
        self.settings = settings

    async def place(self, request: CallRequest, *, caller: str, key: str) -> Placed:
        emergency = emergency_number(
            request.number, region=self.gate.default_region, dial_prefix=self.gate.dial_prefix
        )
        if emergency is not None:
            return _refusal(
                422,
                "number.emergency",
                f"{emergency.digits} is an emergency or short service number ({emergency.service}): "
                "a dialer never originates one",
            )
        campaign_name = request.campaign or self.gate.default_campaign
        call_id = uuid.uuid4()
        now = self.clock()
        async with connection(self.pool) as conn:
            earlier = await originations.claim(
                conn, caller=caller, key=key, call_id=call_id, fingerprint=request.fingerprint(),
                number=request.number, campaign=campaign_name, at=now,
            )  # fmt: skip
            campaign = await get_campaign(conn, campaign_name) if earlier is None else None
        if earlier is not None:
            return _replay(earlier, request.fingerprint())
        settings = campaign.settings if campaign else {}
        refusal = self._cannot_send(campaign_name, call_id, settings)
        if refusal is not None:
            async with connection(self.pool) as conn:
                await originations.give_back(conn, caller=caller, key=key)
            return refusal
        placed = None
        try:
            placed = await self._check_and_send(
                request, campaign_name, call_id, settings, caller=caller, key=key
            )
        finally:
            if placed is None or placed.body.get("status") not in LIVE:
                self.pacer.release(call_id)  # never rang: its place in the pace is free at once
        return placed

    def _cannot_send(self, campaign: str, call_id: uuid.UUID, settings: Mapping[str, Any]) -> Placed | None:
        if self.ami is None:
            return _refusal(
                503, "ami.not_configured", "no AMI link is configured (ami.secret): nothing was sent"
            )
        if not self.ami.is_up:
            status = self.ami.status
            return _refusal(
                503, "ami.unavailable", f"the AMI link is {status.state} ({status.error}): nothing was sent"
            )
        wait = self.pacer.admit(
            campaign,
            call_id,
            max_concurrent=usable(settings, "max_concurrent_calls"),
            per_second=usable(settings, "calls_per_second"),
        )
        if wait is not None:
            message = f"campaign {campaign} is at its pace: nothing was sent"
            details = {"live_calls": self.pacer.live(campaign)}
            body = {"error_id": "campaign.paced", "message": message, "details": details}
            return Placed(429, body, retry_after=wait)
        return None

    async def _check_and_send(
        self,
        request: CallRequest,
        campaign: str,
        call_id: uuid.UUID,
        settings: Mapping[str, Any],
        *,
        caller: str,
        key: str,
    ) -> Placed:
        result = await self.gate.check(
            CheckRequest(
                number=request.number, campaign=campaign, record=True, lead_subdivision=request.lead_state,
                channel=f"http:{caller}", call_id=call_id,
            )
        )  # fmt: skip
        decision = result.to_json()
        if result.verdict is not Verdict.ALLOW or not isinstance(result.number, NumberFacts):
            blocked = {"call_id": str(call_id), "decision": decision, "status": "blocked"}
            return await self._settle(caller, key, "blocked", Placed(403, blocked))
        assert self.ami is not None  # _cannot_send saw it
        headers = self._originate_headers(result, request.variables, settings)
        if self.timeline is not None:
            self.timeline.expect(call_id)
        try:
            answer = await self.ami.originate(headers)
        except AmiUnavailable as exc:  # the link dropped between the check and the send: nothing sent
            self._step(call_id, "call.not_sent", {"error": str(exc)})
            async with connection(self.pool) as conn:
                await originations.give_back(conn, caller=caller, key=key)
            return _refusal(
                503, "ami.unavailable", f"{exc}; the decision is kept, nothing was sent", decision
            )
        except AmiActionFailed as exc:
            self._step(call_id, "call.originate_refused", {"message": str(exc)})
            body = {"call_id": str(call_id), "decision": decision, "status": "failed", "message": str(exc)}
            return await self._settle(caller, key, "failed", Placed(502, body))
        except AmiOutcomeUnknown as exc:
            log.warning("origination of call %s: %s (not sent again)", call_id, exc)
            self._step(call_id, "call.originate_unknown", {"error": str(exc)})
            body = {"call_id": str(call_id), "decision": decision, "status": "unknown"}
            return await self._settle(caller, key, "unknown", Placed(202, body))
        sent = {
            "channel": headers[0][1],
            "context": self.settings.context,
            "ring_seconds": self.settings.ring_seconds,
        }
        self._step(call_id, "call.originated", {**sent, "asterisk": answer.get("Message")})
        placed = {"call_id": str(call_id), "decision": decision, "status": "originated"}
        return await self._settle(caller, key, "originated", Placed(202, placed))

    def _originate_headers(
        self, result: GateDecision, extra: dict[str, str], settings: Mapping[str, Any]
    ) -> list[tuple[str, str]]:
        assert isinstance(result.number, NumberFacts)
        e164 = result.number.e164
        s = self.settings
        headers = [
            ("Channel", s.channel.format(e164=e164, digits=e164[1:])),
            ("Context", s.context),
            ("Exten", "s"),
            ("Priority", "1"),
            ("ChannelId", str(result.call_id)),  # the callee channel's Uniqueid: events carry our call id
            ("Timeout", str(s.ring_seconds * 1000)),
        ]
        if s.caller_id:
            headers.append(("CallerID", s.caller_id))
        language = result.channel_variables()["DIALGUARD_LANG"]
        rules = self.gate.rulebook.rules_for(result.number)  # the abandon rules are national
        two_second_rule = governing(in_force(rules, result.decided_at)) is not None
        callback = usable(settings, "callback_number")
        answer = {
            "DIALGUARD_ANSWER_PATH": answer_path(settings, two_second_rule=two_second_rule),
            # the abandonment message, should no agent take the call in time
            "DIALGUARD_ABANDON_PROMPT": f"{s.sound_prefix}/{language}/dialguard-abandoned",
            "DIALGUARD_SELLER_PROMPT": str(usable(settings, "seller_prompt") or ""),
            "DIALGUARD_CALLBACK_PROMPT": f"{s.sound_prefix}/{language}/dialguard-callback",
            "DIALGUARD_CALLBACK": str(callback)[1:] if callback else "",  # read out digit by digit
        }
        variables = {**extra, **answer, **result.channel_variables(), "DIALGUARD_CAMPAIGN": result.campaign}
        # manager.c splits each Variable header as app.c splits an application's arguments (commas,
        # quotes, backslashes): the values are escaped as MSet's are, or DIALGUARD_REASONS would split.
        headers += [("Variable", f"{name}={mset_escape(value)}") for name, value in variables.items()]
        return headers

    def _step(self, call_id: uuid.UUID, kind: str, detail: dict[str, Any]) -> None:
        if self.timeline is not None:
            self.timeline.add([Step(call_id, self.clock(), kind, detail)])

    async def _settle(self, caller: str, key: str, status: str, placed: Placed) -> Placed:
        async with connection(self.pool) as conn:
            await originations.settle(conn, caller=caller, key=key, status=status, answer=_stored(placed))
        return placed

    def call_ended(self, call_id: uuid.UUID) -> None:
        """The timeline saw the call end: its place in the campaign's pace is free."""
        self.pacer.release(call_id)


def _stored(placed: Placed) -> dict[str, Any]:
    return {"status": placed.status, "body": placed.body}


def _replay(earlier: originations.Claimed, fingerprint: bytes) -> Placed:
    if earlier.fingerprint != fingerprint:
        return _refusal(
            422, "idempotency_key.reused", "this Idempotency-Key was used for another request; use a new key"
        )
    if not earlier.answer:
        return Placed(
            409,
            {"error_id": "in_progress", "message": "a request with this Idempotency-Key is being placed",
             "details": {"call_id": str(earlier.call_id)}},
            retry_after=1.0,
        )  # fmt: skip
    return Placed(int(earlier.answer["status"]), {**earlier.answer["body"], "replayed": True})


def _refusal(status: int, error_id: str, message: str, decision: dict[str, Any] | None = None) -> Placed:
    details: dict[str, Any] = {"decision": decision} if decision else {}
    return Placed(status, {"error_id": error_id, "message": message, "details": details})
