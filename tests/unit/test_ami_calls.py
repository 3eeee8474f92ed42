"""AMI events to a call's timeline: which channel is the callee's, and the answer -> agent measure."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from dialguard.asterisk.ami_calls import ABANDON_EVENT, CallTracker, Tracked
from dialguard.asterisk.ami_protocol import AmiMessage

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
CALL = uuid.UUID("6d1f3c3e-2b7a-4a8e-9d50-0a5c2f6b9e11")


def ev(name: str, **fields: str) -> AmiMessage:
    lines = [("Event", name)]
    for key, value in fields.items():
        lines.append(("ChanVariable" if key == "var" else key.replace("_", "-"), value))
    return AmiMessage(tuple(lines))


def run(tracker: CallTracker, events: list[tuple[float, AmiMessage]]) -> Tracked:
    out = Tracked()
    for seconds, event in events:
        got = tracker.feed(event, received_at=T0 + timedelta(seconds=seconds))
        out.steps += got.steps
        out.answered += got.answered
    return out


def originated(agent_after: float | None, hangup_after: float = 30.0) -> list[tuple[float, AmiMessage]]:
    me = str(CALL)
    events = [
        (0.0, ev("Newchannel", Channel="PJSIP/trunk-1", Uniqueid=me, Linkedid=me)),
        (0.1, ev("Newstate", ChannelState="5", Uniqueid=me, Linkedid=me)),
        (4.0, ev("Newstate", ChannelState="6", Uniqueid=me, Linkedid=me)),
        (4.0, ev("OriginateResponse", Response="Success", Reason="4", Uniqueid=me, Channel="PJSIP/trunk-1")),
        (4.5, ev("DTMFEnd", Digit="5", DurationMs="120", Direction="Received", Uniqueid=me, Linkedid=me)),
    ]
    if agent_after is not None:
        at = 4.0 + agent_after
        events += [
            (at - 0.2, ev("Newchannel", Channel="PJSIP/agent-7", Uniqueid="a.7", Linkedid=me)),
            (at, ev("BridgeEnter", Uniqueid=me, Linkedid=me, BridgeNumChannels="1", BridgeUniqueid="b1")),
            (at, ev("BridgeEnter", Uniqueid="a.7", Linkedid=me, BridgeNumChannels="2", BridgeUniqueid="b1")),
        ]
    events.append(
        (4.0 + hangup_after, ev("Hangup", Uniqueid=me, Linkedid=me, Cause="16", Cause_txt="Normal Clearing"))
    )
    return events


def test_an_originated_call_tells_its_whole_story_in_order() -> None:
    tracker = CallTracker()
    tracker.expect(CALL)
    out = run(tracker, originated(agent_after=0.8))
    assert [s.kind for s in out.steps] == [
        "call.channel", "call.ringing", "call.answered", "call.originate_response", "call.dtmf",
        "call.agent_bridged", "call.hangup",
    ]  # fmt: skip
    bridged = out.steps[5]
    assert bridged.detail["after_answer_ms"] == 800
    assert out.steps[-1].detail == {"cause": 16, "cause_txt": "Normal Clearing", "talk_ms": 30000}
    (answered,) = out.answered
    assert answered.answered_at == T0 + timedelta(seconds=4) and answered.agent_at == T0 + timedelta(
        seconds=4.8
    )
    assert len(tracker) == 0  # forgotten at the hang-up


def test_a_call_no_agent_joined_is_settled_at_its_hangup() -> None:
    tracker = CallTracker()
    tracker.expect(CALL)
    events = originated(agent_after=None, hangup_after=6.0)
    events.insert(-1, (5.9, ev("UserEvent", UserEvent=ABANDON_EVENT, Uniqueid=str(CALL))))
    out = run(tracker, events)
    (answered,) = out.answered
    assert answered.agent_at is None and answered.abandon_message


def test_after_a_restart_an_originated_call_is_known_by_its_channel_variable() -> None:
    me = str(CALL)
    tracker = CallTracker()  # no expect(): the gateway restarted while the call rang
    out = run(
        tracker,
        [
            (0, ev("Newstate", ChannelState="6", Uniqueid=me, var=f"DIALGUARD_CALL_ID={me}")),
            (9, ev("Hangup", Uniqueid=me, Cause="16", Cause_txt="Normal Clearing")),
        ],
    )
    assert [s.kind for s in out.steps] == ["call.answered", "call.hangup"]


def test_a_dialplan_call_is_followed_through_the_agents_tagged_channel() -> None:
    tag = f"DIALGUARD_CALL_ID={CALL}"
    tracker = CallTracker()
    out = run(
        tracker,
        [
            (0, ev("Newchannel", Uniqueid="ag.1", Linkedid="ag.1", var=tag)),
            (0.1, ev("Newstate", ChannelState="6", Uniqueid="ag.1", Linkedid="ag.1", var=tag)),  # agent's own
            (0.2, ev("Newchannel", Uniqueid="out.2", Linkedid="ag.1")),  # Asterisk: before DialBegin
            (
                0.2,
                ev("DialBegin", Uniqueid="ag.1", var=tag, DestUniqueid="out.2", DestChannel="PJSIP/trunk-2"),
            ),
            (0.3, ev("Newstate", ChannelState="5", Uniqueid="out.2", Linkedid="ag.1")),
            (7.0, ev("DialEnd", Uniqueid="ag.1", DestUniqueid="out.2", DialStatus="ANSWER", var=tag)),
            (7.0, ev("Newstate", ChannelState="6", Uniqueid="out.2", Linkedid="ag.1")),
            (7.1, ev("BridgeEnter", Uniqueid="ag.1", BridgeNumChannels="1", var=tag)),
            (7.1, ev("BridgeEnter", Uniqueid="out.2", Linkedid="ag.1", BridgeNumChannels="2")),
            (60, ev("Hangup", Uniqueid="out.2", Linkedid="ag.1", Cause="16", Cause_txt="Normal Clearing")),
        ],
    )
    kinds = [s.kind for s in out.steps]
    assert kinds == ["call.dialing", "call.ringing", "call.answered", "call.agent_bridged", "call.hangup"]
    assert out.answered[0].agent_at is not None
    assert out.steps[3].detail["after_answer_ms"] == 100


def test_a_failed_origination_is_forgotten_and_unrelated_events_are_ignored() -> None:
    tracker = CallTracker()
    tracker.expect(CALL)
    out = run(
        tracker,
        [
            (0, ev("Newstate", ChannelState="6", Uniqueid="someone.else")),
            (0, ev("VarSet", Uniqueid=str(CALL), Variable="X", Value="1")),
            (20, ev("OriginateResponse", Response="Failure", Reason="3", Uniqueid=str(CALL))),
        ],
    )
    assert [s.detail.get("reason") for s in out.steps] == ["no_answer"] and not out.answered
    assert len(tracker) == 0


def test_calls_followed_at_once_are_bounded() -> None:
    tracker = CallTracker(max_calls=100)
    for _ in range(1000):
        tracker.expect(uuid.uuid4())
    assert len(tracker) == 100
