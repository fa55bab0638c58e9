"""W3C trace context across every hop: gRPC metadata, task payloads, events.

Client side: ``trace_context_interceptors()`` (grpc.aio) and ``SyncTraceContextClientInterceptor``
(grpc) put ``traceparent``/``tracestate`` into the metadata of every call, taken from the active
OTel span, or from the standard ``TRACEPARENT``/``TRACESTATE`` environment variables when no span
is active (so ``TRACEPARENT=... accord run ...`` makes the run a child of the caller's span).

Server side: ``TraceContextServerInterceptor`` makes the caller's context current while a call
is served (log records carry it); ``extract_trace_context`` reads the caller's context from a
request's explicit ``trace_context`` map or from the call's metadata; ``event_link`` turns an event's stored trace
context into a span link for the runs it triggers; ``attached_span_context`` makes a stored span
the current OTel context so that log records carry its ids.
"""

from __future__ import annotations

import inspect
import os
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
ENV_TRACEPARENT = "TRACEPARENT"
ENV_TRACESTATE = "TRACESTATE"

_TRACEPARENT_RE = re.compile(
    r"^(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-(?P<span_id>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?$"
)
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16
SAMPLED_FLAG = 0x01


@dataclass(frozen=True)
class TraceParent:
    """A parsed W3C ``traceparent`` (plus the ``tracestate`` that travelled with it)."""

    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 lowercase hex
    flags: int = SAMPLED_FLAG
    tracestate: str = ""

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED_FLAG)

    def header(self) -> str:
        return format_traceparent(self.trace_id, self.span_id, self.sampled)

    def as_carrier(self) -> dict[str, str]:
        """The ``{"traceparent": ..., "tracestate": ...}`` map tasks and events carry."""
        carrier = {TRACEPARENT: self.header()}
        if self.tracestate:
            carrier[TRACESTATE] = self.tracestate
        return carrier

    def span_context(self) -> SpanContext:
        return SpanContext(
            trace_id=int(self.trace_id, 16),
            span_id=int(self.span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(self.flags & 0xFF),
            trace_state=_trace_state(self.tracestate),
        )


# Trace and span ids need to be unique, not secret: like the OpenTelemetry SDK's id generator,
# they are drawn from a PRNG seeded from the OS (its own, which nothing else seeds), not from a
# urandom system call per id, which showed in the coordinator's profile (three span ids a step).
_random = random.Random()


def new_trace_id() -> str:
    """A random, valid 32-hex trace id."""
    while True:
        value = f"{_random.getrandbits(128):032x}"
        if value != _INVALID_TRACE_ID:
            return value


def new_span_id() -> str:
    """A random, valid 16-hex span id."""
    while True:
        value = f"{_random.getrandbits(64):016x}"
        if value != _INVALID_SPAN_ID:
            return value


def format_traceparent(trace_id: str, span_id: str, sampled: bool) -> str:
    return f"00-{trace_id}-{span_id}-{SAMPLED_FLAG if sampled else 0:02x}"


def parse_traceparent(value: str | None, tracestate: str | None = None) -> TraceParent | None:
    """Parse a ``traceparent`` header by the W3C rules; ``None`` when absent or invalid."""
    if not value:
        return None
    match = _TRACEPARENT_RE.match(value.strip().lower())
    if match is None:
        return None
    version = match["version"]
    if version == "ff" or (version == "00" and match["rest"]):
        return None
    if match["trace_id"] == _INVALID_TRACE_ID or match["span_id"] == _INVALID_SPAN_ID:
        return None
    return TraceParent(
        trace_id=match["trace_id"],
        span_id=match["span_id"],
        flags=int(match["flags"], 16),
        tracestate=(tracestate or "").strip(),
    )


def from_carrier(carrier: Mapping[str, str] | None) -> TraceParent | None:
    """Parse a ``{"traceparent": ..., "tracestate": ...}`` map (task, event, request field)."""
    if not carrier:
        return None
    lowered = {k.lower(): v for k, v in carrier.items()}
    return parse_traceparent(lowered.get(TRACEPARENT), lowered.get(TRACESTATE))


def current_trace_context(env: Mapping[str, str] | None = None) -> TraceParent | None:
    """The caller's trace context: the active OTel span if there is one, else ``TRACEPARENT``
    (and ``TRACESTATE``) from ``env``."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        return TraceParent(
            trace_id=f"{span_context.trace_id:032x}",
            span_id=f"{span_context.span_id:016x}",
            flags=int(span_context.trace_flags),
            tracestate=span_context.trace_state.to_header() if span_context.trace_state else "",
        )
    if env is None:
        return None
    return parse_traceparent(env.get(ENV_TRACEPARENT), env.get(ENV_TRACESTATE))


Metadata = Sequence[tuple[str, str | bytes]]


def extract_trace_context(
    metadata: Metadata | None, request_trace_context: Mapping[str, str] | None = None
) -> TraceParent | None:
    """The caller's trace context on the server side.

    The request's explicit ``trace_context`` map wins (it is what the caller meant); otherwise
    the ``traceparent``/``tracestate`` gRPC metadata the client interceptor added.
    """
    explicit = from_carrier(request_trace_context)
    if explicit is not None:
        return explicit
    if not metadata:
        return None
    found: dict[str, str] = {}
    for key, value in metadata:
        if key.lower() in (TRACEPARENT, TRACESTATE):
            found[key.lower()] = value.decode() if isinstance(value, bytes) else value
    return from_carrier(found)


def event_link(event_trace_context: Mapping[str, str] | None) -> dict[str, str] | None:
    """The span link (``SpanRecord.links`` item) from a run started by an event to the span
    that published it; ``None`` when the event carried no trace context."""
    parent = from_carrier(event_trace_context)
    if parent is None:
        return None
    return {"trace_id": parent.trace_id, "span_id": parent.span_id}


@contextmanager
def attached_span_context(trace_id: str, span_id: str, sampled: bool = True) -> Iterator[trace.Span]:
    """Make a span the coordinator stores (not an SDK span) the current OTel context, so that
    log records emitted inside carry its trace id and span id."""
    parent = TraceParent(trace_id, span_id, SAMPLED_FLAG if sampled else 0)
    span = NonRecordingSpan(parent.span_context())
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield span
    finally:
        otel_context.detach(token)


def _trace_state(header: str) -> TraceState:
    if not header:
        return TraceState()
    entries: list[tuple[str, str]] = []
    for member in header.split(","):
        key, sep, value = member.strip().partition("=")
        if sep and key and value:
            entries.append((key, value))
    try:
        return TraceState(entries)
    except ValueError:
        return TraceState()


def _with_trace_metadata(metadata: Any, env: Mapping[str, str] | None) -> list[tuple[str, Any]]:
    """``metadata`` minus any stale trace headers, plus the caller's current context."""
    items = [(k, v) for k, v in (metadata or ()) if k.lower() not in (TRACEPARENT, TRACESTATE)]
    context = current_trace_context(env)
    if context is not None:
        items.extend(context.as_carrier().items())
    return items


class _AioCallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None


def _aio_details(details: grpc.aio.ClientCallDetails, env: Mapping[str, str] | None) -> Any:
    return _AioCallDetails(
        details.method,
        details.timeout,
        grpc.aio.Metadata(*_with_trace_metadata(details.metadata, env)),
        details.credentials,
        details.wait_for_ready,
    )


class _AioInjector:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env: Mapping[str, str] = os.environ if env is None else env

    def _details(self, details: grpc.aio.ClientCallDetails) -> Any:
        return _aio_details(details, self._env)


class UnaryUnaryTraceInterceptor(_AioInjector, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Awaitable[Any]], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class UnaryStreamTraceInterceptor(_AioInjector, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(
        self, continuation: Callable[[Any, Any], Awaitable[Any]], client_call_details: Any, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class StreamUnaryTraceInterceptor(_AioInjector, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(
        self,
        continuation: Callable[[Any, Any], Awaitable[Any]],
        client_call_details: Any,
        request_iterator: Any,
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


class StreamStreamTraceInterceptor(_AioInjector, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(
        self,
        continuation: Callable[[Any, Any], Awaitable[Any]],
        client_call_details: Any,
        request_iterator: AsyncIterator[Any] | Any,
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


def trace_context_interceptors(env: Mapping[str, str] | None = None) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for a grpc.aio channel that add the caller's W3C trace context to the
    metadata of every call, of every kind (grpc.aio files an interceptor under one kind only,
    hence one per kind)::

        grpc.aio.insecure_channel(target, interceptors=trace_context_interceptors())

    ``env`` is where ``TRACEPARENT`` is read from when no span is active (default
    ``os.environ``, read at each call so a long-lived client follows its process).
    """
    return [
        UnaryUnaryTraceInterceptor(env),
        UnaryStreamTraceInterceptor(env),
        StreamUnaryTraceInterceptor(env),
        StreamStreamTraceInterceptor(env),
    ]


class _SyncCallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class SyncTraceContextClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """The same as ``trace_context_interceptors()`` for a blocking ``grpc`` channel:
    ``grpc.intercept_channel(channel, SyncTraceContextClientInterceptor())``."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env: Mapping[str, str] = os.environ if env is None else env

    def _details(self, details: grpc.ClientCallDetails) -> Any:
        return _SyncCallDetails(
            details.method,
            details.timeout,
            _with_trace_metadata(details.metadata, self._env),
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return continuation(self._details(client_call_details), request_iterator)


class TraceContextServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Makes the caller's trace context (from gRPC metadata) current while its call is served,
    so the coordinator's log records about a call carry the caller's trace id and span id (an
    agent's CompleteTask carries its span inside the run's trace; ``accord run`` its own)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        parent = extract_trace_context(handler_call_details.invocation_metadata)
        if handler is None or parent is None:
            return handler
        if handler.unary_unary is not None and inspect.iscoroutinefunction(handler.unary_unary):
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                with attached_span_context(parent.trace_id, parent.span_id, parent.sampled):
                    return await inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                with attached_span_context(parent.trace_id, parent.span_id, parent.sampled):
                    async for item in inner_us(request, context):
                        yield item

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
