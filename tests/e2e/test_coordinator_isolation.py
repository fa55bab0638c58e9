"""The isolation matrix: each team tries every RPC on another team's objects; all are refused."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.common.v1 import common_pb2 as common_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import PermissionDeniedError, UnauthenticatedError
from tests.support.coordinator import CoordinatorProcess
from tests.support.scenario import contract

pytestmark = pytest.mark.asyncio(loop_scope="module")

OWNER_WORKFLOW = """
workflow: payments/single
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  work:
    contract: payments/work@^1
    input: {order_id: "${input.order_id}"}
output: {ref: "${steps.work.output.ref}"}
"""


@dataclass
class World:
    proc: CoordinatorProcess
    owner: str  # payments' token
    other: str  # warehouse's token
    run_id: str
    attempt_id: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    proc = CoordinatorProcess.start(Path(tmp_path_factory.mktemp("isolation")) / "home")
    try:
        owner = await proc.create_team("payments")
        other = await proc.create_team("warehouse")
        await proc.register_contract(owner, contract("payments/work"))
        await proc.register_contract(owner, contract("payments/private", extra="visibility: team\n"))
        await proc.register_contract(
            owner,
            "contract: payments/paid\nversion: 1.0.0\nkind: event\n"
            "payload: {type: object, properties: {order_id: {type: string}}}\n",
        )
        await proc.register_workflow(owner, OWNER_WORKFLOW)
        async with proc.client(owner) as client:
            await client.agent.RegisterAgent(
                agent_pb.RegisterAgentRequest(
                    agent_id="payments-1", bindings=[agent_pb.Binding(contract="payments/work", major=1)]
                )
            )
            started = await client.coordinator.StartRun(
                pb.StartRunRequest(workflow="payments/single", input_json=json.dumps({"order_id": "o"}))
            )
            task = (
                await client.agent.PollTask(agent_pb.PollTaskRequest(agent_id="payments-1", wait_ms=5000))
            ).task
        async with proc.client(other) as client:
            await client.agent.RegisterAgent(
                agent_pb.RegisterAgentRequest(agent_id="warehouse-1", bindings=[])
            )
        yield World(proc, owner, other, started.run.run_id, task.attempt_id)
    finally:
        proc.kill9()


def _calls(w: World) -> dict[str, tuple[str, str, object]]:
    """RPC name -> (service, method, request) that warehouse must not be allowed to do."""
    return {
        "register-contract": (
            "coordinator",
            "RegisterContract",
            pb.RegisterContractRequest(source_text=contract("payments/work", "1.1.0"), source_name="c.yaml"),
        ),
        "deprecate-contract": (
            "coordinator",
            "DeprecateContract",
            pb.DeprecateContractRequest(ref="payments/work@1", sunset="2030-01-01"),
        ),
        "register-workflow": (
            "coordinator",
            "RegisterWorkflow",
            pb.RegisterWorkflowRequest(source_text=OWNER_WORKFLOW, source_name="w.yaml"),
        ),
        "start-run": (
            "coordinator",
            "StartRun",
            pb.StartRunRequest(workflow="payments/single", input_json='{"order_id": "x"}'),
        ),
        "get-run": ("coordinator", "GetRun", pb.GetRunRequest(run_id=w.run_id)),
        "cancel-run": ("coordinator", "CancelRun", pb.CancelRunRequest(run_id=w.run_id)),
        "get-run-trace": ("coordinator", "GetRunTrace", pb.GetRunTraceRequest(run_id=w.run_id)),
        "audit-log": ("coordinator", "ListAuditLog", pb.ListAuditLogRequest(team="payments")),
        "rotate-token": ("coordinator", "RotateTeamToken", pb.RotateTeamTokenRequest(name="payments")),
        "create-token": (
            "coordinator",
            "CreateTeamToken",
            pb.CreateTeamTokenRequest(team="payments", name="x"),
        ),
        "list-tokens": ("coordinator", "ListTeamTokens", pb.ListTeamTokensRequest(team="payments")),
        "revoke-token": (
            "coordinator",
            "RevokeTeamToken",
            pb.RevokeTeamTokenRequest(team="payments", name="default"),
        ),
        "create-team": ("coordinator", "CreateTeam", pb.CreateTeamRequest(name="intruders")),
        "publish-event": (
            "coordinator",
            "PublishEvent",
            pb.PublishEventRequest(contract="payments/paid@1", payload_json='{"order_id": "o"}'),
        ),
        "serve-contract": (
            "agent",
            "RegisterAgent",
            agent_pb.RegisterAgentRequest(
                agent_id="warehouse-2", bindings=[agent_pb.Binding(contract="payments/work", major=1)]
            ),
        ),
        "heartbeat": (
            "agent",
            "Heartbeat",
            agent_pb.HeartbeatRequest(agent_id="warehouse-1", attempt_id=w.attempt_id),
        ),
        "complete-task": (
            "agent",
            "CompleteTask",
            agent_pb.CompleteTaskRequest(
                agent_id="warehouse-1", attempt_id=w.attempt_id, output_json='{"ref": "stolen"}'
            ),
        ),
        "fail-task": (
            "agent",
            "FailTask",
            agent_pb.FailTaskRequest(
                agent_id="warehouse-1",
                attempt_id=w.attempt_id,
                error=common_pb.TaskError(type="X", message="x"),
            ),
        ),
        "release-task": (
            "agent",
            "ReleaseTask",
            agent_pb.ReleaseTaskRequest(agent_id="warehouse-1", attempt_id=w.attempt_id),
        ),
        "poll-as-their-agent": (
            "agent",
            "PollTask",
            agent_pb.PollTaskRequest(agent_id="payments-1", wait_ms=0),
        ),
    }


CALLS = [
    "register-contract",
    "deprecate-contract",
    "register-workflow",
    "start-run",
    "get-run",
    "cancel-run",
    "get-run-trace",
    "audit-log",
    "rotate-token",
    "create-token",
    "list-tokens",
    "revoke-token",
    "create-team",
    "publish-event",
    "serve-contract",
    "heartbeat",
    "complete-task",
    "fail-task",
    "release-task",
    "poll-as-their-agent",
]


@pytest.mark.parametrize("call", CALLS)
async def test_another_team_is_refused(world: World, call: str) -> None:
    service, method, request = _calls(world)[call]
    async with world.proc.client(world.other) as client:
        with pytest.raises(PermissionDeniedError) as refused:
            await getattr(getattr(client, service), method)(request)
    if call != "create-team":
        assert "payments" in str(refused.value), f"the message should name the owner: {refused.value}"


@pytest.mark.parametrize("call", ["get-run", "start-run", "complete-task"])
@pytest.mark.parametrize("token", ["", "not-a-token"])
async def test_missing_or_wrong_token_is_unauthenticated(world: World, call: str, token: str) -> None:
    service, method, request = _calls(world)[call]
    async with world.proc.client(token) as client:
        with pytest.raises(UnauthenticatedError):
            await getattr(getattr(client, service), method)(request)


async def test_team_visibility_contract_only_from_the_owners_workflows(world: World) -> None:
    text = OWNER_WORKFLOW.replace("payments/single", "warehouse/uses-private").replace(
        "payments/work@^1", "payments/private@^1"
    )
    async with world.proc.client(world.other) as client:
        with pytest.raises(Exception) as refused:
            await client.coordinator.RegisterWorkflow(
                pb.RegisterWorkflowRequest(source_text=text, source_name="w.yaml")
            )
    assert "payments/private" in str(refused.value) and "team" in str(refused.value)


async def test_the_owner_still_holds_its_attempt_and_admin_acts_as_intervention(world: World) -> None:
    async with world.proc.client(world.owner) as client:
        beat = await client.agent.Heartbeat(
            agent_pb.HeartbeatRequest(agent_id="payments-1", attempt_id=world.attempt_id)
        )
        assert not beat.lease_lost and not beat.cancel_requested
    async with world.proc.client() as admin:
        await admin.coordinator.DeprecateContract(
            pb.DeprecateContractRequest(ref="payments/work@1", sunset="2031-01-01")
        )
        entries = (await admin.coordinator.ListAuditLog(pb.ListAuditLogRequest())).entries
    deprecations = [e for e in entries if e.action == "contract.deprecate"]
    assert deprecations and deprecations[-1].platform_intervention and deprecations[-1].actor == "admin"
    registrations = [e for e in entries if e.action == "contract.register"]
    assert registrations and not any(e.platform_intervention for e in registrations)
