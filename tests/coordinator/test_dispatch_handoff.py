"""Dispatcher eager hand-off: a waiting poll reserved for an attempt claimed in a transition's
commit answers with it, keeps waiting while reserved (even past its deadline), and reports an
attempt it was handed but never answered with (so the engine gives it back)."""

from __future__ import annotations

import asyncio

from coordinator.dispatch import Dispatcher, Waiter
from coordinator.store.records import AgentRecord, Binding

KEY = ("payments/charge", 1)


def _dispatcher() -> Dispatcher:
    dispatcher = Dispatcher()
    dispatcher.register_agent(AgentRecord("a1", "payments", (Binding(*KEY),), 1))
    return dispatcher


async def _poll(dispatcher: Dispatcher, wait_s: float, seen: list[Waiter]) -> str:
    with dispatcher.listen("a1", [KEY]) as waiter:
        seen.append(waiter)
        await waiter.wait(wait_s)
        return waiter.take()


async def test_a_reserved_poll_answers_with_the_handed_attempt_even_past_its_deadline() -> None:
    dispatcher = _dispatcher()
    assert dispatcher.reserve(KEY) is None  # no poll waits
    poll = asyncio.create_task(_poll(dispatcher, 0.05, []))
    await asyncio.sleep(0.01)
    waiter = dispatcher.reserve(KEY)
    assert waiter is not None and waiter.agent_id == "a1"
    assert dispatcher.reserve(KEY) is None  # one reservation per poll
    dispatcher.offered(KEY)  # a reserved poll is not woken to look elsewhere
    await asyncio.sleep(0.1)  # the commit outlasts the poll's deadline
    assert not poll.done()
    assert dispatcher.hand(waiter, "att-1")
    assert await poll == "att-1"


async def test_unreserve_lets_the_poll_go_on() -> None:
    dispatcher = _dispatcher()
    poll = asyncio.create_task(_poll(dispatcher, 2, []))
    await asyncio.sleep(0.01)
    waiter = dispatcher.reserve(KEY)
    assert waiter is not None
    dispatcher.unreserve(waiter)  # the commit failed: the poll reads the store again
    assert await poll == ""


async def test_an_ended_poll_is_not_handed_and_a_lost_hand_off_is_reported() -> None:
    dispatcher = _dispatcher()
    lost: list[str] = []
    dispatcher.on_lost = lost.append
    poll = asyncio.create_task(_poll(dispatcher, 2, []))
    await asyncio.sleep(0.01)
    waiter = dispatcher.reserve(KEY)
    assert waiter is not None
    poll.cancel()
    await asyncio.gather(poll, return_exceptions=True)
    assert not dispatcher.hand(waiter, "att-3")  # the engine gives it back itself
    assert lost == []

    poll = asyncio.create_task(_poll(dispatcher, 2, []))
    await asyncio.sleep(0.01)
    waiter = dispatcher.reserve(KEY)
    assert waiter is not None
    assert dispatcher.hand(waiter, "att-4")
    poll.cancel()  # cancelled as it is handed the attempt
    (answer,) = await asyncio.gather(poll, return_exceptions=True)
    # Exactly one of the two: the poll answered with it, or it is reported lost.
    assert (answer == "att-4") != (lost == ["att-4"]), (answer, lost)


async def test_a_poll_that_is_not_waiting_is_never_reserved() -> None:
    dispatcher = _dispatcher()
    with dispatcher.listen("a1", [KEY]):
        # Open but reading the store, not waiting: a transition offers the task instead.
        assert dispatcher.reserve(KEY) is None
