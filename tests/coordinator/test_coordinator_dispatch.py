"""Dispatcher: a waiting poller is woken at once by an enqueue (milliseconds, not a poll interval)."""

from __future__ import annotations

import asyncio

from coordinator.dispatch import Dispatcher
from coordinator.store.records import AgentRecord, Binding


async def test_enqueue_wakes_a_waiting_poller_immediately() -> None:
    dispatcher = Dispatcher()
    dispatcher.register_agent(AgentRecord("a1", "payments", (Binding("payments/charge", 1),), 1))
    poll = asyncio.create_task(dispatcher.next_attempt("a1", [("payments/charge", 1)], wait_s=5))
    await asyncio.sleep(0.05)  # the poll task runs before this timer fires: it waits now
    dispatcher.enqueue(("payments/charge", 1), "att-1")
    # Woken by the enqueue itself within a few turns of the event loop, not when a timer
    # fires: counted in turns rather than milliseconds, so a loaded machine cannot fail it.
    for _ in range(20):
        if poll.done():
            break
        await asyncio.sleep(0)
    assert poll.done(), "the enqueue did not wake the waiting poll"
    assert poll.result() == "att-1"


async def test_oldest_first_across_queues_and_removal() -> None:
    dispatcher = Dispatcher()
    dispatcher.enqueue(("a/x", 1), "first")
    dispatcher.enqueue(("a/y", 1), "second")
    dispatcher.enqueue(("a/x", 1), "third")
    dispatcher.remove("third")
    keys = [("a/x", 1), ("a/y", 1)]
    assert await dispatcher.next_attempt("nobody", keys, 0) == "first"
    assert await dispatcher.next_attempt("nobody", keys, 0) == "second"
    assert await dispatcher.next_attempt("nobody", keys, 0.01) is None


async def test_serving_agents_for_waiting_reasons() -> None:
    dispatcher = Dispatcher(agent_alive_s=10)
    assert dispatcher.serving(("payments/charge", 1)) == []
    dispatcher.register_agent(AgentRecord("a1", "payments", (Binding("payments/charge", 1),), 1))
    assert [a.record.agent_id for a in dispatcher.serving(("payments/charge", 1))] == ["a1"]
    assert dispatcher.serving(("payments/charge", 2)) == []
