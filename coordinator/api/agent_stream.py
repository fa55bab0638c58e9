"""AgentStreamService (accord.agent.v2): one bidirectional stream per agent.

The stream is a different transport over the very paths the unary v1 calls take
(``api.agent_service``): its Hello is RegisterAgent; each free slot the agent grants (credit) is
one long poll of ``Engine.poll``, as PollTask's, so offers are claimed from the store exactly as
PollTask claims them (an offer is claimed once, whichever coordinator sharing the store serves the
stream), and a task is never offered beyond the credit granted; results are CompleteTask, FailTask
and ReleaseTask (idempotent by request id), acknowledged in batches; heartbeats are Heartbeat. See
docs/architecture.md, "Dispatch", and docs/agent.md, "The wire".

What a team sends is bounded: at most ``MAX_ITEMS`` results and heartbeats per message, each field
checked as the unary calls check it, at most ``_QUEUED`` messages of results (and as many of
heartbeats) waiting to be applied before the stream stops reading (gRPC's flow control then holds
the agent back), and credit (open polls) at most the concurrency the agent registered.

The team token is checked when the stream opens (``api.auth``); the stream checks it again
while it is open, as every open call does (``api.auth.until_refused``: whenever the tokens known
change, here or through another coordinator sharing the store, and every second for expiry), and
closes with UNAUTHENTICATED once it is refused.

When the stream ends (the agent left, its connection broke, its token was revoked), its open
polls are cancelled (``Engine.poll`` gives back an offer it was claiming, as when a PollTask is
cancelled), tasks claimed but not yet sent are released at once, and tasks already sent stay
with the agent: their heartbeats (on the agent's next stream, or their lease running out) decide,
as for a v1 agent that vanished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.agent.v2 import agent_stream_service_pb2 as stream_pb
from contracts._wire.accord.agent.v2 import agent_stream_service_pb2_grpc as stream_grpc
from contracts.errors import AccordError, FailedPreconditionError, InvalidArgumentError
from contracts.grpc_errors import details_of, status_of
from coordinator.api import convert, validate
from coordinator.api.agent_service import queue_keys, register
from coordinator.api.auth import bearer_token, current_principal, until_refused
from coordinator.config import DEFAULT_MAX_PAYLOAD, EngineSettings
from coordinator.dispatch import QueueKey
from coordinator.engine import Engine
from coordinator.principal import Principal
from coordinator.tokens import TokenAuthority

logger = logging.getLogger(__name__)

# Results, and heartbeats, one message may carry (Welcome.max_items tells the agent).
MAX_ITEMS = 256
# Messages of results (and of heartbeats) read but not yet applied, per stream.
_QUEUED = 4
_POLL_WAIT_S = 20.0
# An ack waits up to this long for a message that goes to its agent anyway (a task, a heartbeat's
# answer) rather than going alone at once: the agent's slot was freed when it sent the result, so
# nothing waits for the ack but the agent's outbox, while the next step's task, going out to
# another agent in the same moment, is on the run's critical path (docs/agent.md, "The wire").
ACK_LINGER_S = 0.02


def _code(status: grpc.StatusCode) -> int:
    return int(status.value[0])


class AgentStreamService(stream_grpc.AgentStreamServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        engine: Engine,
        settings: EngineSettings,
        authority: TokenAuthority,
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._authority = authority
        self._max_payload = max_payload
        self._sessions: set[_Session] = set()
        self._stopping = ""

    @property
    def open_streams(self) -> int:
        return len(self._sessions)

    async def close_all(self, reason: str) -> None:
        """End every stream cleanly (the coordinator stops): no more offers, the results read
        answered, then a last message saying ``reason``. Streams opened from now on are refused
        UNAVAILABLE: their agents go to another coordinator."""
        self._stopping = reason
        await asyncio.gather(*(session.close(reason) for session in list(self._sessions)))

    async def Connect(
        self, requests: AsyncIterator[stream_pb.AgentMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[stream_pb.CoordinatorMessage]:
        if self._stopping:
            await context.abort(grpc.StatusCode.UNAVAILABLE, self._stopping)
        session = _Session(self, current_principal(), bearer_token(context.invocation_metadata()))
        self._sessions.add(session)
        try:
            async for message in session.serve(requests):
                yield message
        finally:
            self._sessions.discard(session)
        if session.error is not None:
            await context.abort(*session.error)


class _Session:
    """One agent's stream."""

    def __init__(self, service: AgentStreamService, principal: Principal, token: str) -> None:
        self._service = service
        self._engine = service._engine
        self._principal = principal
        self._token = token
        self.agent_id = ""
        self._only: list[QueueKey] = []
        self._credit = 0  # slots granted and not yet used by an offer
        self._concurrency = 1  # as registered: the most credit outstanding
        self._draining = False
        self._pollers: set[asyncio.Task[None]] = set()
        # What the next message to the agent carries.
        self._welcome: stream_pb.Welcome | None = None
        self._tasks: list[agent_pb.Task] = []
        self._acks: list[stream_pb.Ack] = []
        self._answers: list[stream_pb.HeartbeatAnswer] = []
        self._acks_due: asyncio.TimerHandle | None = None  # when acks go alone (ACK_LINGER_S)
        self._wake = asyncio.Event()
        self._finished = False
        self._closing = ""
        self.error: tuple[grpc.StatusCode, str] | None = None
        self._results: asyncio.Queue[list[stream_pb.Result]] = asyncio.Queue(_QUEUED)
        self._beats: asyncio.Queue[list[stream_pb.HeartbeatItem]] = asyncio.Queue(_QUEUED)

    # -- the stream ---------------------------------------------------------------------------

    async def serve(
        self, requests: AsyncIterator[stream_pb.AgentMessage]
    ) -> AsyncIterator[stream_pb.CoordinatorMessage]:
        helpers = [
            asyncio.create_task(self._read(requests), name="stream-read"),
            asyncio.create_task(self._guard(), name="stream-guard"),
            asyncio.create_task(self._apply_results(), name="stream-results"),
            asyncio.create_task(self._answer_heartbeats(), name="stream-heartbeats"),
        ]
        try:
            while True:
                await self._wake.wait()
                # One turn of the loop: what other tasks make ready now goes in the same message.
                await asyncio.sleep(0)
                self._wake.clear()
                message = self._take()
                if message is not None:
                    yield message
                if self.error is not None or self._finished:
                    return
        finally:
            if self._acks_due is not None:
                self._acks_due.cancel()
            for helper in [*helpers, *self._pollers]:
                helper.cancel()
            await asyncio.gather(*helpers, *self._pollers, return_exceptions=True)
            unsent, self._tasks = self._tasks, []
            for task in unsent:  # claimed for this agent, never sent: offered again at once
                self._spawn_release(task.attempt_id)

    def _take(self) -> stream_pb.CoordinatorMessage | None:
        closing = self._closing if self._finished else ""
        if self._welcome is None and not self._tasks and not self._acks and not self._answers and not closing:
            return None
        message = stream_pb.CoordinatorMessage(
            welcome=self._welcome,
            tasks=self._tasks,
            acks=self._acks,
            heartbeats=self._answers,
            closing=closing,
        )
        self._welcome = None
        self._tasks, self._acks, self._answers = [], [], []
        if self._acks_due is not None:
            self._acks_due.cancel()
            self._acks_due = None
        return message

    async def close(self, reason: str) -> None:
        self._draining = True
        self._credit = 0
        pollers = list(self._pollers)
        for poller in pollers:
            poller.cancel()
        await asyncio.gather(*pollers, return_exceptions=True)
        await self._results.join()
        await self._beats.join()
        self._closing = reason
        self._finished = True
        self._wake.set()

    def _close(self, status: grpc.StatusCode, details: str) -> None:
        if self.error is None:
            self.error = (status, details)
        self._wake.set()

    def _fail(self, exc: BaseException, where: str) -> None:
        if isinstance(exc, AccordError):
            self._close(status_of(exc), details_of(exc))
        else:
            logger.error("agent stream of %s: %s failed", self.agent_id or "?", where, exc_info=exc)
            self._close(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")

    async def _read(self, requests: AsyncIterator[stream_pb.AgentMessage]) -> None:
        try:
            async for message in requests:
                await self._receive(message)
            # The agent closed its side: answer what it sent, then end the stream.
            await self._results.join()
            await self._beats.join()
            self._finished = True
            self._wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc, "reading")

    async def _receive(self, message: stream_pb.AgentMessage) -> None:
        if len(message.results) > MAX_ITEMS or len(message.heartbeats) > MAX_ITEMS:
            raise InvalidArgumentError(
                f"a message carries {len(message.results)} results and {len(message.heartbeats)}"
                f" heartbeats; the limit is {MAX_ITEMS} of each (Welcome.max_items)"
            )
        validate.message(message)
        if message.HasField("hello"):
            await self._hello(message.hello)
        elif not self.agent_id:
            raise FailedPreconditionError("the first message on an agent stream must carry a Hello")
        if message.draining:
            self._draining = True
            self._credit = 0
            for poller in list(self._pollers):
                poller.cancel()
        elif message.credit:
            validate.integer(message.credit, "credit", 1, validate.MAX_CONCURRENCY)
            if self._credit + message.credit > self._concurrency:
                raise InvalidArgumentError(
                    f"credit granted but not used would be {self._credit + message.credit}; the"
                    f" limit is the concurrency registered, {self._concurrency}"
                )
            self._credit += message.credit
            self._fill()
        if message.results:
            await self._results.put(list(message.results))
        if message.heartbeats:
            await self._beats.put(list(message.heartbeats))

    async def _hello(self, hello: stream_pb.Hello) -> None:
        request = hello.registration
        if self.agent_id and request.agent_id != self.agent_id:
            raise InvalidArgumentError(
                f"this stream is agent {self.agent_id}'s; a Hello may not change it to {request.agent_id!r}"
            )
        only = queue_keys(hello.contracts)
        answer = await register(self._engine, self._service._settings, self._principal, request)
        self.agent_id, self._only = request.agent_id, only
        self._concurrency = request.concurrency or 1
        # Polls opened for the previous registration: opened again for this one.
        pollers, self._pollers = self._pollers, set()
        for poller in pollers:
            poller.cancel()
        await asyncio.gather(*pollers, return_exceptions=True)
        self._welcome = stream_pb.Welcome(registration=answer, max_items=MAX_ITEMS)
        self._wake.set()
        self._fill()

    async def _guard(self) -> None:
        refusal = await until_refused(self._service._authority, self._token)
        logger.info("agent stream of %s closed: its token is refused now", self.agent_id or "?")
        self._close(grpc.StatusCode.UNAUTHENTICATED, refusal)

    # -- offers -------------------------------------------------------------------------------

    def _fill(self) -> None:
        """One open poll per slot granted and not yet used."""
        while (
            self.agent_id and len(self._pollers) < self._credit and self.error is None and not self._draining
        ):
            poller = asyncio.create_task(self._poll(), name="stream-poll")
            self._pollers.add(poller)
            poller.add_done_callback(self._pollers.discard)

    async def _poll(self) -> None:
        wait_s = min(self._service._settings.poll_wait_ms / 1000 or _POLL_WAIT_S, _POLL_WAIT_S)
        try:
            while True:
                assignment = await self._engine.poll(self._principal, self.agent_id, self._only, wait_s)
                if assignment is not None:
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc, "polling")
            return
        if self._draining:  # claimed as the agent said it stops: offered again at once
            self._spawn_release(assignment.attempt.attempt_id)
            return
        self._credit -= 1
        self._tasks.append(convert.task_to_pb(assignment))
        self._wake.set()

    def _spawn_release(self, attempt_id: str) -> None:
        # Claimed for this agent and never sent: given back at once (the coordinator's stop
        # waits for it), not left to its lease.
        self._engine.hand_back(attempt_id, self.agent_id)

    # -- results and heartbeats ---------------------------------------------------------------

    async def _apply_results(self) -> None:
        while True:
            batch = await self._results.get()
            try:
                if len(batch) == 1:  # as the one-at-a-time hop has it: no task of its own
                    acks = [await self._apply(batch[0])]
                else:
                    acks = await asyncio.gather(*(self._apply(item) for item in batch))
                self._acks.extend(acks)
                if self._acks_due is None:
                    self._acks_due = asyncio.get_running_loop().call_later(ACK_LINGER_S, self._wake.set)
            finally:
                self._results.task_done()

    async def _apply(self, result: stream_pb.Result) -> stream_pb.Ack:
        engine, principal = self._engine, self._principal
        agent_id = result.agent_id or self.agent_id
        max_payload = self._service._max_payload
        try:
            kind = result.WhichOneof("kind")
            if kind == "complete":
                output = validate.json_text(result.complete.output_json, "output_json", max_payload)
                validate.size(result.complete.details_json, "details_json", max_payload)
                accepted = await engine.complete(
                    principal,
                    agent_id,
                    result.attempt_id,
                    output,
                    result.request_id,
                    output_size=len(result.complete.output_json),
                )
            elif kind == "fail":
                error = result.fail.error
                validate.text(error.type, "error.type", 256)
                validate.size(error.message, "error.message", max_payload)
                validate.size(error.details_json, "error.details_json", max_payload)
                accepted = await engine.fail(
                    principal, agent_id, result.attempt_id, convert.error_from_pb(error), result.request_id
                )
            elif kind == "release":
                accepted = await engine.release(principal, agent_id, result.attempt_id, result.release.reason)
            else:
                raise InvalidArgumentError(
                    f"result {result.request_id} is neither complete, fail nor release"
                )
        except AccordError as exc:
            return stream_pb.Ack(
                request_id=result.request_id,
                accepted=False,
                code=_code(status_of(exc)),
                message=details_of(exc),
            )
        except Exception as exc:
            logger.exception("applying result %s of attempt %s failed", result.request_id, result.attempt_id)
            return stream_pb.Ack(
                request_id=result.request_id,
                accepted=False,
                code=_code(grpc.StatusCode.INTERNAL),
                message=f"internal error: {type(exc).__name__}: {exc}",
            )
        return stream_pb.Ack(request_id=result.request_id, accepted=accepted)

    async def _answer_heartbeats(self) -> None:
        while True:
            batch = await self._beats.get()
            try:
                if len(batch) == 1:
                    answers = [await self._heartbeat(batch[0])]
                else:
                    answers = await asyncio.gather(*(self._heartbeat(item) for item in batch))
                self._answers.extend(answers)
                self._wake.set()
            finally:
                self._beats.task_done()

    async def _heartbeat(self, item: stream_pb.HeartbeatItem) -> stream_pb.HeartbeatAnswer:
        try:
            validate.size(item.details_json, "details_json", self._service._max_payload)
            answer = await self._engine.heartbeat(self._principal, self.agent_id, item.attempt_id)
        except AccordError as exc:
            return stream_pb.HeartbeatAnswer(
                attempt_id=item.attempt_id, code=_code(status_of(exc)), message=details_of(exc)
            )
        except Exception as exc:
            logger.exception("heartbeat of attempt %s failed", item.attempt_id)
            return stream_pb.HeartbeatAnswer(
                attempt_id=item.attempt_id,
                code=_code(grpc.StatusCode.INTERNAL),
                message=f"internal error: {type(exc).__name__}: {exc}",
            )
        return stream_pb.HeartbeatAnswer(
            attempt_id=item.attempt_id,
            cancel_requested=answer.cancel_requested,
            lease_lost=answer.lease_lost,
            lease_expires_unix_ms=answer.lease_expires_ms,
        )
