"""The UI's real data source: the coordinator's own gRPC API, called with the viewer's token.

This is the edge where ``_pb2`` messages become the JSON-ready dicts the web layer serves; no
protobuf type goes past this module.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from contracts._wire.accord.common.v1 import common_pb2
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2_grpc as pb_grpc
from contracts.channels import Channels
from contracts.endpoints import with_request_id
from coordinator.api import convert
from coordinator.web._source import AuditQuery, JSONDict, Principal, RunQuery

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How a client presents its token (the coordinator's auth interceptor reads this header).
TOKEN_METADATA_KEY = "authorization"

_PAGE_MAX = 500


def _json(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _error(err: common_pb2.TaskError, present: bool) -> JSONDict | None:
    if not present:
        return None
    return {
        "type": err.type,
        "message": err.message,
        "retryable": err.retryable,
        "details": _json(err.details_json) or {},
    }


def run_to_dict(run: pb.Run) -> JSONDict:
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "workflow_version": run.workflow_version,
        "team": run.team,
        "status": convert.RUN_STATUS_NAME.get(run.status, "unknown"),
        "input": _json(run.input_json),
        "output": _json(run.output_json),
        "payload_hidden": run.payload_hidden,
        "idempotency_key": run.idempotency_key,
        "error": _error(run.error, run.HasField("error")),
        "created_ms": run.created_unix_ms,
        "finished_ms": run.finished_unix_ms,
        "trace_id": run.trace_id,
        "pinned_versions": dict(run.pinned_versions),
        "started_by": run.started_by,
        "warnings": list(run.warnings),
        "deadline_ms": run.deadline_unix_ms,
        "retry_of": run.retry_of,
        "sensitive_flows": list(run.sensitive_flows),
        "steps": [step_to_dict(s) for s in run.steps],
    }


def step_to_dict(step: pb.Step) -> JSONDict:
    return {
        "id": step.id,
        "contract": step.contract,
        "contract_version": step.contract_version,
        "team": step.team,
        "status": convert.STEP_STATUS_NAME.get(step.status, "unknown"),
        "waiting_reason": step.waiting_reason,
        "waiting_for": step.waiting_for,
        "reused_from": step.reused_from,
        "idempotency_key": step.idempotency_key,
        "input": _json(step.input_json),
        "output": _json(step.output_json),
        "payload_hidden": step.payload_hidden,
        "attempts": [
            {
                "attempt_id": a.attempt_id,
                "number": a.number,
                "status": convert.ATTEMPT_STATUS_NAME.get(a.status, "unknown"),
                "agent_id": a.agent_id,
                "scheduled_ms": a.scheduled_unix_ms,
                "started_ms": a.started_unix_ms,
                "finished_ms": a.finished_unix_ms,
                "error": _error(a.error, a.HasField("error")),
            }
            for a in step.attempts
        ],
        "error": _error(step.error, step.HasField("error")),
        "started_ms": step.started_unix_ms,
        "finished_ms": step.finished_unix_ms,
        "next_attempt_ms": step.next_attempt_unix_ms,
    }


def audit_to_dict(entry: pb.AuditEntry) -> JSONDict:
    return {
        "id": entry.id,
        "at_ms": entry.at_unix_ms,
        "actor": entry.actor,
        "action": entry.action,
        "object": entry.object,
        "owner_team": entry.owner_team,
        "platform_intervention": entry.platform_intervention,
        "details": _json(entry.details_json) or {},
    }


def span_to_dict(span: pb.Span) -> JSONDict:
    """The UI's JSON of a span, read from the wire by the API's own ``convert.span_from_pb``."""
    view = convert.span_from_pb(span)
    return {
        "span_id": view.span_id,
        "parent_span_id": view.parent_span_id,
        "name": view.name,
        "team": view.team,
        "service": view.service,
        "kind": view.kind,
        "start_ns": view.start_ns,
        "end_ns": view.end_ns,
        "status": view.status,
        "status_message": view.status_message,
        "attributes": dict(view.attributes),
        "redacted": view.redacted,
        "events": list(view.events),
        "links": list(view.links),
    }


def contract_to_dict(c: pb.Contract) -> JSONDict:
    retry = c.retry
    return {
        "name": c.name,
        "team": c.team,
        "version": c.version,
        "ref": f"{c.name}@{c.version}",
        "description": c.description,
        "input_schema": _json(c.input_schema_json) or {},
        "output_schema": _json(c.output_schema_json) or {},
        "timeouts": {
            "schedule_to_start_ms": c.timeouts.schedule_to_start_ms,
            "start_to_close_ms": c.timeouts.start_to_close_ms,
            "heartbeat_ms": c.timeouts.heartbeat_ms,
        },
        "retry": {
            "max_attempts": retry.max_attempts,
            "initial_backoff_ms": retry.initial_backoff_ms,
            "backoff_coefficient": retry.backoff_coefficient,
            "max_backoff_ms": retry.max_backoff_ms,
            "non_retryable": list(retry.non_retryable),
        },
        "idempotent": c.idempotent,
        "visibility": c.visibility,
        "sensitive": list(c.sensitive),
        "deprecated": (
            {"sunset": c.deprecated.sunset, "replacement": c.deprecated.replacement}
            if c.HasField("deprecated") and (c.deprecated.sunset or c.deprecated.replacement)
            else None
        ),
        "source_text": c.source_text,
        "registered_ms": c.registered_unix_ms,
        "registered_by": c.registered_by,
        "retired_ms": c.retired_unix_ms,
    }


def workflow_to_dict(w: pb.Workflow) -> JSONDict:
    return {
        "name": w.name,
        "team": w.team,
        "version": w.version,
        "description": w.description,
        "source_text": w.source_text,  # "" in a list (ListWorkflows): get_workflow has it
        "triggers": list(w.triggers),
        "definition": _json(w.definition_json) or {},
        "registered_ms": w.registered_unix_ms,
        "registered_by": w.registered_by,
        "disabled_ms": w.disabled_unix_ms,
    }


def consumer_to_dict(c: pb.ConsumerImpact) -> JSONDict:
    return {
        "workflow": c.workflow,
        "workflow_version": c.workflow_version,
        "team": c.team,
        "step": c.step,
        "field": c.field,
        "message": c.message,
        "runs_last_30_days": c.runs_last_30_days,
    }


def notice_to_dict(n: pb.Notice) -> JSONDict:
    return {
        "kind": n.kind,
        "contract": n.contract,
        "sunset": n.sunset,
        "replacement": n.replacement,
        "past_sunset": n.past_sunset,
        "workflow": n.workflow,
        "workflow_version": n.workflow_version,
        "step": n.step,
        "team": n.team,
        "runs_last_30_days": n.runs_last_30_days,
        "message": n.message,
    }


def finding_to_dict(f: pb.Finding) -> JSONDict:
    return {"pointer": f.pointer, "message": f.message, "breaking": f.breaking}


class GrpcSource:
    """Calls the coordinator at ``target`` ("host:port") over one shared channel."""

    def __init__(self, target: str, *, channels: Channels | None = None, timeout_s: float = 10.0) -> None:
        self.target = target
        self.channels = channels or Channels()
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.CoordinatorServiceStub | None = None

    def _get_stub(self) -> pb_grpc.CoordinatorServiceStub:
        # Created lazily so the channel binds to the event loop that serves the UI.
        if self._stub is None:
            self._channel = self.channels.aio(
                self.target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
            )
            self._stub = pb_grpc.CoordinatorServiceStub(self._channel)
        return self._stub

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None

    async def _call(self, token: str, fn: Callable[..., Awaitable[T]], request: Any) -> T:
        try:
            return await fn(
                with_request_id(request),  # the browser's id where it sent one
                metadata=((TOKEN_METADATA_KEY, f"Bearer {token}"),),
                timeout=self.timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise await self.channels.error_async(exc) from exc

    async def whoami(self, token: str) -> Principal:
        reply = await self._call(token, self._get_stub().WhoAmI, pb.WhoAmIRequest())
        return Principal(team=reply.team, admin=reply.admin)

    async def list_runs(self, token: str, query: RunQuery) -> list[JSONDict]:
        request = pb.ListRunsRequest(
            page=common_pb2.PageRequest(page_size=query.limit),
            workflow=query.workflow,
            status=convert.RUN_STATUS.get(query.status, pb.RUN_STATUS_UNSPECIFIED),
            team=query.team,
            created_after_unix_ms=query.created_after_ms,
            created_before_unix_ms=query.created_before_ms,
            query=query.query,
        )
        reply = await self._call(token, self._get_stub().ListRuns, request)
        return [run_to_dict(r) for r in reply.runs]

    async def get_run(self, token: str, run_id: str) -> JSONDict:
        reply = await self._call(token, self._get_stub().GetRun, pb.GetRunRequest(run_id=run_id))
        return run_to_dict(reply.run)

    async def get_event(self, token: str, event_id: str) -> JSONDict:
        reply = await self._call(token, self._get_stub().GetEvent, pb.GetEventRequest(event_id=event_id))
        e = reply.event
        return {
            "event_id": e.event_id,
            "contract": e.contract,
            "contract_version": e.contract_version,
            "team": e.team,
            "published_ms": e.published_unix_ms,
            "source_run": e.source_run,
            "triggered_runs": list(e.triggered_runs),
            "delivered_ms": e.delivered_unix_ms,
            "handled_ms": e.handled_unix_ms,
        }

    async def get_trace(self, token: str, run_id: str) -> JSONDict:
        reply = await self._call(token, self._get_stub().GetRunTrace, pb.GetRunTraceRequest(run_id=run_id))
        return {"trace_id": reply.trace_id, "spans": [span_to_dict(s) for s in reply.spans]}

    async def cancel_run(self, token: str, run_id: str, reason: str, request_id: str) -> JSONDict:
        request = pb.CancelRunRequest(run_id=run_id, reason=reason, request_id=request_id)
        reply = await self._call(token, self._get_stub().CancelRun, request)
        return run_to_dict(reply.run)

    async def answer_step(
        self, token: str, run_id: str, step_id: str, approve: bool, comment: str, request_id: str
    ) -> JSONDict:
        action = pb.ANSWER_ACTION_APPROVE if approve else pb.ANSWER_ACTION_REJECT
        request = pb.AnswerStepRequest(
            run_id=run_id, step_id=step_id, action=action, comment=comment, request_id=request_id
        )
        reply = await self._call(token, self._get_stub().AnswerStep, request)
        return run_to_dict(reply.run)

    async def start_run(
        self, token: str, workflow: str, input_json: str, request_id: str, rerun_of: str = ""
    ) -> JSONDict:
        request = pb.StartRunRequest(
            workflow=workflow, input_json=input_json, request_id=request_id, rerun_of=rerun_of
        )
        reply = await self._call(token, self._get_stub().StartRun, request)
        return {"run": run_to_dict(reply.run), "created": reply.created}

    async def list_contracts(
        self, token: str, team: str = "", name_prefix: str = "", all_versions: bool = True
    ) -> list[JSONDict]:
        out: list[JSONDict] = []
        page_token = ""
        while True:
            request = pb.ListContractsRequest(
                page=common_pb2.PageRequest(page_size=_PAGE_MAX, page_token=page_token),
                team=team,
                name_prefix=name_prefix,
                all_versions=all_versions,
            )
            reply = await self._call(token, self._get_stub().ListContracts, request)
            out.extend(contract_to_dict(c) for c in reply.contracts)
            page_token = reply.next_page_token
            if not page_token:
                return out

    async def get_contract(self, token: str, ref: str) -> JSONDict:
        reply = await self._call(token, self._get_stub().GetContract, pb.GetContractRequest(ref=ref))
        return {"contract": contract_to_dict(reply.contract), "versions": list(reply.versions)}

    async def diff_contracts(self, token: str, old_ref: str, new_ref: str) -> JSONDict:
        request = pb.DiffContractsRequest(old_ref=old_ref, new_ref=new_ref)
        reply = await self._call(token, self._get_stub().DiffContracts, request)
        return {
            "findings": [finding_to_dict(f) for f in reply.findings],
            "breaking": reply.breaking,
            "same_major": reply.same_major,
        }

    async def contract_consumers(self, token: str, ref: str) -> list[JSONDict]:
        out: list[JSONDict] = []
        page_token = ""
        while True:
            request = pb.ListContractConsumersRequest(
                ref=ref, page=common_pb2.PageRequest(page_size=_PAGE_MAX, page_token=page_token)
            )
            reply = await self._call(token, self._get_stub().ListContractConsumers, request)
            out.extend(consumer_to_dict(c) for c in reply.consumers)
            page_token = reply.next_page_token
            if not page_token:
                return out

    async def list_notices(self, token: str, team: str = "") -> list[JSONDict]:
        request = pb.ListNoticesRequest(team=team, page=common_pb2.PageRequest(page_size=_PAGE_MAX))
        reply = await self._call(token, self._get_stub().ListNotices, request)
        return [notice_to_dict(n) for n in reply.notices]

    async def list_workflows(self, token: str, team: str = "") -> list[JSONDict]:
        out: list[JSONDict] = []
        page_token = ""
        while True:
            request = pb.ListWorkflowsRequest(
                page=common_pb2.PageRequest(page_size=_PAGE_MAX, page_token=page_token), team=team
            )
            reply = await self._call(token, self._get_stub().ListWorkflows, request)
            out.extend(workflow_to_dict(w) for w in reply.workflows)
            page_token = reply.next_page_token
            if not page_token:
                return out

    async def get_workflow(self, token: str, name: str, version: int = 0) -> JSONDict:
        request = pb.GetWorkflowRequest(name=name, version=version)
        reply = await self._call(token, self._get_stub().GetWorkflow, request)
        return workflow_to_dict(reply.workflow)

    async def list_agents(self, token: str, team: str = "") -> list[JSONDict]:
        out: list[JSONDict] = []
        page_token = ""
        while True:
            request = pb.ListAgentsRequest(
                page=common_pb2.PageRequest(page_size=_PAGE_MAX, page_token=page_token), team=team
            )
            reply = await self._call(token, self._get_stub().ListAgents, request)
            out.extend(
                {
                    "agent_id": a.agent_id,
                    "team": a.team,
                    "contracts": list(a.contracts),
                    "version": a.agent_version,
                    "hostname": a.hostname,
                    "concurrency": a.concurrency,
                    "registered_ms": a.registered_unix_ms,
                    "last_seen_ms": a.last_seen_unix_ms,
                    "alive": a.alive,
                    "in_flight": a.in_flight,
                }
                for a in reply.agents
            )
            page_token = reply.next_page_token
            if not page_token:
                return out

    async def list_teams(self, token: str) -> list[str]:
        out: list[str] = []
        page_token = ""
        while True:
            request = pb.ListTeamsRequest(
                page=common_pb2.PageRequest(page_size=_PAGE_MAX, page_token=page_token)
            )
            reply = await self._call(token, self._get_stub().ListTeams, request)
            out.extend(t.name for t in reply.teams)
            page_token = reply.next_page_token
            if not page_token:
                return out

    async def autonomy(self, token: str, team: str, since_ms: int, last: int, by: str = "week") -> JSONDict:
        stub = self._get_stub()
        report = await self._call(
            token,
            stub.GetAutonomyReport,
            pb.GetAutonomyReportRequest(team=team, since_unix_ms=since_ms, by=by),
        )
        changes = await self._call(
            token, stub.ListRecentChanges, pb.ListRecentChangesRequest(team=team, count=last)
        )
        return {"report": json.loads(report.report_json), "changes": json.loads(changes.changes_json)}

    async def list_audit(self, token: str, query: AuditQuery) -> list[JSONDict]:
        request = pb.ListAuditLogRequest(
            page=common_pb2.PageRequest(page_size=query.limit),
            team=query.team,
            since_unix_ms=query.since_ms,
            before_id=query.before_id,
            newest_first=True,
        )
        reply = await self._call(token, self._get_stub().ListAuditLog, request)
        return [audit_to_dict(e) for e in reply.entries]
