"""The agent's edge to the coordinator: gRPC (AgentGatewayService, CoordinatorService.GetContract).

Everything protobuf stays in this module; the rest of the agent works on the dataclasses below.
Two interceptors sit on the channel, so no call can bypass them:

- ``RedactingClientInterceptor`` masks every resolved secret in every string field of every
  request (``*_json`` fields are re-serialised so they stay valid JSON);
- ``TraceContextClientInterceptor`` adds the current W3C trace context to the metadata.

Channels are opened by ``contracts.channels.Channels`` (the agent's TLS settings), and every
``grpc.RpcError`` becomes the most specific ``contracts.errors.RemoteError`` subclass
(``contracts.grpc_errors``), or a ``TlsError`` when the handshake failed, raised from it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2_grpc as agent_grpc
from contracts._wire.accord.common.v1 import common_pb2
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as coordinator_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2_grpc as coordinator_grpc
from contracts.channels import OVERLOAD_PATIENCE_S, Channels, OverloadRetry
from contracts.endpoints import Endpoints, parse_addresses
from contracts.model import Contract, RetryPolicy, Timeouts
from team_agent.redact import Redactor
from team_agent.tracing import TraceContextClientInterceptor

AGENT_VERSION = "0.1.0"
CALL_TIMEOUT = 10.0


@dataclass(frozen=True)
class AgentTask:
    """One attempt of one step, as the agent sees it."""

    task_id: str
    attempt_id: str
    attempt: int
    run_id: str
    step_id: str
    workflow: str
    contract: str  # "team/name"
    contract_version: str  # exact, "1.2.0"
    input_json: str
    idempotency_key: str
    timeouts: Timeouts
    deadline: float | None  # unix seconds
    trace_context: Mapping[str, str] = field(default_factory=dict)

    @property
    def binding_key(self) -> str:
        return f"{self.contract}@{self.contract_version.split('.', 1)[0]}"


@dataclass(frozen=True)
class TaskFailure:
    """A failed attempt as reported to the coordinator."""

    type: str
    message: str
    retryable: bool
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HeartbeatAnswer:
    cancel_requested: bool
    lease_lost: bool


@dataclass(frozen=True)
class Registration:
    poll_wait: float  # seconds
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class BindingInfo:
    contract: str
    major: int
    engine: str
    fingerprint: str = ""


def _redact_message(message: Message, redactor: Redactor) -> None:
    """Mask secrets in every string field of ``message``, recursively, in place."""
    for descriptor, value in message.ListFields():
        if descriptor.type == FieldDescriptor.TYPE_MESSAGE:
            message_type = descriptor.message_type
            assert message_type is not None
            if message_type.GetOptions().map_entry:
                entry_value = message_type.fields_by_name["value"]
                for key in list(value):
                    if entry_value.type == FieldDescriptor.TYPE_STRING:
                        value[key] = redactor.text(value[key])
                    elif entry_value.type == FieldDescriptor.TYPE_MESSAGE:
                        _redact_message(value[key], redactor)
            elif descriptor.is_repeated:
                for item in value:
                    _redact_message(item, redactor)
            else:
                _redact_message(value, redactor)
        elif descriptor.type == FieldDescriptor.TYPE_STRING:
            clean = redactor.json_text if descriptor.name.endswith("_json") else redactor.text
            if descriptor.is_repeated:
                value[:] = [clean(v) for v in value]
            else:
                setattr(message, descriptor.name, clean(value))


def _may_hold_secret(message: Message, redactor: Redactor) -> bool:
    """False only when no string of ``message`` can hold a secret, so the copy and the field walk
    of ``_redact_message`` can be skipped (most requests: the agent's token is a secret, so the
    redactor is never empty). Conservative: any encoded form of a secret anywhere in the serialized
    bytes, or a JSON escape (``\\u``, ``\\/``) that could spell one in a ``*_json`` field, takes the
    full redaction."""
    data = message.SerializeToString()
    if b"\\u" in data or b"\\/" in data:
        return True
    return any(form in data for form in redactor.encoded_forms())


class RedactingClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Masks every known secret value in each request before it leaves the process."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        if self._redactor and isinstance(request, Message) and _may_hold_secret(request, self._redactor):
            clean = type(request)()
            clean.CopyFrom(request)
            _redact_message(clean, self._redactor)
            request = clean
        return await continuation(client_call_details, request)


def _ms(seconds: float | None) -> int:
    return round(seconds * 1000) if seconds else 0


def _seconds(ms: int) -> float | None:
    return ms / 1000 if ms else None


def retry_to_pb(policy: RetryPolicy) -> common_pb2.RetryPolicy:
    return common_pb2.RetryPolicy(
        max_attempts=policy.max_attempts or 0,
        initial_backoff_ms=_ms(policy.initial_backoff),
        backoff_coefficient=policy.backoff_coefficient or 0.0,
        max_backoff_ms=_ms(policy.max_backoff),
        non_retryable=list(policy.non_retryable),
    )


def timeouts_to_pb(timeouts: Timeouts) -> common_pb2.Timeouts:
    return common_pb2.Timeouts(
        schedule_to_start_ms=_ms(timeouts.schedule_to_start),
        start_to_close_ms=_ms(timeouts.start_to_close),
        heartbeat_ms=_ms(timeouts.heartbeat),
    )


def _task_from_pb(task: agent_pb.Task) -> AgentTask:
    return AgentTask(
        task_id=task.task_id,
        attempt_id=task.attempt_id,
        attempt=task.attempt,
        run_id=task.run_id,
        step_id=task.step_id,
        workflow=task.workflow,
        contract=task.contract,
        contract_version=task.contract_version,
        input_json=task.input_json,
        idempotency_key=task.idempotency_key,
        timeouts=Timeouts(
            schedule_to_start=_seconds(task.timeouts.schedule_to_start_ms),
            start_to_close=_seconds(task.timeouts.start_to_close_ms),
            heartbeat=_seconds(task.timeouts.heartbeat_ms),
        ),
        deadline=_seconds(task.deadline_unix_ms),
        trace_context=dict(task.trace_context),
    )


def _contract_from_pb(contract: coordinator_pb.Contract) -> Contract:
    return Contract(
        name=contract.name,
        version=contract.version,
        input_schema=json.loads(contract.input_schema_json or "{}"),
        output_schema=json.loads(contract.output_schema_json or "{}"),
        description=contract.description,
        idempotent=contract.idempotent,
        visibility=contract.visibility or "public",
        sensitive=tuple(contract.sensitive),
    )


def new_request_id() -> str:
    return uuid.uuid4().hex


class GatewayClient:
    """Calls the coordinator on behalf of one agent. ``token`` is read on every call, so a
    rotated token (config reload) is used at once."""

    def __init__(
        self,
        address: str,
        token: Callable[[], str],
        redactor: Redactor,
        *,
        channels: Channels | None = None,
        extra_interceptors: Iterable[grpc.aio.ClientInterceptor] = (),
        overload_patience: float = OVERLOAD_PATIENCE_S,
    ) -> None:
        """``address``: one coordinator, or several comma-separated (``a:7440,b:7440``, the
        replicas of one installation): a call that finds one unreachable moves on to the next.
        ``channels``: how to dial them (the config's TLS settings); default plaintext.
        ``overload_patience``: seconds a call refused as overloaded is retried before it raises
        ``OverloadedError`` (the agent config's ``overload_patience``; settable later)."""
        self._token = token
        self.overload_patience = overload_patience
        self._channels = channels or Channels()
        interceptors = [
            RedactingClientInterceptor(redactor),
            TraceContextClientInterceptor(),
            *extra_interceptors,
        ]

        def connect(where: str) -> tuple[Any, Any, Any]:
            channel = self._channels.aio(
                where,
                interceptors=interceptors,
                options=[
                    ("grpc.keepalive_time_ms", 30_000),
                    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                    # Reconnect quickly after a coordinator restart.
                    ("grpc.initial_reconnect_backoff_ms", 200),
                    ("grpc.max_reconnect_backoff_ms", 2_000),
                ],
            )
            return (
                channel,
                agent_grpc.AgentGatewayServiceStub(channel),
                coordinator_grpc.CoordinatorServiceStub(channel),
            )

        self._endpoints: Endpoints[tuple[Any, Any, Any]] = Endpoints(
            parse_addresses(address, "coordinator"), connect
        )

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self._token()}"),)

    async def _call(self, method: str, request: Message, what: str, seconds: float = CALL_TIMEOUT) -> Any:
        """``method``: "agent.PollTask" or "coordinator.GetContract"."""
        service, name = method.split(".")
        overload = OverloadRetry(self.overload_patience)
        attempt = -1
        while attempt < len(self._endpoints.addresses) - 1:
            attempt += 1
            address = self._endpoints.address
            _, agent, coordinator = self._endpoints.current
            stub = agent if service == "agent" else coordinator
            try:
                return await getattr(stub, name)(request, timeout=seconds, metadata=self._metadata())
            except grpc.RpcError as exc:
                wait = overload.wait(exc)
                if wait is not None:  # overloaded: the same call again after its hint
                    attempt -= 1
                    await asyncio.sleep(wait)
                    continue
                if overload.exhausted:
                    raise overload.error(address) from exc
                error = await self._channels.error_async(exc, address=address, call=what)
                tries_left = len(self._endpoints.addresses) - 1 - attempt
                if (
                    exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED
                    and self._endpoints.try_next(  # not a long poll that ran out
                        address, error, tries_left
                    )
                ):
                    continue
                raise error from exc
        raise AssertionError("unreachable")

    async def register(
        self,
        *,
        agent_id: str,
        bindings: Iterable[BindingInfo],
        concurrency: int,
        team_retry: RetryPolicy,
        team_timeouts: Timeouts,
        overrides: Mapping[str, str] | None = None,
    ) -> Registration:
        request = agent_pb.RegisterAgentRequest(
            agent_id=agent_id,
            bindings=[
                agent_pb.Binding(
                    contract=b.contract, major=b.major, engine=b.engine, config_fingerprint=b.fingerprint
                )
                for b in bindings
            ],
            concurrency=concurrency,
            team_retry=retry_to_pb(team_retry),
            team_timeouts=timeouts_to_pb(team_timeouts),
            hostname=socket.gethostname(),
            agent_version=AGENT_VERSION,
            request_id=new_request_id(),
            overrides=dict(overrides or {}),
        )
        answer = await self._call("agent.RegisterAgent", request, "RegisterAgent")
        return Registration(poll_wait=(answer.poll_wait_ms or 0) / 1000, warnings=tuple(answer.warnings))

    async def poll(self, *, agent_id: str, wait: float, contracts: Iterable[str]) -> AgentTask | None:
        request = agent_pb.PollTaskRequest(agent_id=agent_id, wait_ms=_ms(wait), contracts=list(contracts))
        answer = await self._call("agent.PollTask", request, "PollTask", seconds=wait + CALL_TIMEOUT)
        return _task_from_pb(answer.task) if answer.HasField("task") else None

    async def heartbeat(
        self, *, agent_id: str, attempt_id: str, details: Mapping[str, Any]
    ) -> HeartbeatAnswer:
        request = agent_pb.HeartbeatRequest(
            agent_id=agent_id, attempt_id=attempt_id, details_json=json.dumps(details, default=str)
        )
        answer = await self._call("agent.Heartbeat", request, "Heartbeat")
        return HeartbeatAnswer(cancel_requested=answer.cancel_requested, lease_lost=answer.lease_lost)

    async def complete(
        self, *, agent_id: str, attempt_id: str, output_json: str, request_id: str, details: Mapping[str, Any]
    ) -> bool:
        request = agent_pb.CompleteTaskRequest(
            agent_id=agent_id,
            attempt_id=attempt_id,
            output_json=output_json,
            request_id=request_id,
            details_json=json.dumps(details, default=str) if details else "",
        )
        answer = await self._call("agent.CompleteTask", request, "CompleteTask")
        return bool(answer.accepted)

    async def fail(self, *, agent_id: str, attempt_id: str, failure: TaskFailure, request_id: str) -> bool:
        request = agent_pb.FailTaskRequest(
            agent_id=agent_id,
            attempt_id=attempt_id,
            error=common_pb2.TaskError(
                type=failure.type,
                message=failure.message,
                retryable=failure.retryable,
                details_json=json.dumps(dict(failure.details), default=str) if failure.details else "",
            ),
            request_id=request_id,
        )
        answer = await self._call("agent.FailTask", request, "FailTask")
        return bool(answer.accepted)

    async def release(self, *, agent_id: str, attempt_id: str, reason: str, request_id: str) -> bool:
        request = agent_pb.ReleaseTaskRequest(
            agent_id=agent_id, attempt_id=attempt_id, reason=reason, request_id=request_id
        )
        answer = await self._call("agent.ReleaseTask", request, "ReleaseTask")
        return bool(answer.accepted)

    async def get_contract(self, ref: str) -> Contract:
        """One contract version (``team/name@1.2.0``); the team token may read its own."""
        answer = await self._call(
            "coordinator.GetContract", coordinator_pb.GetContractRequest(ref=ref), f"GetContract {ref}"
        )
        return _contract_from_pb(answer.contract)

    async def close(self) -> None:
        for channel, _, _ in self._endpoints.connections():
            await channel.close()
