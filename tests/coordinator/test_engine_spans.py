"""The coordinator's own spans, built by the real engine over the real store and registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coordinator.config import CoordinatorConfig
from coordinator.engine.spans import attempt_span
from coordinator.server import Coordinator
from coordinator.store.records import AgentRecord, AttemptRecord, Binding, RunRecord, SpanRecord, StepRecord
from tests.support.inprocess import ADMIN, PAYMENTS
from tests.support.inprocess import CHARGE_ONCE as WORKFLOW
from tests.support.scenario import contract


class _Recorder:
    def __init__(self) -> None:
        self.spans: list[SpanRecord] = []

    async def emit(self, records: list[SpanRecord]) -> None:
        self.spans.extend(records)


@pytest.fixture
async def coordinator(tmp_path: Path) -> AsyncIterator[tuple[Coordinator, _Recorder]]:
    recorder = _Recorder()
    coordinator = Coordinator(CoordinatorConfig(home=tmp_path, listen="127.0.0.1:0"), span_sink=recorder)
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
        yield coordinator, recorder
    finally:
        await coordinator.stop(grace=0)


async def test_the_attempt_span_covers_the_queue_wait_from_scheduling_to_completion(
    coordinator: tuple[Coordinator, _Recorder],
) -> None:
    accord, recorder = coordinator
    engine = accord.engine
    view, _ = await engine.start_run(PAYMENTS, "payments/charge-once", {"order_id": "o-1"})
    await asyncio.sleep(0.15)  # queued, no agent asking yet
    assignment = await engine.poll(PAYMENTS, "payments-1", [], wait_s=2)
    assert assignment is not None
    assert await engine.complete(PAYMENTS, "payments-1", assignment.attempt.attempt_id, {"ref": "r"}, "")
    await engine.stop()  # flushes the span buffer

    run_id = view.run.run_id
    _, attempts = await accord.store.run_steps(run_id)  # type: ignore[union-attr]
    (attempt,) = attempts
    (span,) = [s for s in recorder.spans if s.span_id == attempt.span_id]
    assert attempt.started_ms - attempt.scheduled_ms >= 100
    assert span.start_ns == attempt.scheduled_ms * 1_000_000  # scheduled, not started
    assert span.end_ns == attempt.finished_ms * 1_000_000
    assert span.attributes["accord.queue_wait_ms"] == attempt.started_ms - attempt.scheduled_ms
    assert span.attributes["accord.started_unix_ms"] == attempt.started_ms
    (step,) = [s for s in recorder.spans if s.name == "step charge"]
    assert step.start_ns <= span.start_ns and span.end_ns <= step.end_ns


def test_an_attempt_no_agent_took_waited_for_its_whole_span() -> None:
    run = RunRecord("r-1", "payments/x", 1, "payments", "failed", {}, 1, "a" * 32, "b" * 16)
    step = StepRecord(
        "r-1", "charge", "charge", "payments/charge", "1.0.0", "payments", "failed", "k", "c" * 16
    )
    attempt = AttemptRecord(
        "r-1:charge:1", "r-1", "charge", 1, "timed_out", "payments/charge", 1, "d" * 16,
        scheduled_ms=1_000, finished_ms=4_000,
    )  # fmt: skip
    span = attempt_span(run, step, attempt)
    assert (span.start_ns, span.end_ns) == (1_000_000_000, 4_000_000_000)
    assert span.attributes["accord.queue_wait_ms"] == 3_000
    assert "accord.started_unix_ms" not in span.attributes
