"""Engine.watch, the source of the WatchRun stream: it ends only after yielding a terminal run.

The engine hands out views over its live, mutable run records. A watcher that decided whether
to go on from the record *after* its last view was sent would see a run that finished in the
meantime as terminal and stop, although the last view it sent still said "running": the
stream ended before the run was terminal (seen once in ``accord run --wait``). These tests
drive the generator step by step against the real engine, store and registry, so the
interleaving that was rare over gRPC is forced every time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from coordinator.api import convert
from coordinator.client import merge_watched
from coordinator.config import CoordinatorConfig
from coordinator.engine.engine import Engine, RunView
from coordinator.principal import Principal
from coordinator.server import Coordinator
from coordinator.store.records import (
    RUN_RUNNING,
    RUN_SUCCEEDED,
    RUN_TERMINAL,
    AgentRecord,
    Binding,
    Changes,
    RunSnapshot,
    SpanRecord,
)
from coordinator.store.sqlite import SqliteStore
from tests.support.scenario import contract

ADMIN = Principal(admin=True)
PAYMENTS = Principal(team="payments")
WORKFLOW = """\
workflow: payments/charge-twice
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  first:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}"}
  second:
    contract: payments/charge@^1
    input: {order_id: "${steps.first.output.ref}"}
output: {ref: "${steps.second.output.ref}"}
"""


class _NoSpans:
    async def emit(self, records: list[SpanRecord]) -> None:
        pass


class _GatedStore(SqliteStore):
    """The real store, able to hold the write that ends a run and a read of a run, so a test
    can order them as a busy coordinator occasionally does."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.end_written = asyncio.Event()
        self.end_written.set()
        self.end_held = asyncio.Event()
        self.read_returns = asyncio.Event()
        self.read_returns.set()
        self.read_held = asyncio.Event()

    async def apply(self, changes: Changes) -> None:
        if any(run.status in RUN_TERMINAL for run in changes.runs):
            self.end_held.set()
            await self.end_written.wait()
        await super().apply(changes)

    async def load_run(self, run_id: str) -> RunSnapshot | None:
        snapshot = await super().load_run(run_id)
        self.read_held.set()
        await self.read_returns.wait()
        return snapshot


@pytest.fixture
async def store(tmp_path: Path) -> _GatedStore:
    return _GatedStore(tmp_path / "coordinator.db")


@pytest.fixture
async def engine(tmp_path: Path, store: _GatedStore) -> AsyncIterator[Engine]:
    coordinator = Coordinator(
        CoordinatorConfig(home=tmp_path, listen="127.0.0.1:0"), store=store, span_sink=_NoSpans()
    )
    await coordinator.start()
    try:
        await coordinator.teams.create(ADMIN, "payments")
        await coordinator.registry.register_contract(PAYMENTS, contract("payments/charge"), "c.yaml", False)
        await coordinator.registry.register_workflow(PAYMENTS, WORKFLOW, "w.yaml", False)
        await coordinator.engine.register_agent(
            PAYMENTS,
            AgentRecord("payments-1", "payments", (Binding("payments/charge", 1),), 4),
            *coordinator.engine.team_defaults("payments"),
        )
        yield coordinator.engine
    finally:
        store.end_written.set()
        store.read_returns.set()
        await coordinator.stop(grace=0)


async def _complete_next(engine: Engine) -> None:
    assignment = await engine.poll(PAYMENTS, "payments-1", [], wait_s=2)
    assert assignment is not None
    ref = f"ref-{assignment.step.step_id}"
    assert await engine.complete(PAYMENTS, "payments-1", assignment.attempt.attempt_id, {"ref": ref}, "")


async def test_watch_yields_the_terminal_view_when_the_run_ends_between_two_views(engine: Engine) -> None:
    view, _ = await engine.start_run(PAYMENTS, "payments/charge-twice", {"order_id": "o-1"})
    watch = engine.watch(PAYMENTS, view.run.run_id)
    first = await anext(watch)
    sent_status = first.run.status  # what the servicer serialised and sent
    assert sent_status == RUN_RUNNING
    # While that message is on the wire, both steps complete and the run succeeds.
    await _complete_next(engine)
    await _complete_next(engine)
    last = await asyncio.wait_for(anext(watch), 2)
    assert last.run.status == RUN_SUCCEEDED
    assert last.run.output == {"ref": "ref-second"}
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(watch), 2)


async def test_every_watch_stream_ends_with_a_terminal_view(engine: Engine) -> None:
    """Many watchers, runs finishing at arbitrary points between their views."""
    runs = [
        (await engine.start_run(PAYMENTS, "payments/charge-twice", {"order_id": f"o-{i}"}))[0].run.run_id
        for i in range(20)
    ]

    async def follow(run_id: str) -> list[str]:
        seen = []
        async for update in engine.watch(PAYMENTS, run_id):
            seen.append(update.run.status)  # captured as the servicer would, at yield time
            # Writing the message to the client takes a while, and other coroutines run meanwhile.
            await asyncio.sleep(random.uniform(0, 0.02))
        return seen

    watchers = [asyncio.create_task(follow(run_id)) for run_id in runs]
    await asyncio.sleep(0)
    for _ in range(2 * len(runs)):
        await _complete_next(engine)
    for seen in await asyncio.wait_for(asyncio.gather(*watchers), 10):
        assert seen[-1] in RUN_TERMINAL, seen


async def test_a_watch_started_after_the_end_yields_the_terminal_run_once(engine: Engine) -> None:
    view, _ = await engine.start_run(PAYMENTS, "payments/charge-twice", {"order_id": "o-1"})
    await _complete_next(engine)
    await _complete_next(engine)
    views: list[RunView] = [v async for v in engine.watch(PAYMENTS, view.run.run_id)]
    assert [v.run.status for v in views] == [RUN_SUCCEEDED]


async def test_a_watch_that_reads_the_run_while_its_end_is_being_written_still_sees_the_end(
    engine: Engine, store: _GatedStore
) -> None:
    """This process has no state of the run cached (e.g. it was restarted) and the transition
    that ends the run is being written: the watcher reads the stored, running run, and the end's
    notification fires before that read returns. A watcher that started listening only after its
    read would wait forever; one that cached what it read would show a stale run."""
    view, _ = await engine.start_run(PAYMENTS, "payments/charge-twice", {"order_id": "o-1"})
    run_id = view.run.run_id
    await _complete_next(engine)
    store.end_written.clear()
    finishing = asyncio.create_task(_complete_next(engine))
    await asyncio.wait_for(store.end_held.wait(), 2)  # the run ended in memory; not yet written
    engine._runs.pop(run_id)  # as if another process: nothing cached
    store.read_returns.clear()
    store.read_held.clear()
    watch = engine.watch(PAYMENTS, run_id)
    first = asyncio.create_task(anext(watch))
    await asyncio.wait_for(store.read_held.wait(), 2)  # the watcher read the stored, running run
    store.end_written.set()
    await asyncio.wait_for(finishing, 2)  # written and notified while the read is still returning
    store.read_returns.set()
    statuses = [(await asyncio.wait_for(first, 2)).run.status]
    while statuses[-1] not in RUN_TERMINAL:
        statuses.append((await asyncio.wait_for(anext(watch), 2)).run.status)
    assert statuses[-1] == RUN_SUCCEEDED, statuses
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(watch), 2)
    # Nothing stale was cached: the run reads as it is stored.
    assert (await engine.get_run(PAYMENTS, run_id)).run.status == RUN_SUCCEEDED


async def test_changes_within_the_coalescing_window_come_as_one_view(engine: Engine) -> None:
    """Transitions close together after a view are yielded once, when the window ends; the run's
    end is yielded at once, whatever is left of the window."""
    view, _ = await engine.start_run(PAYMENTS, "payments/charge-twice", {"order_id": "o-1"})
    watch = engine.watch(PAYMENTS, view.run.run_id, coalesce_s=3)
    assert (await anext(watch)).run.status == RUN_RUNNING
    waiting = asyncio.create_task(anext(watch))
    poll = await engine.poll(PAYMENTS, "payments-1", [], wait_s=2)  # a claim: a change
    assert poll is not None
    await asyncio.sleep(0.05)
    assert not waiting.done()  # held for the rest of the window
    assert await engine.complete(PAYMENTS, "payments-1", poll.attempt.attempt_id, {"ref": "r"}, "")
    middle = await asyncio.wait_for(waiting, 10)  # the claim and the completion, together
    assert middle.run.status == RUN_RUNNING
    first = next(step for step in middle.steps if step.step_id == "first")
    assert first.status == "succeeded"
    # A window of an hour: only the end can cut it short.
    watch = engine.watch(PAYMENTS, view.run.run_id, coalesce_s=3600)
    assert (await anext(watch)).run.status == RUN_RUNNING
    await _complete_next(engine)
    last = await asyncio.wait_for(anext(watch), 5)
    assert last.run.status == RUN_SUCCEEDED
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(watch), 2)


async def test_a_partial_watch_merged_is_the_run_and_repeats_no_unchanged_step(engine: Engine) -> None:
    """WatchRun with changes_only: after the first message only the steps that changed; the
    client's merge (coordinator.client.merge_watched) of every message is the whole run."""
    view, _ = await engine.start_run(PAYMENTS, "payments/charge-twice", {"order_id": "o-1"})
    full = convert.WatchEncoder(PAYMENTS, (), changes_only=False)
    partial = convert.WatchEncoder(PAYMENTS, (), changes_only=True)
    merged = pb.Run()
    sent_steps: list[list[str]] = []
    async for update in engine.watch(PAYMENTS, view.run.run_id):
        whole = full.encode(update).run
        delta = partial.encode(update)
        sent_steps.append([step.id for step in delta.run.steps])
        merged = merge_watched(merged, delta)
        assert merged == whole
        if update.run.status not in RUN_TERMINAL:
            await _complete_next(engine)
    assert len(sent_steps) == 3, sent_steps
    assert sent_steps[0] == ["first", "second"]  # the first message is whole
    assert "first" not in sent_steps[2]  # finished in the second message: not sent again
    assert merged.input_json and merged.output_json


async def test_a_view_made_while_a_transition_changes_the_run_is_made_all_the_same(engine: Engine) -> None:
    """A view looks up the limits of the contracts its offered tasks wait for, which may read the
    registry (an await) in the middle of going through the run's current attempts; a transition
    committed meanwhile (here the first step's completion, which starts the second) changes them.
    Seen once in make test as GetRun answering INTERNAL "dictionary changed size during
    iteration" while a schedule-to-start timeout fired."""
    view, _ = await engine.start_run(PAYMENTS, "payments/charge-twice", {"order_id": "o-1"})
    run_id = view.run.run_id
    original = engine._contract_limit
    meanwhile: list[str] = []

    async def limit(contract: str, major: int) -> int:
        if not meanwhile:
            meanwhile.append(contract)
            await _complete_next(engine)
        return await original(contract, major)

    engine._contract_limit = limit  # type: ignore[method-assign]
    shown = await engine.get_run(PAYMENTS, run_id)
    assert meanwhile, "the view did not look a limit up"
    assert {s.step_id: s.status for s in shown.steps}["first"] == "succeeded"
