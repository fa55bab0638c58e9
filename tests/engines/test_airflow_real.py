"""The ``airflow`` adapter against a real Airflow 3 (see airflow_real.py): the DAGs in
airflow_dags/ and the airflow-team example's DAG, parsed and run by Airflow itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.engines.airflow import AirflowEngine, dag_run_id_for
from team_agent.engines.base import EngineFailure
from tests.engines.airflow_real import RealAirflow
from tests.engines.conftest import make_task
from tests.engines.e2e_support import REPO, EngineTeam, attempt_error, engine_team
from tests.support.coordinator import CoordinatorProcess
from tests.support.wait import wait_until

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(900)]

MakeEngine = Callable[..., AirflowEngine]
CHARGE_CARD = (REPO / "examples" / "contracts" / "charge-card.yaml").read_text()
EXAMPLE_AGENT = REPO / "examples" / "airflow-team" / "agent.yaml"


@pytest.fixture
async def make_engine(real_airflow: RealAirflow) -> AsyncIterator[MakeEngine]:
    made: list[AirflowEngine] = []

    def make(dag_id: str, **extra: Any) -> AirflowEngine:
        engine = AirflowEngine(real_airflow.binding(dag_id, **extra))
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.close()


async def test_success_returns_the_xcom_and_a_redelivery_attaches(
    real_airflow: RealAirflow, make_engine: MakeEngine
) -> None:
    engine = make_engine("accord_echo")
    task = make_task()
    handle = await engine.submit(task, {"order_id": "o-1", "amount_cents": 250})
    again = await engine.submit(task, {"order_id": "o-1", "amount_cents": 250})  # 409 → attach
    assert again.state["attached"] is True
    assert again.details["dag_run_id"] == handle.details["dag_run_id"] == dag_run_id_for(task.idempotency_key)
    output = await engine.wait(again)
    assert output == {"payment_ref": "pay-o-1", "amount_cents": 250, "trace_context_received": True}


async def test_the_example_dag_returns_its_contract_output(make_engine: MakeEngine) -> None:
    engine = make_engine("charge_card")
    output = await engine.wait(await engine.submit(make_task(), {"order_id": "o-7", "amount_cents": 1200}))
    assert set(output) == {"payment_ref"} and output["payment_ref"].startswith("pay-")


async def test_failed_run_lists_the_failed_task(real_airflow: RealAirflow, make_engine: MakeEngine) -> None:
    engine = make_engine("accord_fail")
    handle = await engine.submit(make_task(), {"order_id": "o-2"})
    with pytest.raises(EngineFailure) as info:
        await engine.wait(handle)
    failure = info.value
    assert failure.type == "DagRunFailed"
    assert failure.details["failed_tasks"] == ["boom"]
    assert failure.details["upstream_failed_tasks"] == ["finalize"]
    assert failure.details["airflow_run_url"].startswith(f"{real_airflow.base_url}/dags/accord_fail/runs/")


async def test_paused_dag_fails_fast_unless_unpause_is_set(
    real_airflow: RealAirflow, make_engine: MakeEngine
) -> None:
    await asyncio.to_thread(real_airflow.set_paused, "accord_paused", True)
    with pytest.raises(EngineFailure) as info:
        await make_engine("accord_paused").submit(make_task(), {})
    assert info.value.type == "DagPaused" and not info.value.retryable
    engine = make_engine("accord_paused", unpause=True)
    assert await engine.wait(await engine.submit(make_task(), {})) == {"ran": True}
    await asyncio.to_thread(real_airflow.set_paused, "accord_paused", True)


async def test_cancel_fails_the_running_run(real_airflow: RealAirflow, make_engine: MakeEngine) -> None:
    engine = make_engine("accord_slow")
    handle = await engine.submit(make_task(), {})
    run_id = handle.details["dag_run_id"]
    async with httpx.AsyncClient(base_url=real_airflow.base_url, timeout=60) as client:
        token = (
            await client.post(
                "/auth/token", json={"username": real_airflow.username, "password": real_airflow.password}
            )
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        tis_url = f"/api/v2/dags/accord_slow/dagRuns/{run_id}/taskInstances"
        for _ in range(240):
            tis = (await client.get(tis_url, headers=headers)).json()["task_instances"]
            if any(ti["task_id"] == "slow" and ti["state"] == "running" for ti in tis):
                break
            await asyncio.sleep(0.5)
        else:
            pytest.fail(f"the slow task never started:\n{real_airflow.logs()}")
        await engine.cancel(handle)
        run = (await client.get(f"/api/v2/dags/accord_slow/dagRuns/{run_id}", headers=headers)).json()
        assert run["state"] == "failed"
        assert "Accord" in (run["note"] or "")
    with pytest.raises(EngineFailure) as info:
        await engine.wait(handle)
    assert info.value.type == "DagRunFailed", (info.value.type, info.value.message, info.value.details)


# -- the same four cases through a real coordinator and a real agent process ------------------


@pytest.fixture
async def payments(
    coordinator: CoordinatorProcess, tmp_path: Path, real_airflow: RealAirflow
) -> AsyncIterator[EngineTeam]:
    """The payments team with the example contract payments/charge-card@1, served by an agent
    whose binding is examples/airflow-team/agent.yaml's, pointed at the real Airflow."""
    team = await engine_team(coordinator, tmp_path, contract_source=CHARGE_CARD)
    yield team
    await asyncio.to_thread(team.stop_agents)


def example_binding(real_airflow: RealAirflow, dag_id: str) -> dict[str, Any]:
    config = yaml.safe_load(EXAMPLE_AGENT.read_text())
    binding: dict[str, Any] = config["implements"]["payments/charge-card@1"]
    binding["with"].update(
        base_url=real_airflow.base_url, dag_id=dag_id, poll_interval="0.5s", max_poll_interval="2s"
    )
    return binding


def airflow_secrets(real_airflow: RealAirflow) -> dict[str, str]:
    return {"AIRFLOW_USER": real_airflow.username, "AIRFLOW_PASSWORD": real_airflow.password}


async def test_e2e_success_returns_the_example_dags_output(
    real_airflow: RealAirflow, payments: EngineTeam
) -> None:
    await payments.start_agent(
        example_binding(real_airflow, "charge_card"), env=airflow_secrets(real_airflow)
    )
    run = await payments.wait_run(
        await payments.start_run({"order_id": "o-10", "amount_cents": 990, "card_token": "tok-secret"}),
        within=300,
    )
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    output = json.loads(run.output_json)
    assert set(output) == {"payment_ref"} and output["payment_ref"].startswith("pay-")
    with real_airflow.api() as client:
        runs = client.get("/api/v2/dags/charge_card/dagRuns", params={"limit": 100}).json()["dag_runs"]
    (ours,) = [r for r in runs if r["conf"].get("order_id") == "o-10"]
    assert ours["dag_run_id"].startswith("accord__")
    assert ours["conf"]["airflow/dagrun_parent_trace_context"].split("-")[1] == run.trace_id


async def test_e2e_failure_reports_the_failed_task(real_airflow: RealAirflow, payments: EngineTeam) -> None:
    await payments.start_agent(
        example_binding(real_airflow, "accord_fail"), env=airflow_secrets(real_airflow)
    )
    run = await payments.wait_run(
        await payments.start_run({"order_id": "o-11", "amount_cents": 5}), within=300
    )
    assert run.status == pb.RUN_STATUS_FAILED
    error, details = attempt_error(run)
    assert error.type == "DagRunFailed"
    assert details["failed_tasks"] == ["boom"]
    assert details["airflow_run_url"].startswith(f"{real_airflow.base_url}/dags/accord_fail/runs/accord__")


async def test_e2e_trace_goes_into_the_dag_run_and_its_task_instances(
    real_airflow: RealAirflow, payments: EngineTeam
) -> None:
    """The agent's spans of the Airflow DAG run and of each task instance that ran (start, end,
    state, try number, log link), under the attempt span of the run's trace."""
    await payments.start_agent(
        example_binding(real_airflow, "accord_fail"), env=airflow_secrets(real_airflow)
    )
    run_id = await payments.start_run({"order_id": "o-12", "amount_cents": 5})
    run = await payments.wait_run(run_id, within=300)
    assert run.status == pb.RUN_STATUS_FAILED

    async def traced() -> dict[str, Any] | None:
        async with payments.coordinator.client(payments.token) as client:
            reply = await client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=run_id))
        spans = {s.span_id: s for s in reply.spans}
        return spans if any(s.name == "airflow.task boom" for s in spans.values()) else None

    attempts = len(run.steps[0].attempts)  # the contract retries: one DAG run per attempt

    def ancestors(span: Any, spans: dict[str, Any]) -> list[str]:
        names = []
        while span.parent_span_id in spans:
            span = spans[span.parent_span_id]
            names.append(span.name)
        return names

    async def complete() -> dict[str, Any] | None:
        """Every attempt's DAG run span, and the coordinator's attempt spans above them (stored
        in batches a moment after the agent's own)."""
        spans = await traced()
        runs = [x for x in (spans or {}).values() if x.name == "airflow.dag_run accord_fail"]
        if spans is None or len(runs) != attempts:
            return None
        return (
            spans if all(any(n.startswith("attempt ") for n in ancestors(r, spans)) for r in runs) else None
        )

    spans = await wait_until(complete, "the Airflow spans of every attempt in the run's trace", within=60)

    dag_runs = [x for x in spans.values() if x.name == "airflow.dag_run accord_fail"]
    under = sorted(
        next(n for n in ancestors(d, spans) if n.startswith("attempt ")).split()[1] for d in dag_runs
    )
    assert under == [str(n) for n in range(1, attempts + 1)]  # each attempt's own DAG run
    for dag_run in dag_runs:
        assert dag_run.status == pb.SPAN_STATUS_ERROR
        tasks = {x.name: x for x in spans.values() if x.parent_span_id == dag_run.span_id}
        # extract ran, boom failed, finalize never ran (upstream_failed): no span for it
        assert set(tasks) == {"airflow.task extract", "airflow.task boom"}, set(tasks)
        boom = tasks["airflow.task boom"]
        attributes = json.loads(boom.attributes_json)
        assert attributes["airflow.task.state"] == "failed" and attributes["airflow.task.try_number"] >= 1
        log_url = attributes["airflow.task.log_url"]
        assert log_url.startswith(f"{real_airflow.base_url}/dags/accord_fail/runs/accord__")
        assert "/tasks/boom?try_number=" in log_url
        assert boom.status == pb.SPAN_STATUS_ERROR
        assert dag_run.start_unix_nano <= boom.start_unix_nano <= boom.end_unix_nano <= dag_run.end_unix_nano


async def test_e2e_paused_dag_fails_fast(real_airflow: RealAirflow, payments: EngineTeam) -> None:
    await asyncio.to_thread(real_airflow.set_paused, "accord_paused", True)
    await payments.start_agent(
        example_binding(real_airflow, "accord_paused"), env=airflow_secrets(real_airflow)
    )
    run = await payments.wait_run(
        await payments.start_run({"order_id": "o-12", "amount_cents": 5}), within=60
    )
    assert run.status == pb.RUN_STATUS_FAILED
    error, _ = attempt_error(run)
    assert error.type == "DagPaused" and not error.retryable
    assert len(run.steps[0].attempts) == 1


async def test_e2e_cancel_fails_the_airflow_run(real_airflow: RealAirflow, payments: EngineTeam) -> None:
    await payments.start_agent(
        example_binding(real_airflow, "accord_slow"), env=airflow_secrets(real_airflow)
    )
    run_id = await payments.start_run({"order_id": "o-13", "amount_cents": 5})

    def slow_task_state() -> tuple[str | None, str | None]:
        with real_airflow.api() as client:
            runs = client.get("/api/v2/dags/accord_slow/dagRuns", params={"limit": 100}).json()["dag_runs"]
            ours = [r for r in runs if r["conf"].get("order_id") == "o-13"]
            if not ours:
                return None, None
            path = f"/api/v2/dags/accord_slow/dagRuns/{ours[0]['dag_run_id']}"
            tis = client.get(f"{path}/taskInstances").json()["task_instances"]
            return client.get(path).json()["state"], next(t["state"] for t in tis if t["task_id"] == "slow")

    for _ in range(240):
        if (await asyncio.to_thread(slow_task_state))[1] == "running":
            break
        await asyncio.sleep(0.5)
    else:
        pytest.fail(f"the slow task never started:\n{real_airflow.logs()}")
    await payments.cancel_run(run_id)
    run = await payments.wait_run(run_id, within=60)
    assert run.status == pb.RUN_STATUS_CANCELLED
    for _ in range(60):  # the agent hears of the cancel on its next heartbeat, then PATCHes the run
        if (await asyncio.to_thread(slow_task_state))[0] == "failed":
            break
        await asyncio.sleep(0.5)
    assert (await asyncio.to_thread(slow_task_state))[0] == "failed"
