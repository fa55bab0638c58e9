"""Helpers shared by the agent's unit tests (imported by module name: pytest puts this
directory on sys.path; there is no __init__.py, which would shadow the team_agent package)."""

from __future__ import annotations

from typing import Any

from team_agent.engines.base import TaskContext

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def context(**overrides: Any) -> TaskContext:
    values: dict[str, Any] = {
        "task_id": "t1",
        "attempt_id": "a1",
        "attempt": 2,
        "run_id": "run-1",
        "step_id": "charge",
        "workflow": "shipping/order-to-cash",
        "contract": "payments/charge-card",
        "contract_version": "1.2.0",
        "idempotency_key": "idem-1",
        "trace_context": {"traceparent": TRACEPARENT},
    }
    values.update(overrides)
    return TaskContext(**values)
