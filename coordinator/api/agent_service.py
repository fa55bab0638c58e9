"""AgentGatewayService: what team agents dial out to. Thin: decode, call the engine, encode.

PollTask is a long poll (up to ``_MAX_WAIT_S``): a token refused while it waits (revoked, rotated
away, expired) ends it with UNAUTHENTICATED within about a second (``api.auth.OpenCallGuard``),
and a task claimed for it is given back, offered again at once, never handed to that agent.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable

import grpc

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2_grpc as agent_grpc
from contracts.errors import InvalidArgumentError, UnauthenticatedError
from coordinator.api import convert, validate
from coordinator.api.auth import OpenCallGuard, bearer_token, current_principal
from coordinator.api.errors import rpc
from coordinator.config import DEFAULT_MAX_PAYLOAD, EngineSettings
from coordinator.dispatch import QueueKey
from coordinator.engine import Engine
from coordinator.principal import Principal
from coordinator.store.records import AgentRecord, Binding
from coordinator.tokens import TokenAuthority

_MAX_WAIT_S = 60.0


def _queue_key(text: str, field: str) -> QueueKey:
    name, _, major = validate.text(text, field).partition("@")
    digits = major.lstrip("^").split(".", 1)[0]
    if not digits.isascii() or not digits.isdigit() or len(digits) > 10 or int(digits) > validate.MAX_INT32:
        raise InvalidArgumentError(f"{field} '{text}' is not 'team/name@MAJOR' (MAJOR below 2^31)")
    return name, int(digits)


async def register(
    engine: Engine, settings: EngineSettings, principal: Principal, request: agent_pb.RegisterAgentRequest
) -> agent_pb.RegisterAgentResponse:
    """RegisterAgent, checked: also what a v2 stream's Hello does (coordinator/api/agent_stream.py)."""
    if not request.agent_id:
        raise InvalidArgumentError("agent_id is required")
    validate.text(request.agent_id, "agent_id", 256)
    validate.text(request.hostname, "hostname", 256)
    validate.text(request.agent_version, "agent_version", 256)
    for index, b in enumerate(request.bindings):
        validate.text(b.contract, f"bindings[{index}].contract", 256)
        validate.text(b.engine, f"bindings[{index}].engine", 256)
        validate.text(b.config_fingerprint, f"bindings[{index}].config_fingerprint", 128)
        validate.integer(b.major, f"bindings[{index}].major")
    if request.concurrency:
        validate.integer(request.concurrency, "concurrency", 1, validate.MAX_CONCURRENCY)
    team = principal.team or (request.bindings[0].contract.split("/", 1)[0] if request.bindings else "")
    agent = AgentRecord(
        agent_id=request.agent_id,
        team=team,
        bindings=tuple(
            Binding(b.contract, b.major, b.engine, b.config_fingerprint) for b in request.bindings
        ),
        concurrency=request.concurrency or 1,
        hostname=request.hostname or socket.gethostname(),
        agent_version=request.agent_version,
        registered_ms=int(time.time() * 1000),
    )
    warnings = await engine.register_agent(
        principal,
        agent,
        validate.retry_policy(convert.retry_from_pb(request.team_retry), "team_retry"),
        validate.timeouts(convert.timeouts_from_pb(request.team_timeouts), "team_timeouts"),
        validate.overrides(request.overrides),
    )
    return agent_pb.RegisterAgentResponse(poll_wait_ms=settings.poll_wait_ms, warnings=warnings)


def queue_keys(contracts: Iterable[str]) -> list[QueueKey]:
    """PollTask's ``contracts`` (and a v2 Hello's), checked."""
    return [_queue_key(c, f"contracts[{i}]") for i, c in enumerate(contracts)]


class AgentGatewayService(agent_grpc.AgentGatewayServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        engine: Engine,
        settings: EngineSettings,
        authority: TokenAuthority,
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self._max_payload = max_payload
        self._engine = engine
        self._settings = settings
        self._authority = authority

    @rpc
    async def RegisterAgent(
        self, request: agent_pb.RegisterAgentRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb.RegisterAgentResponse:
        return await register(self._engine, self._settings, current_principal(), request)

    @rpc
    async def PollTask(
        self, request: agent_pb.PollTaskRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb.PollTaskResponse:
        only = queue_keys(request.contracts)
        wait_s = min(max(request.wait_ms, 0) / 1000, _MAX_WAIT_S)
        token = bearer_token(context.invocation_metadata())
        async with OpenCallGuard(self._authority, token, "PollTask") as guard:
            # Cancelled once the token is refused; a task it was claiming then is given back.
            assignment = await guard.wait(
                self._engine.poll(current_principal(), request.agent_id, only, wait_s)
            )
        if assignment is None:
            return agent_pb.PollTaskResponse()
        try:
            guard.check()  # refused as the task was claimed, before the guard noticed
        except UnauthenticatedError:
            self._engine.hand_back(assignment.attempt.attempt_id, request.agent_id)
            raise
        return agent_pb.PollTaskResponse(task=convert.task_to_pb(assignment))

    @rpc
    async def Heartbeat(
        self, request: agent_pb.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb.HeartbeatResponse:
        answer = await self._engine.heartbeat(current_principal(), request.agent_id, request.attempt_id)
        return agent_pb.HeartbeatResponse(
            cancel_requested=answer.cancel_requested,
            lease_lost=answer.lease_lost,
            lease_expires_unix_ms=answer.lease_expires_ms,
        )

    @rpc
    async def CompleteTask(
        self, request: agent_pb.CompleteTaskRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb.CompleteTaskResponse:
        output = validate.json_text(request.output_json, "output_json", self._max_payload)
        accepted = await self._engine.complete(
            current_principal(),
            request.agent_id,
            request.attempt_id,
            output,
            request.request_id,
            output_size=len(request.output_json),
        )
        return agent_pb.CompleteTaskResponse(accepted=accepted)

    @rpc
    async def FailTask(
        self, request: agent_pb.FailTaskRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb.FailTaskResponse:
        validate.text(request.error.type, "error.type", 256)
        validate.size(request.error.message, "error.message", self._max_payload)
        validate.size(request.error.details_json, "error.details_json", self._max_payload)
        accepted = await self._engine.fail(
            current_principal(),
            request.agent_id,
            request.attempt_id,
            convert.error_from_pb(request.error),
            request.request_id,
        )
        return agent_pb.FailTaskResponse(accepted=accepted)

    @rpc
    async def ReleaseTask(
        self, request: agent_pb.ReleaseTaskRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb.ReleaseTaskResponse:
        accepted = await self._engine.release(
            current_principal(), request.agent_id, request.attempt_id, request.reason
        )
        return agent_pb.ReleaseTaskResponse(accepted=accepted)
