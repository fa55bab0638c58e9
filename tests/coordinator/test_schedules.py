"""Workflow schedules on two coordinators sharing one real PostgreSQL database, driven by a test
clock (no real waits): exactly one run per due time however many replicas look; the due times
missed while no coordinator ran are caught up as each schedule's catch_up says, by a coordinator
started afterwards; overlap skip and queue hold a due time while the schedule's run still goes;
pause, resume and trigger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts.errors import FailedPreconditionError, PermissionDeniedError
from coordinator.config import CoordinatorConfig
from coordinator.principal import Principal
from coordinator.server import Coordinator
from coordinator.store.postgres import PostgresStore
from coordinator.store.records import RUN_TERMINAL, RunFilter, RunRecord
from tests.support.inprocess import ADMIN, PAYMENTS, NoSpans, seed_payments
from tests.support.postgres import TestDatabase

pytestmark = pytest.mark.postgres

MINUTE = 60_000
T0 = int(datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC).timestamp() * 1000)  # 30 s past a minute


def _workflow(*schedules: str) -> str:
    return (
        "workflow: payments/charge-once\n"
        "input: {type: object, required: [order_id], properties: {order_id: {type: string}}}\n"
        "steps:\n"
        "  charge:\n"
        "    contract: payments/charge@^1\n"
        '    input: {order_id: "${input.order_id}"}\n'
        'output: {ref: "${steps.charge.output.ref}"}\n'
        "schedules:\n" + "".join(f"  - {s}\n" for s in schedules)
    )


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Cluster:
    """Coordinators in this process on one database, sharing ``clock``."""

    def __init__(self, url: str, root: Path, clock: Clock) -> None:
        self.url, self.root, self.clock = url, root, clock
        self.members: list[Coordinator] = []

    async def add(self) -> Coordinator:
        coordinator = Coordinator(
            CoordinatorConfig(
                home=self.root / f"c{len(self.members)}", listen="127.0.0.1:0", store_url=self.url
            ),
            store=PostgresStore(self.url, pool_size=4),
            span_sink=NoSpans(),
            schedule_clock=self.clock,
        )
        await coordinator.start()
        self.members.append(coordinator)
        return coordinator

    async def stop_all(self) -> None:
        for coordinator in self.members:
            await coordinator.stop(grace=0)
        self.members = []

    async def tick(self, at: int) -> None:
        """Every coordinator looks at once, twice over, at ``at``."""
        self.clock.now = at
        for _ in range(2):
            await asyncio.gather(*(c.scheduler.tick() for c in self.members))


@pytest.fixture
async def cluster(pg_database: TestDatabase, tmp_path: Path) -> AsyncIterator[Cluster]:
    cluster = Cluster(pg_database.schema_url(), tmp_path, Clock(T0))
    try:
        yield cluster
    finally:
        await cluster.stop_all()


async def _register(coordinator: Coordinator, workflow: str) -> None:
    await seed_payments(coordinator, workflow=workflow)
    await coordinator.scheduler.sync_workflow("payments/charge-once")  # as RegisterWorkflow does


async def _scheduled(coordinator: Coordinator, schedule_id: str) -> list[RunRecord]:
    runs = await coordinator.store.list_runs(RunFilter(workflow="payments/charge-once", limit=1000))  # type: ignore[union-attr]
    return sorted(
        (r for r in runs if r.idempotency_key.startswith(f"schedule:{schedule_id}:")),
        key=lambda r: r.idempotency_key,
    )


def _due(run: RunRecord) -> int:
    return int(run.idempotency_key.rsplit(":", 1)[1])


async def test_two_replicas_start_exactly_one_run_per_due_time(cluster: Cluster) -> None:
    a, _ = await cluster.add(), await cluster.add()
    await _register(
        a, _workflow('{id: every-minute, cron: "* * * * *", input: {order_id: s}, overlap: allow}')
    )
    for minute in range(1, 6):
        await cluster.tick(T0 + minute * MINUTE)
    runs = await _scheduled(a, "every-minute")
    expected = [T0 - 30_000 + m * MINUTE for m in range(1, 6)]
    assert [_due(r) for r in runs] == expected, [r.idempotency_key for r in runs]
    assert all(r.input == {"order_id": "s"} and r.caller_team == "payments" for r in runs)
    schedules = await a.scheduler.list(PAYMENTS)
    assert [(s.schedule_id, s.last_due_ms, s.next_due_ms) for s in schedules] == [
        ("every-minute", expected[-1], expected[-1] + MINUTE)
    ]
    assert schedules[0].last_run_id == runs[-1].run_id


async def test_due_times_missed_while_down_are_caught_up_per_policy(cluster: Cluster) -> None:
    a, b = await cluster.add(), await cluster.add()
    await _register(
        a,
        _workflow(
            '{id: none, cron: "*/10 * * * *", input: {order_id: n}, overlap: allow}',
            '{id: last, cron: "*/10 * * * *", input: {order_id: l}, overlap: allow, catch_up: last}',
            '{id: all, cron: "*/10 * * * *", input: {order_id: a}, overlap: allow, catch_up: all, max_catch_up: 3}',
        ),
    )
    await cluster.stop_all()  # every coordinator down...
    first_due = T0 - 30_000 + 10 * MINUTE
    back = first_due + 50 * MINUTE + 5 * MINUTE  # ...over six due times; the last 5 minutes ago
    cluster.clock.now = back
    c = await cluster.add()  # a coordinator started afterwards catches up
    await cluster.tick(back)
    assert await _scheduled(c, "none") == []
    assert [_due(r) for r in await _scheduled(c, "last")] == [first_due + 50 * MINUTE]
    assert [_due(r) for r in await _scheduled(c, "all")] == [first_due + n * 10 * MINUTE for n in (3, 4, 5)]
    # On time again: each starts the next due time, once.
    await cluster.add()
    await cluster.tick(first_due + 60 * MINUTE + 1_000)
    for schedule_id, count in (("none", 1), ("last", 2), ("all", 4)):
        runs = await _scheduled(c, schedule_id)
        assert len(runs) == count and _due(runs[-1]) == first_due + 60 * MINUTE, (schedule_id, runs)
    del a, b


async def test_overlap_skip_and_queue_hold_a_due_time_while_the_run_goes(cluster: Cluster) -> None:
    a, _ = await cluster.add(), await cluster.add()
    await _register(
        a,
        _workflow(
            '{id: skip, cron: "* * * * *", input: {order_id: s}}',
            '{id: queue, cron: "* * * * *", input: {order_id: q}, overlap: queue}',
        ),
    )
    due = [T0 - 30_000 + m * MINUTE for m in range(1, 4)]
    for at in due:  # no agent ever answers: each first run keeps going
        await cluster.tick(at + 1_000)
    skip, queue = await _scheduled(a, "skip"), await _scheduled(a, "queue")
    assert [_due(r) for r in skip] == due[:1] and [_due(r) for r in queue] == due[:1]
    (queued,) = [s for s in await a.scheduler.list(PAYMENTS) if s.schedule_id == "queue"]
    assert queued.queued == due[1:]

    for run in (skip[0], queue[0]):
        await a.engine.cancel_run(PAYMENTS, run.run_id, "make room")
    await cluster.tick(due[-1] + 2_000)  # queue: the oldest queued one starts, the next waits
    assert [_due(r) for r in await _scheduled(a, "skip")] == due[:1]
    queue = await _scheduled(a, "queue")
    assert [_due(r) for r in queue] == due[:2]
    await a.engine.cancel_run(PAYMENTS, queue[-1].run_id, "make room")
    await cluster.tick(due[-1] + 3_000)
    assert [_due(r) for r in await _scheduled(a, "queue")] == due
    assert all(r.status in RUN_TERMINAL for r in (await _scheduled(a, "queue"))[:2])


async def test_pause_resume_and_trigger(cluster: Cluster) -> None:
    a = await cluster.add()
    await _register(
        a,
        _workflow(
            '{id: nightly, cron: "0 2 * * *", timezone: Europe/Berlin, input: {order_id: x}, catch_up: last}'
        ),
    )
    with pytest.raises(PermissionDeniedError, match="only that team may pause"):
        await a.scheduler.set_paused(Principal(team="sales"), "payments/charge-once", "nightly", True)
    paused = await a.scheduler.set_paused(PAYMENTS, "payments/charge-once", "nightly", True)
    assert paused.paused
    # 02:00 in Berlin is 01:00 UTC in winter; two nights pass while paused: nothing starts.
    berlin_2am = int(datetime(2026, 1, 1, 1, 0, tzinfo=UTC).timestamp() * 1000)
    await cluster.tick(berlin_2am + 24 * 60 * MINUTE + 1_000)
    assert await _scheduled(a, "nightly") == []
    await a.scheduler.set_paused(PAYMENTS, "payments/charge-once", "nightly", False)
    await cluster.tick(berlin_2am + 24 * 60 * MINUTE + 2_000)
    assert [_due(r) for r in await _scheduled(a, "nightly")] == [
        berlin_2am + 24 * 60 * MINUTE
    ]  # catch_up: last

    run_id = await a.scheduler.trigger(PAYMENTS, "payments/charge-once", "nightly", "req-1")
    assert run_id == await a.scheduler.trigger(PAYMENTS, "payments/charge-once", "nightly", "req-1")
    run = await a.store.get_run(run_id)  # type: ignore[union-attr]
    assert run is not None and run.input == {"order_id": "x"}
    assert run.idempotency_key == "schedule:nightly:trigger:req-1"
    assert [s.schedule_id for s in await a.scheduler.list(ADMIN)] == ["nightly"]
    assert await a.scheduler.list(Principal(team="sales")) == []


async def test_a_disabled_workflows_schedule_starts_nothing_and_a_trigger_says_why(cluster: Cluster) -> None:
    a = await cluster.add()
    await _register(
        a,
        _workflow(
            '{id: every-minute, cron: "* * * * *", input: {order_id: s}, overlap: allow, catch_up: all}'
        ),
    )
    await a.registry.set_workflow_enabled(PAYMENTS, "payments/charge-once", False)
    for minute in range(1, 4):  # three due times pass
        await cluster.tick(T0 + minute * MINUTE)
    assert await _scheduled(a, "every-minute") == []
    with pytest.raises(FailedPreconditionError, match="workflow is disabled; 'accord workflow enable"):
        await a.scheduler.trigger(PAYMENTS, "payments/charge-once", "every-minute", "req-1")
    assert await _scheduled(a, "every-minute") == []

    # Enabled again: the next due time starts its run (the ones passed while disabled do not).
    await a.registry.set_workflow_enabled(PAYMENTS, "payments/charge-once", True)
    await cluster.tick(T0 + 4 * MINUTE)
    assert [_due(r) for r in await _scheduled(a, "every-minute")] == [T0 - 30_000 + 4 * MINUTE]


async def test_a_workflow_enabled_through_one_replica_fires_on_another_at_once(cluster: Cluster) -> None:
    """Replica b has just read the workflow as disabled (cached for a while: it would otherwise
    skip the next due time that it claims); enabled through a, b's next look starts the run."""
    a, b = await cluster.add(), await cluster.add()
    await _register(
        a,
        _workflow(
            '{id: every-minute, cron: "* * * * *", input: {order_id: s}, overlap: allow, catch_up: last}'
        ),
    )
    await a.registry.set_workflow_enabled(PAYMENTS, "payments/charge-once", False)
    b.registry.fresh_s = 3600.0  # b's caches are not read again by age within this test
    assert await b.registry.workflow_disabled_ms("payments/charge-once") > 0
    await a.registry.set_workflow_enabled(PAYMENTS, "payments/charge-once", True)
    await a.stop(grace=0)  # only b looks from now on
    cluster.members.remove(a)
    await cluster.tick(T0 + MINUTE)
    assert [_due(r) for r in await _scheduled(b, "every-minute")] == [T0 - 30_000 + MINUTE]
