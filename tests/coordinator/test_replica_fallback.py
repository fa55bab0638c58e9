"""When another coordinator's hints do not arrive (lost, or a coordinator that sends none, as
one of an older version during a rolling upgrade), what waits on this one still sees its commits
by reading the store again every ``replica_poll_s``: an agent's long poll finds the task it
offered, a watcher sees the run it finished. Two coordinators in one process on one real
PostgreSQL schema; B's store is made to send no hints (its channel unset)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coordinator.server import Coordinator
from coordinator.store.records import RUN_SUCCEEDED
from tests.support.inprocess import PAYMENTS, coordinator_pair, seed_payments
from tests.support.postgres import TestDatabase

pytestmark = pytest.mark.postgres

# Longer than the fallback by far, shorter than the agent's poll: a guard against a hang only.
GUARD_S = 15.0


@pytest.fixture
async def pair(pg_database: TestDatabase, tmp_path: Path) -> AsyncIterator[tuple[Coordinator, Coordinator]]:
    async with coordinator_pair(pg_database.schema_url(), tmp_path, replica_poll_s=0.2) as (a, b):
        # B's commits go out on a channel no one listens on: A gets no hint of them.
        b.store._channel = "accord_hints_nowhere"  # type: ignore[union-attr]
        await seed_payments(a)
        yield a, b


async def test_a_poll_and_a_watcher_see_a_commit_that_sent_no_hint(
    pair: tuple[Coordinator, Coordinator],
) -> None:
    a, b = pair
    # A long poll on A (longer than the guard) waits when B offers the task without a hint.
    polling = asyncio.create_task(a.engine.poll(PAYMENTS, "payments-1", [], wait_s=60))
    await asyncio.sleep(0)
    view, _ = await b.engine.start_run(PAYMENTS, "payments/charge-once", {"order_id": "o-1"})
    run_id = view.run.run_id
    assignment = await asyncio.wait_for(polling, GUARD_S)
    assert assignment is not None and assignment.run.run_id == run_id

    # A watcher on A; B finishes the run (the agent's completion reached B), without a hint.
    watch = a.engine.watch(PAYMENTS, run_id)
    first = await anext(watch)
    assert first.run.status != RUN_SUCCEEDED
    assert await b.engine.complete(
        PAYMENTS, "payments-1", assignment.attempt.attempt_id, {"ref": "r-1"}, "req-1"
    )

    async def last() -> str:
        status = ""
        async for update in watch:
            status = update.run.status
        return status

    assert await asyncio.wait_for(last(), GUARD_S) == RUN_SUCCEEDED
