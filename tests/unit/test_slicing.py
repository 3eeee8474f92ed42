"""slicing.Slicer: long work on the event loop hands it back once a slice is spent, and only then."""

from __future__ import annotations

import asyncio

from dialguard.slicing import Slicer


async def test_an_unspent_slice_goes_straight_on() -> None:
    ran: list[str] = []
    asyncio.get_running_loop().call_soon(ran.append, "other")  # ready at the next turn of the loop
    slicer = Slicer(3600.0)
    for _ in range(1_000):
        await slicer.pause()
    assert ran == []  # the loop never turned
    await asyncio.sleep(0)
    assert ran == ["other"]


async def test_no_budget_never_hands_the_loop_back() -> None:
    ran: list[str] = []
    asyncio.get_running_loop().call_soon(ran.append, "other")
    slicer = Slicer(None)
    for _ in range(1_000):
        await slicer.pause()
    assert ran == []


async def test_a_spent_slice_lets_a_reply_and_the_task_it_wakes_run() -> None:
    """As a check's step does: a socket's callback sets a future, and the task awaiting it runs a turn
    later. Both must run within one pause, or every such step would wait a second slice."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()

    async def check_step() -> str:
        return await reply

    step = asyncio.create_task(check_step())
    await asyncio.sleep(0)  # it runs up to its await
    loop.call_soon(reply.set_result, "200 result=1")  # the reply, read while the slice ran
    await Slicer(0.0).pause()  # a budget of nothing: spent at once
    assert step.done() and step.result() == "200 result=1"
