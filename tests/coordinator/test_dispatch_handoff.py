"""Dispatcher eager hand-off: a waiting poll reserved for an attempt claimed in a transition's
commit answers with it, keeps waiting while reserved (even past its deadline), and reports an
attempt it was handed but never answered with (so the engine gives it back)."""

from __future__ import annotations

import asyncio

from coordinator.dispatch import Dispatcher
from coordinator.store.records import AgentRecord, Binding

KEY = ("payments/charge", 1)


def _dispatcher() -> Dispatcher:
    dispatcher = Dispatcher()
    dispatcher.register_agent(AgentRecord("a1", "payments", (Binding(*KEY),), 1))
    return dispatcher


async def test_a_reserved_poll_answers_with_the_handed_attempt_even_past_its_deadline() -> None:
    dispatcher = _dispatcher()
    poll = asyncio.create_task(dispatcher.next_attempt("a1", [KEY], wait_s=0.05))
    await asyncio.sleep(0.01)
    waiter = dispatcher.reserve(KEY)
    assert waiter is not None and waiter.agent_id == "a1"
    assert dispatcher.reserve(KEY) is None  # one reservation per poll
    dispatcher.enqueue(KEY, "queued")  # a reserved poll takes nothing else
    await asyncio.sleep(0.1)  # the commit outlasts the poll's deadline
    assert not poll.done()
    assert dispatcher.hand(waiter, "att-1")
    assert await poll == "att-1"
    assert await dispatcher.next_attempt("a1", [KEY], 0) == "queued"


async def test_unreserve_lets_the_poll_go_on() -> None:
    dispatcher = _dispatcher()
    poll = asyncio.create_task(dispatcher.next_attempt("a1", [KEY], wait_s=2))
    await asyncio.sleep(0.01)
    waiter = dispatcher.reserve(KEY)
    assert waiter is not None
    dispatcher.unreserve(waiter)  # the commit failed
    dispatcher.enqueue(KEY, "att-2")
    assert await poll == "att-2"


async def test_an_ended_poll_is_not_handed_and_a_lost_hand_off_is_reported() -> None:
    dispatcher = _dispatcher()
    lost: list[str] = []
    dispatcher.on_lost = lost.append
    poll = asyncio.create_task(dispatcher.next_attempt("a1", [KEY], wait_s=2))
    await asyncio.sleep(0.01)
    waiter = dispatcher.reserve(KEY)
    assert waiter is not None
    poll.cancel()
    await asyncio.gather(poll, return_exceptions=True)
    assert not dispatcher.hand(waiter, "att-3")  # the engine gives it back itself

    poll = asyncio.create_task(dispatcher.next_attempt("a1", [KEY], wait_s=2))
    await asyncio.sleep(0.01)
    waiter = dispatcher.reserve(KEY)
    assert waiter is not None
    assert dispatcher.hand(waiter, "att-4")
    poll.cancel()  # cancelled as it is handed the attempt
    (answer,) = await asyncio.gather(poll, return_exceptions=True)
    # Exactly one of the two: the poll answered with it, or it is reported lost.
    assert (answer == "att-4") != (lost == ["att-4"]), (answer, lost)
