"""The ``airflow`` adapter against the faithful fake (tests/fakes/airflow_fake.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from team_agent.engines.airflow import TRACE_CONF_KEY, AirflowEngine, dag_run_id_for
from team_agent.engines.base import EngineConfigError, EngineFailure, load_engine
from tests.engines.conftest import TRACEPARENT, make_task
from tests.fakes.airflow_fake import FakeAirflow, FakeDag, FakeTask
from tests.support.wait import wait_until

MakeEngine = Callable[..., AirflowEngine]
Fake = tuple[FakeAirflow, str]


def output_dag(dag_id: str = "charge_card", **kw: Any) -> FakeDag:
    return FakeDag(
        dag_id,
        tasks=[
            FakeTask("validate"),
            FakeTask("finalize", xcom=lambda conf: {"payment_ref": f"pay-{conf['order_id']}", "ok": True}),
        ],
        **kw,
    )


@pytest.fixture
async def make_engine() -> AsyncIterator[Callable[..., AirflowEngine]]:
    made: list[AirflowEngine] = []

    def make(url: str, **config: Any) -> AirflowEngine:
        base = {
            "base_url": url,
            "dag_id": "charge_card",
            "username": "admin",
            "password": "admin-pw",
            "output": {"task_id": "finalize"},
            "poll_interval": 0.02,
            "max_poll_interval": 0.1,
            "timeout": 5,
        }
        base.update(config)
        engine = AirflowEngine({k: v for k, v in base.items() if v is not None})
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.close()


async def test_found_through_the_entry_point() -> None:
    assert load_engine("airflow") is AirflowEngine
    assert AirflowEngine.name == "airflow"


async def test_success_returns_the_xcom_of_the_configured_task(
    fake_airflow: Fake, make_engine: MakeEngine, spans: InMemorySpanExporter
) -> None:
    fake, url = fake_airflow
    fake.add_dag(output_dag())
    engine = make_engine(url)
    task = make_task("run-1/charge")
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("agent.task"):
        handle = await engine.submit(task, {"order_id": "o-1", "amount_cents": 500})
        output = await engine.wait(handle)
    assert output == {"payment_ref": "pay-o-1", "ok": True}

    run_id = dag_run_id_for("run-1/charge")
    assert handle.details["dag_run_id"] == run_id
    assert handle.details["airflow_run_url"] == f"{url}/dags/charge_card/runs/{run_id}"
    body = fake.trigger_bodies[0]
    assert body["logical_date"] is None and "logical_date" in body
    assert body["dag_run_id"] == run_id
    assert body["conf"]["order_id"] == "o-1" and body["conf"]["amount_cents"] == 500
    # The caller's trace continues into the DAG run: the agent's span is the parent.
    agent_span = next(s for s in spans.get_finished_spans() if s.name == "agent.task")
    sent = body["conf"][TRACE_CONF_KEY]
    assert sent.split("-")[1] == format(agent_span.context.trace_id, "032x")
    assert sent.split("-")[2] == format(agent_span.context.span_id, "016x")
    attributes = dict(agent_span.attributes or {})
    assert attributes["airflow.dag_id"] == "charge_card"
    assert attributes["airflow.dag_run.run_id"] == run_id
    names = {s.name for s in spans.get_finished_spans()}
    assert {"airflow.trigger", "airflow.poll", "airflow.fetch_output"} <= names


async def test_the_dag_run_and_its_task_instances_become_spans_under_the_engines_span(
    fake_airflow: Fake, make_engine: MakeEngine, spans: InMemorySpanExporter
) -> None:
    fake, url = fake_airflow
    fake.add_dag(
        FakeDag("charge_card", tasks=[FakeTask("extract"), FakeTask("boom", fail=True), FakeTask("finalize")])
    )
    engine = make_engine(url)
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("engine.airflow"), pytest.raises(EngineFailure):
        await engine.wait(await engine.submit(make_task("run-9/charge"), {"order_id": "o-9"}))
    finished = {s.name: s for s in spans.get_finished_spans()}
    engine_span, dag_span = finished["engine.airflow"], finished["airflow.dag_run charge_card"]
    assert dag_span.parent is not None and dag_span.parent.span_id == engine_span.context.span_id
    assert dag_span.status.status_code == trace.StatusCode.ERROR
    run_id = dag_run_id_for("run-9/charge")
    assert dict(dag_span.attributes or {})["airflow.dag_run.url"] == f"{url}/dags/charge_card/runs/{run_id}"
    tasks = {n.split(" ", 1)[1]: sp for n, sp in finished.items() if n.startswith("airflow.task ")}
    # finalize never ran (upstream_failed): no span for it
    assert set(tasks) == {"extract", "boom"}
    for name, span in tasks.items():
        assert span.parent is not None and span.parent.span_id == dag_span.context.span_id
        attributes = dict(span.attributes or {})
        assert attributes["airflow.task.try_number"] == 1
        assert attributes["airflow.task.log_url"] == (
            f"{url}/dags/charge_card/runs/{run_id}/tasks/{name}?try_number=1"
        )
        assert dag_span.start_time <= span.start_time <= span.end_time <= dag_span.end_time
    assert dict(tasks["boom"].attributes or {})["airflow.task.state"] == "failed"
    assert tasks["boom"].status.status_code == trace.StatusCode.ERROR
    assert tasks["extract"].status.status_code != trace.StatusCode.ERROR


async def test_without_an_active_span_the_tasks_own_traceparent_is_sent(
    fake_airflow: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_airflow
    fake.add_dag(output_dag())
    await make_engine(url).submit(make_task(), {"order_id": "o-2"})
    assert fake.trigger_bodies[0]["conf"][TRACE_CONF_KEY] == TRACEPARENT


async def test_run_id_is_sanitised_and_stays_unique() -> None:
    a = dag_run_id_for("run 1/charge#x")
    b = dag_run_id_for("run-1/charge-x")
    assert a != b
    import re

    for rid in (a, b, dag_run_id_for("x" * 400), dag_run_id_for("ok-key_1.2~3:4+5")):
        assert re.fullmatch(r"[A-Za-z0-9_.~:+-]+", rid) and len(rid) <= 250
    assert dag_run_id_for("ok-key_1.2~3:4+5") == "accord__ok-key_1.2~3:4+5"
    assert dag_run_id_for("k", 2) == "accord__k__2"


async def test_relogs_in_when_the_token_expired(fake_airflow: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_airflow
    fake.add_dag(output_dag())
    engine = make_engine(url)
    handle = await engine.submit(make_task(), {"order_id": "o-3"})
    assert fake.logins == 1
    fake.expire_tokens()
    assert await engine.wait(handle) == {"payment_ref": "pay-o-3", "ok": True}
    assert fake.logins == 2
    assert ("GET", f"/api/v2/dags/charge_card/dagRuns/{handle.details['dag_run_id']}", 401) in fake.requests


async def test_short_lived_tokens_are_renewed_throughout(make_engine: MakeEngine) -> None:
    fake = FakeAirflow(token_ttl=0.15)
    fake.add_dag(FakeDag("charge_card", tasks=[FakeTask("finalize", duration=0.6, xcom=lambda c: {"n": 1})]))
    from tests.fakes.server import serve_in_thread

    with serve_in_thread(fake.app) as url:
        engine = make_engine(url)
        assert await engine.wait(await engine.submit(make_task(), {})) == {"n": 1}
    assert fake.logins >= 3


async def test_redelivered_task_attaches_to_its_run_on_409(
    fake_airflow: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_airflow
    fake.add_dag(output_dag(queue_delay=0.2))
    engine = make_engine(url)
    task = make_task("run-9/charge")
    first = await engine.submit(task, {"order_id": "o-9"})
    again = await make_engine(url).submit(task, {"order_id": "o-9"})  # another agent replica
    assert again.details["dag_run_id"] == first.details["dag_run_id"]
    assert again.state["attached"] is True
    assert fake.triggers() == 1
    conflicts = [r for r in fake.requests if r[0] == "POST" and r[2] == 409]
    assert len(conflicts) == 1
    assert await engine.wait(again) == {"payment_ref": "pay-o-9", "ok": True}
    # A re-delivery after the run finished attaches to the finished run, never re-runs it.
    third = await engine.submit(task, {"order_id": "o-9"})
    assert await engine.wait(third) == {"payment_ref": "pay-o-9", "ok": True}
    assert fake.triggers() == 1


async def test_a_retry_after_a_failed_run_starts_a_new_run(
    fake_airflow: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_airflow
    fake.add_dag(FakeDag("charge_card", tasks=[FakeTask("finalize", fail=True)]))
    engine = make_engine(url)
    handle = await engine.submit(make_task("r/s", attempt=1), {})
    with pytest.raises(EngineFailure):
        await engine.wait(handle)
    fake.dags["charge_card"].tasks[0].fail = False
    fake.dags["charge_card"].tasks[0].xcom = lambda conf: {"second": True}
    retry = await engine.submit(make_task("r/s", attempt=2), {})
    assert retry.details["dag_run_id"] == dag_run_id_for("r/s", 2)
    assert await engine.wait(retry) == {"second": True}
    # the retry re-delivered: attaches to generation 2
    again = await engine.submit(make_task("r/s", attempt=2), {})
    assert again.details["dag_run_id"] == dag_run_id_for("r/s", 2)
    assert fake.triggers() == 2


async def test_paused_dag_fails_fast_without_triggering(fake_airflow: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_airflow
    fake.add_dag(output_dag(is_paused=True))
    with pytest.raises(EngineFailure) as info:
        await make_engine(url).submit(make_task(), {"order_id": "o"})
    assert info.value.type == "DagPaused" and info.value.retryable is False
    assert "paused" in info.value.message and "unpause: true" in info.value.message
    assert fake.triggers() == 0


async def test_paused_dag_is_unpaused_when_configured(fake_airflow: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_airflow
    fake.add_dag(output_dag(is_paused=True))
    engine = make_engine(url, unpause=True)
    output = await engine.wait(await engine.submit(make_task(), {"order_id": "o-u"}))
    assert output["payment_ref"] == "pay-o-u"
    assert fake.dags["charge_card"].is_paused is False
    assert ("PATCH", "/api/v2/dags/charge_card", 200) in fake.requests


async def test_run_stuck_in_queued_fails_after_queued_timeout(
    fake_airflow: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_airflow
    dag = fake.add_dag(output_dag())
    engine = make_engine(url, queued_timeout=0.3)
    handle = await engine.submit(make_task(), {"order_id": "o"})
    dag.is_paused = True  # paused by someone after the trigger: the run stays queued
    with pytest.raises(EngineFailure) as info:
        await engine.wait(handle)
    assert info.value.type == "DagRunStuckQueued"
    assert fake.run("charge_card", handle.details["dag_run_id"]).state == "queued"


async def test_import_errors_fail_fast(fake_airflow: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_airflow
    fake.add_dag(output_dag(has_import_errors=True))
    with pytest.raises(EngineFailure) as info:
        await make_engine(url).submit(make_task(), {})
    assert info.value.type == "DagImportError" and not info.value.retryable
    assert fake.triggers() == 0


async def test_unknown_or_stale_dag(fake_airflow: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_airflow
    fake.add_dag(output_dag("stale_one", is_stale=True))
    for dag_id in ("no_such_dag", "stale_one"):
        with pytest.raises(EngineFailure) as info:
            await make_engine(url, dag_id=dag_id).submit(make_task(), {})
        assert info.value.type == "DagNotFound" and not info.value.retryable
        assert dag_id in info.value.message


async def test_failed_run_lists_failed_tasks_and_the_run_url(
    fake_airflow: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_airflow
    fake.add_dag(
        FakeDag("charge_card", tasks=[FakeTask("extract"), FakeTask("boom", fail=True), FakeTask("finalize")])
    )
    engine = make_engine(url)
    handle = await engine.submit(make_task(), {})
    with pytest.raises(EngineFailure) as info:
        await engine.wait(handle)
    failure = info.value
    run_id = handle.details["dag_run_id"]
    assert failure.type == "DagRunFailed"
    assert failure.details["failed_tasks"] == ["boom"]
    assert failure.details["upstream_failed_tasks"] == ["finalize"]
    assert failure.details["dag_run_id"] == run_id
    assert failure.details["airflow_run_url"] == f"{url}/dags/charge_card/runs/{run_id}"
    assert "boom" in failure.message and failure.details["airflow_run_url"] in failure.message


async def test_cancel_marks_the_run_failed(fake_airflow: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_airflow
    fake.add_dag(FakeDag("charge_card", tasks=[FakeTask("slow", duration=30), FakeTask("finalize")]))
    engine = make_engine(url)
    handle = await engine.submit(make_task(), {})
    waiter = asyncio.create_task(engine.wait(handle))
    run = fake.run("charge_card", handle.details["dag_run_id"])
    await wait_until(lambda: run.state == "running", f"the fake's run never started: {run.state}")
    await engine.cancel(handle)
    assert run.state == "failed"
    assert [ti.state for ti in run.tis] == ["failed", "skipped"]
    assert "Accord" in (run.note or "")
    with pytest.raises(EngineFailure) as info:
        await asyncio.wait_for(waiter, 30)
    assert info.value.type == "DagRunFailed" and info.value.details["failed_tasks"] == ["slow"]
    await engine.cancel(handle)  # cancelling a finished run is a no-op
    assert sum(1 for r in fake.requests if r[0] == "PATCH") == 1


async def test_a_busy_airflow_answering_500_is_asked_again(
    fake_airflow: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_airflow
    fake.add_dag(FakeDag("charge_card", tasks=[FakeTask("slow", duration=30), FakeTask("finalize")]))
    engine = make_engine(url)
    handle = await engine.submit(make_task(), {})
    waiter = asyncio.create_task(engine.wait(handle))  # the fake moves runs on as they are polled
    run = fake.run("charge_card", handle.details["dag_run_id"])
    await wait_until(lambda: run.state == "running", f"the fake's run never started: {run.state}")
    fake.busy_answers = 2  # its metadata database is busy for two calls
    await engine.cancel(handle)
    assert run.state == "failed"
    assert [status for method, _, status in fake.requests if method == "PATCH"][-1] == 200
    assert sum(1 for _, _, status in fake.requests if status == 500) == 2  # asked again, got through
    with pytest.raises(EngineFailure):
        await asyncio.wait_for(waiter, 30)
    fake.busy_answers = 5  # busy for longer than the adapter asks: the error says so
    with pytest.raises(EngineFailure, match="HTTP 500"):
        await engine.submit(make_task(), {})


async def test_bad_credentials_are_not_retryable(fake_airflow: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_airflow
    fake.add_dag(output_dag())
    with pytest.raises(EngineFailure) as info:
        await make_engine(url, password="wrong").submit(make_task(), {})
    assert info.value.type == "EngineAuthError" and not info.value.retryable
    assert "Invalid credentials" in info.value.message
    assert "wrong" not in info.value.message


async def test_missing_xcom_is_a_clear_failure(fake_airflow: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_airflow
    fake.add_dag(FakeDag("charge_card", tasks=[FakeTask("finalize")]))
    engine = make_engine(url)
    with pytest.raises(EngineFailure) as info:
        await engine.wait(await engine.submit(make_task(), {}))
    assert info.value.type == "OutputMissing" and "finalize" in info.value.message


async def test_non_json_xcom_is_refused(fake_airflow: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_airflow
    envelope = {"__classname__": "builtins.tuple", "__version__": 1, "__data__": [1, 2]}
    fake.add_dag(FakeDag("charge_card", tasks=[FakeTask("finalize", xcom=lambda c: envelope)]))
    engine = make_engine(url)
    with pytest.raises(EngineFailure) as info:
        await engine.wait(await engine.submit(make_task(), {}))
    assert info.value.type == "OutputNotJson" and "builtins.tuple" in info.value.message


async def test_custom_xcom_key_with_a_slash(fake_airflow: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_airflow
    fake.add_dag(
        FakeDag("charge_card", tasks=[FakeTask("finalize", xcom=lambda c: [1, 2], xcom_key="out/items")])
    )
    engine = make_engine(url, output={"task_id": "finalize", "key": "out/items"})
    assert await engine.wait(await engine.submit(make_task(), {})) == [1, 2]


async def test_without_output_the_run_summary_is_returned(
    fake_airflow: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_airflow
    fake.add_dag(FakeDag("charge_card", tasks=[FakeTask("finalize")]))
    engine = make_engine(url, output=None)
    out = await engine.wait(await engine.submit(make_task("k1"), {"a": 1}))
    assert out["state"] == "success" and out["dag_run_id"] == dag_run_id_for("k1") and out["conf"]["a"] == 1


async def test_airflow_2_api_with_basic_auth(fake_airflow_v1: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_airflow_v1
    fake.add_dag(output_dag())
    engine = make_engine(url, api_version=1)
    task = make_task("v1/charge")
    handle = await engine.submit(task, {"order_id": "v1"})
    assert "logical_date" not in fake.trigger_bodies[0]
    again = await engine.submit(task, {"order_id": "v1"})  # 409 with a *string* detail
    assert again.state["attached"] is True
    assert await engine.wait(handle) == {"payment_ref": "pay-v1", "ok": True}
    assert fake.logins == 0
    assert handle.details["airflow_run_url"].startswith(f"{url}/dags/charge_card/grid?dag_run_id=")


async def test_unreachable_airflow_is_retryable(make_engine: MakeEngine) -> None:
    engine = make_engine("http://127.0.0.1:9", timeout=1)
    with pytest.raises(EngineFailure) as info:
        await engine.submit(make_task(), {})
    assert info.value.type == "EngineUnavailable" and info.value.retryable


def test_config_errors_list_every_problem() -> None:
    with pytest.raises(EngineConfigError) as info:
        AirflowEngine(
            {
                "base_url": "ftp://x",
                "output": {"key": 3, "tsk": "x"},
                "poll_interval": "soon",
                "api_version": 3,
                "unpause": "yes",
                "dagid": "typo",
            }
        )
    fields = {f for f, _ in info.value.problems}
    assert {
        "base_url",
        "dag_id",
        "username",
        "password",
        "output.task_id",
        "output.key",
        "output.tsk",
        "poll_interval",
        "api_version",
        "unpause",
        "dagid",
    } <= fields


# -- the fake's own fidelity: the shapes the adapter relies on ------------------------------


async def test_fake_reproduces_the_reference_error_shapes(fake_airflow: Fake) -> None:
    fake, url = fake_airflow
    fake.add_dag(output_dag())
    async with httpx.AsyncClient(base_url=url) as client:
        r = await client.get("/api/v2/dags/charge_card")
        assert (r.status_code, r.json()) == (401, {"detail": "Not authenticated"})
        r = await client.get("/api/v2/dags/charge_card", auth=("admin", "admin-pw"))
        assert r.status_code == 401  # basic auth is not accepted on /api/v2
        r = await client.get("/api/v2/dags/charge_card", headers={"Authorization": "Bearer forged"})
        assert (r.status_code, r.json()) == (403, {"detail": "Invalid JWT token"})
        r = await client.post("/auth/token", json={"username": "admin", "password": "wrong"})
        assert (r.status_code, r.json()) == (401, {"detail": "Invalid credentials"})
        r = await client.post("/auth/token", json={"username": "admin", "password": "admin-pw", "x": 1})
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "extra_forbidden"
        r = await client.post("/auth/token", data={"username": "admin", "password": "admin-pw"})
        assert r.status_code == 201
        h = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = await client.post("/api/v2/dags/charge_card/dagRuns", json={"conf": {}}, headers=h)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "logical_date"]
        r = await client.post(
            "/api/v2/dags/charge_card/dagRuns", json={"logical_date": None, "foo": 1}, headers=h
        )
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "extra_forbidden"
        r = await client.post(
            "/api/v2/dags/charge_card/dagRuns", json={"logical_date": "2026-01-01T00:00:00"}, headers=h
        )
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "timezone_aware"
        r = await client.post("/api/v2/dags/nope/dagRuns", json={"logical_date": None}, headers=h)
        assert (r.status_code, r.json()) == (404, {"detail": "Dag with dag_id: 'nope' not found"})
        body = {"logical_date": None, "dag_run_id": "r1", "conf": {"order_id": "x"}}
        r = await client.post("/api/v2/dags/charge_card/dagRuns", json=body, headers=h)
        assert r.status_code == 200 and r.json()["state"] == "queued"
        r = await client.get("/api/v2/dags/charge_card/dagRuns/r1/taskInstances", headers=h)
        assert [ti["state"] for ti in r.json()["task_instances"]] == [None, None]
        r = await client.get(
            "/api/v2/dags/charge_card/dagRuns/r1/taskInstances/finalize/xcomEntries/return_value", headers=h
        )
        assert r.status_code == 404 and r.json() == {
            "detail": "XCom entry with key: `return_value` not found"
        }
        r = await client.post("/api/v2/dags/charge_card/dagRuns", json=body, headers=h)
        assert r.status_code == 409 and isinstance(r.json()["detail"], dict)
        assert r.json()["detail"]["reason"] == "Unique constraint violation"
        r = await client.patch("/api/v2/dags/charge_card/dagRuns/r1", json={"state": "running"}, headers=h)
        assert r.status_code == 422
        r = await client.patch(
            "/api/v2/dags/charge_card",
            params={"update_mask": "description"},
            json={"is_paused": True},
            headers=h,
        )
        assert r.status_code == 400
        r = await client.get("/api/v2/dags/charge_card/dagRuns/nope", headers=h)
        assert r.status_code == 404 and "was not found" in r.json()["detail"]

        async def r1_succeeded() -> bool:
            run = await client.get("/api/v2/dags/charge_card/dagRuns/r1", headers=h)
            return bool(run.json()["state"] == "success")

        await wait_until(r1_succeeded, "the fake's run r1 never succeeded")
        xcom = "/api/v2/dags/charge_card/dagRuns/r1/taskInstances/finalize/xcomEntries/return_value"
        r = await client.get(xcom, headers=h)
        assert r.json()["value"] == {"payment_ref": "pay-x", "ok": True}
        r = await client.get(xcom, params={"stringify": "true"}, headers=h)
        assert r.json()["value"] == "{'payment_ref': 'pay-x', 'ok': True}"  # Python str(), not JSON


async def test_fake_keeps_runs_of_a_paused_dag_queued(fake_airflow: Fake) -> None:
    fake, url = fake_airflow
    fake.add_dag(output_dag(is_paused=True))
    async with httpx.AsyncClient(base_url=url) as client:
        token = (await client.post("/auth/token", json={"username": "admin", "password": "admin-pw"})).json()
        h = {"Authorization": f"Bearer {token['access_token']}"}
        r = await client.post(
            "/api/v2/dags/charge_card/dagRuns", json={"logical_date": None, "dag_run_id": "p"}, headers=h
        )
        assert r.status_code == 200  # a paused DAG accepts the run, with no error
        await asyncio.sleep(0.2)
        assert (await client.get("/api/v2/dags/charge_card/dagRuns/p", headers=h)).json()["state"] == "queued"
