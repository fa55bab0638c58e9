"""The ``prefect`` adapter against a real Prefect 3 server (see prefect_real.py): the flows in
prefect_flows/ and the prefect-team example's flow, served by ``flow.serve()`` and run by Prefect
itself; then end to end through a real coordinator and a real agent process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.engines.base import EngineConfigError, EngineFailure
from team_agent.engines.prefect import TRACEPARENT_LABEL, PrefectEngine, idempotency_key_for
from team_agent.testing import AgentProcess
from tests.engines.conftest import make_task
from tests.engines.e2e_support import REPO, EngineTeam, attempt_error, engine_team
from tests.engines.prefect_real import RealPrefect, real_prefect  # noqa: F401  (a module fixture)
from tests.support.coordinator import CoordinatorProcess
from tests.support.wait import wait_until

pytestmark = [pytest.mark.prefect, pytest.mark.xdist_group("prefect"), pytest.mark.timeout(600)]

MakeEngine = Callable[..., PrefectEngine]
CHARGE_CARD = (REPO / "examples" / "contracts" / "charge-card.yaml").read_text()
EXAMPLE_AGENT = REPO / "examples" / "prefect-team" / "agent.yaml"
tracer = trace.get_tracer(__name__)


@pytest.fixture
async def make_engine(real_prefect: RealPrefect) -> AsyncIterator[MakeEngine]:  # noqa: F811
    made: list[PrefectEngine] = []

    def make(flow: str, *, check: bool = True, **extra: Any) -> PrefectEngine:
        engine = PrefectEngine(real_prefect.binding(flow, **extra), check=check)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.close()


async def flow_run(pf: RealPrefect, flow_run_id: str) -> dict[str, Any]:
    async with pf.client() as client:
        answer = await client.get(f"/flow_runs/{flow_run_id}")
        answer.raise_for_status()
        run: dict[str, Any] = answer.json()
        return run


async def test_success_returns_the_artifact_attaches_a_redelivery_and_carries_the_trace(
    real_prefect: RealPrefect,  # noqa: F811
    make_engine: MakeEngine,
    spans: InMemorySpanExporter,
) -> None:
    engine = make_engine("accord-echo")
    task = make_task()
    with tracer.start_as_current_span("engine charge") as agent_span:
        handle = await engine.submit(task, {"n": 21, "order_id": "o-1"})
        again = await engine.submit(task, {"n": 21, "order_id": "o-1"})  # Prefect answers 200: attach
        trace_id = format(agent_span.get_span_context().trace_id, "032x")
        output = await engine.wait(again)
    assert again.state == {"flow_run_id": handle.state["flow_run_id"], "attached": True}
    assert handle.state["attached"] is False
    assert output["echo"] == {"n": 21, "order_id": "o-1"} and output["doubled"] == 42
    assert output["traceparent"].split("-")[1] == trace_id  # the flow read it from its labels

    run = await flow_run(real_prefect, handle.state["flow_run_id"])
    assert run["idempotency_key"] == idempotency_key_for("accord", task.idempotency_key)
    assert run["labels"][TRACEPARENT_LABEL].split("-")[1] == trace_id
    assert run["labels"]["accord.task_id"] == task.task_id
    assert handle.details["prefect_run_url"].endswith(f"/runs/flow-run/{run['id']}")

    finished = {s.name: s for s in spans.get_finished_spans()}
    flow_span = finished[f"prefect.flow_run {run['name']}"]
    assert flow_span.attributes is not None and flow_span.attributes["prefect.flow_run.state"] == "COMPLETED"
    (task_span,) = [s for s in finished.values() if s.name.startswith("prefect.task_run double")]
    assert task_span.parent is not None and task_span.parent.span_id == flow_span.context.span_id
    assert flow_span.start_time is not None and task_span.start_time is not None
    assert flow_span.start_time <= task_span.start_time
    assert {"prefect.create_flow_run", "prefect.poll", "prefect.fetch_output"} <= set(finished)

    # The same completed run, read by a binding whose flow publishes another key: no output.
    other = make_engine("accord-echo", output_artifact="another-key")
    with pytest.raises(EngineFailure) as info:
        await other.wait(handle)
    assert info.value.type == "OutputMissing" and not info.value.retryable
    assert "'another-key'" in info.value.message
    assert (await make_engine("accord-echo", output="summary").wait(handle)) == {
        "flow_run_id": run["id"],
        "name": run["name"],
        "state": "Completed",
    }


async def test_failures_carry_prefects_message_and_a_retry_starts_a_new_run(
    real_prefect: RealPrefect,  # noqa: F811
    make_engine: MakeEngine,
) -> None:
    engine = make_engine("accord-fail", non_retryable_errors=["CardDeclined"])
    declined_task, transient_task = make_task(), make_task()

    async def failure(task: Any, value: Any, on: PrefectEngine = engine) -> EngineFailure:
        with pytest.raises(EngineFailure) as info:
            await on.wait(await on.submit(task, value))
        return info.value

    # Concurrently: each flow run is a process of its own that takes seconds to start.
    declined, transient = await asyncio.gather(
        failure(declined_task, {"kind": "declined"}), failure(transient_task, {"kind": "transient"})
    )
    assert declined.type == "CardDeclined" and not declined.retryable
    assert "Flow run encountered an exception: CardDeclined: card declined by the issuer" in declined.message
    assert declined.details["state"] == "FAILED" and declined.details["failed_tasks"][0].startswith("explode")
    assert transient.type == "RuntimeError" and transient.retryable
    assert "RuntimeError: the ledger is unavailable (transient)" in transient.message

    # Attempt 2 of the same step: the failed run belongs to attempt 1, so a new run is created
    # (under the next idempotency key), and a re-delivery of attempt 2 attaches to it.
    retry = make_task(transient_task.idempotency_key, attempt=2)
    second = await engine.submit(retry, {"kind": "transient"})
    assert second.state["attached"] is False
    assert second.state["flow_run_id"] != transient.details["flow_run_id"]
    assert (await engine.submit(retry, {"kind": "transient"})).state == {**second.state, "attached": True}
    await engine.cancel(second)


async def test_bad_deployments_credentials_and_parameters_are_refused_naming_the_field(
    real_prefect: RealPrefect,  # noqa: F811
    make_engine: MakeEngine,
) -> None:
    # When the agent loads its config: an unknown deployment, an auth string the server refuses.
    with pytest.raises(EngineConfigError) as refused:
        PrefectEngine(real_prefect.binding("accord-missing"))
    ((field, message),) = refused.value.problems
    assert field == "deployment" and "'accord-missing/accord'" in message
    with pytest.raises(EngineConfigError) as refused:
        PrefectEngine(real_prefect.binding("accord-echo", auth_string="accord:wrong-password"))
    ((field, message),) = refused.value.problems
    assert field == "auth_string" and "HTTP 401" in message and "wrong-password" not in message

    # The same found by the first task, when Prefect could not be asked at agent start.
    missing = make_engine("accord-missing", check=False)
    with pytest.raises(EngineFailure) as info:
        await missing.submit(make_task(), {})
    assert info.value.type == "DeploymentNotFound" and not info.value.retryable
    assert "with.deployment" in info.value.message and "'accord-missing/accord'" in info.value.message
    wrong = make_engine("accord-echo", auth_string="accord:wrong-password", check=False)
    with pytest.raises(EngineFailure) as info:
        await wrong.submit(make_task(), {})
    assert info.value.type == "EngineAuthError" and not info.value.retryable
    assert "wrong-password" not in info.value.message and "auth_string" in info.value.message

    # The example flow's parameters are order_id, amount_cents, card_token: Prefect enforces them.
    with pytest.raises(EngineFailure) as info:
        await make_engine("charge-card").submit(make_task(), {"order_id": "o-1"})  # as one "payload"
    assert info.value.type == "FlowRunRejected" and not info.value.retryable
    assert "'order_id' is a required property" in info.value.message, info.value.message


async def test_agent_start_refuses_an_unknown_deployment_with_exit_2(
    real_prefect: RealPrefect,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = yaml.safe_load(EXAMPLE_AGENT.read_text())
    config["implements"]["payments/charge-card@1"] = example_binding(real_prefect)
    config["implements"]["payments/charge-card@1"]["with"]["deployment"] = "charge-card/no-such"
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {"ACCORD_TOKEN": "t", **prefect_secrets(real_prefect)}
    agent = AgentProcess(path, workdir=tmp_path, env=env).start()
    assert await asyncio.to_thread(agent.wait, 120) == 2, agent.log
    assert "implements.payments/charge-card@1.with.deployment" in agent.log, agent.log
    assert "'charge-card/no-such'" in agent.log and "Traceback" not in agent.log
    assert real_prefect.auth_string.split(":")[1] not in agent.log


async def test_a_run_no_worker_picks_up_is_cancelled_after_scheduled_timeout(
    real_prefect: RealPrefect,  # noqa: F811
) -> None:
    async with real_prefect.client() as client:
        flow = (await client.post("/flows/", json={"name": "accord-unserved"})).json()
        answer = await client.post("/deployments/", json={"name": "accord", "flow_id": flow["id"]})
        assert answer.status_code in (200, 201), answer.text
    engine = PrefectEngine(real_prefect.binding("accord-unserved", scheduled_timeout="1s"))
    try:
        handle = await engine.submit(make_task(), {})
        with pytest.raises(EngineFailure) as info:
            await engine.wait(handle)
    finally:
        await engine.close()
    assert info.value.type == "FlowRunNotPickedUp" and info.value.retryable
    run = await flow_run(real_prefect, handle.state["flow_run_id"])
    assert run["state"]["type"] == "CANCELLED"  # so a worker that comes later does not run it


async def test_cancel_stops_the_running_flow(
    real_prefect: RealPrefect,  # noqa: F811
    make_engine: MakeEngine,
    tmp_path: Path,
) -> None:
    engine = make_engine("accord-slow")
    marker = tmp_path / "running"
    handle = await engine.submit(make_task(), {"marker": str(marker)})
    await wait_until(marker.exists, f"the slow flow to start:\n{real_prefect.logs()}", within=120)
    pid = int(marker.read_text())
    await engine.cancel(handle)
    run = await flow_run(real_prefect, handle.state["flow_run_id"])
    assert run["state"]["type"] in ("CANCELLING", "CANCELLED")
    # The runner kills the flow's process and Prefect marks the run CANCELLED; a wait that was
    # still polling (the run cancelled from Prefect's side) fails without retries.
    with pytest.raises(EngineFailure) as info:
        await engine.wait(handle)
    assert info.value.type == "FlowRunCancelled" and not info.value.retryable
    assert "was cancelled in Prefect" in info.value.message
    await wait_until(lambda: not os.path.exists(f"/proc/{pid}"), "the flow's process to end", within=60)
    await engine.cancel(handle)  # a second cancel of a finished run does nothing


@pytest.mark.soak
async def test_a_killed_flow_process_is_a_retryable_crash(
    real_prefect: RealPrefect,  # noqa: F811
    make_engine: MakeEngine,
    tmp_path: Path,
) -> None:
    engine = make_engine("accord-slow")
    marker = tmp_path / "running"
    handle = await engine.submit(make_task(), {"marker": str(marker)})
    await wait_until(marker.exists, f"the slow flow to start:\n{real_prefect.logs()}", within=120)
    os.kill(int(marker.read_text()), signal.SIGKILL)  # the runner reports the run CRASHED
    with pytest.raises(EngineFailure) as info:
        await engine.wait(handle)
    assert info.value.type == "FlowRunCrashed" and info.value.retryable, info.value.message
    assert info.value.details["state"] == "CRASHED"


# -- end to end: a real coordinator and a real agent process ------------------------------------


@pytest.fixture
async def payments(
    coordinator: CoordinatorProcess,
    tmp_path: Path,
    real_prefect: RealPrefect,  # noqa: F811
) -> AsyncIterator[EngineTeam]:
    """The payments team with the example contract payments/charge-card@1, served by an agent
    whose binding is examples/prefect-team/agent.yaml's, pointed at the real Prefect."""
    team = await engine_team(coordinator, tmp_path, contract_source=CHARGE_CARD)
    yield team
    await asyncio.to_thread(team.stop_agents)


def prefect_secrets(pf: RealPrefect) -> dict[str, str]:
    return {"PREFECT_AUTH": pf.auth_string}


def example_binding(pf: RealPrefect) -> dict[str, Any]:
    config = yaml.safe_load(EXAMPLE_AGENT.read_text())
    binding: dict[str, Any] = config["implements"]["payments/charge-card@1"]
    binding["with"].update(
        api_url=pf.api_url, auth_string="${secret:PREFECT_AUTH}", poll_interval="0.3s", max_poll_interval="1s"
    )
    return binding


async def test_e2e_the_example_flow_runs_inside_the_runs_trace(
    real_prefect: RealPrefect,  # noqa: F811
    payments: EngineTeam,
) -> None:
    agent = await payments.start_agent(example_binding(real_prefect), env=prefect_secrets(real_prefect))
    ok_id = await payments.start_run({"order_id": "o-10", "amount_cents": 990, "card_token": "tok-secret"})
    ok = await payments.wait_run(ok_id, within=240)
    assert ok.status == pb.RUN_STATUS_SUCCEEDED, ok
    output = json.loads(ok.output_json)
    assert set(output) == {"payment_ref"} and output["payment_ref"].startswith("pay-")

    async with real_prefect.client() as client:
        runs = (
            await client.post("/flow_runs/filter", json={"flow_runs": {"tags": {"all_": ["accord"]}}})
        ).json()
    (ours,) = [r for r in runs if r["parameters"].get("order_id") == "o-10"]
    assert ours["labels"][TRACEPARENT_LABEL].split("-")[1] == ok.trace_id  # the flow run joins the trace

    async def traced() -> dict[str, Any] | None:
        async with payments.coordinator.client(payments.token) as client:
            reply = await client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=ok_id))
        spans = {s.span_id: s for s in reply.spans}
        names = {s.name for s in spans.values()}
        return spans if f"prefect.flow_run {ours['name']}" in names else None

    spans = await wait_until(traced, "the Prefect spans in the run's trace", within=60)
    (flow_span,) = [s for s in spans.values() if s.name == f"prefect.flow_run {ours['name']}"]
    tasks = sorted(
        s.name.split()[1].rsplit("-", 1)[0] for s in spans.values() if s.parent_span_id == flow_span.span_id
    )
    assert tasks == ["charge", "validate"]
    assert real_prefect.auth_string.split(":")[1] not in agent.log  # the secret stays out of the logs


async def flow_runs_of(pf: RealPrefect, order_id: str) -> list[dict[str, Any]]:
    async with pf.client() as client:
        answer = await client.post("/flow_runs/filter", json={"flow_runs": {"tags": {"all_": ["accord"]}}})
        answer.raise_for_status()
    return [
        r
        for r in answer.json()
        if (r["parameters"].get("payload") or r["parameters"]).get("order_id") == order_id
    ]


@pytest.mark.soak
async def test_e2e_a_declined_card_is_not_retried_by_the_contract(
    real_prefect: RealPrefect,  # noqa: F811
    payments: EngineTeam,
) -> None:
    """The example contract lists CardDeclined in retry.non_retryable; the flow's exception type
    is the error's type, so the coordinator stops after one attempt."""
    await payments.start_agent(example_binding(real_prefect), env=prefect_secrets(real_prefect))
    run = await payments.wait_run(
        await payments.start_run({"order_id": "o-11", "amount_cents": 5, "card_token": "tok_declined"}),
        within=240,
    )
    assert run.status == pb.RUN_STATUS_FAILED
    error, details = attempt_error(run)
    assert error.type == "CardDeclined" and len(run.steps[0].attempts) == 1
    assert "card declined for order o-11" in error.message
    assert details["prefect_run_url"].startswith(real_prefect.api_url.removesuffix("/api"))


@pytest.mark.soak
async def test_e2e_a_coordinator_cancel_cancels_the_flow_run(
    real_prefect: RealPrefect,  # noqa: F811
    payments: EngineTeam,
) -> None:
    binding = example_binding(real_prefect)
    binding["with"].update(deployment="accord-slow/accord", input_parameter="payload")
    await payments.start_agent(binding, env=prefect_secrets(real_prefect))
    run_id = await payments.start_run({"order_id": "o-13", "amount_cents": 5})

    async def state() -> str | None:
        runs = await flow_runs_of(real_prefect, "o-13")
        return str(runs[0]["state"]["type"]) if runs else None

    async def running() -> bool:
        return await state() == "RUNNING"

    async def cancelled() -> bool:
        return await state() == "CANCELLED"

    await wait_until(running, f"the slow flow to run:\n{real_prefect.logs()}", within=120)
    await payments.cancel_run(run_id)
    run = await payments.wait_run(run_id, within=60)
    assert run.status == pb.RUN_STATUS_CANCELLED
    # The agent hears of the cancel on its next heartbeat; the runner then kills the flow.
    await wait_until(cancelled, "the flow run to be cancelled", within=60)
