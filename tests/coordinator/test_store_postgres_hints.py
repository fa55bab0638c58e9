"""Hints between PostgreSQL stores (``Store.subscribe``): a transition committed through one
store reaches the others as a hint naming its runs, queues and earliest timer; never the store's
own, never a refused transition's, never another schema's; and ``everything`` each time a store
starts listening (the first time, and after the listening connection was lost). Stores on separate pools, as separate coordinators have."""

from __future__ import annotations

import asyncio
import logging

import psycopg
import pytest

from coordinator.store.base import StoreHint
from coordinator.store.postgres import PostgresStore
from coordinator.store.records import Changes, VersionConflict
from tests.coordinator.store_conformance import attempt_record, offer, run_record, timer
from tests.support.postgres import TestDatabase

pytestmark = pytest.mark.postgres

WITHIN_S = 30.0  # guards against a hang only


class Hints:
    """What one store's subscription received."""

    def __init__(self) -> None:
        self.got: list[StoreHint] = []
        self._arrived = asyncio.Event()

    def __call__(self, hint: StoreHint) -> None:
        self.got.append(hint)
        self._arrived.set()

    async def next(self) -> StoreHint:
        while not self.got:
            self._arrived.clear()
            await asyncio.wait_for(self._arrived.wait(), WITHIN_S)
        return self.got.pop(0)


async def _stores(url: str, count: int) -> list[PostgresStore]:
    stores = [PostgresStore(url, pool_size=2) for _ in range(count)]
    for store in stores:
        await store.open()
    return stores


async def test_a_transition_reaches_the_other_stores_as_a_hint_and_not_its_own(
    pg_database: TestDatabase,
) -> None:
    url = pg_database.schema_url()
    writer, reader = await _stores(url, 2)
    mine, theirs = Hints(), Hints()
    try:
        assert writer.shared and reader.shared
        await _subscribed(writer, mine)
        await _subscribed(reader, theirs)
        attempt = attempt_record("r1", "charge")
        await writer.apply(
            Changes(
                runs=[run_record("r1")],
                attempts=[attempt],
                offers_add=[offer(attempt.attempt_id, 5, contract="payments/charge", major=2)],
                timers_set=[timer("lease", attempt.attempt_id, 9_000), timer("retry", "x", 7_000)],
            )
        )
        hint = await theirs.next()
        assert hint == StoreHint(runs={"r1": 1}, queues={("payments/charge", 2): 1}, timer_due_ms=7_000)
        # An update names the version it committed.
        await writer.apply(Changes(runs=[run_record("r1", status="succeeded")], expect_versions={"r1": 1}))
        assert (await theirs.next()).runs == {"r1": 2}
        # A refused transition (a stale version) sends nothing; the next one still does.
        with pytest.raises(VersionConflict):
            await reader.apply(Changes(expect_versions={"r1": 1}))
        await reader.apply(Changes(expect_versions={"r1": 2}))
        assert (await mine.next()).runs == {"r1": 3}
        # A task under a concurrency limit ended: the others' polls passing by held offers are told.
        await writer.apply(
            Changes(expect_versions={"r1": 3}, inflight_remove=[attempt.attempt_id], frees_held=True)
        )
        assert await theirs.next() == StoreHint(runs={"r1": 4}, freed=True)
        assert theirs.got == [] and mine.got == []  # neither heard its own
    finally:
        for store in (writer, reader):
            await store.close()


async def test_which_agents_a_store_serves_reaches_the_others_however_many(pg_database: TestDatabase) -> None:
    url = pg_database.schema_url()
    teller, listener = await _stores(url, 2)
    hints = Hints()
    try:
        await _subscribed(listener, hints)
        agents = {f"agent-{n:04d}-{'x' * 100}": n % 3 - 1 for n in range(300)}  # many payloads' worth
        await teller.hint_presence(agents)
        heard: dict[str, int] = {}
        while len(heard) < len(agents):
            hint = await hints.next()
            assert not hint.runs and not hint.queues and hint.timer_due_ms is None
            heard.update(hint.agents)
        assert heard == agents
    finally:
        for store in (teller, listener):
            await store.close()


async def test_stores_on_another_schema_get_no_hint(pg_database: TestDatabase) -> None:
    here, elsewhere = pg_database.schema_url(), pg_database.schema_url()
    [writer] = await _stores(here, 1)
    [reader] = await _stores(elsewhere, 1)
    [witness] = await _stores(here, 1)
    heard, witnessed = Hints(), Hints()
    try:
        await _subscribed(reader, heard)
        await _subscribed(witness, witnessed)
        await writer.apply(Changes(runs=[run_record("r1")]))
        assert (await witnessed.next()).runs == {"r1": 1}  # the hint went out, on its schema's channel
        assert heard.got == []
    finally:
        for store in (writer, reader, witness):
            await store.close()


async def test_a_lost_listening_connection_is_made_again_and_says_everything(
    pg_database: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="coordinator.store.postgres")
    url = pg_database.schema_url()
    writer, reader = await _stores(url, 2)
    hints = Hints()
    try:
        await _subscribed(reader, hints)
        await _listening(url, 1)
        with pg_database.connect() as admin:  # as an administrator (or a failover) would
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
            )
        # At once when the loss is noticed (waits fall back to reading the store), and again
        # once it listens anew (what was sent meanwhile is lost).
        assert await hints.next() == StoreHint(everything=True)
        assert await hints.next() == StoreHint(everything=True)
        await writer.apply(Changes(runs=[run_record("r2")]))
        assert (await hints.next()).runs == {"r2": 1}
        messages = [r.getMessage() for r in caplog.records]
        assert any("lost the connection that brings hints" in m for m in messages), messages
        assert any("come again" in m for m in messages), messages
    finally:
        for store in (writer, reader):
            await store.close()


async def test_a_store_that_starts_listening_says_everything(pg_database: TestDatabase) -> None:
    """What another process committed between ``subscribe`` and the listener's first LISTEN came
    with no hint: the subscriber is told to read everything again once the store listens (a
    coordinator just started would otherwise miss, say, an offer made in that moment until its
    fallback re-read)."""
    url = pg_database.schema_url()
    writer, reader = await _stores(url, 2)
    hints = Hints()
    try:
        await writer.apply(Changes(runs=[run_record("r1")]))  # no hint reaches the reader
        reader.subscribe(hints)
        assert await hints.next() == StoreHint(everything=True)
        await writer.apply(Changes(runs=[run_record("r2")]))
        assert (await hints.next()).runs == {"r2": 1}
        assert hints.got == []
    finally:
        for store in (writer, reader):
            await store.close()


async def _subscribed(store: PostgresStore, hints: Hints) -> None:
    """Subscribe ``hints`` to ``store`` and wait until it listens (its first hint, ``everything``)."""
    store.subscribe(hints)
    assert await hints.next() == StoreHint(everything=True)


async def _listening(url: str, count: int) -> None:
    """Until ``count`` connections of the database LISTEN (the stores' listeners)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN_S
    while True:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            row = await (
                await conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND query LIKE 'LISTEN%%' AND state = 'idle'"
                )
            ).fetchone()
        if row is not None and row[0] >= count:
            return
        assert loop.time() < deadline, f"fewer than {count} listeners after {WITHIN_S}s"
        await asyncio.sleep(0.02)
