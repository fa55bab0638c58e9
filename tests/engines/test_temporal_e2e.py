"""The temporal engine through a real coordinator and a real agent process (``accord agent
start``), against the real Temporal dev server and workers of tests/engines/temporal_support.py:
the example team's binding and workflow (examples/temporal-team), a declined card, and a
coordinator-side cancel reaching the workflow."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client, WorkflowExecutionStatus

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.config import parse_config
from team_agent.engines.temporal import TemporalEngine
from tests.engines.e2e_support import REPO, EngineTeam, attempt_error, engine_team
from tests.engines.temporal_support import (  # noqa: F401  (session fixtures)
    TemporalDevServer,
    WorkerThread,
    temporal_server_fixture,
    temporal_worker_fixture,
)
from tests.engines.temporal_workflows import TASK_QUEUE
from tests.support.coordinator import CoordinatorProcess
from tests.support.wait import wait_until

EXAMPLE = REPO / "examples" / "temporal-team"
sys.path.insert(0, str(EXAMPLE))  # the worker imports the example's workflows as its worker.py does

from payments_workflows import TASK_QUEUE as PAYMENTS_QUEUE  # noqa: E402
from payments_workflows import ChargeCard, charge_card  # noqa: E402

pytestmark = [pytest.mark.xdist_group("temporal"), pytest.mark.timeout(180)]

CHARGE_CARD = (REPO / "examples" / "contracts" / "charge-card.yaml").read_text()


@pytest.fixture(scope="module")
def payments_worker(temporal_server: TemporalDevServer, _span_exporter: Any) -> Iterator[WorkerThread]:
    """The example team's worker: ``ChargeCard`` on ``payments``."""
    worker = WorkerThread(temporal_server.address, PAYMENTS_QUEUE, [ChargeCard], [charge_card]).start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
async def teams() -> AsyncIterator[list[EngineTeam]]:
    made: list[EngineTeam] = []
    yield made
    for team in made:
        await asyncio.to_thread(team.stop_agents)


def example_binding(address: str) -> dict[str, Any]:
    config = yaml.safe_load((EXAMPLE / "agent.yaml").read_text())
    binding: dict[str, Any] = config["implements"]["payments/charge-card@1"]
    binding["with"].update(target_host=address, poll_interval="200ms", max_poll_interval="1s")
    return binding


async def test_the_example_config_loads(
    temporal_server: TemporalDevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCORD_TOKEN", "t")
    text = (EXAMPLE / "agent.yaml").read_text().replace("127.0.0.1:7233", temporal_server.address)
    loaded = await asyncio.to_thread(parse_config, text, "agent.yaml")
    adapter = loaded.adapters["payments/charge-card@1"]
    assert isinstance(adapter, TemporalEngine) and adapter.config.workflow_type == "ChargeCard"
    await adapter.close()


async def test_example_charge_returns_the_result_and_joins_the_trace_and_a_decline_is_not_retried(
    coordinator: CoordinatorProcess,
    tmp_path: Path,
    teams: list[EngineTeam],
    temporal_server: TemporalDevServer,
    payments_worker: WorkerThread,
    spans: InMemorySpanExporter,
) -> None:
    team = await engine_team(coordinator, tmp_path, contract_source=CHARGE_CARD)  # max_attempts: 3
    teams.append(team)
    await team.start_agent(example_binding(temporal_server.address))
    run = await team.wait_run(
        await team.start_run({"order_id": "o-1", "amount_cents": 100, "card_token": "tok"})
    )
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert json.loads(run.output_json)["payment_ref"].startswith("pay-")
    client = await Client.connect(temporal_server.address)
    workflow_id = run.steps[0].idempotency_key
    assert workflow_id == f"{run.run_id}:work"
    described = await client.get_workflow_handle(workflow_id).describe()
    assert described.status == WorkflowExecutionStatus.COMPLETED and described.workflow_type == "ChargeCard"

    def workflow_span() -> Any:
        return next(
            (
                s
                for s in spans.get_finished_spans()
                if s.name == "RunWorkflow:ChargeCard"
                and (s.attributes or {}).get("temporalWorkflowID") == workflow_id
            ),
            None,
        )

    run_span = await wait_until(workflow_span, "the worker never reported its RunWorkflow span")
    assert f"{run_span.context.trace_id:032x}" == run.trace_id  # the workflow joined the run's trace

    # A declined card: the activity's non-retryable CardDeclined, which the contract lists too.
    value = {"order_id": "o-2", "amount_cents": 100, "card_token": "tok_declined"}
    run = await team.wait_run(await team.start_run(value))
    assert run.status == pb.RUN_STATUS_FAILED
    error, details = attempt_error(run)
    assert error.type == "CardDeclined" and not error.retryable
    assert "card declined for order o-2: do not honor" in error.message
    assert details["application_error_details"] == [{"code": "05"}]
    assert len(run.steps[0].attempts) == 1


async def test_coordinator_cancel_reaches_the_workflow(
    coordinator: CoordinatorProcess,
    tmp_path: Path,
    teams: list[EngineTeam],
    temporal_server: TemporalDevServer,
    temporal_worker: WorkerThread,
) -> None:
    team = await engine_team(coordinator, tmp_path)
    teams.append(team)
    binding = {
        "engine": "temporal",
        "with": {
            "target_host": temporal_server.address,
            "task_queue": TASK_QUEUE,
            "workflow_type": "AccordTest",
        },
    }
    await team.start_agent(binding)
    run_id = await team.start_run({"order_id": "o-3", "sleep": 300})
    client = await Client.connect(temporal_server.address)
    workflow = client.get_workflow_handle(f"{run_id}:work")  # the step's idempotency key

    async def sleeping() -> bool:
        try:
            async for event in workflow.fetch_history_events():
                if event.HasField("timer_started_event_attributes"):
                    return True
        except Exception:  # not started yet
            return False
        return False

    await wait_until(sleeping, "the workflow never reached its timer", within=60)
    await team.cancel_run(run_id)
    run = await team.wait_run(run_id)
    assert run.status == pb.RUN_STATUS_CANCELLED
    # The agent learns of the cancel on its next heartbeat, then cancels the execution.
    await wait_until(
        lambda: _status_is(workflow, WorkflowExecutionStatus.CANCELED),
        "the workflow was not cancelled",
        within=60,
    )


async def _status_is(workflow: Any, status: WorkflowExecutionStatus) -> bool:
    return bool((await workflow.describe()).status == status)
