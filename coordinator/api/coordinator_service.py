"""CoordinatorService: thin servicer over teams, registry, engine and store."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2_grpc as pb_grpc
from contracts.errors import (
    AccordError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from contracts.grpc_errors import details_of, status_of
from coordinator.api import convert, validate
from coordinator.api.auth import OpenCallGuard, bearer_token, current_principal
from coordinator.api.edge import wait_by_design
from coordinator.api.errors import rpc
from coordinator.api.once import once
from coordinator.config import DEFAULT_MAX_PAYLOAD
from coordinator.engine import Engine
from coordinator.engine.limits import MAX_RATE, TeamLimits
from coordinator.engine.schedules import Scheduler
from coordinator.events.service import EventService
from coordinator.principal import Principal
from coordinator.registry import Registry, autonomy
from coordinator.registry.teams import Teams
from coordinator.store.base import Store
from coordinator.store.records import RUN_TERMINAL, RunFilter, RunRecord
from coordinator.telemetry.propagation import extract_trace_context
from coordinator.telemetry.query import scoped_run_spans
from coordinator.telemetry.sensitivity import RunSensitivity
from coordinator.tokens import TokenAuthority

logger = logging.getLogger(__name__)

_DEFAULT_PAGE = 100
# WatchRun: changes of a run within this time after a message go out as one message (the
# terminal run at once, and a change after a quiet spell too). Four updates a second is as many
# as a person follows; a fast run sends a few messages rather than a few per step, and under
# load, where a watch message cost about as much as the step it reported, two or three per run
# (docs/architecture.md, "Watching a run").
WATCH_COALESCE_S = 0.25
# StartRun's wait_ms at most: a minute (a longer run is followed with WatchRun).
MAX_START_WAIT_MS = 60_000


def _page(request_page: Any) -> tuple[int, int]:
    size = request_page.page_size if request_page and request_page.page_size > 0 else _DEFAULT_PAGE
    offset = validate.page_offset(request_page.page_token if request_page else "")
    return offset, min(size, 1000)


def _next_token(offset: int, size: int, got: int) -> str:
    return str(offset + size) if got >= size else ""


def _traceparent(context: grpc.aio.ServicerContext, trace_context: Any) -> str:
    """The caller's ``traceparent`` (the request's ``trace_context``, else the call's metadata),
    validated; "" when it sent none."""
    parent = extract_trace_context(context.invocation_metadata(), trace_context)
    return parent.header() if parent is not None else ""


# What a repeat of a token-making request is told (coordinator.api.once): the token it made was
# shown only with the answer that was lost, and is never stored, so it cannot be shown again.
_LOST = (
    "this request (id {id}) was already applied by a coordinator whose answer was lost: the token"
    " it made was shown only there and is not stored, so it cannot be shown again; "
)


def _lost_team_token(request: pb.CreateTeamRequest, principal: Principal) -> str:
    return _LOST.format(id=request.request_id) + (
        f"team {request.name} exists with that token (named default): run `accord team rotate-token"
        f" {request.name} --grace 0` for a new one (the lost one is refused at once)"
    )


def _lost_named_token(request: pb.CreateTeamTokenRequest, principal: Principal) -> str:
    team = request.team or principal.team
    return _LOST.format(id=request.request_id) + (
        f"revoke it with `accord team token revoke {request.name} --team {team}` and create another"
        f" with `accord team token create {request.name} --team {team}`"
    )


def _lost_rotated_token(request: pb.RotateTeamTokenRequest, principal: Principal) -> str:
    return _LOST.format(id=request.request_id) + (
        f"team {request.name}'s token named default is that token: run `accord team rotate-token"
        f" {request.name} --grace 0` for a new one (the lost one is refused at once)"
    )


def _lost_admin_token(request: pb.RotateAdminTokenRequest, principal: Principal) -> str:
    return _LOST.format(id=request.request_id) + (
        "the admin token now in force is that token: rotate it again with one you keep"
        " (`accord admin rotate-token` makes the token itself and sends only its hash, so an"
        " answer it loses loses no token)"
    )


class CoordinatorService(pb_grpc.CoordinatorServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        store: Store,
        teams: Teams,
        registry: Registry,
        engine: Engine,
        events: EventService,
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        scheduler: Scheduler | None = None,
        authority: TokenAuthority,
    ) -> None:
        self._authority = authority  # for the token of a StartRun that waits for its run's end
        self._max_payload = max_payload
        self._scheduler = scheduler
        self._store = store
        self._teams = teams
        self._registry = registry
        self._engine = engine
        self._events = events
        # A run's sensitive values, for scrubbing the spans it shows (its flows: the registry's).
        self._sensitivity = RunSensitivity(store, flows=registry.run_flows)

    # ---------- identity and teams ----------

    @rpc
    async def WhoAmI(self, request: pb.WhoAmIRequest, context: grpc.aio.ServicerContext) -> pb.WhoAmIResponse:
        principal = current_principal()
        return pb.WhoAmIResponse(team=principal.team, admin=principal.admin)

    @rpc
    @once(pb.CreateTeamResponse, secret="token", lost_secret=_lost_team_token)
    async def CreateTeam(
        self, request: pb.CreateTeamRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTeamResponse:
        record, token = await self._teams.create(current_principal(), request.name)
        return pb.CreateTeamResponse(
            team=pb.Team(name=record.name, created_unix_ms=record.created_ms), token=token
        )

    @rpc
    async def ListTeams(
        self, request: pb.ListTeamsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTeamsResponse:
        offset, size = _page(request.page)
        teams = (await self._teams.list())[offset : offset + size]
        return pb.ListTeamsResponse(
            teams=[pb.Team(name=t.name, created_unix_ms=t.created_ms) for t in teams],
            next_page_token=_next_token(offset, size, len(teams)),
        )

    @rpc
    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAgentsResponse:
        """Every team may see the agents (who serves a contract it calls, whether it is heard
        from); the hostname only to the agent's team and the admin."""
        principal = current_principal()
        offset, size = _page(request.page)
        agents = sorted(
            (a for a in await self._store.list_agents() if not request.team or a.team == request.team),
            key=lambda a: (a.team, a.agent_id),
        )
        in_flight = await self._store.in_flight_by_agent()
        page = agents[offset : offset + size]
        now_ms = int(time.time() * 1000)
        infos = []
        for agent in page:
            alive, ago_s = self._engine.agent_seen(agent.agent_id)
            own = principal.admin or principal.team == agent.team
            infos.append(
                pb.AgentInfo(
                    agent_id=agent.agent_id,
                    team=agent.team,
                    contracts=[f"{b.contract}@{b.major}" for b in agent.bindings],
                    agent_version=agent.agent_version,
                    hostname=agent.hostname if own else "",
                    concurrency=agent.concurrency,
                    registered_unix_ms=agent.registered_ms,
                    last_seen_unix_ms=now_ms - int(ago_s * 1000) if ago_s is not None else 0,
                    alive=alive,
                    in_flight=in_flight.get(agent.agent_id, 0),
                )
            )
        return pb.ListAgentsResponse(agents=infos, next_page_token=_next_token(offset, size, len(page)))

    @rpc
    @once(pb.RotateTeamTokenResponse, secret="token", lost_secret=_lost_rotated_token)
    async def RotateTeamToken(
        self, request: pb.RotateTeamTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.RotateTeamTokenResponse:
        validate.integer(request.grace_ms, "grace_ms", 0, validate.MAX_DURATION_MS)
        validate.integer(request.expires_in_ms, "expires_in_ms", 0, validate.MAX_UNIX_MS)
        token, record, replaced = await self._teams.rotate(
            current_principal(), request.name, request.grace_ms / 1000, request.expires_in_ms / 1000
        )
        return pb.RotateTeamTokenResponse(
            token=token,
            new_token=convert.token_to_pb(record),
            replaced=[convert.token_to_pb(t) for t in replaced],
        )

    @rpc
    @once(pb.CreateTeamTokenResponse, secret="token", lost_secret=_lost_named_token)
    async def CreateTeamToken(
        self, request: pb.CreateTeamTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTeamTokenResponse:
        validate.integer(request.expires_in_ms, "expires_in_ms", 0, validate.MAX_UNIX_MS)
        record, token = await self._teams.create_token(
            current_principal(), request.team, request.name, request.expires_in_ms / 1000
        )
        return pb.CreateTeamTokenResponse(token=token, info=convert.token_to_pb(record))

    @rpc
    async def ListTeamTokens(
        self, request: pb.ListTeamTokensRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTeamTokensResponse:
        offset, size = _page(request.page)
        tokens = await self._teams.list_tokens(current_principal(), request.team, request.include_inactive)
        page = tokens[offset : offset + size]
        return pb.ListTeamTokensResponse(
            tokens=[convert.token_to_pb(t) for t in page],
            next_page_token=_next_token(offset, size, len(page)),
        )

    @rpc
    @once(pb.RevokeTeamTokenResponse)
    async def RevokeTeamToken(
        self, request: pb.RevokeTeamTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeTeamTokenResponse:
        revoked = await self._teams.revoke_token(current_principal(), request.team, request.name)
        return pb.RevokeTeamTokenResponse(revoked=[convert.token_to_pb(t) for t in revoked])

    @rpc
    @once(pb.RotateAdminTokenResponse, secret="token", lost_secret=_lost_admin_token)
    async def RotateAdminToken(
        self, request: pb.RotateAdminTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.RotateAdminTokenResponse:
        token = await self._teams.rotate_admin(current_principal(), request.new_token_sha256)
        return pb.RotateAdminTokenResponse(token=token)

    # ---------- contracts ----------

    @rpc
    @once(pb.RegisterContractResponse)
    async def RegisterContract(
        self, request: pb.RegisterContractRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterContractResponse:
        validate.size(request.source_text, "source_text", self._max_payload)
        result = await self._registry.register_contract(
            current_principal(),
            request.source_text,
            request.source_name,
            request.dry_run,
            validate.overrides(request.overrides),
        )
        return pb.RegisterContractResponse(
            contract=convert.contract_to_pb(result.record),
            findings=[convert.finding_to_pb(f) for f in result.findings],
            broken_consumers=[convert.impact_to_pb(c) for c in result.broken_consumers],
            warnings=result.warnings,
            registered=result.registered,
            policy_findings=[convert.policy_finding_to_pb(f) for f in result.policy_findings],
        )

    @rpc
    async def ListContracts(
        self, request: pb.ListContractsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListContractsResponse:
        offset, size = _page(request.page)
        records = await self._registry.list_contracts(request.team, request.name_prefix, request.all_versions)
        principal = current_principal()
        visible = [r for r in records if r.contract.visibility != "team" or principal.owns(r.contract.team)][
            offset : offset + size
        ]
        return pb.ListContractsResponse(
            contracts=[convert.contract_to_pb(r, listed=True) for r in visible],
            next_page_token=_next_token(offset, size, len(visible)),
        )

    @rpc
    async def GetContract(
        self, request: pb.GetContractRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetContractResponse:
        record, versions = await self._registry.get_contract(current_principal(), request.ref)
        return pb.GetContractResponse(contract=convert.contract_to_pb(record), versions=versions)

    @rpc
    async def DiffContracts(
        self, request: pb.DiffContractsRequest, context: grpc.aio.ServicerContext
    ) -> pb.DiffContractsResponse:
        findings, same_major = await self._registry.diff(
            current_principal(), request.old_ref, request.new_ref
        )
        return pb.DiffContractsResponse(
            findings=[convert.finding_to_pb(f) for f in findings],
            breaking=any(f.breaking for f in findings),
            same_major=same_major,
        )

    @rpc
    @once(pb.DeprecateContractResponse)
    async def DeprecateContract(
        self, request: pb.DeprecateContractRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeprecateContractResponse:
        contracts = await self._registry.deprecate(
            current_principal(), request.ref, request.sunset, request.replacement
        )
        return pb.DeprecateContractResponse(contracts=[convert.contract_to_pb(c) for c in contracts])

    @rpc
    async def ListContractConsumers(
        self, request: pb.ListContractConsumersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListContractConsumersResponse:
        offset, size = _page(request.page)
        consumers = (await self._registry.consumers(current_principal(), request.ref))[offset : offset + size]
        return pb.ListContractConsumersResponse(
            consumers=[convert.impact_to_pb(c) for c in consumers],
            next_page_token=_next_token(offset, size, len(consumers)),
        )

    # ---------- workflows ----------

    @rpc
    @once(pb.RegisterWorkflowResponse)
    async def RegisterWorkflow(
        self, request: pb.RegisterWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterWorkflowResponse:
        validate.size(request.source_text, "source_text", self._max_payload)
        result = await self._registry.register_workflow(
            current_principal(),
            request.source_text,
            request.source_name,
            request.dry_run,
            validate.overrides(request.overrides),
        )
        if result.registered and self._scheduler is not None:
            await self._scheduler.sync_workflow(result.record.name)
        return pb.RegisterWorkflowResponse(
            workflow=convert.workflow_to_pb(result.record),
            findings=[convert.finding_to_pb(f) for f in result.findings],
            warnings=result.warnings,
            registered=result.registered,
            policy_findings=[convert.policy_finding_to_pb(f) for f in result.policy_findings],
        )

    @rpc
    async def ListWorkflows(
        self, request: pb.ListWorkflowsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkflowsResponse:
        offset, size = _page(request.page)
        records = (await self._registry.list_workflows(request.team))[offset : offset + size]
        return pb.ListWorkflowsResponse(
            workflows=[
                convert.workflow_to_pb(
                    r,
                    await self._registry.workflow_disabled_ms(r.name),
                    self._registry.workflow_triggers(r),
                    listed=True,
                )
                for r in records
            ],
            next_page_token=_next_token(offset, size, len(records)),
        )

    @rpc
    async def GetWorkflow(
        self, request: pb.GetWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetWorkflowResponse:
        record = await self._registry.get_workflow(request.name, request.version)
        disabled = await self._registry.workflow_disabled_ms(record.name)
        return pb.GetWorkflowResponse(
            workflow=convert.workflow_to_pb(record, disabled, self._registry.workflow_triggers(record))
        )

    # ---------- runs ----------

    @rpc
    async def StartRun(
        self, request: pb.StartRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartRunResponse:
        principal = current_principal()
        await self._engine.admit_start(principal)
        if request.rerun_of and request.input_json:
            raise InvalidArgumentError(
                "input_json must be empty when rerun_of is set: a re-run takes the stored input of "
                f"run {request.rerun_of}"
            )
        wait_s = validate.integer(request.wait_ms, "wait_ms", 0, MAX_START_WAIT_MS) / 1000
        run_input = validate.json_text(request.input_json, "input_json", self._max_payload, empty={})
        # A request id without an idempotency key serves as one: the same request sent again
        # (a retry after a lost answer, perhaps to another coordinator) finds the run it started.
        key = request.idempotency_key or (f"request:{request.request_id}" if request.request_id else "")
        view, created = await self._engine.start_run(
            principal,
            request.workflow,
            run_input,
            idempotency_key=key,
            traceparent=_traceparent(context, request.trace_context),
            rerun_of=request.rerun_of,
            overrides=dict(request.overrides),
        )
        flows = await self._flows(view.run)
        if wait_s and view.run.status not in RUN_TERMINAL and wait_by_design():
            # The run is started and durable; what is left is a watch of it, counted with the
            # calls that wait (the edge's long budget; when that is full the answer goes at once)
            # and ended as a WatchRun is once the token is refused (docs/architecture.md,
            # "Watching a run").
            token = bearer_token(context.invocation_metadata())
            async with OpenCallGuard(self._authority, token, "StartRun") as guard:
                view = await guard.wait(self._engine.wait_ended(principal, view.run.run_id, wait_s))
                guard.check()
                # Encoded before anything is awaited: a live run's view shares the engine's records.
                run = convert.run_to_pb(view, principal, flows)
        else:
            run = convert.run_to_pb(view, principal, flows)
        return pb.StartRunResponse(run=run, created=created)

    async def _summary(self, run: RunRecord, principal: Principal, *, listed: bool = False) -> pb.Run:
        flows = await self._flows(run)
        hide = None
        if run.error is not None:
            # A failed run's error may quote a sensitive value (a schema violation of a mapped
            # input): its steps say which values are sensitive. Only failed runs pay for it.
            view = await self._engine.get_run(principal, run.run_id)
            hide = convert.run_sensitive_values(view, flows)
        return convert.run_summary_to_pb(run, principal, flows, hide, listed=listed)

    async def _flows(self, run: RunRecord) -> tuple[str, ...]:
        """Where sensitive values land in ``run``: its workflow version's flows for the contract
        versions it pinned and the event that started it (``Registry.run_flows``)."""
        return await self._registry.run_flows(run)

    @rpc
    async def GetRun(self, request: pb.GetRunRequest, context: grpc.aio.ServicerContext) -> pb.GetRunResponse:
        principal = current_principal()
        view = await self._engine.get_run(principal, request.run_id)
        return pb.GetRunResponse(run=convert.run_to_pb(view, principal, await self._flows(view.run)))

    @rpc
    async def ListRuns(
        self, request: pb.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRunsResponse:
        principal = current_principal()
        offset, size = _page(request.page)
        query = RunFilter(
            workflow=request.workflow,
            status=convert.RUN_STATUS_NAME.get(request.status, ""),
            team=request.team,
            created_after_ms=validate.integer(
                request.created_after_unix_ms, "created_after_unix_ms", 0, validate.MAX_UNIX_MS
            ),
            created_before_ms=validate.integer(
                request.created_before_unix_ms, "created_before_unix_ms", 0, validate.MAX_UNIX_MS
            ),
            query=request.query,
            offset=offset,
            limit=size,
        )
        runs = await self._engine.list_runs(principal, query)
        return pb.ListRunsResponse(
            runs=[await self._summary(r, principal, listed=True) for r in runs],
            next_page_token=_next_token(offset, size, len(runs)),
        )

    @rpc
    @once(pb.CancelRunResponse)
    async def CancelRun(
        self, request: pb.CancelRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelRunResponse:
        principal = current_principal()
        view = await self._engine.cancel_run(principal, request.run_id, request.reason)
        return pb.CancelRunResponse(run=convert.run_to_pb(view, principal, await self._flows(view.run)))

    @rpc
    @once(pb.AnswerStepResponse)
    async def AnswerStep(
        self, request: pb.AnswerStepRequest, context: grpc.aio.ServicerContext
    ) -> pb.AnswerStepResponse:
        principal = current_principal()
        action = _ANSWER_ACTIONS.get(request.action)
        if action is None:
            raise InvalidArgumentError("action must be APPROVE, REJECT or SIGNAL")
        payload = None
        if action == "signal":
            payload = validate.json_text(request.payload_json, "payload_json", self._max_payload, empty={})
        elif request.payload_json:
            raise InvalidArgumentError("payload_json is for a signal; an approval takes a comment")
        view = await self._engine.answer_step(
            principal, request.run_id, request.step_id, action, payload, request.comment
        )
        return pb.AnswerStepResponse(run=convert.run_to_pb(view, principal, await self._flows(view.run)))

    @rpc
    @once(pb.RetryRunResponse)
    async def RetryRun(
        self, request: pb.RetryRunRequest, context: grpc.aio.ServicerContext
    ) -> pb.RetryRunResponse:
        principal = current_principal()
        view, _ = await self._engine.retry_run(
            principal, request.run_id, request.from_step, request.request_id
        )
        return pb.RetryRunResponse(run=convert.run_to_pb(view, principal, await self._flows(view.run)))

    # ---------- team limits ----------

    @rpc
    @once(pb.SetTeamLimitsResponse)
    async def SetTeamLimits(
        self, request: pb.SetTeamLimitsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetTeamLimitsResponse:
        rate = None
        if request.HasField("start_rate_per_s"):
            rate = validate.number(request.start_rate_per_s, "start_rate_per_s", 0.0, MAX_RATE)
        limits = await self._engine.set_team_limits(
            current_principal(),
            request.team,
            request.max_concurrency if request.HasField("max_concurrency") else None,
            rate,
        )
        return pb.SetTeamLimitsResponse(limits=_limits_to_pb(limits))

    @rpc
    async def GetTeamLimits(
        self, request: pb.GetTeamLimitsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTeamLimitsResponse:
        principal = current_principal()
        if not principal.owns(request.team):
            raise PermissionDeniedError(
                f"team {principal.team} may read only its own limits, not team {request.team}'s"
            )
        return pb.GetTeamLimitsResponse(limits=_limits_to_pb(self._engine.team_limits(request.team)))

    # ---------- schedules ----------

    def _schedules(self) -> Scheduler:
        if self._scheduler is None:
            raise FailedPreconditionError("this coordinator runs no scheduler")
        return self._scheduler

    @rpc
    async def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSchedulesResponse:
        offset, size = _page(request.page)
        records = (await self._schedules().list(current_principal(), request.workflow))[
            offset : offset + size
        ]
        return pb.ListSchedulesResponse(
            schedules=[convert.schedule_to_pb(r) for r in records],
            next_page_token=_next_token(offset, size, len(records)),
        )

    @rpc
    @once(pb.SetSchedulePausedResponse)
    async def SetSchedulePaused(
        self, request: pb.SetSchedulePausedRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetSchedulePausedResponse:
        record = await self._schedules().set_paused(
            current_principal(), request.workflow, request.id, request.paused
        )
        return pb.SetSchedulePausedResponse(schedule=convert.schedule_to_pb(record))

    @rpc
    @once(pb.TriggerScheduleResponse)
    async def TriggerSchedule(
        self, request: pb.TriggerScheduleRequest, context: grpc.aio.ServicerContext
    ) -> pb.TriggerScheduleResponse:
        run_id = await self._schedules().trigger(
            current_principal(), request.workflow, request.id, request.request_id
        )
        return pb.TriggerScheduleResponse(run_id=run_id)

    async def WatchRun(
        self, request: pb.WatchRunRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchRunResponse]:
        principal = current_principal()
        try:
            validate.message(request)
            # Where sensitive values land is the run's (its versions'): learnt before watching, as a
            # view must be converted before anything is awaited (a live run's view shares the
            # engine's records, which the next transition changes in place: see Engine.watch).
            stored = self._engine.known_run(request.run_id) or await self._store.get_run(request.run_id)
            flows = await self._flows(stored) if stored is not None else ()
            encoder = convert.WatchEncoder(principal, flows, changes_only=request.changes_only)
            async for view in self._engine.watch(principal, request.run_id, coalesce_s=WATCH_COALESCE_S):
                yield encoder.encode(view)
        except Exception as exc:
            if isinstance(exc, AccordError):
                await context.abort(status_of(exc), details_of(exc))
            raise

    # ---------- events ----------

    @rpc
    async def PublishEvent(
        self, request: pb.PublishEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.PublishEventResponse:
        principal = current_principal()
        payload = validate.json_text(request.payload_json, "payload_json", self._max_payload, empty={})
        trace_context = dict(request.trace_context)
        if not trace_context.get("traceparent"):
            parent = _traceparent(context, None)
            if parent:
                trace_context["traceparent"] = parent
        event = await self._events.publish(
            principal, request.contract, payload, trace_context, request.request_id
        )
        return pb.PublishEventResponse(
            event=convert.event_to_pb(event, principal, await self._events.sensitive_fields(event))
        )

    @rpc
    async def ListEvents(
        self, request: pb.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEventsResponse:
        principal = current_principal()
        offset, size = _page(request.page)
        events = await self._store.list_events(request.contract, offset, size, team=request.team)
        return pb.ListEventsResponse(
            events=[
                convert.event_to_pb(e, principal, await self._events.sensitive_fields(e), listed=True)
                for e in events
            ],
            next_page_token=_next_token(offset, size, len(events)),
        )

    @rpc
    async def GetEvent(
        self, request: pb.GetEventRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetEventResponse:
        principal = current_principal()
        event = await self._store.get_event(request.event_id) if request.event_id else None
        if event is None:
            raise NotFoundError(f"event '{request.event_id}' does not exist (accord event list shows them)")
        # Every team sees that an event happened and what it started (ListEvents does too); the
        # payload only its team (convert.event_to_pb), its sensitive fields redacted.
        return pb.GetEventResponse(
            event=convert.event_to_pb(event, principal, await self._events.sensitive_fields(event))
        )

    # ---------- traces ----------

    @rpc
    async def GetRunTrace(
        self, request: pb.GetRunTraceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRunTraceResponse:
        principal = current_principal()
        view = await self._engine.get_run(principal, request.run_id)  # may the caller see the run?
        # Team-scoped: another team's spans become contract-level boxes; sensitive values scrubbed.
        spans = await scoped_run_spans(self._store, view.run, principal, sensitivity=self._sensitivity)
        return pb.GetRunTraceResponse(
            trace_id=view.run.trace_id, spans=[convert.span_to_pb(s) for s in spans]
        )

    # ---------- audit ----------

    @rpc
    async def ListAuditLog(
        self, request: pb.ListAuditLogRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAuditLogResponse:
        team = self._own_team(request.team, "audit entries")
        validate.integer(request.since_unix_ms, "since_unix_ms", 0, validate.MAX_UNIX_MS)
        validate.integer(request.before_id, "before_id", 0, 2**63 - 1)
        offset, size = _page(request.page)
        entries = await self._store.list_audit(
            team,
            offset,
            size,
            since_ms=request.since_unix_ms,
            before_id=request.before_id,
            newest_first=request.newest_first,
        )
        return pb.ListAuditLogResponse(
            entries=[convert.audit_to_pb(e) for e in entries],
            next_page_token=_next_token(offset, size, len(entries)),
        )

    # ---------- governance ----------

    @rpc
    @once(pb.ApplyPolicyResponse)
    async def ApplyPolicy(
        self, request: pb.ApplyPolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApplyPolicyResponse:
        validate.size(request.source_text, "source_text", self._max_payload)
        validate.text(request.source_name, "source_name", 256)
        validate.text(request.team, "team", 256)
        policies = self._registry.policies
        rules, applied = await policies.apply(
            current_principal(),
            request.source_text,
            request.source_name or "policy",
            request.team,
            request.dry_run,
        )
        findings = await self._registry.policy_violators(rules) if request.dry_run else []
        return pb.ApplyPolicyResponse(
            rules=[convert.policy_rule_to_pb(r) for r in rules],
            findings=[convert.policy_finding_to_pb(f) for f in findings],
            applied=applied,
        )

    @rpc
    async def ListPolicies(
        self, request: pb.ListPoliciesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPoliciesResponse:
        # Every team may read every rule: the rules are what its registrations are checked against.
        validate.text(request.team, "team", 256)
        offset, size = _page(request.page)
        policies = self._registry.policies
        records = {r.scope: r for r in await policies.records()}
        rules = await policies.rules(request.team or None)
        page = rules[offset : offset + size]
        return pb.ListPoliciesResponse(
            rules=[convert.policy_rule_to_pb(r, records.get(r.scope)) for r in page],
            next_page_token=_next_token(offset, size, len(page)),
        )

    @rpc
    async def ListOverrides(
        self, request: pb.ListOverridesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListOverridesResponse:
        team = self._own_team(request.team, "overrides")
        validate.integer(request.since_unix_ms, "since_unix_ms", 0, validate.MAX_UNIX_MS)
        offset, size = _page(request.page)
        entries = await self._store.list_overrides(team, request.since_unix_ms, offset + size)
        page = entries[offset : offset + size]
        return pb.ListOverridesResponse(
            entries=[convert.audit_to_pb(e) for e in page],
            next_page_token=_next_token(offset, size, len(page)),
        )

    def _own_team(self, team: str, what: str) -> str:
        """The team whose ``what`` a list reads: any (or all, "") for the admin; a team its own."""
        principal = current_principal()
        validate.text(team, "team", 256)
        if principal.admin:
            return team
        if team and team != principal.team:
            raise PermissionDeniedError(
                f"team {principal.team} may read only its own {what}, not team {team}'s"
            )
        return principal.team

    @rpc
    async def GetAutonomyReport(
        self, request: pb.GetAutonomyReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetAutonomyReportResponse:
        team = self._own_team(request.team, "autonomy report")
        validate.integer(request.since_unix_ms, "since_unix_ms", 0, validate.MAX_UNIX_MS)
        now = int(time.time() * 1000)
        since = request.since_unix_ms or now - 30 * 24 * 3600 * 1000
        by = request.by or "week"
        if by not in autonomy.PERIODS:
            raise InvalidArgumentError(f"by: one of {', '.join(autonomy.PERIODS)}, not {by!r}")
        if since < now and len(autonomy.period_starts(since, now, by)) > autonomy.MAX_PERIODS:
            raise InvalidArgumentError(
                f"by {by}: the period holds more than {autonomy.MAX_PERIODS} of them; "
                "break it down by a longer period (week or month) or ask for a shorter one"
            )
        report = await self._registry.autonomy_report(team, since, now, by)
        return pb.GetAutonomyReportResponse(report_json=json.dumps(report, separators=(",", ":")))

    @rpc
    async def ListRecentChanges(
        self, request: pb.ListRecentChangesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRecentChangesResponse:
        team = self._own_team(request.team, "changes")
        count = validate.integer(request.count, "count", 0, 100) or 5
        # The newest changes of the last year; the report covers as far back as the audit log.
        since = int(time.time() * 1000) - 365 * 24 * 3600 * 1000
        listed = await self._registry.recent_changes(team, count, since)
        return pb.ListRecentChangesResponse(changes_json=json.dumps(listed, separators=(",", ":")))

    # ---------- lifecycle ----------

    @rpc
    @once(pb.RetireContractResponse)
    async def RetireContract(
        self, request: pb.RetireContractRequest, context: grpc.aio.ServicerContext
    ) -> pb.RetireContractResponse:
        records = await self._registry.retire(current_principal(), request.ref)
        return pb.RetireContractResponse(contracts=[convert.contract_to_pb(r, listed=True) for r in records])

    @rpc
    async def ListNotices(
        self, request: pb.ListNoticesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListNoticesResponse:
        principal = current_principal()
        if request.team and not principal.owns(request.team):
            raise PermissionDeniedError(
                f"team {principal.team} may read only its own notices, not team {request.team}'s"
            )
        offset, size = _page(request.page)
        notices = (await self._registry.notices(principal, request.team))[offset : offset + size]
        return pb.ListNoticesResponse(
            notices=[convert.notice_to_pb(n) for n in notices],
            next_page_token=_next_token(offset, size, len(notices)),
        )

    @rpc
    @once(pb.SetWorkflowEnabledResponse)
    async def SetWorkflowEnabled(
        self, request: pb.SetWorkflowEnabledRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetWorkflowEnabledResponse:
        record, changed = await self._registry.set_workflow_enabled(
            current_principal(), request.name, request.enabled
        )
        disabled = await self._registry.workflow_disabled_ms(record.name)
        return pb.SetWorkflowEnabledResponse(
            workflow=convert.workflow_to_pb(record, disabled, self._registry.workflow_triggers(record)),
            changed=changed,
        )

    @rpc
    @once(pb.DeleteWorkflowVersionResponse)
    async def DeleteWorkflowVersion(
        self, request: pb.DeleteWorkflowVersionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteWorkflowVersionResponse:
        await self._registry.delete_workflow_version(current_principal(), request.name, request.version)
        if self._scheduler is not None:  # the newest version, and so the schedules, may change
            await self._scheduler.sync_workflow(request.name)
        return pb.DeleteWorkflowVersionResponse()

    @rpc
    @once(pb.RollbackWorkflowResponse)
    async def RollbackWorkflow(
        self, request: pb.RollbackWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> pb.RollbackWorkflowResponse:
        result = await self._registry.rollback_workflow(
            current_principal(), request.name, request.to_version, dict(request.overrides)
        )
        if self._scheduler is not None:  # the schedules are the restored version's
            await self._scheduler.sync_workflow(request.name)
        return pb.RollbackWorkflowResponse(
            workflow=convert.workflow_to_pb(result.record),
            findings=[convert.finding_to_pb(f) for f in result.findings],
            warnings=result.warnings,
            registered=result.registered,
            policy_findings=[convert.policy_finding_to_pb(f) for f in result.policy_findings],
        )


def _limits_to_pb(limits: TeamLimits) -> pb.TeamLimits:
    return pb.TeamLimits(max_concurrency=limits.max_concurrency, start_rate_per_s=limits.start_rate)


_ANSWER_ACTIONS = {
    pb.ANSWER_ACTION_APPROVE: "approve",
    pb.ANSWER_ACTION_REJECT: "reject",
    pb.ANSWER_ACTION_SIGNAL: "signal",
}

__all__ = ["CoordinatorService"]
