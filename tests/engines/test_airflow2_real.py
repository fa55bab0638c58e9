"""The ``airflow`` adapter's ``api_version: 1`` against a real Airflow 2 (airflow2_real.py):
the ``/api/v1`` API with HTTP Basic auth that many teams still run. In ``make soak``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from team_agent.engines.airflow import AirflowEngine
from team_agent.engines.base import EngineFailure
from tests.engines.airflow2_real import real_airflow2  # noqa: F401 - the session fixture
from tests.engines.airflow_real import RealAirflow
from tests.engines.conftest import make_task

pytestmark = [pytest.mark.airflow, pytest.mark.soak, pytest.mark.timeout(1200)]

MakeEngine = Callable[..., AirflowEngine]


@pytest.fixture
async def make_engine(real_airflow2: RealAirflow) -> AsyncIterator[MakeEngine]:  # noqa: F811
    made: list[AirflowEngine] = []

    def make(dag_id: str, **extra: Any) -> AirflowEngine:
        # A run left queued (a scheduler that died) fails the test instead of waiting for ever.
        engine = AirflowEngine(real_airflow2.binding(dag_id, api_version=1, queued_timeout="3m", **extra))
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.close()


async def test_success_returns_the_xcom_through_api_v1(make_engine: MakeEngine) -> None:
    engine = make_engine("accord_echo")
    handle = await engine.submit(make_task(), {"order_id": "o-21", "amount_cents": 7})
    assert await engine.wait(handle) == {"payment_ref": "pay-o-21", "amount_cents": 7}


async def test_failure_names_the_failed_task_and_the_run_becomes_spans(
    real_airflow2: RealAirflow,  # noqa: F811
    make_engine: MakeEngine,
    spans: InMemorySpanExporter,
) -> None:
    engine = make_engine("accord_fail")
    with trace.get_tracer("test").start_as_current_span("engine.airflow"):
        handle = await engine.submit(make_task(), {"order_id": "o-22"})
        with pytest.raises(EngineFailure) as info:
            await engine.wait(handle)
    assert info.value.type == "DagRunFailed" and info.value.details["failed_tasks"] == ["boom"]
    run_id = handle.details["dag_run_id"]
    assert info.value.details["airflow_run_url"] == (
        f"{real_airflow2.base_url}/dags/accord_fail/grid?dag_run_id={quote(run_id, safe='')}"
    )
    finished = {s.name: s for s in spans.get_finished_spans()}
    dag_run = finished["airflow.dag_run accord_fail"]
    assert dag_run.parent is not None and dag_run.parent.span_id == finished["engine.airflow"].context.span_id
    tasks = {n: s for n, s in finished.items() if n.startswith("airflow.task ")}
    assert set(tasks) == {"airflow.task extract", "airflow.task boom"}  # finalize never ran
    boom = dict(tasks["airflow.task boom"].attributes or {})
    assert boom["airflow.task.state"] == "failed" and boom["airflow.task.try_number"] >= 1
    assert boom["airflow.task.log_url"].startswith(
        f"{real_airflow2.base_url}/dags/accord_fail/grid?dag_run_id="
    )
    assert boom["airflow.task.log_url"].endswith("&task_id=boom&tab=logs")
