"""Polls that arrive together for a queue of offered tasks each take a different one: a poll
passes by an offer another poll of this coordinator is claiming, and a claim that finds its task
taken writes nothing. So N polls over N offers cost N commits, not a race of N x N (seen as the
largest cost of a coordinator on PostgreSQL, where a commit is a round trip), and one read of the
offers, not N (a v2 stream's credit for N slots starts N polls at once)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.config import CoordinatorConfig
from coordinator.server import Coordinator
from coordinator.store.records import Changes, OfferRecord
from coordinator.store.sqlite import SqliteStore
from tests.support.inprocess import PAYMENTS, NoSpans, seed_payments

RUNS = 12


class _CountingStore(SqliteStore):
    """The real store, counting the transitions written and the reads of offers."""

    applied = 0
    looks: list[int] = []  # the limit of each read of offers

    async def apply(self, changes: Changes) -> None:
        await super().apply(changes)
        self.applied += 1

    async def offers(
        self, keys: list[tuple[str, int]], limit: int, *args: Any, **kwargs: Any
    ) -> list[OfferRecord]:
        self.looks.append(limit)
        return await super().offers(keys, limit, *args, **kwargs)


@pytest.fixture
async def coordinator(tmp_path: Path) -> AsyncIterator[Coordinator]:
    store = _CountingStore(tmp_path / "coordinator.db")
    coordinator = Coordinator(
        CoordinatorConfig(home=tmp_path, listen="127.0.0.1:0"), store=store, span_sink=NoSpans()
    )
    await coordinator.start()
    try:
        await seed_payments(coordinator, concurrency=RUNS)
        yield coordinator
    finally:
        await coordinator.stop(grace=0)


async def test_polls_arriving_together_take_different_offers_with_one_commit_each(
    coordinator: Coordinator,
) -> None:
    engine, store = coordinator.engine, coordinator.store
    assert isinstance(store, _CountingStore)
    for n in range(RUNS):  # no poll waits: every task is an offer in the store
        await engine.start_run(PAYMENTS, "payments/charge-once", {"order_id": f"o-{n}"})
    before = store.applied
    store.looks = []
    assignments = await asyncio.gather(
        *(engine.poll(PAYMENTS, "payments-1", [], wait_s=30) for _ in range(RUNS))
    )
    taken = [a.attempt.attempt_id for a in assignments if a is not None]
    assert len(taken) == RUNS and len(set(taken)) == RUNS
    assert store.applied - before == RUNS
    # One read for all of them, a few offers beyond one each.
    assert store.looks == [RUNS + 1]
    assert await store.offers([("payments/charge", 1)], 100) == []


async def test_polls_of_other_queues_or_later_turns_read_for_themselves(coordinator: Coordinator) -> None:
    """A look is shared only by the polls asking for the same queues in the same turn of the
    loop: a poll asking once the read has begun reads again, and sees the offers the first
    look's polls are claiming passed by."""
    engine, store = coordinator.engine, coordinator.store
    assert isinstance(store, _CountingStore)
    for n in range(3):
        await engine.start_run(PAYMENTS, "payments/charge-once", {"order_id": f"o-{n}"})
    store.looks = []
    first = asyncio.ensure_future(engine.poll(PAYMENTS, "payments-1", [], wait_s=30))
    await asyncio.sleep(0)  # the first poll asks for its look
    await asyncio.sleep(0)  # its read begins
    second = asyncio.ensure_future(engine.poll(PAYMENTS, "payments-1", [], wait_s=30))
    one, two = await asyncio.gather(first, second)
    assert one is not None and two is not None
    assert one.attempt.attempt_id != two.attempt.attempt_id
    assert store.looks == [2, 2]


class _SlowStore(SqliteStore):
    """The real store, its writes taking ``delay_s`` longer once set (a busy disk)."""

    delay_s = 0.0

    async def apply(self, changes: Changes) -> None:
        await asyncio.sleep(self.delay_s)
        await super().apply(changes)


async def test_a_task_handed_back_as_the_coordinator_stops_is_offered_again_not_left_to_its_lease(
    tmp_path: Path,
) -> None:
    """A v2 stream ending as its coordinator stops hands back the tasks claimed for it and not
    sent (``Engine.hand_back``): the engine's stop writes the hand-back before it ends, so the
    task is offered again at once (before, the stop cancelled it and the task waited out its
    heartbeat lease)."""
    store = _SlowStore(tmp_path / "coordinator.db")
    first = Coordinator(
        CoordinatorConfig(home=tmp_path, listen="127.0.0.1:0"), store=store, span_sink=NoSpans()
    )
    await first.start()
    try:
        await seed_payments(first)
        view, _ = await first.engine.start_run(PAYMENTS, "payments/charge-once", {"order_id": "o-1"})
        assignment = await first.engine.poll(PAYMENTS, "payments-1", [], wait_s=30)
        assert assignment is not None
        store.delay_s = 0.5
        first.engine.hand_back(assignment.attempt.attempt_id, "payments-1")
    finally:
        await first.stop(grace=0)
    second = Coordinator(CoordinatorConfig(home=tmp_path, listen="127.0.0.1:0"), span_sink=NoSpans())
    await second.start()
    try:
        reopened = second.store
        assert reopened is not None
        snapshot = await reopened.load_run(view.run.run_id)
        assert snapshot is not None
        attempts = sorted(snapshot.attempts, key=lambda a: a.number)
        assert [(a.number, a.status) for a in attempts] == [(1, "cancelled"), (2, "scheduled")]
        assert attempts[0].error is not None and attempts[0].error.type == "Released"
        offered = await reopened.offers([("payments/charge", 1)], 10)
        assert [o.attempt_id for o in offered] == [attempts[1].attempt_id]
    finally:
        await second.stop(grace=0)


async def test_a_claim_whose_poll_ended_counts_until_its_give_back_is_under_way(tmp_path: Path) -> None:
    """A poll that ends (its stream closed) while its claim is being written leaves the task to be
    given back once the claim is written. The claim leaves the claims under way as it ends, and
    its give-back starts a turn of the loop later: ``stop``, waiting for ``handing_back`` to be 0,
    must not see 0 in between (it did: the task then waited out its heartbeat lease, seen in a
    rolling restart of replicas). Checked at that very moment, by a callback on the claim's task
    that runs before the engine's own."""
    store = _SlowStore(tmp_path / "coordinator.db")
    coordinator = Coordinator(
        CoordinatorConfig(home=tmp_path, listen="127.0.0.1:0"), store=store, span_sink=NoSpans()
    )
    await coordinator.start()
    engine = coordinator.engine
    try:
        await seed_payments(coordinator)
        view, _ = await engine.start_run(PAYMENTS, "payments/charge-once", {"order_id": "o-1"})
        store.delay_s = 0.2
        poll = asyncio.ensure_future(engine.poll(PAYMENTS, "payments-1", [], wait_s=30))
        claim = None
        for _ in range(200):  # the claim's task, once the poll has started it
            await asyncio.sleep(0.005)
            claim = next((t for t in asyncio.all_tasks() if t.get_coro().__name__ == "_claim_offer"), None)  # type: ignore[union-attr]
            if claim is not None:
                break
        assert claim is not None
        seen: list[int] = []
        claim.add_done_callback(lambda _: seen.append(engine.handing_back()))
        poll.cancel()
        with pytest.raises(asyncio.CancelledError):
            await poll
        await claim
        assert seen and seen[0] > 0, seen
        store.delay_s = 0.0
        for _ in range(200):
            if engine.handing_back() == 0:
                break
            await asyncio.sleep(0.01)
        snapshot = await store.load_run(view.run.run_id)
        assert snapshot is not None
        attempts = sorted(snapshot.attempts, key=lambda a: a.number)
        assert [(a.number, a.status) for a in attempts] == [(1, "cancelled"), (2, "scheduled")]
    finally:
        await coordinator.stop(grace=0)


async def test_a_claim_whose_poll_ended_gives_back_only_a_task_it_took(tmp_path: Path) -> None:
    """An agent's slots can poll two coordinators at once while one of them stops. A poll of the
    stopping one ends while its claim is being written, and the claim finds the task taken: by the
    same agent's poll through the other coordinator, which handed it out. The ended poll's
    claim took nothing, so it gives nothing back. It did, by attempt id and agent: a task that was
    running was released and offered again, and ran twice (seen in a rolling restart of replicas,
    v1 agents). Here the other coordinator's claim is this engine's own claim, made just before
    the ended poll's claim reports that it found the task taken."""
    coordinator = Coordinator(
        CoordinatorConfig(home=tmp_path, listen="127.0.0.1:0"),
        store=SqliteStore(tmp_path / "c.db"),
        span_sink=NoSpans(),
    )
    await coordinator.start()
    engine = coordinator.engine
    try:
        await seed_payments(coordinator)
        view, _ = await engine.start_run(PAYMENTS, "payments/charge-once", {"order_id": "o-1"})
        real_claim = engine._claim
        handed_elsewhere: list[Any] = []
        claiming = asyncio.Event()

        async def taken_first(offer: OfferRecord, agent_id: str, caps: Any = None) -> Any:
            handed_elsewhere.append(await real_claim(offer, agent_id, caps))  # the other poll's
            claiming.set()
            await asyncio.sleep(0.2)  # this claim's own write, which finds the task taken
            return None

        engine._claim = taken_first  # type: ignore[method-assign]
        poll = asyncio.ensure_future(engine.poll(PAYMENTS, "payments-1", [], wait_s=30))
        await asyncio.wait_for(claiming.wait(), 10)
        poll.cancel()
        with pytest.raises(asyncio.CancelledError):
            await poll
        for _ in range(200):
            if engine.handing_back() == 0:
                break
            await asyncio.sleep(0.01)
        assert engine.handing_back() == 0
        assert handed_elsewhere and handed_elsewhere[0] is not None
        snapshot = await coordinator.store.load_run(view.run.run_id)  # type: ignore[union-attr]
        assert snapshot is not None
        assert [(a.number, a.status, a.agent_id) for a in snapshot.attempts] == [(1, "running", "payments-1")]
    finally:
        await coordinator.stop(grace=0)
