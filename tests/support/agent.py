"""A small test agent speaking the real AgentGatewayService gRPC API, running handlers in-process.

    agent = TestAgent(coordinator.address, token, "payments",
                      {"payments/charge-card@1": charge})
    await agent.start()
    ...
    await agent.stop()

A handler is ``async def handler(call: Call) -> dict`` (the output). It fails the attempt by
raising ``TaskFailed(type, message, retryable=True)``. While a handler runs, the agent
heartbeats every ``heartbeat_s`` (unless ``call.stop_heartbeats()``); a ``cancel_requested``
answer cancels the handler and is recorded in ``agent.cancelled``. Completions are retried until
the coordinator answers (a restart in the middle is fine), with a stable request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.common.v1 import common_pb2 as common_pb
from contracts.errors import UnreachableError
from coordinator.client import AsyncClient

logger = logging.getLogger(__name__)


class TaskFailed(Exception):
    def __init__(self, type: str, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.type = type
        self.message = message
        self.retryable = retryable


@dataclass
class Call:
    task: agent_pb.Task
    input: Any
    agent: TestAgent
    heartbeats: bool = True

    @property
    def attempt(self) -> int:
        return self.task.attempt

    @property
    def key(self) -> str:
        return self.task.idempotency_key

    def stop_heartbeats(self) -> None:
        """Simulate a hung agent: no more heartbeats for this attempt."""
        self.heartbeats = False


Handler = Callable[[Call], Awaitable[Any]]


@dataclass
class Record:
    attempt_id: str
    step_id: str
    key: str
    attempt: int
    started: float
    ended: float = 0.0
    outcome: str = ""  # completed | failed | cancelled | lost
    accepted: bool | None = None


@dataclass
class TestAgent:
    address: str
    token: str
    team: str
    handlers: dict[str, Handler]
    agent_id: str = ""
    concurrency: int = 4
    heartbeat_s: float = 0.2
    poll_wait_ms: int = 2000
    team_retry: common_pb.RetryPolicy | None = None
    # reported as every binding's configuration fingerprint (a change of it is a binding change)
    fingerprint: str = ""
    records: list[Record] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    __test__ = False  # not a pytest class

    def __post_init__(self) -> None:
        self.agent_id = self.agent_id or f"{self.team}-test-{uuid.uuid4().hex[:6]}"
        self._client = AsyncClient(
            self.address,
            self.token,
            options=[("grpc.initial_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 300)],
        )
        self._workers: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.report_retries = 0  # completions and failures sent again after the coordinator did not answer

    @property
    def client(self) -> AsyncClient:
        return self._client

    def _bindings(self) -> list[agent_pb.Binding]:
        bindings = []
        for key in self.handlers:
            name, _, major = key.partition("@")
            bindings.append(
                agent_pb.Binding(
                    contract=name, major=int(major or 1), engine="python", config_fingerprint=self.fingerprint
                )
            )
        return bindings

    async def register(self) -> agent_pb.RegisterAgentResponse:
        request = agent_pb.RegisterAgentRequest(
            agent_id=self.agent_id,
            bindings=self._bindings(),
            concurrency=self.concurrency,
            hostname="test",
            agent_version="test",
        )
        if self.team_retry is not None:
            request.team_retry.CopyFrom(self.team_retry)
        return await self._client.agent.RegisterAgent(request)

    async def start(self) -> None:
        await self.register()
        self._workers = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        self._stopping = True
        for task in [*self._workers, *self._running]:
            task.cancel()
        for task in [*self._workers, *self._running]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._client.close()

    async def _retrying(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Call until the coordinator answers (it may be restarting)."""
        while True:
            try:
                return await fn()
            except UnreachableError:
                if self._stopping:
                    raise
                self.report_retries += 1
                await asyncio.sleep(0.05)

    async def _worker(self) -> None:
        keys = list(self.handlers)
        while not self._stopping:
            try:
                response = await self._client.agent.PollTask(
                    agent_pb.PollTaskRequest(agent_id=self.agent_id, wait_ms=self.poll_wait_ms),
                    timeout=self.poll_wait_ms / 1000 + 5,
                )
            except UnreachableError:
                await asyncio.sleep(0.05)
                continue
            except Exception as exc:
                if "not registered" in str(exc):
                    with contextlib.suppress(Exception):
                        await self.register()
                await asyncio.sleep(0.05)
                continue
            if not response.HasField("task"):
                continue
            task = response.task
            handler = self.handlers.get(f"{task.contract}@{task.contract_version.split('.')[0]}")
            if handler is None:
                handler = self.handlers[keys[0]]
            await self._run(task, handler)

    async def _run(self, task: agent_pb.Task, handler: Handler) -> None:
        call = Call(task, json.loads(task.input_json or "null"), self)
        record = Record(task.attempt_id, task.step_id, task.idempotency_key, task.attempt, time.monotonic())
        self.records.append(record)
        work = asyncio.create_task(handler(call))
        self._running.add(work)
        beat = asyncio.create_task(self._heartbeat(call, work, record))
        try:
            output = await work
        except asyncio.CancelledError:
            if self._stopping:
                raise
            record.ended = time.monotonic()
            if record.outcome == "":
                record.outcome = "cancelled"
            return
        except TaskFailed as exc:
            failure = exc
            record.ended = time.monotonic()
            record.outcome = "failed"
            request_id = uuid.uuid4().hex
            response = await self._retrying(
                lambda: self._client.agent.FailTask(
                    agent_pb.FailTaskRequest(
                        agent_id=self.agent_id,
                        attempt_id=task.attempt_id,
                        error=common_pb.TaskError(
                            type=failure.type, message=failure.message, retryable=failure.retryable
                        ),
                        request_id=request_id,
                    )
                )
            )
            record.accepted = response.accepted
            return
        finally:
            beat.cancel()
            self._running.discard(work)
        record.ended = time.monotonic()
        record.outcome = "completed"
        request_id = uuid.uuid4().hex
        response = await self._retrying(
            lambda: self._client.agent.CompleteTask(
                agent_pb.CompleteTaskRequest(
                    agent_id=self.agent_id,
                    attempt_id=task.attempt_id,
                    output_json=json.dumps(output),
                    request_id=request_id,
                )
            )
        )
        record.accepted = response.accepted

    async def _heartbeat(self, call: Call, work: asyncio.Task[Any], record: Record) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            if not call.heartbeats:
                continue
            try:
                answer = await self._client.agent.Heartbeat(
                    agent_pb.HeartbeatRequest(agent_id=self.agent_id, attempt_id=call.task.attempt_id)
                )
            except UnreachableError:
                continue
            if answer.cancel_requested:
                self.cancelled.append(call.task.attempt_id)
                record.outcome = "cancelled"
                work.cancel()
                return
            if answer.lease_lost:
                record.outcome = "lost"
                work.cancel()
                return
