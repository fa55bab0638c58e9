"""The ``stepfunctions`` adapter against moto's server (tests/engines/stepfunctions_moto.py), one
server process shared by the module, and end to end through a real coordinator and a real agent.

What moto really executes here: with ``execute_state_machine`` on, its interpreter runs the
definitions: Pass, Wait, Choice, Fail and Succeed states, execution-level ``TimeoutSeconds``
(TIMED_OUT), ``StopExecution`` (ABORTED), the event history, and the example's Task state, an
SQS ``sendMessage.waitForTaskToken`` answered by the example's worker process with
``SendTaskSuccess`` / ``SendTaskFailure``. Moto does not return an execution's ``traceHeader``
from DescribeExecution, so the X-Ray header is checked as the value sent, the W3C traceparent as
what the execution received and returned; and it drops the ``cause`` of ``SendTaskFailure`` (a
Fail state's cause does arrive).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.config import parse_config
from team_agent.engines.base import EngineConfigError, EngineFailure, load_engine
from team_agent.engines.stepfunctions import (
    CONTEXT_KEY,
    StepFunctionsEngine,
    execution_name_for,
    xray_trace_header,
)
from team_agent.testing import accord_executable
from tests.engines.conftest import TRACEPARENT, make_task
from tests.engines.e2e_support import REPO, EngineTeam, attempt_error, engine_team
from tests.engines.stepfunctions_moto import ACCOUNT, CREDENTIALS, REGION, ROLE_ARN, MotoServer
from tests.support.coordinator import CoordinatorProcess
from tests.support.wait import wait_until

pytestmark = [pytest.mark.xdist_group("stepfunctions"), pytest.mark.timeout(180)]

MakeEngine = Callable[..., StepFunctionsEngine]
EXAMPLE = REPO / "examples" / "stepfunctions-team"
CHARGE_CARD = (REPO / "examples" / "contracts" / "charge-card.yaml").read_text()

# A state machine that echoes its input and its trace context after waiting $.wait seconds,
# or fails with $.error / $.cause when the input names one.
ECHO = {
    "StartAt": "Pause",
    "States": {
        "Pause": {"Type": "Wait", "SecondsPath": "$.wait", "Next": "Decide"},
        "Decide": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.error", "IsPresent": True, "Next": "Refuse"}],
            "Default": "Answer",
        },
        "Refuse": {"Type": "Fail", "ErrorPath": "$.error", "CausePath": "$.cause"},
        "Answer": {
            "Type": "Pass",
            "Parameters": {
                "payment_ref.$": "States.Format('pay-{}', $.order_id)",
                "traceparent.$": "$.accord.traceparent",
                "idempotency_key.$": "$.accord.idempotency_key",
            },
            "End": True,
        },
    },
}


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def echo_arn(moto: MotoServer) -> str:
    return moto.create_state_machine("echo", ECHO)


@pytest.fixture
async def make_engine(moto: MotoServer) -> AsyncIterator[MakeEngine]:
    made: list[StepFunctionsEngine] = []

    def make(arn: str, **extra: Any) -> StepFunctionsEngine:
        engine = StepFunctionsEngine(moto.binding(arn, **extra))
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.close()


def executions(moto: MotoServer, arn: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = moto.client().list_executions(stateMachineArn=arn)["executions"]
    return found


# -- names, headers, config ------------------------------------------------------------------


async def test_found_through_the_entry_point() -> None:
    assert load_engine("stepfunctions") is StepFunctionsEngine


def test_execution_names_follow_the_rules_and_never_collide() -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
    keys = ["plain-key", "run-1:charge", "run-1-charge", "run 1/charge", "x" * 200, "x" * 201, "é", ""]
    names = [execution_name_for(k) for k in keys] + [execution_name_for(k, 2) for k in keys]
    for name in names:
        assert 1 <= len(name) <= 80 and set(name) <= allowed, name
    assert len(set(names)) == len(names)  # "run-1:charge" and "run-1-charge" too
    assert execution_name_for("plain-key") == "accord-plain-key"  # a clean key stays readable
    assert execution_name_for("run-1:charge").startswith("accord-run-1-charge-")
    assert execution_name_for("plain-key", 3) == "accord-plain-key_3"
    # A clean key that looks like a hashed one is hashed too, so it cannot meet one.
    lookalike = execution_name_for("run-1:charge")[len("accord-") :]
    assert execution_name_for(lookalike) != execution_name_for("run-1:charge")


def test_the_xray_header_is_the_traceparents_ids() -> None:
    assert xray_trace_header(TRACEPARENT) == (
        "Root=1-0af76519-16cd43dd8448eb211c80319c;Parent=b7ad6b7169203331;Sampled=1"
    )
    assert xray_trace_header("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00").endswith("Sampled=0")
    assert xray_trace_header("") is None and xray_trace_header("00-zz-yy-01") is None


def test_config_errors_list_every_problem() -> None:
    with pytest.raises(EngineConfigError) as info:
        StepFunctionsEngine(
            {
                "state_machine_arn": "arn:aws:lambda:eu-west-1:123456789012:function:x",
                "endpoint_url": "localhost:5000",
                "access_key_id": "AKID",
                "profile": "p",
                "context_key": 3,
                "retryable_errors": "Bank.Unavailable",
                "poll_interval": "soon",
                "statemachine": "typo",
            }
        )
    fields = {f for f, _ in info.value.problems}
    assert {
        "state_machine_arn",
        "endpoint_url",
        "secret_access_key",
        "profile",
        "context_key",
        "retryable_errors",
        "poll_interval",
        "statemachine",
    } <= fields
    with pytest.raises(EngineConfigError) as info:
        StepFunctionsEngine(
            {"state_machine_arn": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:m", "region": "eu-west-1"}
        )
    assert [f for f, _ in info.value.problems] == ["region"]


def test_an_unknown_or_express_state_machine_or_an_unreachable_endpoint_is_refused(moto: MotoServer) -> None:
    missing = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:no-such-machine"
    with pytest.raises(EngineConfigError) as info:
        StepFunctionsEngine(moto.binding(missing))
    ((field, message),) = info.value.problems
    assert (
        field == "state_machine_arn" and "does not exist" in message and "StateMachineDoesNotExist" in message
    )
    express = moto.create_state_machine("express", ECHO, type="EXPRESS")
    with pytest.raises(EngineConfigError) as info:
        StepFunctionsEngine(moto.binding(express))
    ((field, message),) = info.value.problems
    assert field == "state_machine_arn" and "EXPRESS" in message
    with pytest.raises(EngineConfigError) as info:
        StepFunctionsEngine(moto.binding(missing, endpoint_url="http://127.0.0.1:1", timeout="2s"))
    ((field, message),) = info.value.problems
    assert field == "endpoint_url" and "could not reach" in message
    assert CREDENTIALS["secret_access_key"] not in str(info.value)


def test_missing_credentials_or_an_unknown_profile_are_refused(
    moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing for the standard chain to find here, and no instance metadata service asked.
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:echo"
    binding = {"state_machine_arn": arn, "endpoint_url": moto.url}
    with pytest.raises(EngineConfigError) as info:
        StepFunctionsEngine(binding)
    ((field, message),) = info.value.problems
    assert field == "access_key_id" and "no AWS credentials found" in message
    with pytest.raises(EngineConfigError) as info:
        StepFunctionsEngine({**binding, "profile": "payments"})
    ((field, message),) = info.value.problems
    assert field == "profile" and "payments" in message


def test_agent_start_refuses_an_unknown_state_machine(moto: MotoServer, tmp_path: Path) -> None:
    """A real ``accord agent start``: exit 2, naming the binding and the field, before anything."""
    missing = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:charge-crad"
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "team": "payments",
                "coordinator": "127.0.0.1:1",
                "token": "t",
                "implements": {
                    "payments/charge-card@1": {"engine": "stepfunctions", "with": moto.binding(missing)}
                },
            },
            sort_keys=False,
        )
    )
    result = subprocess.run(
        [accord_executable(), "agent", "start", "--config", str(config), "--state-dir", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    (line,) = result.stderr.strip().splitlines()
    at = next(n for n, text in enumerate(config.read_text().splitlines(), 1) if "state_machine_arn:" in text)
    assert line.startswith(
        f"error: {config}:{at}: implements.payments/charge-card@1.with.state_machine_arn: stepfunctions: "
        f"state machine {missing} does not exist"
    ), line
    assert "Traceback" not in result.stderr and CREDENTIALS["secret_access_key"] not in result.stderr


# -- one task ---------------------------------------------------------------------------------


async def test_success_returns_the_output_and_the_execution_got_the_trace_context(
    moto: MotoServer, echo_arn: str, make_engine: MakeEngine, spans: InMemorySpanExporter
) -> None:
    engine = make_engine(echo_arn)
    task = make_task()
    handle = await engine.submit(task, {"order_id": "o-1", "amount_cents": 250, "wait": 0})
    assert handle.details["execution_arn"].endswith(
        f":execution:echo:{execution_name_for(task.idempotency_key)}"
    )
    assert handle.state["attached"] is False
    output = await engine.wait(handle)
    assert output == {
        "payment_ref": "pay-o-1",
        "traceparent": TRACEPARENT,
        "idempotency_key": task.idempotency_key,
    }
    described = moto.client().describe_execution(executionArn=handle.details["execution_arn"])
    sent = json.loads(described["input"])
    assert sent[CONTEXT_KEY] == {
        "traceparent": TRACEPARENT,
        "idempotency_key": task.idempotency_key,
        "attempt": 1,
    }
    assert sent["order_id"] == "o-1"
    # The execution and the states it entered became spans, under the engine's span.
    names = {s.name: s for s in spans.get_finished_spans()}
    execution = names[f"stepfunctions.execution {execution_name_for(task.idempotency_key)}"]
    states = [s for s in names.values() if s.parent and s.parent.span_id == execution.context.span_id]
    assert sorted(s.name for s in states) == [
        "stepfunctions.state Answer",
        "stepfunctions.state Decide",
        "stepfunctions.state Pause",
    ]
    assert {s.attributes["stepfunctions.state.type"] for s in states} == {"Wait", "Choice", "Pass"}


async def test_the_xray_trace_header_is_sent_with_start_execution(
    echo_arn: str, make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(echo_arn)
    sent: list[dict[str, Any]] = []
    start = engine._client.start_execution

    def recording(**kwargs: Any) -> Any:
        sent.append(kwargs)
        return start(**kwargs)

    monkeypatch.setattr(engine._client, "start_execution", recording)
    await engine.wait(await engine.submit(make_task(), {"order_id": "o-x", "wait": 0}))
    assert sent[0]["traceHeader"] == xray_trace_header(TRACEPARENT)


async def test_a_redelivered_task_attaches_to_its_execution(
    moto: MotoServer, echo_arn: str, make_engine: MakeEngine
) -> None:
    engine = make_engine(echo_arn)
    task = make_task()
    first = await engine.submit(task, {"order_id": "o-2", "wait": 1})
    # The same task delivered again, with another trace context (another agent span):
    # ExecutionAlreadyExists, and the agent attaches to the running execution.
    again = await engine.submit(
        make_task(task.idempotency_key, trace_context={"traceparent": TRACEPARENT[:-2] + "00"}),
        {"order_id": "o-2", "wait": 1},
    )
    assert again.state["attached"] is True
    assert again.details["execution_arn"] == first.details["execution_arn"]
    assert (await engine.wait(again))["payment_ref"] == "pay-o-2"
    # ... and after it finished, too.
    late = await engine.submit(task, {"order_id": "o-2", "wait": 1})
    assert late.state["attached"] is True and (await engine.wait(late))["payment_ref"] == "pay-o-2"
    mine = [e for e in executions(moto, echo_arn) if e["name"] == execution_name_for(task.idempotency_key)]
    assert len(mine) == 1


async def test_a_failed_execution_is_not_retryable_and_carries_error_and_cause(
    echo_arn: str, make_engine: MakeEngine, spans: InMemorySpanExporter
) -> None:
    engine = make_engine(echo_arn)
    handle = await engine.submit(
        make_task(), {"order_id": "o-3", "wait": 0, "error": "CardDeclined", "cause": "the bank said no"}
    )
    with pytest.raises(EngineFailure) as info:
        await engine.wait(handle)
    failure = info.value
    assert failure.type == "CardDeclined" and failure.retryable is False
    assert failure.message.endswith("FAILED: CardDeclined: the bank said no")
    assert failure.details["error"] == "CardDeclined" and failure.details["cause"] == "the bank said no"
    assert failure.details["execution_arn"] == handle.details["execution_arn"]
    states = {s.name: s for s in spans.get_finished_spans() if s.name.startswith("stepfunctions.state ")}
    refuse = states["stepfunctions.state Refuse"]  # the Fail state: entered, never exited
    assert refuse.status.status_code == StatusCode.ERROR
    assert refuse.attributes["stepfunctions.state.error"] == "CardDeclined"
    assert states["stepfunctions.state Decide"].status.status_code == StatusCode.UNSET


async def test_transient_errors_and_timeouts_are_retryable(
    moto: MotoServer, echo_arn: str, make_engine: MakeEngine
) -> None:
    engine = make_engine(echo_arn, retryable_errors=["Bank.Unavailable"])
    with pytest.raises(EngineFailure) as info:
        await engine.wait(
            await engine.submit(make_task(), {"wait": 0, "error": "Bank.Unavailable", "cause": "no answer"})
        )
    assert info.value.type == "Bank.Unavailable" and info.value.retryable is True
    assert info.value.message.endswith("FAILED: Bank.Unavailable: no answer")
    # A task nobody answers in time: States.Timeout, retryable built in.
    queue = moto.client("sqs").create_queue(QueueName="nobody-reads")["QueueUrl"]
    unanswered = moto.create_state_machine(
        "unanswered",
        {
            "StartAt": "Ask",
            "States": {
                "Ask": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token"}},
                    "TimeoutSeconds": 1,
                    "End": True,
                }
            },
        },
    )
    asking = make_engine(unanswered)
    with pytest.raises(EngineFailure) as info:
        await asking.wait(await asking.submit(make_task(), {}))
    assert info.value.type == "States.Timeout" and info.value.retryable is True
    # A definition that cannot run (CausePath names no field) fails as States.Runtime: final.
    with pytest.raises(EngineFailure) as info:
        await engine.wait(await engine.submit(make_task(), {"wait": 0, "error": "X"}))
    assert info.value.type == "States.Runtime" and info.value.retryable is False
    assert "$.cause" in info.value.message
    slow = moto.create_state_machine(
        "slow",
        {"StartAt": "w", "TimeoutSeconds": 1, "States": {"w": {"Type": "Wait", "Seconds": 30, "End": True}}},
    )
    timing_out = make_engine(slow)
    with pytest.raises(EngineFailure) as info:
        await timing_out.wait(await timing_out.submit(make_task(), {}))
    assert info.value.type == "ExecutionTimedOut" and info.value.retryable is True
    assert "TIMED_OUT" in info.value.message


async def test_a_retry_after_a_failed_execution_starts_a_new_one(
    moto: MotoServer, echo_arn: str, make_engine: MakeEngine
) -> None:
    engine = make_engine(echo_arn)
    key = make_task().idempotency_key
    with pytest.raises(EngineFailure):
        await engine.wait(
            await engine.submit(make_task(key), {"wait": 0, "error": "Bank.Unavailable", "cause": "boom"})
        )
    handle = await engine.submit(make_task(key, attempt=2), {"order_id": "o-4", "wait": 0})
    assert handle.state["attached"] is False
    assert handle.details["execution_name"] == execution_name_for(key, 2)
    assert (await engine.wait(handle))["payment_ref"] == "pay-o-4"
    # A redelivery of the first attempt still attaches to its own (failed) execution.
    first = await engine.submit(make_task(key, attempt=1), {"wait": 0})
    assert first.details["execution_name"] == execution_name_for(key)


async def test_cancel_stops_the_execution(moto: MotoServer, echo_arn: str, make_engine: MakeEngine) -> None:
    engine = make_engine(echo_arn)
    handle = await engine.submit(make_task(), {"order_id": "o-5", "wait": 60})
    waiter = asyncio.create_task(engine.wait(handle))
    await engine.cancel(handle)
    sfn = moto.client()
    # StopExecution returns at once; moto's interpreter thread then marks the execution ABORTED.
    await wait_until(
        lambda: sfn.describe_execution(executionArn=handle.details["execution_arn"])["status"] == "ABORTED",
        "the execution was not stopped",
    )
    with pytest.raises(EngineFailure) as info:
        await asyncio.wait_for(waiter, 30)
    assert info.value.type == "ExecutionAborted" and info.value.retryable is False
    await engine.cancel(handle)  # a stopped execution: nothing to do


async def test_a_deleted_state_machine_fails_the_task_without_retries(
    moto: MotoServer, make_engine: MakeEngine
) -> None:
    arn = moto.create_state_machine("doomed", ECHO)
    engine = make_engine(arn)
    moto.client().delete_state_machine(stateMachineArn=arn)
    with pytest.raises(EngineFailure) as info:
        await engine.submit(make_task(), {"wait": 0})
    assert info.value.type == "StateMachineNotFound" and info.value.retryable is False


# -- the example, end to end -------------------------------------------------------------------


def _load_deploy() -> Any:
    spec = importlib.util.spec_from_file_location("stepfunctions_example_deploy", EXAMPLE / "deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The example deployed to moto (deploy.py), with its worker (worker.py) running."""
    arn, queue_url = _load_deploy().deploy(moto.client(), moto.client("sqs"), ROLE_ARN)
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": CREDENTIALS["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["secret_access_key"],
    }
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, str(EXAMPLE / "worker.py"), "--queue-url", queue_url],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while "worker ready" not in log_path.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the example's worker did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        yield {"arn": arn, "queue_url": queue_url, "log": str(log_path)}
    finally:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


def example_binding(moto: MotoServer, arn: str) -> dict[str, Any]:
    """The example agent's binding, pointed at moto."""
    config = yaml.safe_load((EXAMPLE / "agent.yaml").read_text())
    binding: dict[str, Any] = config["implements"]["payments/charge-card@1"]
    return {**binding, "with": {**binding["with"], **moto.binding(arn)}}


async def test_the_example_agent_config_loads(
    moto: MotoServer, example: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (EXAMPLE / "agent.yaml").read_text()
    assert "arn:aws:states:eu-west-1:123456789012:stateMachine:charge-card" in text
    # The same file, with the state machine on moto.
    config = yaml.safe_load(text)
    config["implements"]["payments/charge-card@1"] = example_binding(moto, example["arn"])
    monkeypatch.setenv("ACCORD_TOKEN", "t")
    loaded = parse_config(yaml.safe_dump(config), "agent.yaml")
    adapter = loaded.adapters["payments/charge-card@1"]
    try:
        assert isinstance(adapter, StepFunctionsEngine)
        assert "Bank.Unavailable" in adapter.config.retryable_errors
    finally:
        await adapter.close()


@pytest.fixture
async def payments(coordinator: CoordinatorProcess, tmp_path: Path) -> AsyncIterator[EngineTeam]:
    team = await engine_team(coordinator, tmp_path, contract_source=CHARGE_CARD)
    yield team
    await asyncio.to_thread(team.stop_agents)


async def test_e2e_the_example_charges_the_card_and_carries_the_trace(
    moto: MotoServer, example: dict[str, str], payments: EngineTeam
) -> None:
    await payments.start_agent(example_binding(moto, example["arn"]))
    run = await payments.wait_run(await payments.start_run({"order_id": "o-10", "amount_cents": 100}))
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert json.loads(run.output_json) == {"payment_ref": "pay-o-10"}
    (execution,) = [e for e in executions(moto, example["arn"]) if e["status"] == "SUCCEEDED"]
    sent = json.loads(moto.client().describe_execution(executionArn=execution["executionArn"])["input"])
    assert sent[CONTEXT_KEY]["traceparent"].split("-")[1] == run.trace_id  # the execution joins the trace
    assert sent[CONTEXT_KEY]["idempotency_key"] == run.steps[0].idempotency_key
    assert "charged o-10" in await asyncio.to_thread(Path(example["log"]).read_text)

    # The execution and its states, as spans inside the run's trace, under the attempt.
    async def traced() -> dict[str, Any] | None:
        async with payments.coordinator.client(payments.token) as client:
            reply = await client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=run.run_id))
        found = {s.span_id: s for s in reply.spans}
        names = {s.name for s in found.values()}
        # The agent's spans and the coordinator's (written in batches a moment after the
        # transition) come separately: wait for both.
        attempt = any(name.startswith("attempt ") for name in names)
        return found if attempt and "stepfunctions.state Receipt" in names else None

    spans = await wait_until(traced, "the execution's spans never reached the run's trace", within=60)
    (execution_span,) = [s for s in spans.values() if s.name.startswith("stepfunctions.execution ")]
    states = sorted(s.name for s in spans.values() if s.parent_span_id == execution_span.span_id)
    assert states == ["stepfunctions.state Charge", "stepfunctions.state Receipt"]
    parent, ancestors = execution_span, []
    while parent.parent_span_id in spans:
        parent = spans[parent.parent_span_id]
        ancestors.append(parent.name)
    assert any(name.startswith("attempt ") for name in ancestors), ancestors


@pytest.mark.soak  # ~10 s more of a coordinator and an agent; the adapter tests cover the mapping
async def test_e2e_a_declined_card_fails_the_step_once(
    moto: MotoServer, example: dict[str, str], payments: EngineTeam
) -> None:
    await payments.start_agent(example_binding(moto, example["arn"]))
    run = await payments.wait_run(await payments.start_run({"order_id": "declined-1", "amount_cents": 100}))
    assert run.status == pb.RUN_STATUS_FAILED
    error, details = attempt_error(run)
    assert error.type == "CardDeclined" and not error.retryable
    assert error.message.endswith("FAILED: CardDeclined")  # moto drops SendTaskFailure's cause
    assert details["status"] == "FAILED" and details["error"] == "CardDeclined"
    assert "declined declined-1" in await asyncio.to_thread(Path(example["log"]).read_text)
    assert len(run.steps[0].attempts) == 1  # CardDeclined is final: no second attempt


@pytest.mark.soak  # ~20 s: the cancel waits for the agent's heartbeat; test_cancel_stops_the_execution is quick
async def test_e2e_a_coordinator_cancel_stops_the_execution(
    moto: MotoServer, echo_arn: str, payments: EngineTeam
) -> None:
    await payments.start_agent({"engine": "stepfunctions", "with": moto.binding(echo_arn)})
    run_id = await payments.start_run({"order_id": "o-11", "amount_cents": 100, "wait": 120})

    sfn = moto.client()

    def running() -> list[str]:
        found = [e["executionArn"] for e in executions(moto, echo_arn) if e["status"] == "RUNNING"]
        return [
            a
            for a in found
            if json.loads(sfn.describe_execution(executionArn=a)["input"])["order_id"] == "o-11"
        ]

    (arn,) = await wait_until(running, "the execution never started")
    await payments.cancel_run(run_id)
    run = await payments.wait_run(run_id)
    assert run.status == pb.RUN_STATUS_CANCELLED
    # The agent learns of the cancel on its next heartbeat.
    await wait_until(
        lambda: sfn.describe_execution(executionArn=arn)["status"] == "ABORTED",
        "the execution was not stopped",
    )
