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
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2_grpc as agent_grpc
from contracts._wire.accord.agent.v2 import agent_stream_service_pb2 as stream_pb
from contracts._wire.accord.agent.v2 import agent_stream_service_pb2_grpc as stream_grpc
from contracts._wire.accord.common.v1 import common_pb2
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as coordinator_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2_grpc as coordinator_grpc
from contracts.channels import OVERLOAD_PATIENCE_S, Channels, OverloadRetry
from contracts.endpoints import Endpoints, parse_addresses, with_request_id
from contracts.errors import RemoteError, UnreachableError
from contracts.grpc_errors import error_class_of
from contracts.model import Contract, RetryPolicy, Timeouts
from team_agent.redact import Redactor
from team_agent.tracing import TraceContextClientInterceptor

logger = logging.getLogger(__name__)

T = TypeVar("T")

AGENT_VERSION = "0.1.0"
CALL_TIMEOUT = 10.0
# Answers to results that arrive with tasks are acted on this much later (logged as delivered,
# their outbox entries dropped): the tasks start first (docs/agent.md, "The wire").
ACKS_AFTER_TASKS_S = 0.005


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
    """A fresh request id: 128 random bits in hex (the form of a uuid4's hex). Drawn from the
    ``random`` module's generator (seeded from the OS, and again in a forked child), as
    OpenTelemetry draws trace ids: uuid4 makes a system call for each (one per result)."""
    return f"{random.getrandbits(128):032x}"


def registration_request(
    *,
    agent_id: str,
    bindings: Iterable[BindingInfo],
    concurrency: int,
    team_retry: RetryPolicy,
    team_timeouts: Timeouts,
    overrides: Mapping[str, str] | None = None,
) -> agent_pb.RegisterAgentRequest:
    """What RegisterAgent, and a v2 stream's Hello, carry."""
    return agent_pb.RegisterAgentRequest(
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


def stream_hello(registration: agent_pb.RegisterAgentRequest, contracts: Iterable[str]) -> stream_pb.Hello:
    """A v2 stream's Hello: the registration, and the contract majors to be offered."""
    return stream_pb.Hello(registration=registration, contracts=list(contracts))


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
        self._redactor = redactor
        self.overload_patience = overload_patience
        self._channels = channels or Channels()
        interceptors = [
            RedactingClientInterceptor(redactor),
            TraceContextClientInterceptor(),
            *extra_interceptors,
        ]

        def connect(where: str) -> tuple[Any, Any, Any, Any]:
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
                stream_grpc.AgentStreamServiceStub(channel),
            )

        self._endpoints: Endpoints[tuple[Any, Any, Any, Any]] = Endpoints(
            parse_addresses(address, "coordinator"), connect
        )

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self._token()}"),)

    async def _call(self, method: str, request: Message, what: str, seconds: float = CALL_TIMEOUT) -> Any:
        """``method``: "agent.PollTask" or "coordinator.GetContract"."""
        service, name = method.split(".")
        request = with_request_id(request)  # once: every attempt below carries the same id
        overload = OverloadRetry(self.overload_patience)
        attempt = -1
        while attempt < len(self._endpoints.addresses) - 1:
            attempt += 1
            address = self._endpoints.address
            _, agent, coordinator, _ = self._endpoints.current
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
        request = registration_request(
            agent_id=agent_id,
            bindings=bindings,
            concurrency=concurrency,
            team_retry=team_retry,
            team_timeouts=team_timeouts,
            overrides=overrides,
        )
        answer = await self._call("agent.RegisterAgent", request, "RegisterAgent")
        return Registration(poll_wait=(answer.poll_wait_ms or 0) / 1000, warnings=tuple(answer.warnings))

    async def open_stream(
        self,
        registration: agent_pb.RegisterAgentRequest,
        *,
        contracts: Iterable[str],
        credit: int,
        on_task: Callable[[AgentTask], None],
    ) -> tuple[AgentStream, Registration]:
        """Open an accord.agent.v2 stream: register (the Hello), grant ``credit`` free slots, and
        hand every task offered to ``on_task``. Moves on to the next coordinator of the list when
        one is unreachable; raises ``StreamUnsupported`` when the coordinator serves only v1."""
        hello = stream_hello(registration, contracts)
        first = stream_pb.AgentMessage(hello=hello, credit=credit)
        if self._redactor and _may_hold_secret(first, self._redactor):
            _redact_message(first, self._redactor)
        overload = OverloadRetry(self.overload_patience)
        attempt = -1
        while attempt < len(self._endpoints.addresses) - 1:
            attempt += 1
            address = self._endpoints.address
            stub = self._endpoints.current[3]
            call = stub.Connect(metadata=self._metadata())
            try:
                await call.write(first)
                answer = await asyncio.wait_for(call.read(), CALL_TIMEOUT)
            except grpc.RpcError as exc:
                call.cancel()
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    raise StreamUnsupported(
                        f"the coordinator at {address} does not serve accord.agent.v2"
                    ) from exc
                wait = overload.wait(exc)
                if wait is not None:  # overloaded: open it again after the hint
                    attempt -= 1
                    await asyncio.sleep(wait)
                    continue
                if overload.exhausted:
                    raise overload.error(address) from exc
                error = await self._channels.error_async(exc, address=address, call="agent stream")
                if self._endpoints.try_next(address, error, len(self._endpoints.addresses) - 1 - attempt):
                    continue
                raise error from exc
            except TimeoutError:
                call.cancel()
                error = UnreachableError(f"the coordinator at {address} did not answer the stream's Hello")
                if self._endpoints.try_next(address, error, len(self._endpoints.addresses) - 1 - attempt):
                    continue
                raise error from None
            if answer is grpc.aio.EOF or not answer.HasField("welcome"):
                call.cancel()
                raise UnreachableError(f"the coordinator at {address} ended the stream before its Welcome")
            stream = AgentStream(
                call, address, self._redactor, self._channels, on_task, answer.welcome.max_items
            )
            stream.deliver(answer)
            welcome = answer.welcome.registration
            return stream, Registration((welcome.poll_wait_ms or 0) / 1000, tuple(welcome.warnings))
        raise AssertionError("unreachable")

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

    def unreachable(self, address: str, why: object) -> None:
        """``address`` stopped answering (its stream ended): the next stream tries the next
        coordinator of the list."""
        self._endpoints.failed(address, why)

    async def close(self) -> None:
        for channel, *_ in self._endpoints.connections():
            await channel.close()


# ---- accord.agent.v2: one stream per agent ------------------------------------------------------


class StreamUnsupported(RemoteError):
    """The coordinator does not serve accord.agent.v2 (an older coordinator): use the v1 calls."""


@dataclass(frozen=True)
class StreamResult:
    """A complete, fail or release to send on the stream (an outbox entry's fields)."""

    kind: str  # "complete" | "fail" | "release"
    agent_id: str
    attempt_id: str
    request_id: str
    output_json: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    failure: TaskFailure | None = None
    reason: str = ""


def _result_to_pb(result: StreamResult) -> stream_pb.Result:
    message = stream_pb.Result(
        request_id=result.request_id, attempt_id=result.attempt_id, agent_id=result.agent_id
    )
    if result.kind == "complete":
        message.complete.output_json = result.output_json
        message.complete.details_json = (
            json.dumps(dict(result.details), default=str) if result.details else ""
        )
    elif result.kind == "fail":
        failure = result.failure
        assert failure is not None
        error = message.fail.error
        error.type = failure.type
        error.message = failure.message
        error.retryable = failure.retryable
        error.details_json = json.dumps(dict(failure.details), default=str) if failure.details else ""
    else:
        message.release.reason = result.reason
    return message


def _refused(code: int, message: str, what: str) -> RemoteError:
    try:
        status = next(s for s in grpc.StatusCode if s.value[0] == code)
    except StopIteration:
        status = grpc.StatusCode.UNKNOWN
    return error_class_of(status)(f"{what}: {message or status.name}")


class AgentStream:
    """One open accord.agent.v2 stream (``GatewayClient.open_stream``). Results and heartbeats
    queued while a message is being written go out together in the next one; tasks offered are
    handed to ``on_task``. Once the stream ends (``wait_closed`` says why), every result and
    heartbeat still waiting for its answer raises ``UnreachableError``: send it again on the next
    stream (a result is applied once, by its request id)."""

    def __init__(
        self,
        call: Any,
        address: str,
        redactor: Redactor,
        channels: Channels,
        on_task: Callable[[AgentTask], None],
        max_items: int,
    ) -> None:
        self._call = call
        self.address = address
        self._redactor = redactor
        self._channels = channels
        self._on_task = on_task
        self._max_items = max(1, max_items)
        self._credit = 0
        self._draining = False
        self._drain_sent = False
        self._hello: stream_pb.Hello | None = None
        self._results: list[stream_pb.Result] = []
        self._beats: dict[str, stream_pb.HeartbeatItem] = {}
        self._acks: dict[str, asyncio.Future[bool]] = {}
        self._answers: dict[str, asyncio.Future[HeartbeatAnswer]] = {}
        self._wake = asyncio.Event()
        self._closed = asyncio.get_running_loop().create_future()
        self.registered: Callable[[Registration], None] | None = None
        self._reader = asyncio.create_task(self._read(), name="agent-stream-read")
        self._writer = asyncio.create_task(self._write(), name="agent-stream-write")

    @property
    def open(self) -> bool:
        return not self._closed.done()

    def grant(self, slots: int) -> None:
        """Tell the coordinator of ``slots`` more free slots."""
        if slots > 0:
            self._credit += slots
            self._wake.set()

    def drain(self) -> None:
        """The agent stops: ask for no more offers."""
        self._draining = True
        self._wake.set()

    def hello(self, hello: stream_pb.Hello) -> None:
        """Register again (config reload); ``registered`` is called with the answer."""
        self._hello = hello
        self._wake.set()

    async def report(self, result: StreamResult) -> bool:
        """Send a result; True when the coordinator accepted it, False when the attempt was no
        longer current; raises as the unary call would when it was refused."""
        if not self.open:
            raise UnreachableError(f"the stream to the coordinator at {self.address} is closed")
        future = self._acks.get(result.request_id)
        if future is None:
            future = self._acks[result.request_id] = asyncio.get_running_loop().create_future()
            self._results.append(_result_to_pb(result))
            self._wake.set()
        return await self._answer(future, f"the answer to result {result.request_id}")

    async def heartbeat(self, attempt_id: str, details: Mapping[str, Any]) -> HeartbeatAnswer:
        if not self.open:
            raise UnreachableError(f"the stream to the coordinator at {self.address} is closed")
        future = self._answers.get(attempt_id)
        if future is None:
            future = self._answers[attempt_id] = asyncio.get_running_loop().create_future()
        self._beats[attempt_id] = stream_pb.HeartbeatItem(
            attempt_id=attempt_id, details_json=json.dumps(dict(details), default=str)
        )
        self._wake.set()
        return await self._answer(future, f"the answer to the heartbeat of {attempt_id}")

    async def _answer(self, future: asyncio.Future[T], what: str) -> T:
        """``future``'s result, raising ``UnreachableError`` after ``CALL_TIMEOUT`` (as a unary
        call would time out); sending the same item again waits for the same answer."""
        try:
            return await asyncio.wait_for(asyncio.shield(future), CALL_TIMEOUT)
        except TimeoutError:
            raise UnreachableError(f"{what} did not come from {self.address} in {CALL_TIMEOUT:g}s") from None

    async def wait_closed(self) -> RemoteError:
        """Until the stream ends: why it ended."""
        return await asyncio.shield(self._closed)

    async def close(self) -> None:
        """End the stream (results still unanswered raise ``UnreachableError``)."""
        self._end(UnreachableError(f"the stream to the coordinator at {self.address} was closed here"))
        self._call.cancel()
        for task in (self._reader, self._writer):
            task.cancel()
        await asyncio.gather(self._reader, self._writer, return_exceptions=True)

    def _end(self, error: RemoteError) -> None:
        if self._closed.done():
            return
        self._closed.set_result(error)
        self._wake.set()
        gone = UnreachableError(f"the stream to the coordinator at {self.address} ended: {error}")
        futures: list[asyncio.Future[Any]] = [*self._acks.values(), *self._answers.values()]
        for future in futures:
            if not future.done():
                future.set_exception(gone)
                future.exception()  # retrieved: nobody may be waiting any more
        self._acks.clear()
        self._answers.clear()

    def _next_message(self) -> stream_pb.AgentMessage | None:
        drain = self._draining and not self._drain_sent
        if self._hello is None and not self._credit and not self._results and not self._beats and not drain:
            return None
        if self._draining:
            self._drain_sent, self._credit = True, 0
        results, self._results = self._results[: self._max_items], self._results[self._max_items :]
        beats = list(self._beats.values())[: self._max_items]
        for beat in beats:
            del self._beats[beat.attempt_id]
        message = stream_pb.AgentMessage(
            hello=self._hello, credit=self._credit, results=results, heartbeats=beats, draining=drain
        )
        self._hello, self._credit = None, 0
        if self._results or self._beats:
            self._wake.set()  # more than one message holds: the next one at once
        return message

    async def _write(self) -> None:
        try:
            while self.open:
                await self._wake.wait()
                # One turn of the loop: what other tasks make ready now goes in the same message.
                await asyncio.sleep(0)
                self._wake.clear()
                message = self._next_message()
                if message is None or not self.open:
                    continue
                if self._redactor and _may_hold_secret(message, self._redactor):
                    _redact_message(message, self._redactor)
                await self._call.write(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the reader sees why the stream ended
            logger.debug("writing to the stream failed: %s", exc)

    async def _read(self) -> None:
        try:
            while True:
                message = await self._call.read()
                if message is grpc.aio.EOF:
                    self._end(UnreachableError(f"the coordinator at {self.address} ended the stream"))
                    return
                self._receive(message)
        except asyncio.CancelledError:
            raise
        except grpc.RpcError as exc:
            self._end(await self._channels.error_async(exc, address=self.address, call="agent stream"))
        except Exception as exc:
            logger.exception("reading the stream failed")
            self._end(UnreachableError(f"reading the stream failed: {exc}"))

    def deliver(self, message: stream_pb.CoordinatorMessage) -> None:
        """Act on a message from the coordinator (the reader's; the first one, the Welcome, is
        read by ``open_stream``)."""
        self._receive(message)

    def _receive(self, message: stream_pb.CoordinatorMessage) -> None:
        try:
            self._act_on(message)
        finally:
            if message.closing:
                self._end(
                    UnreachableError(
                        f"the coordinator at {self.address} closed the stream: {message.closing}"
                    )
                )

    def _answered(self, acks: Iterable[stream_pb.Ack]) -> None:
        for ack in acks:
            future = self._acks.pop(ack.request_id, None)
            if future is None or future.done():
                continue
            if ack.code:
                future.set_exception(_refused(ack.code, ack.message, "result refused"))
            else:
                future.set_result(ack.accepted)

    def _act_on(self, message: stream_pb.CoordinatorMessage) -> None:
        if message.HasField("welcome") and self.registered is not None:
            answer = message.welcome.registration
            self.registered(Registration((answer.poll_wait_ms or 0) / 1000, tuple(answer.warnings)))
        for task in message.tasks:
            self._on_task(_task_from_pb(task))
        if message.acks and message.tasks:
            # Nothing waits for these answers but the outbox: the tasks go first.
            asyncio.get_running_loop().call_later(ACKS_AFTER_TASKS_S, self._answered, list(message.acks))
        else:
            self._answered(message.acks)
        for beat in message.heartbeats:
            answer_future = self._answers.pop(beat.attempt_id, None)
            if answer_future is None or answer_future.done():
                continue
            if beat.code:
                answer_future.set_exception(_refused(beat.code, beat.message, "heartbeat refused"))
            else:
                answer_future.set_result(HeartbeatAnswer(beat.cancel_requested, beat.lease_lost))
