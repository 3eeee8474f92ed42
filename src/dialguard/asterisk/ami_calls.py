"""AMI events turned into the steps of a call's timeline, keyed by the gate's call id. No I/O.

Which channel is the callee's, and so whose events tell the call's story:
- an originated call: the channel whose ``Uniqueid`` is the call id (``Originate`` sets it with
  ``ChannelId``);
- a call the dialplan placed after a check: the agent's channel carries ``DIALGUARD_CALL_ID`` (manager.conf
  ``channelvars``), and its ``DialBegin`` names the callee's channel as ``DestUniqueid``.
``Linkedid`` ties every other leg (the agent reached after an originated call's answer) to the call.

The tracker keeps a small state per call in progress (bounded, oldest dropped first) and forgets a call
at the callee's hang-up. It measures answer -> agent in milliseconds; whether that makes the call
abandoned is the rules' to say, not this module's.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dialguard.asterisk.ami_protocol import AmiMessage

CALL_ID_VARIABLE = "DIALGUARD_CALL_ID"
MAX_CALLS = 20_000  # calls followed at once; beyond it the oldest is forgotten (a lost hang-up, say)
UP = "6"  # ast_channel_state AST_STATE_UP
RINGING = ("4", "5")  # AST_STATE_RING, AST_STATE_RINGING
ABANDON_EVENT = "DialguardAbandoned"  # UserEvent the shipped dialplan sends when no agent came in time

# OriginateResponse's Reason: the AST_CONTROL_* value the dial ended on (main/channel.c)
ORIGINATE_REASONS = {
    "0": "failed",
    "1": "hangup",
    "3": "no_answer",
    "4": "answered",
    "5": "busy",
    "8": "congestion",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One entry of a call's timeline."""

    call_id: uuid.UUID
    at: datetime
    kind: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Answered:
    """What the abandon rule needs of an answered call, known once an agent joined or the callee left."""

    call_id: uuid.UUID
    answered_at: datetime
    agent_at: datetime | None
    ended_at: datetime | None  # the callee's hang-up, when it came before any agent
    abandon_message: bool  # the dialplan played the no-agent message


@dataclass(slots=True)
class _Call:
    call_id: uuid.UUID
    callee: str = ""  # the callee channel's Uniqueid, once known
    answered_at: datetime | None = None
    agent_at: datetime | None = None
    abandon_message: bool = False
    settled: bool = False  # its Answered was already given
    legs: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Tracked:
    steps: list[Step] = field(default_factory=list)
    answered: list[Answered] = field(default_factory=list)


class CallTracker:
    def __init__(self, *, max_calls: int = MAX_CALLS) -> None:
        self._calls: OrderedDict[uuid.UUID, _Call] = OrderedDict()
        self._by_channel: dict[str, uuid.UUID] = {}  # Uniqueid or Linkedid -> call id
        self._max_calls = max_calls

    def __len__(self) -> int:
        return len(self._calls)

    def expect(self, call_id: uuid.UUID) -> None:
        """An originated call: its callee channel's Uniqueid will be the call id."""
        self._start(call_id).callee = str(call_id)

    def feed(self, event: AmiMessage, *, received_at: datetime) -> Tracked:
        out = Tracked()
        name = event.event
        handler = _HANDLERS.get(name)
        if handler is None:
            return out
        at = received_at  # our clock, as everywhere: Asterisk's Timestamp header may disagree with it
        call = self._call_of(event)
        if call is None:
            return out
        handler(self, call, event, at, out)
        return out

    # -- which call an event belongs to

    def _call_of(self, event: AmiMessage) -> _Call | None:
        uniqueid = event.get("Uniqueid")
        for key in (uniqueid, event.get("Linkedid"), event.get("DestUniqueid")):
            if key and (call_id := self._by_channel.get(key)) is not None and call_id in self._calls:
                return self._calls[call_id]
        tagged = event.variables().get(CALL_ID_VARIABLE) or event.variables("Dest").get(CALL_ID_VARIABLE)
        if uniqueid and (call_id := _as_uuid(uniqueid)) is not None and call_id in self._calls:
            tagged = str(call_id)
        call_id = _as_uuid(tagged) if tagged else None
        if call_id is None:
            return None
        call = self._start(call_id)
        if uniqueid == str(call_id):  # an originated call's own channel, met before expect() (a restart)
            call.callee = uniqueid
        self._bind(call, uniqueid)
        self._bind(call, event.get("Linkedid"))
        return call

    def _start(self, call_id: uuid.UUID) -> _Call:
        call = self._calls.get(call_id)
        if call is None:
            call = self._calls[call_id] = _Call(call_id)
            while len(self._calls) > self._max_calls:
                _, oldest = self._calls.popitem(last=False)
                self._unbind(oldest)
        return call

    def _bind(self, call: _Call, key: str) -> None:
        if key:
            self._by_channel[key] = call.call_id
            call.legs.add(key)

    def _unbind(self, call: _Call) -> None:
        for key in call.legs:
            if self._by_channel.get(key) == call.call_id:
                del self._by_channel[key]

    def _forget(self, call: _Call) -> None:
        self._unbind(call)
        self._calls.pop(call.call_id, None)

    def _is_callee(self, call: _Call, event: AmiMessage) -> bool:
        return bool(call.callee) and event.get("Uniqueid") == call.callee

    # -- the events

    def _newchannel(self, call: _Call, event: AmiMessage, at: datetime, out: Tracked) -> None:
        self._bind(call, event.get("Uniqueid"))
        if self._is_callee(call, event):
            out.steps.append(Step(call.call_id, at, "call.channel", {"channel": event.get("Channel")}))

    def _newstate(self, call: _Call, event: AmiMessage, at: datetime, out: Tracked) -> None:
        if not self._is_callee(call, event):
            return
        state = event.get("ChannelState")
        if state in RINGING:
            out.steps.append(Step(call.call_id, at, "call.ringing", {}))
        elif state == UP:
            self._answer(call, at, out)

    def _dial_begin(self, call: _Call, event: AmiMessage, at: datetime, out: Tracked) -> None:
        dest = event.get("DestUniqueid")
        if not call.callee and dest:  # the dialplan's Dial() towards the callee
            call.callee = dest
            self._bind(call, dest)
            out.steps.append(Step(call.call_id, at, "call.dialing", {"channel": event.get("DestChannel")}))

    def _dial_end(self, call: _Call, event: AmiMessage, at: datetime, out: Tracked) -> None:
        if event.get("DestUniqueid") != call.callee:
            return
        status = event.get("DialStatus")
        if status == "ANSWER":
            self._answer(call, at, out)
        else:
            out.steps.append(Step(call.call_id, at, "call.dial_ended", {"status": status}))

    def _bridge_enter(self, call: _Call, event: AmiMessage, at: datetime, out: Tracked) -> None:
        try:
            members = int(event.get("BridgeNumChannels") or "0")
        except ValueError:
            members = 0
        # The second channel in the callee's bridge is the agent joining it, whichever entered last.
        if members < 2 or call.answered_at is None or call.agent_at is not None:
            return
        call.agent_at = at
        waited = round((at - call.answered_at) / timedelta(milliseconds=1))
        out.steps.append(
            Step(
                call.call_id,
                at,
                "call.agent_bridged",
                {
                    "bridge": event.get("BridgeUniqueid"),
                    "channel": event.get("Channel"),
                    "after_answer_ms": waited,
                },
            )
        )
        self._settle(call, out)

    def _dtmf(self, call: _Call, event: AmiMessage, at: datetime, out: Tracked) -> None:
        if self._is_callee(call, event) and event.get("Direction", "Received") == "Received":
            detail: dict[str, Any] = {"digit": event.get("Digit")}
            if duration := event.get("DurationMs"):
                detail["duration_ms"] = _int(duration)
            out.steps.append(Step(call.call_id, at, "call.dtmf", detail))

    def _hangup(self, call: _Call, event: AmiMessage, at: datetime, out: Tracked) -> None:
        if not self._is_callee(call, event):
            return
        detail: dict[str, Any] = {"cause": _int(event.get("Cause")), "cause_txt": event.get("Cause-txt")}
        if call.answered_at is not None:
            detail["talk_ms"] = round((at - call.answered_at) / timedelta(milliseconds=1))
        out.steps.append(Step(call.call_id, at, "call.hangup", detail))
        self._settle(call, out, ended_at=at)
        self._forget(call)

    def _originate_response(self, call: _Call, event: AmiMessage, at: datetime, out: Tracked) -> None:
        reason = event.get("Reason")
        detail = {
            "response": event.get("Response"),
            "reason": ORIGINATE_REASONS.get(reason, f"reason_{reason}"),
            "channel": event.get("Channel"),
        }
        out.steps.append(Step(call.call_id, at, "call.originate_response", detail))
        if event.get("Response") != "Success" and call.answered_at is None:
            self._forget(call)  # no channel will tell more: the call never happened

    def _user_event(self, call: _Call, event: AmiMessage, at: datetime, out: Tracked) -> None:
        if event.get("UserEvent") == ABANDON_EVENT:
            call.abandon_message = True
            out.steps.append(Step(call.call_id, at, "call.abandon_message", {}))

    # -- the answered call's outcome

    def _answer(self, call: _Call, at: datetime, out: Tracked) -> None:
        if call.answered_at is None:
            call.answered_at = at
            out.steps.append(Step(call.call_id, at, "call.answered", {}))

    def _settle(self, call: _Call, out: Tracked, *, ended_at: datetime | None = None) -> None:
        if call.answered_at is not None and not call.settled:
            call.settled = True
            out.answered.append(
                Answered(call.call_id, call.answered_at, call.agent_at, ended_at, call.abandon_message)
            )


_HANDLERS = {
    "Newchannel": CallTracker._newchannel,
    "Newstate": CallTracker._newstate,
    "DialBegin": CallTracker._dial_begin,
    "DialEnd": CallTracker._dial_end,
    "BridgeEnter": CallTracker._bridge_enter,
    "DTMFEnd": CallTracker._dtmf,
    "Hangup": CallTracker._hangup,
    "OriginateResponse": CallTracker._originate_response,
    "UserEvent": CallTracker._user_event,
}


def _as_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None
