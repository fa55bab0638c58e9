"""The first thing every call meets: admission control, and requests that do not decode.

Admission control: a coordinator serves at most ``--max-inflight`` unary calls at once (and
``LONG_FACTOR`` times as many long calls: agents' long polls and streams, run watches, and a
StartRun once it waits for its run's end, all of which wait most of their life). A call
beyond that is answered at once with RESOURCE_EXHAUSTED and the trailing metadata
``retry-after-ms`` (how long to wait before trying again), before gRPC's own queue overflows and
cancels calls without a word. Clients back off and retry such an answer for up to a minute
(``contracts.channels``), then say the coordinator is overloaded (exit 3).

A request that is not a valid message (a string field with invalid UTF-8) is answered
INVALID_ARGUMENT instead of gRPC's UNKNOWN with a traceback in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import grpc
from google.protobuf.message import DecodeError

logger = logging.getLogger(__name__)

RETRY_AFTER_KEY = "retry-after-ms"
# How many times --max-inflight the calls that wait by design may be (LONG_CALLS).
LONG_FACTOR = 16
# Calls that wait by design: counted against a budget of their own.
LONG_CALLS = frozenset(
    {
        "/accord.agent.v1.AgentGatewayService/PollTask",
        # An agent's v2 stream: open for the agent's whole life.
        "/accord.agent.v2.AgentStreamService/Connect",
        "/accord.coordinator.v1.CoordinatorService/WatchRun",
    }
)
_OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class _Admitted:
    """The budget a unary call in flight counts against (it may move: ``wait_by_design``)."""

    __slots__ = ("budget", "edge")

    def __init__(self, edge: EdgeInterceptor, budget: str) -> None:
        self.edge = edge
        self.budget = budget


_admitted: ContextVar[_Admitted | None] = ContextVar("accord_admitted_call", default=None)


def wait_by_design() -> bool:
    """Count the unary call being served as one of the long calls from now on: it has done its
    work and starts to wait by design (StartRun's ``wait_ms``), and must not hold a place of the
    calls that work. False when the long calls' budget is full: then answer without waiting.
    True outside the edge (a service called directly)."""
    admitted = _admitted.get()
    if admitted is None or admitted.budget == "long":
        return True
    edge = admitted.edge
    if edge.inflight["long"] >= edge.limits["long"]:
        return False
    edge.inflight["unary"] -= 1
    edge.inflight["long"] += 1
    admitted.budget = "long"
    return True


class _Undecodable:
    def __init__(self, why: str) -> None:
        self.why = why


class EdgeInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        # Long polls and watches wait most of their life (a task and a stream each, no CPU): a
        # platform's agents hold hundreds at once, so their budget is LONG_FACTOR times larger.
        self.limits = {"unary": max_inflight, "long": max_inflight * LONG_FACTOR}
        self.inflight = {"unary": 0, "long": 0}
        self.refused = 0
        self._last_warning = 0.0
        # Called with the reason of every call answered with an error (metrics): "overloaded" for
        # one refused here, otherwise its status code in lower case ("unauthenticated",
        # "invalid_argument", ...); a call its client cancelled is not counted.
        self.on_refused: Callable[[str], None] | None = None

    def _answered(self, context: grpc.aio.ServicerContext) -> None:
        if self.on_refused is None:
            return
        try:
            code = context.code()
        except Exception:  # grpc without it: nothing to count
            return
        if code is None or code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
            return
        self.on_refused(code.name.lower() if isinstance(code, grpc.StatusCode) else str(code))

    def retry_after_ms(self) -> int:
        """A hint that grows with the overload, spread so refused callers do not come back at once."""
        busy = self.inflight["unary"] / max(self.max_inflight, 1)
        return int(min(100 + 400 * busy, 2000))

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_OPEN) or handler.stream_unary is not None:
            return handler
        budget = "long" if method in LONG_CALLS else "unary"
        deserialize = handler.request_deserializer

        def request_deserializer(data: bytes) -> Any:
            try:
                return deserialize(data) if deserialize is not None else data
            except DecodeError as exc:
                return _Undecodable(str(exc))

        async def admit(request: Any, context: grpc.aio.ServicerContext) -> None:
            if isinstance(request, _Undecodable):
                if self.on_refused is not None:
                    self.on_refused("invalid_message")
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid message: {request.why}"
                )
            if self.inflight[budget] >= self.limits[budget]:
                self.refused += 1
                now = time.monotonic()
                if now - self._last_warning > 10:
                    self._last_warning = now
                    logger.warning(
                        "overloaded: %d calls in flight (--max-inflight %d); refusing new ones with "
                        "RESOURCE_EXHAUSTED and a retry hint (%d refused so far)",
                        self.inflight[budget],
                        self.limits[budget],
                        self.refused,
                    )
                if self.on_refused is not None:
                    self.on_refused("overloaded")
                context.set_trailing_metadata(((RETRY_AFTER_KEY, str(self.retry_after_ms())),))
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the coordinator is overloaded ({self.inflight[budget]} calls in flight); "
                    "retry after the retry-after-ms hint",
                )

        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await admit(request, context)
                admitted = _Admitted(self, budget)
                self.inflight[budget] += 1
                _admitted.set(admitted)  # this call's own context: gRPC serves each in a task
                try:
                    return await inner_uu(request, context)
                finally:
                    self.inflight[admitted.budget] -= 1
                    self._answered(context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                await admit(request, context)
                self.inflight[budget] += 1
                try:
                    async for item in inner_us(request, context):
                        yield item
                finally:
                    self.inflight[budget] -= 1
                    self._answered(context)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            inner_ss = handler.stream_stream

            async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                await admit(None, context)

                async def decoded() -> Any:
                    async for request in requests:
                        if isinstance(request, _Undecodable):
                            await admit(request, context)  # refuses it
                        yield request

                self.inflight[budget] += 1
                try:
                    async for item in inner_ss(decoded(), context):
                        yield item
                finally:
                    self.inflight[budget] -= 1
                    self._answered(context)

            return grpc.stream_stream_rpc_method_handler(
                stream_stream,
                request_deserializer=request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
