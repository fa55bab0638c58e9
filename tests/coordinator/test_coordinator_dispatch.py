"""Dispatcher: open long polls and agents' liveness. An offer wakes a waiting poll at once
(milliseconds, not a poll interval); the offers themselves are in the store."""

from __future__ import annotations

import asyncio
import contextlib
import time

from coordinator.dispatch import Dispatcher
from coordinator.store.records import AgentRecord, Binding

KEY = ("payments/charge", 1)


async def test_an_offer_wakes_a_waiting_poll_immediately() -> None:
    dispatcher = Dispatcher()
    dispatcher.register_agent(AgentRecord("a1", "payments", (Binding(*KEY),), 1))
    with dispatcher.listen("a1", [KEY]) as waiter:
        poll = asyncio.create_task(waiter.wait(5))
        await asyncio.sleep(0.05)  # the poll task runs before this timer fires: it waits now
        dispatcher.offered(("payments/other", 1))  # another queue: no wake-up
        for _ in range(20):
            await asyncio.sleep(0)
        assert not poll.done()
        dispatcher.offered(KEY)
        # Woken by the offer itself within a few turns of the event loop, not when a timer
        # fires: counted in turns rather than milliseconds, so a loaded machine cannot fail it.
        for _ in range(20):
            if poll.done():
                break
            await asyncio.sleep(0)
        assert poll.done(), "the offer did not wake the waiting poll"
        assert waiter.take() == ""  # woken to read the store, not handed anything


async def test_a_wait_ends_at_its_deadline() -> None:
    dispatcher = Dispatcher()
    with dispatcher.listen("a1", [KEY]) as waiter:
        began = time.monotonic()
        await waiter.wait(0.05)
        assert time.monotonic() - began >= 0.05


async def test_serving_agents_for_waiting_reasons() -> None:
    dispatcher = Dispatcher(agent_alive_s=10)
    assert dispatcher.serving(KEY) == []
    dispatcher.register_agent(AgentRecord("a1", "payments", (Binding(*KEY),), 1))
    assert [a.record.agent_id for a in dispatcher.serving(KEY)] == ["a1"]
    assert dispatcher.serving(("payments/charge", 2)) == []
    dispatcher.register_agent(AgentRecord("a2", "payments", (Binding(*KEY),), 1), seen=False)
    assert [a.record.agent_id for a in dispatcher.serving(KEY)] == ["a1"]  # not seen since start
    with dispatcher.listen("a2", [KEY]):
        assert {a.record.agent_id for a in dispatcher.serving(KEY)} == {"a1", "a2"}
        assert [a.polling for a in dispatcher.serving(KEY) if a.record.agent_id == "a2"] == [1]


async def test_an_agent_whose_poll_was_cut_off_stops_serving_after_the_grace() -> None:
    from coordinator.dispatch import dispatcher as module

    dispatcher = Dispatcher(agent_alive_s=30)
    dispatcher.register_agent(AgentRecord("a1", "payments", (Binding(*KEY),), 1))

    async def poll() -> None:
        with dispatcher.listen("a1", [KEY]) as waiter:
            await waiter.wait(10)

    task = asyncio.create_task(poll())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert dispatcher.serving(KEY)  # within the grace: it may be restarting its polls
    presence = dispatcher.serving(KEY)[0]
    presence.left_at -= module.LEFT_GRACE_S + 1
    assert dispatcher.serving(KEY) == []


async def test_a_queue_read_empty_is_believed_empty_until_an_offer_or_the_time_runs_out() -> None:
    dispatcher = Dispatcher(empty_for_s=0.2)
    other = ("payments/other", 1)
    assert not dispatcher.known_empty([KEY])  # never read: read the store
    began = time.monotonic()
    dispatcher.read_empty([KEY, other], began)
    assert dispatcher.known_empty([KEY]) and dispatcher.known_empty([KEY, other])
    dispatcher.offered(KEY)
    assert not dispatcher.known_empty([KEY]) and dispatcher.known_empty([other])
    # A read that began before an offer learns nothing about that queue.
    dispatcher.read_empty([KEY], began)
    assert not dispatcher.known_empty([KEY])
    await asyncio.sleep(0.25)
    assert not dispatcher.known_empty([other])  # believed only for a while


async def test_agents_served_by_another_coordinator_count_as_serving_here() -> None:
    """Agents long-poll one coordinator; the others learn of them from its ``presence`` hints,
    so every coordinator explains a waiting step the same way."""
    here, there = Dispatcher(agent_alive_s=30), Dispatcher(agent_alive_s=30)
    for dispatcher in (here, there):
        for agent_id in ("polling", "busy", "leaving"):
            dispatcher.register_agent(AgentRecord(agent_id, "payments", (Binding(*KEY),), 1), seen=False)
    since = time.monotonic()
    assert here.serving(KEY) == []
    there.touch("busy")  # a heartbeat: busy with a task, not polling
    with there.listen("polling", [KEY]):
        told = there.presence(since)
        assert told == {"polling": 1, "busy": 0}
        here.seen_elsewhere(told, polling_for_s=3)
    served = {a.record.agent_id: a.is_polling(time.monotonic()) for a in here.serving(KEY)}
    assert served == {"polling": True, "busy": False}
    # An agent whose poll there was cut off is gone here as soon as it says so.
    since = time.monotonic()
    try:
        with there.listen("leaving", [KEY]):
            raise asyncio.CancelledError
    except asyncio.CancelledError:
        pass
    here.seen_elsewhere({"leaving": 1}, polling_for_s=3)
    assert "leaving" in {a.record.agent_id for a in here.serving(KEY)}
    told = there.presence(since)
    assert told["leaving"] == -1
    here.seen_elsewhere(told, polling_for_s=3)
    assert "leaving" not in {a.record.agent_id for a in here.serving(KEY)}
    # One it has not registered yet is skipped (its registration is read from the store soon).
    here.seen_elsewhere({"stranger": 1}, polling_for_s=3)
    assert here.agent("stranger") is None


async def test_an_offer_told_by_another_coordinator_wakes_as_many_polls_as_tasks() -> None:
    """Another coordinator's hint names how many tasks it offered: that many polls here read the
    store; waking every poll would only have them race for the same rows."""
    dispatcher = Dispatcher()
    with contextlib.ExitStack() as polls:
        waiters = [polls.enter_context(dispatcher.listen(f"a{n}", [KEY])) for n in range(4)]
        dispatcher.offered(KEY, wake=2)
        assert [w.event.is_set() for w in waiters] == [True, True, False, False]
        dispatcher.offered(KEY, wake=1)  # the next one not woken yet
        assert [w.event.is_set() for w in waiters] == [True, True, True, False]
        dispatcher.offered(KEY)  # this process's own offer: all of them
        assert all(w.event.is_set() for w in waiters)
