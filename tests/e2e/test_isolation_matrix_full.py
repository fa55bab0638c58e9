"""The full isolation matrix: team warehouse tries EVERY RPC of CoordinatorService,
AgentGatewayService, AgentStreamService (v2) and the OTLP TraceService on team payments' objects. Each is either refused
(PERMISSION_DENIED naming payments) or answers scoped to what warehouse may see. Every RPC is
also UNAUTHENTICATED without a token and with a wrong one.

The RPCs are read from the services' descriptors, so a new RPC fails
``test_the_matrix_covers_every_rpc`` until it is given a row here.

What another team may see, decided from docs/concepts.md ("Team boundaries") and the code:
- team names (ListTeams): a directory, no tokens;
- public contracts; never a ``visibility: team`` one (not listed, not readable, not diffable,
  its consumers not listable);
- workflows (ListWorkflows, GetWorkflow): readable by every team. A workflow is a composition of
  contracts, with no payloads; contract owners see which workflows consume them and the UI's team
  graph is drawn from them;
- runs only when the team takes part (one of its contracts is a step), and then without the
  run's payloads or another team's step payloads;
- events: listed, without payloads;
- the audit log: only entries about its own objects, and what it tried on others' (refused);
- agents (ListAgents): team, contracts served, version, last heard from, tasks in flight; the
  hostname only to the agent's own team.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2 as otlp_common
from opentelemetry.proto.trace.v1 import trace_pb2

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.agent.v2 import agent_stream_service_pb2 as stream_pb
from contracts._wire.accord.common.v1 import common_pb2 as common_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import PermissionDeniedError
from coordinator.client import AsyncClient
from tests.support.coordinator import CoordinatorProcess
from tests.support.scenario import contract

pytestmark = pytest.mark.asyncio(loop_scope="module")

SINGLE = """
workflow: payments/single
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  work:
    contract: payments/work@^1
    input: {order_id: "${input.order_id}"}
output: {ref: "${steps.work.output.ref}"}
"""
# A payments workflow that calls a warehouse contract: warehouse takes part in its runs.
SHARED = """
workflow: payments/with-reserve
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  work:
    contract: payments/work@^1
    input: {order_id: "${input.order_id}"}
  reserve:
    contract: warehouse/reserve@^1
    input: {order_id: "${input.order_id}"}
output: {ref: "${steps.work.output.ref}"}
"""
PRIVATE_WORKFLOW = SINGLE.replace("payments/single", "payments/uses-private").replace(
    "payments/work@^1", "payments/private@^1"
)
# A payments workflow with a schedule (once a year, nothing to catch up on).
SCHEDULED = SINGLE.replace("payments/single", "payments/scheduled") + (
    "schedules:\n  - {id: yearly, cron: '0 0 1 1 *', input: {order_id: s}, catch_up: none}\n"
)
SECRET = "o-secret-4242"


@dataclass
class World:
    proc: CoordinatorProcess
    owner: str  # payments' token
    other: str  # warehouse's token
    run_single: str  # payments only
    run_shared: str  # payments' workflow with a warehouse step
    trace_single: str
    attempt_id: str  # payments-1's running attempt of run_single


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    proc = CoordinatorProcess.start(Path(tmp_path_factory.mktemp("matrix")) / "home")
    try:
        owner = await proc.create_team("payments")
        other = await proc.create_team("warehouse")
        await proc.register_contract(owner, contract("payments/work"))
        await proc.register_contract(owner, contract("payments/private", extra="visibility: team\n"))
        await proc.register_contract(owner, contract("payments/private", "1.1.0", extra="visibility: team\n"))
        await proc.register_contract(
            owner,
            "contract: payments/paid\nversion: 1.0.0\nkind: event\n"
            "payload: {type: object, properties: {order_id: {type: string}}}\n",
        )
        await proc.register_contract(other, contract("warehouse/reserve"))
        for text in (SINGLE, SHARED, PRIVATE_WORKFLOW, SCHEDULED):
            await proc.register_workflow(owner, text)
        async with proc.client(owner) as client:
            await client.agent.RegisterAgent(
                agent_pb.RegisterAgentRequest(
                    agent_id="payments-1",
                    bindings=[agent_pb.Binding(contract="payments/work", major=1)],
                    hostname="pay-host-7",
                )
            )
            single = await client.coordinator.StartRun(
                pb.StartRunRequest(workflow="payments/single", input_json=json.dumps({"order_id": SECRET}))
            )
            task = (
                await client.agent.PollTask(agent_pb.PollTaskRequest(agent_id="payments-1", wait_ms=5000))
            ).task
            assert task.run_id == single.run.run_id
            shared = await client.coordinator.StartRun(
                pb.StartRunRequest(
                    workflow="payments/with-reserve", input_json=json.dumps({"order_id": SECRET})
                )
            )
            await client.coordinator.PublishEvent(
                pb.PublishEventRequest(
                    contract="payments/paid@1", payload_json=json.dumps({"order_id": SECRET})
                )
            )
        async with proc.client(other) as client:
            await client.agent.RegisterAgent(
                agent_pb.RegisterAgentRequest(
                    agent_id="warehouse-1",
                    bindings=[agent_pb.Binding(contract="warehouse/reserve", major=1)],
                )
            )
        yield World(
            proc,
            owner,
            other,
            single.run.run_id,
            shared.run.run_id,
            single.run.trace_id,
            task.attempt_id,
        )
    finally:
        proc.kill9()


# ---------- refused: PERMISSION_DENIED naming the owner ----------


def _refused(w: World) -> dict[str, tuple[str, str, Any]]:
    """Row -> (service, method, request) that warehouse must be refused."""
    private_diff = pb.DiffContractsRequest(old_ref="payments/private@1.0.0", new_ref="payments/private@1.1.0")
    return {
        "CreateTeam": ("coordinator", "CreateTeam", pb.CreateTeamRequest(name="intruders")),
        "RotateTeamToken": ("coordinator", "RotateTeamToken", pb.RotateTeamTokenRequest(name="payments")),
        "CreateTeamToken": (
            "coordinator",
            "CreateTeamToken",
            pb.CreateTeamTokenRequest(team="payments", name="mine-now"),
        ),
        "ListTeamTokens": ("coordinator", "ListTeamTokens", pb.ListTeamTokensRequest(team="payments")),
        "RevokeTeamToken": (
            "coordinator",
            "RevokeTeamToken",
            pb.RevokeTeamTokenRequest(team="payments", name="default"),
        ),
        "RotateAdminToken": ("coordinator", "RotateAdminToken", pb.RotateAdminTokenRequest()),
        "RegisterContract": (
            "coordinator",
            "RegisterContract",
            pb.RegisterContractRequest(source_text=contract("payments/work", "1.1.0"), source_name="c.yaml"),
        ),
        "GetContract": ("coordinator", "GetContract", pb.GetContractRequest(ref="payments/private")),
        "GetContract@version": (
            "coordinator",
            "GetContract",
            pb.GetContractRequest(ref="payments/private@1.1.0"),
        ),
        "DiffContracts": ("coordinator", "DiffContracts", private_diff),
        "DiffContracts(public, private)": (
            "coordinator",
            "DiffContracts",
            pb.DiffContractsRequest(old_ref="payments/work@1", new_ref="payments/private@1"),
        ),
        "DeprecateContract": (
            "coordinator",
            "DeprecateContract",
            pb.DeprecateContractRequest(ref="payments/work@1", sunset="2030-01-01"),
        ),
        "ListContractConsumers": (
            "coordinator",
            "ListContractConsumers",
            pb.ListContractConsumersRequest(ref="payments/private"),
        ),
        "RegisterWorkflow": (
            "coordinator",
            "RegisterWorkflow",
            pb.RegisterWorkflowRequest(source_text=SINGLE, source_name="w.yaml"),
        ),
        "StartRun": (
            "coordinator",
            "StartRun",
            pb.StartRunRequest(workflow="payments/single", input_json='{"order_id": "x"}'),
        ),
        "StartRun(rerun_of)": ("coordinator", "StartRun", pb.StartRunRequest(rerun_of=w.run_single)),
        "StartRun(rerun_of involved)": ("coordinator", "StartRun", pb.StartRunRequest(rerun_of=w.run_shared)),
        "GetRun": ("coordinator", "GetRun", pb.GetRunRequest(run_id=w.run_single)),
        "CancelRun": ("coordinator", "CancelRun", pb.CancelRunRequest(run_id=w.run_single)),
        "CancelRun(involved)": ("coordinator", "CancelRun", pb.CancelRunRequest(run_id=w.run_shared)),
        "WatchRun": ("stream", "WatchRun", pb.WatchRunRequest(run_id=w.run_single)),
        "PublishEvent": (
            "coordinator",
            "PublishEvent",
            pb.PublishEventRequest(contract="payments/paid@1", payload_json='{"order_id": "o"}'),
        ),
        "GetRunTrace": ("coordinator", "GetRunTrace", pb.GetRunTraceRequest(run_id=w.run_single)),
        "ListAuditLog": ("coordinator", "ListAuditLog", pb.ListAuditLogRequest(team="payments")),
        "RegisterAgent": (
            "agent",
            "RegisterAgent",
            agent_pb.RegisterAgentRequest(
                agent_id="warehouse-2", bindings=[agent_pb.Binding(contract="payments/work", major=1)]
            ),
        ),
        "RegisterAgent(their agent id)": (
            "agent",
            "RegisterAgent",
            agent_pb.RegisterAgentRequest(agent_id="payments-1"),
        ),
        "PollTask": ("agent", "PollTask", agent_pb.PollTaskRequest(agent_id="payments-1", wait_ms=0)),
        "Heartbeat": (
            "agent",
            "Heartbeat",
            agent_pb.HeartbeatRequest(agent_id="warehouse-1", attempt_id=w.attempt_id),
        ),
        "Heartbeat(their agent)": ("agent", "Heartbeat", agent_pb.HeartbeatRequest(agent_id="payments-1")),
        "CompleteTask": (
            "agent",
            "CompleteTask",
            agent_pb.CompleteTaskRequest(
                agent_id="warehouse-1", attempt_id=w.attempt_id, output_json='{"ref": "stolen"}'
            ),
        ),
        "CompleteTask(their agent)": (
            "agent",
            "CompleteTask",
            agent_pb.CompleteTaskRequest(
                agent_id="payments-1", attempt_id=w.attempt_id, output_json='{"ref": "stolen"}'
            ),
        ),
        "FailTask": (
            "agent",
            "FailTask",
            agent_pb.FailTaskRequest(
                agent_id="warehouse-1",
                attempt_id=w.attempt_id,
                error=common_pb.TaskError(type="X", message="x"),
            ),
        ),
        "ReleaseTask": (
            "agent",
            "ReleaseTask",
            agent_pb.ReleaseTaskRequest(agent_id="warehouse-1", attempt_id=w.attempt_id),
        ),
        "ReleaseTask(their agent)": (
            "agent",
            "ReleaseTask",
            agent_pb.ReleaseTaskRequest(agent_id="payments-1", attempt_id=w.attempt_id),
        ),
        "RetireContract": ("coordinator", "RetireContract", pb.RetireContractRequest(ref="payments/work@1")),
        "ListNotices": ("coordinator", "ListNotices", pb.ListNoticesRequest(team="payments")),
        "SetWorkflowEnabled": (
            "coordinator",
            "SetWorkflowEnabled",
            pb.SetWorkflowEnabledRequest(name="payments/single", enabled=False),
        ),
        "DeleteWorkflowVersion": (
            "coordinator",
            "DeleteWorkflowVersion",
            pb.DeleteWorkflowVersionRequest(name="payments/single", version=1),
        ),
        "RollbackWorkflow": (
            "coordinator",
            "RollbackWorkflow",
            pb.RollbackWorkflowRequest(name="payments/single", to_version=1),
        ),
        "AnswerStep": (
            "coordinator",
            "AnswerStep",
            pb.AnswerStepRequest(run_id=w.run_single, step_id="work", action=pb.ANSWER_ACTION_APPROVE),
        ),
        "RetryRun": ("coordinator", "RetryRun", pb.RetryRunRequest(run_id=w.run_single)),
        "SetSchedulePaused": (
            "coordinator",
            "SetSchedulePaused",
            pb.SetSchedulePausedRequest(workflow="payments/scheduled", id="yearly", paused=True),
        ),
        "TriggerSchedule": (
            "coordinator",
            "TriggerSchedule",
            pb.TriggerScheduleRequest(workflow="payments/scheduled", id="yearly"),
        ),
        "SetTeamLimits": (
            "coordinator",
            "SetTeamLimits",
            pb.SetTeamLimitsRequest(team="payments", max_concurrency=1),
        ),
        "GetTeamLimits": ("coordinator", "GetTeamLimits", pb.GetTeamLimitsRequest(team="payments")),
        "ApplyPolicy": (
            "coordinator",
            "ApplyPolicy",
            pb.ApplyPolicyRequest(source_text="rules: []", source_name="p.yaml", team="payments"),
        ),
        "ListOverrides": ("coordinator", "ListOverrides", pb.ListOverridesRequest(team="payments")),
        "GetAutonomyReport": (
            "coordinator",
            "GetAutonomyReport",
            pb.GetAutonomyReportRequest(team="payments"),
        ),
        "ListRecentChanges": (
            "coordinator",
            "ListRecentChanges",
            pb.ListRecentChangesRequest(team="payments"),
        ),
    }


REFUSED = [
    "CreateTeam",
    "RotateTeamToken",
    "CreateTeamToken",
    "ListTeamTokens",
    "RevokeTeamToken",
    "RotateAdminToken",
    "RegisterContract",
    "GetContract",
    "GetContract@version",
    "DiffContracts",
    "DiffContracts(public, private)",
    "DeprecateContract",
    "ListContractConsumers",
    "RegisterWorkflow",
    "StartRun",
    "StartRun(rerun_of)",
    "StartRun(rerun_of involved)",
    "GetRun",
    "CancelRun",
    "CancelRun(involved)",
    "WatchRun",
    "PublishEvent",
    "GetRunTrace",
    "ListAuditLog",
    "RegisterAgent",
    "RegisterAgent(their agent id)",
    "PollTask",
    "Heartbeat",
    "Heartbeat(their agent)",
    "CompleteTask",
    "CompleteTask(their agent)",
    "FailTask",
    "ReleaseTask",
    "ReleaseTask(their agent)",
    "RetireContract",
    "ListNotices",
    "SetWorkflowEnabled",
    "DeleteWorkflowVersion",
    "RollbackWorkflow",
    "ApplyPolicy",
    "ListOverrides",
    "GetAutonomyReport",
    "ListRecentChanges",
    "AnswerStep",
    "RetryRun",
    "SetSchedulePaused",
    "TriggerSchedule",
    "SetTeamLimits",
    "GetTeamLimits",
]


@pytest.mark.parametrize("row", REFUSED)
async def test_another_team_is_refused(world: World, row: str) -> None:
    service, method, request = _refused(world)[row]
    async with world.proc.client(world.other) as client:
        with pytest.raises(PermissionDeniedError) as refused:
            if service == "stream":
                async for _ in client.coordinator.stream(method, request):
                    pass
            else:
                await getattr(getattr(client, service), method)(request)
    message = str(refused.value)
    if row not in ("CreateTeam", "RotateAdminToken"):  # no owner: the platform's
        assert "payments" in message, f"the message should name the owner: {message}"
    assert SECRET not in message


async def test_the_owners_attempt_survived_every_attempt_on_it(world: World) -> None:
    async with world.proc.client(world.owner) as client:
        beat = await client.agent.Heartbeat(
            agent_pb.HeartbeatRequest(agent_id="payments-1", attempt_id=world.attempt_id)
        )
        assert not beat.lease_lost and not beat.cancel_requested
        run = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=world.run_single))).run
        assert run.status == pb.RUN_STATUS_RUNNING
        # payments-1 is still payments' agent: it may poll (nothing queued for it now).
        await client.agent.PollTask(agent_pb.PollTaskRequest(agent_id="payments-1", wait_ms=0))


# ---------- scoped: answered, with only what warehouse may see ----------

Check = Callable[[World, AsyncClient], Awaitable[None]]


async def _whoami(w: World, client: AsyncClient) -> None:
    me = await client.coordinator.WhoAmI(pb.WhoAmIRequest())
    assert (me.team, me.admin) == ("warehouse", False)


async def _list_teams(w: World, client: AsyncClient) -> None:
    teams = await client.coordinator.ListTeams(pb.ListTeamsRequest())
    assert {t.name for t in teams.teams} == {"payments", "warehouse"}
    assert w.owner not in str(teams)


async def _list_contracts(w: World, client: AsyncClient) -> None:
    for request in (
        pb.ListContractsRequest(all_versions=True),
        pb.ListContractsRequest(team="payments"),
        pb.ListContractsRequest(name_prefix="payments/private"),
    ):
        names = {c.name for c in (await client.coordinator.ListContracts(request)).contracts}
        assert "payments/private" not in names
    public = await client.coordinator.ListContracts(pb.ListContractsRequest(team="payments"))
    assert "payments/work" in {c.name for c in public.contracts}
    # A public contract stays readable.
    got = await client.coordinator.GetContract(pb.GetContractRequest(ref="payments/work"))
    assert got.contract.name == "payments/work"


async def _workflows(w: World, client: AsyncClient) -> None:
    listed = await client.coordinator.ListWorkflows(pb.ListWorkflowsRequest(team="payments"))
    assert {"payments/single", "payments/with-reserve"} <= {x.name for x in listed.workflows}
    got = await client.coordinator.GetWorkflow(pb.GetWorkflowRequest(name="payments/with-reserve"))
    assert got.workflow.team == "payments"


async def _list_runs(w: World, client: AsyncClient) -> None:
    for request in (
        pb.ListRunsRequest(),
        pb.ListRunsRequest(team="payments"),
        pb.ListRunsRequest(query=w.run_single),
    ):
        runs = {r.run_id: r for r in (await client.coordinator.ListRuns(request)).runs}
        assert w.run_single not in runs
    runs = {r.run_id: r for r in (await client.coordinator.ListRuns(pb.ListRunsRequest())).runs}
    shared = runs[w.run_shared]  # warehouse takes part: listed, payloads hidden
    assert shared.payload_hidden and not shared.input_json and SECRET not in str(shared)


async def _get_involved_run(w: World, client: AsyncClient) -> None:
    run = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=w.run_shared))).run
    assert run.payload_hidden and not run.input_json
    steps = {s.id: s for s in run.steps}
    assert steps["work"].payload_hidden and not steps["work"].input_json
    assert not steps["reserve"].payload_hidden  # its own step: warehouse was handed that input
    for step in run.steps:
        if step.id == "reserve":
            step.input_json = ""
    assert SECRET not in str(run)


async def _watch_involved_run(w: World, client: AsyncClient) -> None:
    async for update in client.coordinator.stream("WatchRun", pb.WatchRunRequest(run_id=w.run_shared)):
        assert update.run.payload_hidden and not update.run.input_json
        break


async def _list_events(w: World, client: AsyncClient) -> None:
    events = (await client.coordinator.ListEvents(pb.ListEventsRequest(contract="payments/paid"))).events
    assert events and all(e.team == "payments" and not e.payload_json for e in events)
    everything = (await client.coordinator.ListEvents(pb.ListEventsRequest())).events
    assert SECRET not in str(everything)
    # One event: that it happened and what it started, not its payload.
    one = (await client.coordinator.GetEvent(pb.GetEventRequest(event_id=events[0].event_id))).event
    assert one.event_id == events[0].event_id and one.team == "payments" and not one.payload_json


async def _audit_log(w: World, client: AsyncClient) -> None:
    entries = (await client.coordinator.ListAuditLog(pb.ListAuditLogRequest())).entries
    assert entries and all("warehouse" in (e.owner_team, e.actor) for e in entries), [
        (e.owner_team, e.actor, e.action, e.object) for e in entries
    ]
    # Of payments' objects, only what warehouse itself tried (and was refused) is there.
    assert all(
        e.action.endswith(".refused") and e.actor == "warehouse"
        for e in entries
        if e.owner_team != "warehouse"
    ), [(e.owner_team, e.actor, e.action) for e in entries]


async def _poll_only_own_queues(w: World, client: AsyncClient) -> None:
    # Asking for payments' queue through its own agent gives nothing of payments'.
    answer = await client.agent.PollTask(
        agent_pb.PollTaskRequest(agent_id="warehouse-1", contracts=["payments/work@1"], wait_ms=0)
    )
    assert not answer.HasField("task")


async def _own_tokens(w: World, client: AsyncClient) -> None:
    # Without a team: its own tokens, by name and times only.
    listed = await client.coordinator.ListTeamTokens(pb.ListTeamTokensRequest(include_inactive=True))
    assert {t.team for t in listed.tokens} == {"warehouse"}
    assert w.other not in str(listed) and w.owner not in str(listed)


async def _list_agents(w: World, client: AsyncClient) -> None:
    # Every team sees who serves what and whether it runs something; another team's hostname, no.
    listed = await client.coordinator.ListAgents(pb.ListAgentsRequest())
    agents = {a.agent_id: a for a in listed.agents}
    assert set(agents) == {"payments-1", "warehouse-1"}
    payments = agents["payments-1"]
    assert (payments.team, list(payments.contracts)) == ("payments", ["payments/work@1"])
    assert payments.in_flight >= 1  # the task it took at the start (other rows may hand it more)
    assert payments.hostname == "" and "pay-host-7" not in str(listed)
    assert payments.last_seen_unix_ms > 0
    only = await client.coordinator.ListAgents(pb.ListAgentsRequest(team="warehouse"))
    assert [a.agent_id for a in only.agents] == ["warehouse-1"]


async def _governance(w: World, client: AsyncClient) -> None:
    # Every team reads the rules; the overrides and the autonomy report are its own.
    await client.coordinator.ListPolicies(pb.ListPoliciesRequest())
    assert list((await client.coordinator.ListOverrides(pb.ListOverridesRequest())).entries) == []
    report = json.loads(
        (await client.coordinator.GetAutonomyReport(pb.GetAutonomyReportRequest())).report_json
    )
    assert [t["team"] for t in report["teams"]] == ["warehouse"]
    changes = json.loads(
        (await client.coordinator.ListRecentChanges(pb.ListRecentChangesRequest(count=5))).changes_json
    )
    assert all(c["team"] == "warehouse" for c in changes)


async def _schedules(w: World, client: AsyncClient) -> None:
    # Schedules are listed for the team's own workflows only (the owner sees payments/scheduled's).
    for request in (pb.ListSchedulesRequest(), pb.ListSchedulesRequest(workflow="payments/scheduled")):
        assert list((await client.coordinator.ListSchedules(request)).schedules) == []
    async with w.proc.client(w.owner) as owner:
        listed = await owner.coordinator.ListSchedules(pb.ListSchedulesRequest())
    assert [(x.workflow, x.id) for x in listed.schedules] == [("payments/scheduled", "yearly")]


SCOPED: dict[str, Check] = {
    "ListSchedules": _schedules,
    "ListPolicies/ListOverrides(own)/GetAutonomyReport(own)/ListRecentChanges(own)": _governance,
    "WhoAmI": _whoami,
    "ListTeams": _list_teams,
    "ListContracts": _list_contracts,
    "ListWorkflows/GetWorkflow": _workflows,
    "ListRuns": _list_runs,
    "GetRun(involved)": _get_involved_run,
    "WatchRun(involved)": _watch_involved_run,
    "ListEvents/GetEvent": _list_events,
    "ListAuditLog(own)": _audit_log,
    "ListTeamTokens(own)": _own_tokens,
    "PollTask(own agent)": _poll_only_own_queues,
    "ListAgents": _list_agents,
}


@pytest.mark.parametrize("row", list(SCOPED))
async def test_another_team_sees_only_its_share(world: World, row: str) -> None:
    async with world.proc.client(world.other) as client:
        await SCOPED[row](world, client)


def _otlp_request(trace_id: str, run_id: str) -> trace_service_pb2.ExportTraceServiceRequest:
    span = trace_pb2.Span(
        trace_id=bytes.fromhex(trace_id),
        span_id=bytes.fromhex("00f067aa0ba902b7"),
        name="forged",
        start_time_unix_nano=1,
        end_time_unix_nano=2,
        attributes=[
            otlp_common.KeyValue(key="accord.run_id", value=otlp_common.AnyValue(string_value=run_id))
        ],
    )
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=[span])])]
    )


async def test_otlp_spans_into_another_teams_run_are_rejected(world: World) -> None:
    async with grpc.aio.insecure_channel(world.proc.address) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        answer = await stub.Export(
            _otlp_request(world.trace_single, world.run_single),
            metadata=(("authorization", f"Bearer {world.other}"),),
        )
    assert answer.partial_success.rejected_spans == 1
    assert "takes no part" in answer.partial_success.error_message
    async with world.proc.client(world.owner) as client:
        trace = await client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=world.run_single))
    assert "forged" not in {s.name for s in trace.spans}


# ---------- the v2 agent stream ----------

_CONNECT = "/accord.agent.v2.AgentStreamService/Connect"


async def _stream(w: World, token: str, *messages: stream_pb.AgentMessage) -> list[Any]:
    """Open a v2 stream with ``token``, send ``messages`` one by one, reading one answer after
    each; the answers (or the error that closed the stream, as the last item)."""
    answers: list[Any] = []
    async with grpc.aio.insecure_channel(w.proc.address) as channel:
        call = channel.stream_stream(
            _CONNECT,
            request_serializer=stream_pb.AgentMessage.SerializeToString,
            response_deserializer=stream_pb.CoordinatorMessage.FromString,
        )(metadata=(("authorization", f"Bearer {token}"),), timeout=20)
        try:
            for message in messages:
                await call.write(message)
                answers.append(await call.read())
        except grpc.aio.AioRpcError as exc:
            answers.append(exc)
        call.cancel()
    return answers


def _hello(agent_id: str, contract: str = "warehouse/reserve", *, only: str = "") -> stream_pb.AgentMessage:
    return stream_pb.AgentMessage(
        hello=stream_pb.Hello(
            registration=agent_pb.RegisterAgentRequest(
                agent_id=agent_id, bindings=[agent_pb.Binding(contract=contract, major=1)]
            ),
            contracts=[only] if only else [],
        )
    )


@pytest.mark.parametrize(
    "hello",
    [_hello("payments-1"), _hello("warehouse-2", "payments/work")],
    ids=["their agent id", "their contract"],
)
async def test_a_stream_may_not_register_as_another_team(world: World, hello: stream_pb.AgentMessage) -> None:
    (refused,) = await _stream(world, world.other, hello)
    assert isinstance(refused, grpc.aio.AioRpcError), refused
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED, refused.details()
    assert "payments" in refused.details()


async def test_a_stream_cannot_report_on_or_heartbeat_another_teams_attempt(world: World) -> None:
    attempt = world.attempt_id
    results = [
        stream_pb.Result(
            request_id="c", attempt_id=attempt, complete=stream_pb.Complete(output_json='{"ref": "x"}')
        ),
        stream_pb.Result(
            request_id="f", attempt_id=attempt, fail=stream_pb.Fail(error=common_pb.TaskError(type="X"))
        ),
        stream_pb.Result(request_id="r", attempt_id=attempt, release=stream_pb.Release(reason="x")),
        # Acting as payments' agent on the attempt, through warehouse's own stream.
        stream_pb.Result(
            request_id="c2",
            attempt_id=attempt,
            agent_id="payments-1",
            complete=stream_pb.Complete(output_json='{"ref": "x"}'),
        ),
    ]
    welcome, acked, beaten = await _stream(
        world,
        world.other,
        _hello("warehouse-1"),
        stream_pb.AgentMessage(results=results),
        stream_pb.AgentMessage(heartbeats=[stream_pb.HeartbeatItem(attempt_id=attempt)]),
    )
    assert welcome.HasField("welcome"), welcome
    assert {a.request_id for a in acked.acks} == {"c", "f", "r", "c2"}
    for ack in acked.acks:
        assert not ack.accepted and ack.code == grpc.StatusCode.PERMISSION_DENIED.value[0], ack
        assert "payments" in ack.message and SECRET not in ack.message
    (beat,) = beaten.heartbeats
    assert beat.code == grpc.StatusCode.PERMISSION_DENIED.value[0] and "payments" in beat.message
    # Untouched: payments' agent still holds its attempt (test_the_owners_attempt_survived_...).
    async with world.proc.client(world.owner) as client:
        answer = await client.agent.Heartbeat(
            agent_pb.HeartbeatRequest(agent_id="payments-1", attempt_id=attempt)
        )
    assert not answer.lease_lost


async def test_a_streams_credit_offers_only_its_own_teams_tasks(world: World) -> None:
    """Credit on warehouse's stream, asking for payments' queue: nothing of payments' is offered
    (a payments run waits in that queue meanwhile)."""
    async with world.proc.client(world.owner) as client:
        await client.coordinator.StartRun(
            pb.StartRunRequest(workflow="payments/single", input_json=json.dumps({"order_id": SECRET}))
        )
    async with grpc.aio.insecure_channel(world.proc.address) as channel:
        call = channel.stream_stream(
            _CONNECT,
            request_serializer=stream_pb.AgentMessage.SerializeToString,
            response_deserializer=stream_pb.CoordinatorMessage.FromString,
        )(metadata=(("authorization", f"Bearer {world.other}"),), timeout=20)
        hello = _hello("warehouse-1", only="payments/work@1")
        hello.hello.registration.concurrency = 4
        hello.credit = 4
        await call.write(hello)
        assert (await call.read()).HasField("welcome")
        # A heartbeat's answer comes after the polls the credit opened looked at the queue.
        await call.write(stream_pb.AgentMessage(heartbeats=[stream_pb.HeartbeatItem(attempt_id="none:x:1")]))
        answer = await call.read()
        assert not answer.tasks and SECRET not in str(answer)
        call.cancel()


# ---------- every RPC: UNAUTHENTICATED without a valid token ----------

_SERVICES: list[tuple[Any, Any]] = [
    (pb.DESCRIPTOR.services_by_name["CoordinatorService"], pb),
    (agent_pb.DESCRIPTOR.services_by_name["AgentGatewayService"], agent_pb),
    (stream_pb.DESCRIPTOR.services_by_name["AgentStreamService"], stream_pb),
    (trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"], trace_service_pb2),
]
ALL_RPCS = {
    f"/{service.full_name}/{method.name}": (module, method)
    for service, module in _SERVICES
    for method in service.methods
}


async def test_the_matrix_covers_every_rpc() -> None:
    covered = {row.split("(")[0].split("@")[0] for row in REFUSED}
    covered |= {part.split("(")[0] for row in SCOPED for part in row.split("/")}
    covered.add("Export")  # test_otlp_spans_into_another_teams_run_are_rejected
    covered.add("Connect")  # test_a_stream_*
    missing = {path.rsplit("/", 1)[1] for path in ALL_RPCS} - covered
    assert not missing, f"RPCs with no row in the isolation matrix: {sorted(missing)}"


@pytest.mark.parametrize("token", ["", "not-a-token"], ids=["no-token", "wrong-token"])
@pytest.mark.parametrize("path", sorted(ALL_RPCS))
async def test_every_rpc_is_unauthenticated_without_a_valid_token(
    world: World, path: str, token: str
) -> None:
    module, method = ALL_RPCS[path]
    request_type = getattr(module, method.input_type.name)
    response_type = getattr(module, method.output_type.name)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    async with grpc.aio.insecure_channel(world.proc.address) as channel:
        if method.client_streaming:
            # Refused on opening: nothing is written (a write racing the refusal fails in the
            # client's own core, INTERNAL, rather than with the server's status).
            call: Any = channel.stream_stream(
                path,
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )(metadata=metadata, timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call.read()
        elif method.server_streaming:
            call = channel.unary_stream(
                path,
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )(request_type(), metadata=metadata, timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in call:
                    pass
        else:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.unary_unary(
                    path,
                    request_serializer=request_type.SerializeToString,
                    response_deserializer=response_type.FromString,
                )(request_type(), metadata=metadata, timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, (path, refused.value.details())
