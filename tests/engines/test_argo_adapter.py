"""The ``argo`` adapter against the faithful fake of the Argo Server (tests/fakes/argo_fake.py),
and a real ``accord agent start`` refusing a binding whose WorkflowTemplate does not exist."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from team_agent.engines.argo import (
    TASK_LABEL,
    TRACEPARENT_ANNOTATION,
    ArgoEngine,
    build_parameters,
    task_hash,
    workflow_name,
)
from team_agent.engines.base import EngineConfigError, EngineFailure, load_engine
from team_agent.testing import AgentProcess
from tests.engines.conftest import TRACEPARENT, make_task
from tests.fakes.argo_fake import FakeArgo, FakeTemplate, Outcome
from tests.fakes.server import serve_in_thread
from tests.support.wait import wait_until

pytestmark = pytest.mark.xdist_group("argo")

TOKEN = "argo-token-1"
MakeEngine = Callable[..., ArgoEngine]
Fake = tuple[FakeArgo, str]


def charge(params: dict[str, str]) -> Outcome:
    """The template's work: a JSON output parameter computed from its parameters."""
    out = {"payment_ref": f"pay-{params['order_id']}", "amount_cents": int(params["amount_cents"])}
    return Outcome("Succeeded", outputs={"result": json.dumps(out), "note": "ok"})


@pytest.fixture(scope="module")
def _server() -> Iterator[Fake]:
    fake = FakeArgo(tokens={TOKEN: {"payments"}})
    with serve_in_thread(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake_argo(_server: Fake) -> Fake:
    """The module's fake, emptied for each test."""
    fake, url = _server
    fake.templates.clear()
    fake.workflows.clear()
    fake.requests.clear()
    fake.add_template(
        FakeTemplate(
            "charge-card",
            parameters={"order_id": None, "amount_cents": "0", "traceparent": ""},
            steps=["validate", "charge"],
            behaviour=charge,
        )
    )
    return fake, url


@pytest.fixture
async def make_engine() -> AsyncIterator[MakeEngine]:
    made: list[ArgoEngine] = []

    def make(url: str, **config: Any) -> ArgoEngine:
        base = {
            "base_url": url,
            "namespace": "payments",
            "workflow_template": "charge-card",
            "token": f"Bearer {TOKEN}",
            "output_parameter": "result",
            "poll_interval": 0.02,
            "max_poll_interval": 0.1,
            "stop_timeout": 5,
            "timeout": 5,
        }
        base.update(config)
        engine = ArgoEngine({k: v for k, v in base.items() if v is not None})
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.close()


async def run(engine: ArgoEngine, input: Any, **task: Any) -> Any:
    return await engine.wait(await engine.submit(make_task(**task), input))


async def test_found_through_the_entry_point() -> None:
    assert load_engine("argo") is ArgoEngine


async def test_success_returns_the_json_output_parameter(fake_argo: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_argo
    engine = make_engine(url)
    handle = await engine.submit(make_task("run-1/charge"), {"order_id": "o-1", "amount_cents": 250})
    assert await engine.wait(handle) == {"payment_ref": "pay-o-1", "amount_cents": 250}
    name = workflow_name("run-1/charge")
    assert handle.details["workflow"] == name and handle.details["argo_workflow_url"].endswith(
        f"/workflows/payments/{name}"
    )
    wf = fake.workflow(name)
    assert wf.parameters["order_id"] == "o-1" and wf.parameters["amount_cents"] == "250"
    assert wf.labels[TASK_LABEL] == task_hash("run-1/charge")


async def test_without_output_parameter_the_summary_is_returned(
    fake_argo: Fake, make_engine: MakeEngine
) -> None:
    _, url = fake_argo
    out = await run(make_engine(url, output_parameter=None), {"order_id": "s", "amount_cents": 1})
    assert out["phase"] == "Succeeded" and out["parameters"]["note"] == "ok"


async def test_missing_or_non_json_output(fake_argo: Fake, make_engine: MakeEngine) -> None:
    _, url = fake_argo
    with pytest.raises(EngineFailure) as info:
        await run(make_engine(url, output_parameter="absent"), {"order_id": "a", "amount_cents": 1})
    assert info.value.type == "OutputMissing" and "result" in info.value.message
    with pytest.raises(EngineFailure) as info:
        await run(make_engine(url, output_parameter="note"), {"order_id": "a", "amount_cents": 1})
    assert info.value.type == "OutputNotJson" and not info.value.retryable


def test_parameter_mapping() -> None:
    mapping = {"order_id": "${input.order.id}", "note": "order ${input.order.id}!", "items": "${input.items}"}
    params = build_parameters(mapping, {"order": {"id": "m-1"}, "items": [{"sku": "a"}]})
    assert params == {"order_id": "m-1", "note": "order m-1!", "items": '[{"sku":"a"}]'}
    assert build_parameters(None, {"a": "x", "n": 2, "d": {"k": 1}}) == {"a": "x", "n": "2", "d": '{"k":1}'}
    with pytest.raises(EngineFailure) as info:
        build_parameters({"x": "${input.missing}"}, {})
    assert info.value.type == "ParameterMappingError" and not info.value.retryable


async def test_a_failed_workflow_is_final_with_the_failed_steps_message(
    fake_argo: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_argo
    fake.templates[("payments", "charge-card")].behaviour = lambda p: Outcome(
        "Failed", failed_step="charge", node_message="card declined (exit code 3)"
    )
    with pytest.raises(EngineFailure) as info:
        await run(make_engine(url), {"order_id": "f", "amount_cents": 1})
    failure = info.value
    assert failure.type == "WorkflowFailed" and not failure.retryable
    assert "Failed: child 'accord-" in failure.message
    assert "step charge: card declined (exit code 3)" in failure.message
    assert failure.details["failed_nodes"] == [
        {"name": "charge", "phase": "Failed", "message": "card declined (exit code 3)"}
    ]
    # retry_failed: a team whose failures are transient lets the contract's policy retry them.
    with pytest.raises(EngineFailure) as info:
        await run(make_engine(url, retry_failed=True), {"order_id": "f2", "amount_cents": 1})
    assert info.value.type == "WorkflowFailed" and info.value.retryable


async def test_an_errored_workflow_is_retryable(fake_argo: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_argo
    fake.templates[("payments", "charge-card")].behaviour = lambda p: Outcome(
        "Error", failed_step="validate", node_message="pod deleted", message="pod deleted"
    )
    with pytest.raises(EngineFailure) as info:
        await run(make_engine(url), {"order_id": "e", "amount_cents": 1})
    assert info.value.type == "WorkflowError" and info.value.retryable
    assert "Error: pod deleted; step validate: pod deleted" in info.value.message


async def test_a_duplicate_delivery_attaches_to_the_same_workflow(
    fake_argo: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_argo
    engine = make_engine(url)
    first = await engine.submit(make_task("run-d/charge"), {"order_id": "d", "amount_cents": 5})
    # The same task delivered again (another agent replica, or after a restart).
    second = await make_engine(url).submit(make_task("run-d/charge"), {"order_id": "d", "amount_cents": 5})
    assert second.state == {"workflow": first.state["workflow"], "attached": True}
    assert fake.submits() == 1 and len(fake.workflows) == 1
    assert await engine.wait(second) == {"payment_ref": "pay-d", "amount_cents": 5}
    # A delivery racing the first submit (not yet listed) gets 409 AlreadyExists and attaches.
    racing = make_engine(url)
    attached = await racing._submit(  # the submit step alone, as if the list had been empty
        first.state["workflow"],
        task_hash("run-d/charge"),
        1,
        {"order_id": "d"},
        "",
        make_task("run-d/charge"),
    )
    assert attached and fake.submits(409) == 1 and len(fake.workflows) == 1


async def test_a_retry_after_a_failed_workflow_submits_a_new_one(
    fake_argo: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_argo
    outcomes = iter([Outcome("Error", failed_step="charge", node_message="OOMKilled"), Outcome(outputs={})])
    fake.templates[("payments", "charge-card")].behaviour = lambda p: next(outcomes)
    engine = make_engine(url, output_parameter=None)
    with pytest.raises(EngineFailure):
        await run(engine, {"order_id": "r", "amount_cents": 1}, key="run-r/charge", attempt=1)
    handle = await engine.submit(make_task("run-r/charge", attempt=2), {"order_id": "r", "amount_cents": 1})
    assert handle.state["workflow"] == workflow_name("run-r/charge", 2) and not handle.state["attached"]
    assert (await engine.wait(handle))["phase"] == "Succeeded"
    # Attempt 2 delivered again attaches to the second workflow.
    again = await engine.submit(make_task("run-r/charge", attempt=2), {"order_id": "r", "amount_cents": 1})
    assert again.state == {"workflow": workflow_name("run-r/charge", 2), "attached": True}
    assert fake.submits() == 2


async def test_cancel_stops_the_workflow_and_waits_for_it(fake_argo: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_argo
    template = fake.templates[("payments", "charge-card")]
    template.duration, template.stop_delay = 60.0, 0.2
    engine = make_engine(url)
    handle = await engine.submit(make_task(), {"order_id": "c", "amount_cents": 1})
    waiting = asyncio.create_task(engine.wait(handle))
    wf = fake.workflow(handle.state["workflow"])
    await wait_until(
        lambda: fake._render(wf, time.time())["status"]["phase"] == "Running", "the workflow running"
    )
    await engine.cancel(handle)
    assert ("PUT", f"/api/v1/workflows/payments/{handle.state['workflow']}/stop", 200) in fake.requests
    with pytest.raises(EngineFailure) as info:
        await waiting
    assert info.value.type == "WorkflowStopped"
    assert "Stopped with strategy 'Stop'" in info.value.message
    assert "workflow shutdown with strategy:  Stop" in info.value.message
    await engine.cancel(handle)  # a stopped workflow: nothing to do, no error
    assert sum(1 for m, p, _ in fake.requests if m == "PUT") == 1


async def test_the_trace_context_reaches_the_workflow(fake_argo: Fake, make_engine: MakeEngine) -> None:
    fake, url = fake_argo
    engine = make_engine(url)
    handle = await engine.submit(make_task(), {"order_id": "t", "amount_cents": 1})
    wf = fake.workflow(handle.state["workflow"])
    # No agent span is active here, so the task's own trace context is handed on.
    assert wf.annotations[TRACEPARENT_ANNOTATION] == TRACEPARENT
    assert wf.parameters["traceparent"] == TRACEPARENT  # the template declares it
    await engine.wait(handle)
    # A template without the parameter gets the annotation only (no undeclared parameter).
    fake.templates[("payments", "charge-card")].parameters.pop("traceparent")
    plain = make_engine(url)
    handle = await plain.submit(make_task(), {"order_id": "u", "amount_cents": 1})
    wf = fake.workflow(handle.state["workflow"])
    assert "traceparent" not in wf.parameters and wf.annotations[TRACEPARENT_ANNOTATION] == TRACEPARENT


async def test_the_workflow_and_its_nodes_become_spans(
    fake_argo: Fake, make_engine: MakeEngine, spans: InMemorySpanExporter
) -> None:
    fake, url = fake_argo
    fake.templates[("payments", "charge-card")].behaviour = lambda p: Outcome(
        "Failed", failed_step="charge", node_message="declined"
    )
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("engine") as parent:
        with pytest.raises(EngineFailure):
            await run(make_engine(url), {"order_id": "s", "amount_cents": 1})
    finished = {s.name: s for s in spans.get_finished_spans()}
    name = next(iter(fake.workflows))[1]
    root = finished[f"argo.workflow {name}"]
    assert root.parent is not None and root.parent.span_id == parent.get_span_context().span_id
    assert root.attributes is not None and root.attributes["argo.workflow.phase"] == "Failed"
    steps = finished[f"argo.node {name}"]
    validate, charge_span = finished["argo.node validate"], finished["argo.node charge"]
    assert steps.parent is not None and steps.parent.span_id == root.context.span_id
    assert validate.parent is not None and validate.parent.span_id == steps.context.span_id
    assert charge_span.parent is not None and charge_span.parent.span_id == validate.context.span_id
    assert charge_span.attributes is not None and charge_span.attributes["argo.node.phase"] == "Failed"
    assert charge_span.status.status_code == trace.StatusCode.ERROR
    assert {"argo.submit", "argo.poll"} <= set(finished)


async def test_errors_of_the_server_are_reported_with_its_message(
    fake_argo: Fake, make_engine: MakeEngine
) -> None:
    fake, url = fake_argo
    engine = make_engine(url)
    # A template deleted after the agent started.
    del fake.templates[("payments", "charge-card")]
    with pytest.raises(EngineFailure) as info:
        await engine.submit(make_task(), {"order_id": "x", "amount_cents": 1})
    assert info.value.type == "WorkflowTemplateNotFound" and not info.value.retryable
    assert 'workflowtemplates.argoproj.io "charge-card" not found' in info.value.message
    # A required parameter the input does not give: Argo's validation message.
    fake.add_template(FakeTemplate("charge-card", parameters={"order_id": None, "currency": None}))
    with pytest.raises(EngineFailure) as info:
        await engine.submit(make_task(), {"order_id": "x"})
    assert info.value.type == "WorkflowRejected" and "spec.arguments.currency.value is required" in (
        info.value.message
    )
    # The raw error shape: grpc-gateway's {"code", "message"}.
    async with httpx.AsyncClient(base_url=url) as client:
        r = await client.get("/api/v1/workflows/payments/nope")
        assert r.status_code == 401 and r.json()["code"] == 16 and "token not valid" in r.json()["message"]
        r = await client.get("/api/v1/workflows/payments/nope", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 404 and r.json() == {
            "code": 5,
            "message": 'workflows.argoproj.io "nope" not found',
        }
        r = await client.get("/api/v1/workflows/payments", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.json()["items"] is None  # Argo's empty list


def test_bad_configuration_names_every_field(fake_argo: Fake) -> None:
    _, url = fake_argo
    with pytest.raises(EngineConfigError) as info:
        ArgoEngine({"base_url": "argo:2746", "namespace": "Pay_ments", "poll_interval": "soon", "colour": 1})
    fields = {f for f, _ in info.value.problems}
    assert fields == {"base_url", "namespace", "workflow_template", "poll_interval", "colour"}
    base = {"base_url": url, "namespace": "payments", "token": TOKEN}
    with pytest.raises(EngineConfigError) as info:
        ArgoEngine({**base, "workflow_template": "charge-crad"})
    ((field, message),) = info.value.problems
    assert field == "workflow_template" and "'charge-crad' does not exist in namespace 'payments'" in message
    with pytest.raises(EngineConfigError) as info:
        ArgoEngine({**base, "workflow_template": "charge-card", "token": "stale"})
    assert info.value.problems[0][0] == "token" and "stale" not in str(info.value)
    with pytest.raises(EngineConfigError) as info:
        ArgoEngine({**base, "workflow_template": "charge-card", "namespace": "shipping"})
    assert info.value.problems[0][0] == "namespace" and "forbidden" in info.value.problems[0][1]


async def test_agent_start_refuses_an_unknown_workflow_template(fake_argo: Fake, tmp_path: Path) -> None:
    _, url = fake_argo
    config = {
        "team": "payments",
        "coordinator": "127.0.0.1:1",
        "token": "${secret:ACCORD_TOKEN}",
        "implements": {
            "payments/charge-card@1": {
                "engine": "argo",
                "with": {
                    "base_url": url,
                    "namespace": "payments",
                    "workflow_template": "charge-crad",
                    "token": "${secret:ARGO_TOKEN}",
                },
            }
        },
    }
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    agent = AgentProcess(path, workdir=tmp_path, env={"ACCORD_TOKEN": "t", "ARGO_TOKEN": TOKEN}).start()
    try:
        assert await asyncio.to_thread(agent.wait, 60) == 2
    finally:
        agent.kill()
    log = agent.log
    assert "implements.payments/charge-card@1.with.workflow_template" in log, log
    assert "WorkflowTemplate 'charge-crad' does not exist" in log and "Traceback" not in log
    assert TOKEN not in log


async def test_an_unreachable_server_at_start_is_checked_at_the_first_submit(
    fake_argo: Fake, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = fake_argo
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    base = {"namespace": "payments", "workflow_template": "charge-card", "token": TOKEN, "timeout": 2}
    engine = ArgoEngine({"base_url": closed, **base})  # starts: Argo may come up later
    await engine.close()
    assert "could not check WorkflowTemplate payments/charge-card" in caplog.text and TOKEN not in caplog.text
    # As if it had been unreachable then: the first submit reads the template.
    engine = ArgoEngine({"base_url": url, **base, "poll_interval": 0.02}, check=False)
    try:
        handle = await engine.submit(make_task(), {"order_id": "l", "amount_cents": 1})
        assert fake.workflow(handle.state["workflow"]).parameters["traceparent"] == TRACEPARENT
        del fake.templates[("payments", "charge-card")]
        late = ArgoEngine({"base_url": url, **base}, check=False)
        with pytest.raises(EngineFailure) as info:
            await late.submit(make_task(), {"order_id": "l", "amount_cents": 1})
        await late.close()
        assert info.value.type == "WorkflowTemplateNotFound" and not info.value.retryable
    finally:
        await engine.close()
