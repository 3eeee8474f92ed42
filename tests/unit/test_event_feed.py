"""The event hub's pure parts: a log's position over holes in the ids, subscribers' bounded queues,
event ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dialguard.events import (
    FeedClosed,
    FeedEvent,
    Interest,
    Overflowed,
    Position,
    Subscription,
    _Log,
)
from dialguard.store.event_feed import FeedRow, Kind

AT = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
WAIT, KEEP = 2.0, 60.0


def row(ident: int, campaign: str | None = "spring", verdict: str | None = "ALLOW") -> FeedRow:
    return FeedRow(Kind.DECISION, ident, AT, campaign, verdict, "{}")


def ids(rows: list[FeedRow]) -> list[int]:
    return [r.id for r in rows]


def take(log: _Log, present: list[int], now: float) -> tuple[list[int], bool]:
    """What the hub would read after the position: the present ids above it."""
    out, held = log.take([row(i) for i in present if i > log.position], now, gap_wait=WAIT, late_keep=KEEP)
    return ids(out), held


def test_rows_without_holes_go_out_at_once() -> None:
    log = _Log(Kind.DECISION, 10)
    assert take(log, [11, 12, 13], now=0.0) == ([11, 12, 13], False)
    assert log.position == 13 and not log.held_since


def test_a_row_after_a_hole_waits_for_the_hole_to_fill() -> None:
    log = _Log(Kind.DECISION, 10)
    assert take(log, [11, 13, 14], now=0.0) == ([11], True)  # 12 is still being written
    assert take(log, [11, 13, 14], now=1.9) == ([], True)
    assert take(log, [11, 12, 13, 14], now=1.95) == ([12, 13, 14], False)  # 12 committed: in order
    assert log.position == 14 and not log.late


def test_a_hole_is_given_up_on_after_gap_wait_and_looked_for_late() -> None:
    log = _Log(Kind.DECISION, 10)
    assert take(log, [13], now=0.0) == ([], True)
    assert take(log, [13], now=WAIT - 0.001) == ([], True)  # one moment before: still held
    assert take(log, [13], now=WAIT) == ([13], False)  # 11 and 12 rolled back, or are very slow
    assert log.holes(now=WAIT) == [(11, 12)]
    assert ids(log.found_late([row(12)])) == [12]  # 12 turns up: it goes out, late, once
    assert log.holes(now=WAIT) == [(11, 11)]
    assert ids(log.found_late([row(12)])) == []
    assert log.holes(now=WAIT + KEEP) == []  # after late_keep nobody looks any more


def test_rows_seen_together_wait_from_when_they_were_first_seen_not_one_after_the_other() -> None:
    log = _Log(Kind.DECISION, 10)
    assert take(log, [12, 14], now=0.0) == ([], True)  # two holes, 11 and 13
    assert take(log, [12, 14], now=WAIT) == ([12, 14], False)  # both given up on at once
    assert log.holes(now=WAIT) == [(11, 11), (13, 13)]


def test_a_row_first_seen_later_waits_its_own_time() -> None:
    log = _Log(Kind.DECISION, 10)
    assert take(log, [11, 13], now=0.0) == ([11], True)
    assert take(log, [11, 13, 15], now=WAIT) == ([13], True)  # 15, seen at WAIT, waits for 14
    assert take(log, [11, 13, 15], now=2 * WAIT) == ([15], False)


def test_position_and_event_ids() -> None:
    p = Position(12, 40)
    assert str(p) == "12.40" and Position.parse("12.40") == p and Position.parse(" 0.0 ") == Position()
    assert p.moved(Kind.CALL, 41) == Position(12, 41) and p.moved(Kind.DECISION, 3) == p
    assert p.joined(Position(13, 2)) == Position(13, 40)
    for bad in ("", "12", "12.", ".4", "a.b", "-1.2", "1.2.3", "².1", "1" * 19 + ".1"):
        with pytest.raises(ValueError, match="not an event id"):
            Position.parse(bad)


def test_interest_sees_a_call_event_as_its_decisions_campaign_and_verdict() -> None:
    call = FeedRow(Kind.CALL, 1, AT, "spring", "ALLOW", "{}")
    orphan = FeedRow(Kind.CALL, 2, AT, None, None, "{}")  # no decision has its call id
    assert Interest().matches(orphan)
    assert Interest(campaign="spring").matches(call) and not Interest(campaign="autumn").matches(call)
    assert not Interest(campaign="spring").matches(orphan)
    assert not Interest(verdict="BLOCK").matches(call)


def subscription(max_queued: int) -> tuple[Subscription, list[Subscription]]:
    closed: list[Subscription] = []
    sub = Subscription(interest=Interest(), start=Position(), max_queued=max_queued, on_close=closed.append)
    return sub, closed


async def test_a_subscriber_past_its_queue_is_emptied_and_told_it_overflowed() -> None:
    sub, _ = subscription(max_queued=3)
    events = [FeedEvent(row(i), Position(i, 0)) for i in range(1, 6)]
    assert [sub.offer(e) for e in events[:3]] == [True, True, True]
    assert sub.offer(events[3]) is False  # the fourth: overflowed, dropped by the hub
    assert sub.queued == 0 and sub.overflowed  # its memory went at once
    assert sub.offer(events[4]) is False
    with pytest.raises(Overflowed):
        await sub.next()


async def test_an_ended_feed_gives_what_is_queued_then_closes() -> None:
    sub, closed = subscription(max_queued=3)
    sub.offer(FeedEvent(row(1), Position(1, 0)))
    sub.end()
    assert (await sub.next()).row.id == 1
    with pytest.raises(FeedClosed):
        await sub.next()
    with sub:
        pass
    assert closed == [sub]
