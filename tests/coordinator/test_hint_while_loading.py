"""A hint of another coordinator's commit that arrives while this one reads the run (its record,
then its workflow and contracts, which may mean the store too) keeps the stale state out of the
cache: a watcher woken by it then reads the new version, rather than waiting out the fallback.
Two coordinators in one process on one real PostgreSQL schema."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.server import Coordinator
from coordinator.store.base import StoreHint
from tests.support.inprocess import PAYMENTS, coordinator_pair, seed_payments
from tests.support.postgres import TestDatabase
from tests.support.wait import wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pair(pg_database: TestDatabase, tmp_path: Path) -> AsyncIterator[tuple[Coordinator, Coordinator]]:
    # Only hints can tell A in time: its own reading again comes after 30 s.
    async with coordinator_pair(pg_database.schema_url(), tmp_path, replica_poll_s=30.0) as (a, b):
        await seed_payments(b)  # the agent polls B
        yield a, b


async def test_a_hint_during_the_read_of_a_run_keeps_the_stale_state_out_of_the_cache(
    pair: tuple[Coordinator, Coordinator],
) -> None:
    a, b = pair
    view, _ = await b.engine.start_run(PAYMENTS, "payments/charge-once", {"order_id": "o-1"})
    run_id, read_version = view.run.run_id, view.run.version

    # A reads the run; after its record, the workflow's lookup waits until B has moved it on.
    registry = a.engine._registry
    real = registry.workflow_version
    gate, reading = asyncio.Event(), asyncio.Event()

    async def held(*args: Any) -> Any:
        reading.set()
        await gate.wait()
        return await real(*args)

    registry.workflow_version = held  # type: ignore[method-assign]
    hints: list[StoreHint] = []
    deliver = a.store._on_hint  # type: ignore[union-attr]
    assert deliver is not None

    def seen(hint: StoreHint) -> None:
        hints.append(hint)
        deliver(hint)

    a.store._on_hint = seen  # type: ignore[union-attr]
    try:
        first = asyncio.create_task(a.engine.get_run(PAYMENTS, run_id))
        await asyncio.wait_for(reading.wait(), 10)
        assignment = await b.engine.poll(PAYMENTS, "payments-1", [], wait_s=10)  # B claims: a new version
        assert assignment is not None
        moved = await b.store.get_run(run_id)
        assert moved is not None and moved.version > read_version
        # B's hint reaches A while A is still reading.
        await wait_until(
            lambda: any(h.runs.get(run_id, 0) >= moved.version for h in hints), "B's hint at A", 10
        )
        gate.set()
        stale = await first
    finally:
        registry.workflow_version = real  # type: ignore[method-assign]
    assert stale.run.version == read_version  # what A had read: answered, not kept
    cached = a.engine._runs.get(run_id)
    assert cached is None or cached.record.version >= moved.version
    again = await a.engine.get_run(PAYMENTS, run_id)
    assert again.run.version == moved.version
