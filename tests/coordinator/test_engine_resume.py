"""A run that cannot go on after a restart (its workflow version is gone from the database) fails
with ResumeError the first time anything touches it, and takes its timers and offers with it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from coordinator.config import CoordinatorConfig
from coordinator.principal import Principal
from coordinator.server import Coordinator
from coordinator.store.records import ATTEMPT_CANCELLED, RUN_FAILED, STEP_CANCELLED, RunRecord, SpanRecord
from tests.support.scenario import contract

ADMIN = Principal(admin=True)
PAYMENTS = Principal(team="payments")
WORKFLOW = """\
workflow: payments/once
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}"}
"""


class _NoSpans:
    async def emit(self, records: list[SpanRecord]) -> None:
        pass


def _coordinator(home: Path) -> Coordinator:
    return Coordinator(CoordinatorConfig(home=home, listen="127.0.0.1:0"), span_sink=_NoSpans())


async def test_a_run_whose_workflow_version_is_gone_fails_with_resume_error(tmp_path: Path) -> None:
    first = _coordinator(tmp_path)
    await first.start()
    try:
        await first.teams.create(ADMIN, "payments")
        await first.registry.register_contract(
            PAYMENTS,
            contract("payments/charge", extra="timeouts: {schedule_to_start: 1h}\n"),
            "c.yaml",
            False,
        )
        await first.registry.register_workflow(PAYMENTS, WORKFLOW, "w.yaml", False)
        view, _ = await first.engine.start_run(PAYMENTS, "payments/once", {"order_id": "o-1"})
        run_id = view.run.run_id
    finally:
        await first.stop(grace=0)
    with sqlite3.connect(tmp_path / "coordinator.db") as db:
        assert db.execute("SELECT count(*) FROM offers").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM timers").fetchone() == (1,)  # schedule-to-start
        db.execute("DELETE FROM workflows WHERE name = 'payments/once'")

    second = _coordinator(tmp_path)
    await second.start()
    try:
        view = await second.engine.get_run(PAYMENTS, run_id)
        run: RunRecord = view.run
        assert run.status == RUN_FAILED and run.error is not None
        assert run.error.type == "ResumeError"
        assert "workflow payments/once version 1 is not registered" in run.error.message
        assert [s.status for s in view.steps] == [STEP_CANCELLED]
        assert [a.status for a in view.attempts["charge"]] == [ATTEMPT_CANCELLED]
    finally:
        await second.stop(grace=0)
    with sqlite3.connect(tmp_path / "coordinator.db") as db:
        assert db.execute("SELECT count(*) FROM offers").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM timers").fetchone() == (0,)
