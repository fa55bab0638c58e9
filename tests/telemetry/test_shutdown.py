"""Stopping the coordinator forwards every span it still holds: the engine's buffered spans are
flushed into the telemetry sink before the OTLP forwarder closes, not after."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coordinator.config import CoordinatorConfig
from coordinator.server import Coordinator
from coordinator.store.records import AgentRecord, Binding, SpanRecord
from coordinator.store.sqlite import SqliteStore
from tests.support.inprocess import ADMIN, PAYMENTS
from tests.support.inprocess import CHARGE_ONCE as WORKFLOW
from tests.support.scenario import contract

from .otlp_collector import OtlpCollector


@pytest.fixture
async def collector() -> AsyncIterator[OtlpCollector]:
    collector = OtlpCollector()
    await collector.start()
    yield collector
    await collector.stop()


async def test_spans_the_engine_flushes_at_shutdown_are_forwarded(
    tmp_path: Path, collector: OtlpCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.port}")
    coordinator = Coordinator(CoordinatorConfig(home=tmp_path, listen="127.0.0.1:0"))
    await coordinator.start()
    stopped = False
    try:
        await coordinator.teams.create(ADMIN, "payments")
        await coordinator.registry.register_contract(PAYMENTS, contract("payments/charge"), "c.yaml", False)
        await coordinator.registry.register_workflow(PAYMENTS, WORKFLOW, "w.yaml", False)
        engine = coordinator.engine
        await engine.register_agent(
            PAYMENTS,
            AgentRecord("payments-1", "payments", (Binding("payments/charge", 1),), 4),
            *engine.team_defaults("payments"),
        )
        view, _ = await engine.start_run(PAYMENTS, "payments/charge-once", {"order_id": "o-1"})
        assignment = await engine.poll(PAYMENTS, "payments-1", [], wait_s=2)
        assert assignment is not None
        await engine.complete(PAYMENTS, "payments-1", assignment.attempt.attempt_id, {"ref": "r"}, "")
        run = view.run
        expected = {run.span_id, assignment.step.span_id, assignment.attempt.span_id}
        # Stop at once: the run's spans are still in the engine's buffer (emitted every 0.2 s).
        await coordinator.stop(grace=0)
        stopped = True
    finally:
        if not stopped:
            await coordinator.stop(grace=0)
    assert {s.span_id for s in await _stored(tmp_path, run.trace_id)} >= expected  # stored...
    assert await collector.wait_for(expected) >= expected  # ...and forwarded


async def _stored(home: Path, trace_id: str) -> list[SpanRecord]:
    store = SqliteStore(home / "coordinator.db")
    await store.open()
    try:
        return await store.spans_for_trace(trace_id)
    finally:
        await store.close()
