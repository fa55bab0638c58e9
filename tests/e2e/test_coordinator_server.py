"""The coordinator as a server, against the real process: runs pinned to the contract versions
resolved at their start, the schedule-to-start timeout, gRPC health and reflection for standard
tools, JSON log lines carrying trace ids, and a clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from coordinator.client import AsyncClient
from tests.support.agent import Call, TestAgent
from tests.support.coordinator import ACCORD, CoordinatorProcess
from tests.support.scenario import contract, start_run, step, wait_run

COORDINATOR_SERVICE = "accord.coordinator.v1.CoordinatorService"
AGENT_SERVICE = "accord.agent.v1.AgentGatewayService"
OTLP_TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"

GATED = """
workflow: payments/gated-charge
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  gate:
    contract: payments/gate@^1
    input: {order_id: "${input.order_id}"}
  charge:
    contract: payments/charge@^1
    input: {order_id: "${steps.gate.output.ref}"}
output: {ref: "${steps.charge.output.ref}"}
"""


async def test_a_later_registration_does_not_change_a_running_run(coordinator, test_agent):
    token = await coordinator.create_team("payments")
    await coordinator.register_contract(token, contract("payments/gate"))
    await coordinator.register_contract(token, contract("payments/charge", "1.2.0"))
    await coordinator.register_workflow(token, GATED)
    release = asyncio.Event()
    charged: dict[str, str] = {}  # run id -> the contract version its charge task named

    async def gate(call: Call):
        await release.wait()
        return {"ref": call.input["order_id"]}

    async def charge(call: Call):
        charged[call.task.run_id] = call.task.contract_version
        return {"ref": f"charged-{call.task.contract_version}"}

    await test_agent(token, "payments", {"payments/gate@1": gate, "payments/charge@1": charge})
    async with coordinator.client(token) as client:
        first = (await start_run(client, "payments/gated-charge", {"order_id": "o-1"})).run
        assert first.pinned_versions["payments/charge"] == "1.2.0"
        # While the run waits on its gate step, a compatible 1.3.0 is registered.
        newer = contract(
            "payments/charge",
            "1.3.0",
            output_props="{ref: {type: string}, receipt: {type: string}}",
        )
        assert (await coordinator.register_contract(token, newer)).registered
        # A run started now pins 1.3.0 (the registration took effect)...
        second = (await start_run(client, "payments/gated-charge", {"order_id": "o-2"})).run
        assert second.pinned_versions["payments/charge"] == "1.3.0"
        release.set()
        first_done = await wait_run(client, first.run_id)
        second_done = await wait_run(client, second.run_id)
    # ...but the run that was already going still ran the version it resolved at its start.
    assert first_done.status == pb.RUN_STATUS_SUCCEEDED, first_done
    assert charged[first.run_id] == "1.2.0"
    assert step(first_done, "charge").contract_version == "1.2.0"
    assert dict(first_done.pinned_versions) == {"payments/gate": "1.0.0", "payments/charge": "1.2.0"}
    assert json.loads(first_done.output_json) == {"ref": "charged-1.2.0"}
    assert charged[second.run_id] == "1.3.0" and step(second_done, "charge").contract_version == "1.3.0"


async def test_schedule_to_start_timeout_fires_when_no_agent_takes_the_task(coordinator, test_agent):
    token = await coordinator.create_team("warehouse")
    await coordinator.register_contract(
        token,
        contract(
            "warehouse/reserve",
            extra="timeouts: {schedule_to_start: 1s}\nretry: {max_attempts: 3, initial_backoff: 10ms}\n",
        ),
    )
    await coordinator.register_workflow(
        token,
        "workflow: warehouse/reserve-one\n"
        "input: {type: object, required: [order_id], properties: {order_id: {type: string}}}\n"
        "steps:\n  reserve:\n    contract: warehouse/reserve@^1\n"
        '    input: {order_id: "${input.order_id}"}\n',
    )
    # An agent of the team is up, but serves another contract: nobody takes the task.
    await coordinator.register_contract(token, contract("warehouse/other"))
    await test_agent(token, "warehouse", {"warehouse/other@1": lambda call: asyncio.sleep(0, {"ref": ""})})
    async with coordinator.client(token) as client:
        started = await start_run(client, "warehouse/reserve-one", {"order_id": "o-1"})
        run = await wait_run(client, started.run.run_id)
    assert run.status == pb.RUN_STATUS_FAILED, run
    (only,) = step(run, "reserve").attempts  # not retried, although the contract allows 3 attempts
    assert only.status == pb.ATTEMPT_STATUS_TIMED_OUT
    assert only.error.type == "ScheduleToStartTimeout" and not only.error.retryable
    assert "warehouse/reserve@1" in only.error.message and "1s" in only.error.message
    assert only.finished_unix_ms - only.scheduled_unix_ms >= 1000
    assert not only.agent_id and not only.started_unix_ms
    assert run.error.type == "ScheduleToStartTimeout"


async def test_grpc_health_and_reflection_for_standard_tools(coordinator):
    # No token: health checking and reflection stay open, as grpc_health_probe and grpcurl expect.
    async with grpc.aio.insecure_channel(coordinator.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", COORDINATOR_SERVICE, AGENT_SERVICE):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        services: set[str] = set()
        async for response in responses:
            services |= {s.name for s in response.list_services_response.service}
        assert {
            COORDINATOR_SERVICE,
            AGENT_SERVICE,
            "grpc.health.v1.Health",
            OTLP_TRACE_SERVICE,
        } <= services, services

        # The descriptor of the coordinator's service is served too (grpcurl describe).
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=COORDINATOR_SERVICE)]),
            timeout=10,
        )
        async for response in responses:
            assert response.file_descriptor_response.file_descriptor_proto, response


def _launch(home: Path, *args: str) -> tuple[subprocess.Popen[bytes], str, Path, Path]:
    """The coordinator with its stdout and stderr (the log) in separate files."""
    home.mkdir(parents=True, exist_ok=True)
    stdout, stderr = home / "stdout.txt", home / "stderr.txt"
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen(
            [ACCORD, "coordinator", "start", "--listen", "127.0.0.1:0", "--ui", "off", *args],
            env={**os.environ, "ACCORD_HOME": str(home)},
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, stderr.read_text(errors="replace")
        try:
            state = json.loads((home / "coordinator.json").read_text())
            if state.get("pid") == proc.pid:
                return proc, state["grpc"], stdout, stderr
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("coordinator did not start: " + stderr.read_text(errors="replace"))


async def test_json_logs_with_trace_ids_and_a_clean_exit_on_sigterm(tmp_path: Path):
    home = tmp_path / "home"
    proc, address, stdout, stderr = await asyncio.to_thread(_launch, home, "--log-format", "json")
    agent: TestAgent | None = None
    try:
        admin = (home / "admin.token").read_text().strip()
        async with AsyncClient(address, admin) as client:
            token = (await client.coordinator.CreateTeam(pb.CreateTeamRequest(name="payments"))).token
        async with AsyncClient(address, token) as client:
            await client.coordinator.RegisterContract(
                pb.RegisterContractRequest(source_text=contract("payments/work"), source_name="c.yaml")
            )
            await client.coordinator.RegisterWorkflow(
                pb.RegisterWorkflowRequest(
                    source_text="workflow: payments/one\n"
                    "input: {type: object, required: [order_id], properties: {order_id: {type: string}}}\n"
                    "steps:\n  work:\n    contract: payments/work@^1\n"
                    '    input: {order_id: "${input.order_id}"}\n',
                    source_name="w.yaml",
                )
            )

            async def work(call: Call):
                return {"ref": "done"}

            agent = TestAgent(address, token, "payments", {"payments/work@1": work})
            await agent.start()
            run = await wait_run(
                client, (await start_run(client, "payments/one", {"order_id": "o"})).run.run_id
            )
        assert run.status == pb.RUN_STATUS_SUCCEEDED and run.trace_id

        # The run's end is logged with its trace id: wait for the line (logging is asynchronous
        # to the answer), then stop the coordinator.
        deadline = time.monotonic() + 15
        while f"run {run.run_id} succeeded" not in stderr.read_text(errors="replace"):
            assert time.monotonic() < deadline, stderr.read_text(errors="replace")
            await asyncio.sleep(0.05)
        await agent.stop()
        agent = None
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 20)
    finally:
        if agent is not None:
            await agent.stop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    log = stderr.read_text(errors="replace")
    assert code == 0, log
    assert "Traceback" not in log and "Traceback" not in stdout.read_text(errors="replace")
    assert not (home / "coordinator.json").exists()  # the state file of a stopped coordinator is gone
    lines = [line for line in log.splitlines() if line.strip()]
    # Every line is a JSON log record, and the admin token created at first start is not in the
    # log (stderr is not a terminal here): the record only says where the token file is.
    assert (home / "admin.token").read_text().strip() not in log
    assert "admin token" in log
    assert lines
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a log line is not JSON: {line!r}")
    assert all({"time", "level", "logger", "message", "trace_id"} <= set(r) for r in records), records
    (ended,) = [r for r in records if r["message"] == f"run {run.run_id} succeeded"]
    assert ended["trace_id"] == run.trace_id
    assert any(r["message"] == "shutting down" for r in records)


async def test_store_sqlite_url_is_the_file_it_names(tmp_path: Path) -> None:
    db = tmp_path / "state" / "accord.db"
    coordinator = await asyncio.to_thread(
        CoordinatorProcess.start, tmp_path / "home", "--store", f"sqlite://{db}"
    )
    try:
        await coordinator.create_team("payments")
        assert db.exists() and db.with_name("accord.db.lock").exists()
        assert not coordinator.db.exists()  # not the default file under ACCORD_HOME
    finally:
        coordinator.kill9()
