"""The ``airflow`` adapter against a real Airflow 3 (see airflow_real.py): the DAGs in
airflow_dags/ and the airflow-team example's DAG, parsed and run by Airflow itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from team_agent.engines.airflow import AirflowEngine, dag_run_id_for
from team_agent.engines.base import EngineFailure
from tests.engines.airflow_real import RealAirflow
from tests.engines.conftest import make_task

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(900)]

MakeEngine = Callable[..., AirflowEngine]


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


async def test_paused_dag_fails_fast_unless_unpause_is_set(make_engine: MakeEngine) -> None:
    with pytest.raises(EngineFailure) as info:
        await make_engine("accord_paused").submit(make_task(), {})
    assert info.value.type == "DagPaused" and not info.value.retryable
    engine = make_engine("accord_paused", unpause=True)
    assert await engine.wait(await engine.submit(make_task(), {})) == {"ran": True}


async def test_cancel_fails_the_running_run(real_airflow: RealAirflow, make_engine: MakeEngine) -> None:
    engine = make_engine("accord_slow")
    handle = await engine.submit(make_task(), {})
    run_id = handle.details["dag_run_id"]
    async with httpx.AsyncClient(base_url=real_airflow.base_url, timeout=10) as client:
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
    assert info.value.type == "DagRunFailed"
