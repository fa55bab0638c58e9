"""Polls that arrive together for a queue of offered tasks each take a different one: a poll
passes by an offer another poll of this coordinator is claiming, and a claim that finds its task
taken writes nothing. So N polls over N offers cost N commits, not a race of N x N (seen as the
largest cost of a coordinator on PostgreSQL, where a commit is a round trip)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coordinator.config import CoordinatorConfig
from coordinator.server import Coordinator
from coordinator.store.records import Changes
from coordinator.store.sqlite import SqliteStore
from tests.support.inprocess import PAYMENTS, NoSpans, seed_payments

RUNS = 12


class _CountingStore(SqliteStore):
    """The real store, counting the transitions written."""

    applied = 0

    async def apply(self, changes: Changes) -> None:
        await super().apply(changes)
        self.applied += 1


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
    assignments = await asyncio.gather(
        *(engine.poll(PAYMENTS, "payments-1", [], wait_s=30) for _ in range(RUNS))
    )
    taken = [a.attempt.attempt_id for a in assignments if a is not None]
    assert len(taken) == RUNS and len(set(taken)) == RUNS
    assert store.applied - before == RUNS
    assert await store.offers([("payments/charge", 1)], 100) == []


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
