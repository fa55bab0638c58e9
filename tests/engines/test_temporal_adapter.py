"""The ``temporal`` adapter against a real Temporal dev server (tests/engines/temporal_support.py)
and a worker running tests/engines/temporal_workflows.py."""

from __future__ import annotations

import asyncio
import subprocess
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client, WorkflowExecutionStatus

from team_agent.engines.base import EngineConfigError, EngineFailure, load_engine
from team_agent.engines.temporal import TemporalEngine, workflow_id_for
from team_agent.testing import accord_executable
from tests.engines.conftest import TRACEPARENT, make_task
from tests.engines.temporal_support import (  # noqa: F401  (session fixtures)
    TemporalDevServer,
    WorkerThread,
    temporal_server_fixture,
    temporal_worker_fixture,
)
from tests.engines.temporal_workflows import TASK_QUEUE
from tests.support.wait import wait_until

pytestmark = [pytest.mark.xdist_group("temporal"), pytest.mark.timeout(120)]

MakeEngine = Callable[..., TemporalEngine]


@pytest.fixture
async def make_engine(
    temporal_server: TemporalDevServer, temporal_worker: WorkerThread
) -> AsyncIterator[MakeEngine]:
    made: list[TemporalEngine] = []

    def make(**config: Any) -> TemporalEngine:
        base = {
            "target_host": temporal_server.address,
            "task_queue": TASK_QUEUE,
            "workflow_type": "AccordTest",
            "poll_interval": "100ms",
            "max_poll_interval": "500ms",
            "web_url": "http://127.0.0.1:8233",
        }
        base.update(config)
        engine = TemporalEngine({k: v for k, v in base.items() if v is not None})
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.close()


@pytest.fixture
async def client(temporal_server: TemporalDevServer) -> Client:
    return await Client.connect(temporal_server.address)


async def run(engine: TemporalEngine, input: Any, **task: Any) -> Any:
    return await engine.wait(await engine.submit(make_task(**task), input))


async def test_found_through_the_entry_point() -> None:
    assert load_engine("temporal") is TemporalEngine


async def test_success_returns_the_workflow_result(make_engine: MakeEngine) -> None:
    engine = make_engine()
    task = make_task("run-1/charge")
    handle = await engine.submit(task, {"order_id": "o-1", "amount_cents": 100})
    assert handle.state["workflow_id"] == "run-1/charge" == handle.details["workflow_id"]
    assert not handle.state["attached"]
    assert handle.details["temporal_url"] == (
        f"http://127.0.0.1:8233/namespaces/default/workflows/run-1%2Fcharge/{handle.state['run_id']}/history"
    )
    assert await engine.wait(handle) == {
        "order_id": "o-1",
        "payment_ref": "pay-o-1",
        "attempt": 1,
        "workflow_id": "run-1/charge",
    }


async def test_args_map_the_input_onto_positional_arguments(make_engine: MakeEngine) -> None:
    engine = make_engine(
        workflow_type="AccordPositional",
        args=["${input.order.id}", "${input.amount_cents}", "${input.items}", "from accord"],
    )
    value = {"order": {"id": "p-1"}, "amount_cents": 250, "items": [{"sku": "a"}]}
    assert await run(engine, value) == {
        "order_id": "p-1",
        "amount_cents": 250,
        "items": [{"sku": "a"}],
        "note": "from accord",
    }
    with pytest.raises(EngineFailure) as info:
        await engine.submit(make_task(), {"order": {}})
    assert info.value.type == "ArgumentMappingError" and not info.value.retryable
    assert "${input.order.id}" in info.value.message


def run_workflow_span(spans: InMemorySpanExporter, workflow_id: str) -> Any:
    """The worker's ``RunWorkflow`` span of one execution (spans of other tests' workflows may
    arrive late, so they are told apart by the workflow id)."""
    return next(
        (
            s
            for s in spans.get_finished_spans()
            if s.name.startswith("RunWorkflow:")
            and (s.attributes or {}).get("temporalWorkflowID") == workflow_id
        ),
        None,
    )


async def test_trace_context_reaches_the_workflow(
    make_engine: MakeEngine, spans: InMemorySpanExporter
) -> None:
    engine = make_engine()
    # No span is active here: the task's own traceparent is continued.
    output = await run(engine, {"order_id": "t-1"})
    run_span = await wait_until(
        lambda: run_workflow_span(spans, output["workflow_id"]),
        "the worker never reported its RunWorkflow span",
    )
    by_id = {s.context.span_id: s for s in spans.get_finished_spans()}
    assert run_span.context.trace_id == int(TRACEPARENT.split("-")[1], 16)
    start = by_id[run_span.parent.span_id]
    assert start.name == "StartWorkflow:AccordTest"  # the interceptor's client span ...
    assert by_id[start.parent.span_id].name == "temporal.start"  # ... under the adapter's
    # And under the agent's span for the task when there is one.
    with trace.get_tracer("test").start_as_current_span("accord.engine") as outer:
        output = await run(engine, {"order_id": "t-2"})
    run_span = await wait_until(
        lambda: run_workflow_span(spans, output["workflow_id"]), "no RunWorkflow span for the second task"
    )
    assert run_span.context.trace_id == outer.get_span_context().trace_id


async def test_non_retryable_application_error(make_engine: MakeEngine) -> None:
    with pytest.raises(EngineFailure) as info:
        await run(make_engine(), {"fail": "non_retryable"})
    failure = info.value
    assert not failure.retryable and failure.type == "CardDeclined"
    assert "CardDeclined: card declined: do not honor" in failure.message
    assert failure.details["application_error_type"] == "CardDeclined"
    assert failure.details["application_error_details"] == [{"code": "05"}]
    assert failure.details["temporal_url"].startswith("http://127.0.0.1:8233/namespaces/default/workflows/")


async def test_retryable_application_error(make_engine: MakeEngine) -> None:
    with pytest.raises(EngineFailure) as info:
        await run(make_engine(), {"fail": "retryable"})
    assert info.value.retryable and info.value.type == "GatewayTimeout"
    assert "GatewayTimeout: card gateway timed out" in info.value.message


async def test_a_non_retryable_activity_error_is_not_retried(
    make_engine: MakeEngine, spans: InMemorySpanExporter
) -> None:
    with trace.get_tracer("test").start_as_current_span("accord.engine") as outer:
        with pytest.raises(EngineFailure) as info:
            await run(make_engine(), {"fail": "activity"})
    failure = info.value
    assert not failure.retryable and failure.type == "CardDeclined"
    assert "CardDeclined: issuer said no" in failure.message
    assert failure.details["failed_in"] == "ActivityError"
    assert [c["class"] for c in failure.details["causes"]] == ["ActivityError", "ApplicationError"]
    # The execution and its activity, from the history's times, under the agent's span.
    recorded = {s.name: s for s in spans.get_finished_spans()}
    workflow_span = recorded["temporal.workflow AccordTest"]
    activity_span = recorded["temporal.activity decline_card"]
    assert workflow_span.parent.span_id == outer.get_span_context().span_id
    assert activity_span.parent.span_id == workflow_span.context.span_id
    assert workflow_span.attributes["temporal.workflow.status"] == "Failed"
    assert workflow_span.status.status_code == trace.StatusCode.ERROR
    assert activity_span.attributes["temporal.activity.status"] == "Failed"
    assert activity_span.attributes["temporal.activity.attempt"] == 1
    assert activity_span.status.description == "issuer said no"
    assert (
        workflow_span.start_time
        <= activity_span.start_time
        <= activity_span.end_time
        <= workflow_span.end_time
    )


async def test_duplicate_delivery_attaches_to_the_same_execution(make_engine: MakeEngine) -> None:
    task = make_task("run-dup/charge")
    first = await make_engine().submit(task, {"order_id": "d", "sleep": 0.5})
    again = await make_engine().submit(task, {"order_id": "d", "sleep": 0.5})  # another agent replica
    assert again.state["run_id"] == first.state["run_id"] and again.state["attached"]
    assert not first.state["attached"]
    engine = make_engine()
    assert (await engine.wait(first))["payment_ref"] == "pay-d"
    # Delivered once more after the execution closed: attaches to it and gets the same result.
    closed = await engine.submit(task, {"order_id": "d", "sleep": 0.5})
    assert closed.state["run_id"] == first.state["run_id"] and closed.state["attached"]
    assert await engine.wait(closed) == await engine.wait(first)


async def test_a_retry_after_a_failed_execution_starts_the_next_one(
    make_engine: MakeEngine, client: Client
) -> None:
    engine = make_engine()
    with pytest.raises(EngineFailure) as info:
        await run(engine, {"order_id": "r", "fail_before_attempt": 2}, key="run-r/charge", attempt=1)
    assert info.value.retryable and "attempt 1 is too early" in info.value.message
    # Attempt 1 delivered again: its own (failed) execution, not a new one.
    again = await engine.submit(
        make_task("run-r/charge", attempt=1), {"order_id": "r", "fail_before_attempt": 2}
    )
    assert again.state["workflow_id"] == "run-r/charge" and again.state["attached"]
    with pytest.raises(EngineFailure, match="attempt 1 is too early"):
        await engine.wait(again)
    handle = await engine.submit(
        make_task("run-r/charge", attempt=2), {"order_id": "r", "fail_before_attempt": 2}
    )
    assert handle.state["workflow_id"] == workflow_id_for("run-r/charge", 2) == "run-r/charge#2"
    assert (await engine.wait(handle))["attempt"] == 2
    first = await client.get_workflow_handle("run-r/charge").describe()
    assert first.status == WorkflowExecutionStatus.FAILED


async def test_cancel_reaches_the_workflow(make_engine: MakeEngine, client: Client) -> None:
    engine = make_engine()
    handle = await engine.submit(make_task(), {"order_id": "c", "sleep": 300})
    waiting = asyncio.create_task(engine.wait(handle))
    workflow = client.get_workflow_handle(handle.state["workflow_id"])

    async def sleeping() -> bool:
        async for event in workflow.fetch_history_events():
            if event.HasField("timer_started_event_attributes"):
                return True
        return False

    await wait_until(sleeping, "the workflow never reached its timer")
    await engine.cancel(handle)
    with pytest.raises(EngineFailure) as info:
        await waiting
    assert info.value.type == "WorkflowCancelled" and not info.value.retryable
    assert (await workflow.describe()).status == WorkflowExecutionStatus.CANCELED
    await engine.cancel(handle)  # cancelling a closed execution is a no-op


async def test_a_workflow_ignoring_the_cancel_is_terminated_after_terminate_after(
    make_engine: MakeEngine, client: Client
) -> None:
    engine = make_engine(terminate_after="300ms")
    handle = await engine.submit(make_task(), {"order_id": "i", "sleep": 300, "ignore_cancel": True})
    workflow = client.get_workflow_handle(handle.state["workflow_id"])

    async def has(field: str) -> bool:
        return any([e.HasField(field) async for e in workflow.fetch_history_events()])

    await wait_until(lambda: has("timer_started_event_attributes"), "the workflow never reached its timer")
    await engine.cancel(handle)
    assert (await workflow.describe()).status == WorkflowExecutionStatus.TERMINATED
    assert await has("workflow_execution_cancel_requested_event_attributes")  # asked first


async def test_terminated_outside_accord_is_not_retried(make_engine: MakeEngine, client: Client) -> None:
    engine = make_engine()
    handle = await engine.submit(make_task(), {"order_id": "x", "sleep": 300})
    await client.get_workflow_handle(handle.state["workflow_id"]).terminate(reason="operator: bad order")
    with pytest.raises(EngineFailure) as info:
        await engine.wait(handle)
    assert info.value.type == "WorkflowTerminated" and not info.value.retryable
    assert "operator: bad order" in info.value.message


async def test_execution_timeout_is_retryable(make_engine: MakeEngine) -> None:
    with pytest.raises(EngineFailure) as info:
        await run(make_engine(execution_timeout="1s"), {"sleep": 60})
    assert info.value.type == "WorkflowTimedOut" and info.value.retryable


async def test_unknown_workflow_type_fails_the_task_with_temporals_message(
    make_engine: MakeEngine, client: Client
) -> None:
    engine = make_engine(workflow_type="NoSuchWorkflow")
    handle = await engine.submit(make_task(), {})
    with pytest.raises(EngineFailure) as info:
        await engine.wait(handle)
    failure = info.value
    assert failure.type == "WorkflowTypeNotRegistered" and not failure.retryable
    assert "Workflow class NoSuchWorkflow is not registered on this worker" in failure.message
    described = await client.get_workflow_handle(handle.state["workflow_id"]).describe()
    assert described.status == WorkflowExecutionStatus.TERMINATED  # a retry starts afresh


async def test_a_failing_workflow_task_is_a_retryable_failure(make_engine: MakeEngine) -> None:
    with pytest.raises(EngineFailure) as info:
        await run(make_engine(), {"fail": "bug"})
    assert info.value.type == "WorkflowTaskFailed" and info.value.retryable
    assert "a bug in the workflow code" in info.value.message


def test_unknown_namespace_is_refused_when_the_binding_is_built(temporal_server: TemporalDevServer) -> None:
    with pytest.raises(EngineConfigError) as info:
        TemporalEngine(
            {
                "target_host": temporal_server.address,
                "namespace": "nope",
                "task_queue": "q",
                "workflow_type": "W",
            }
        )
    ((field, message),) = info.value.problems
    assert field == "namespace"
    assert "namespace 'nope' does not exist" in message and "Namespace nope is not found" in message


def test_a_task_queue_without_workers_is_only_a_warning(
    temporal_server: TemporalDevServer, caplog: pytest.LogCaptureFixture
) -> None:
    TemporalEngine(
        {"target_host": temporal_server.address, "task_queue": "nobody-polls", "workflow_type": "W"}
    )
    assert "no Temporal worker has polled task queue 'nobody-polls'" in caplog.text


async def test_an_unknown_namespace_at_submit_is_not_retryable(temporal_server: TemporalDevServer) -> None:
    engine = TemporalEngine(
        {
            "target_host": temporal_server.address,
            "namespace": "nope",
            "task_queue": "q",
            "workflow_type": "W",
            "check_namespace": False,
        }
    )
    with pytest.raises(EngineFailure) as info:
        await engine.submit(make_task(), {})
    assert info.value.type == "NamespaceNotFound" and not info.value.retryable
    assert "Namespace nope is not found" in info.value.message


def test_tls_and_api_key_settings() -> None:
    base = {
        "target_host": "x.tmprl.cloud:7233",
        "task_queue": "q",
        "workflow_type": "W",
        "check_namespace": False,
    }
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    assert TemporalEngine(base).config.tls is None
    keyed = TemporalEngine({**base, "api_key": "k-123"}).config
    assert keyed.tls is not None and keyed.api_key == "k-123"  # an API key turns TLS on
    assert TemporalEngine({**base, "api_key": "k-123", "tls": False}).config.tls is None
    mtls = TemporalEngine(
        {**base, "tls": {"ca_cert": pem, "client_cert": pem, "client_key": pem, "server_name": "x"}}
    ).config.tls
    assert mtls is not None
    sdk = mtls.sdk_config()
    assert sdk.server_root_ca_cert == pem.encode() and sdk.client_private_key == pem.encode()
    assert sdk.domain == "x"


def test_an_unreachable_server_is_not_a_config_error() -> None:
    # The agent may start before Temporal does: its tasks then fail, retryably.
    TemporalEngine({"target_host": "127.0.0.1:1", "task_queue": "q", "workflow_type": "W", "timeout": "2s"})


async def test_an_unreachable_server_fails_the_task_retryably() -> None:
    engine = TemporalEngine(
        {
            "target_host": "127.0.0.1:1",
            "task_queue": "q",
            "workflow_type": "W",
            "timeout": "2s",
            "check_namespace": False,
        }
    )
    with pytest.raises(EngineFailure) as info:
        await engine.submit(make_task(), {})
    assert info.value.retryable and info.value.type == "EngineUnavailable"


def test_config_errors_list_every_problem() -> None:
    with pytest.raises(EngineConfigError) as info:
        TemporalEngine(
            {
                "target_host": "http://localhost:7233",
                "workflow_typ": "typo",
                "tls": {"client_cert": "not pem", "verify": True},
                "workflow_task_failure": "ignore",
                "execution_timeout": "soon",
                "args": ["${input.a}", "id-${input.b}"],
            }
        )
    fields = {f for f, _ in info.value.problems}
    assert {
        "target_host",
        "task_queue",
        "workflow_type",
        "workflow_typ",
        "tls.client_cert",
        "tls.verify",
        "workflow_task_failure",
        "execution_timeout",
        "args.1",
    } <= fields
    assert "not pem" not in str(info.value)


def test_agent_start_refuses_an_unknown_namespace(temporal_server: TemporalDevServer, tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            team: payments
            coordinator: 127.0.0.1:1
            token: t0k3n
            implements:
              payments/charge@1:
                engine: temporal
                with:
                  target_host: {temporal_server.address}
                  namespace: paymnets
                  task_queue: payments
                  workflow_type: ChargeCard
            """
        )
    )
    result = subprocess.run(
        [accord_executable(), "agent", "start", "--config", str(config), "--state-dir", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert result.stderr.startswith(
        f"error: {config}:9: implements.payments/charge@1.with.namespace: temporal: namespace 'paymnets' "
        f"does not exist at {temporal_server.address}"
    ), result.stderr
    assert "Traceback" not in result.stderr
