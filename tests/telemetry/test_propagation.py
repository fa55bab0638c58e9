"""W3C trace context: parsing, the client interceptors on a real gRPC server, extraction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from coordinator.telemetry.propagation import (
    SyncTraceContextClientInterceptor,
    TraceParent,
    attached_span_context,
    current_trace_context,
    event_link,
    extract_trace_context,
    format_traceparent,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    trace_context_interceptors,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
HEADER = f"00-{TRACE}-{SPAN}-01"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        f"ff-{TRACE}-{SPAN}-01",  # forbidden version
        f"00-{'0' * 32}-{SPAN}-01",  # invalid trace id
        f"00-{TRACE}-{'0' * 16}-01",  # invalid span id
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four parts
        f"00-{TRACE[:-1]}-{SPAN}-01",
    ],
)
def test_invalid_traceparent_is_ignored(value: str) -> None:
    assert parse_traceparent(value) is None


def test_traceparent_round_trip_and_flags() -> None:
    parsed = parse_traceparent(HEADER.upper(), "vendor=x")
    assert parsed == TraceParent(TRACE, SPAN, 1, "vendor=x")
    assert parsed.sampled and parsed.header() == HEADER
    assert parsed.as_carrier() == {"traceparent": HEADER, "tracestate": "vendor=x"}
    unsampled = parse_traceparent(f"00-{TRACE}-{SPAN}-00")
    assert unsampled is not None and not unsampled.sampled
    # A future version may add fields; its first four are still read.
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-more") == TraceParent(TRACE, SPAN, 1)


def test_new_ids_are_valid_and_distinct() -> None:
    ids = {new_trace_id() for _ in range(50)}
    assert len(ids) == 50
    header = format_traceparent(new_trace_id(), new_span_id(), sampled=False)
    assert parse_traceparent(header) is not None


def test_current_context_prefers_the_active_span_over_the_environment() -> None:
    env = {"TRACEPARENT": HEADER}
    assert current_trace_context(env) == TraceParent(TRACE, SPAN, 1)
    assert current_trace_context({}) is None
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("cli") as span:
        context = current_trace_context(env)
        assert context is not None
        assert context.span_id == f"{span.get_span_context().span_id:016x}"
        assert context.trace_id != TRACE


def test_extract_prefers_request_field_over_metadata() -> None:
    other = f"00-{'1' * 32}-{'2' * 16}-00"
    metadata: list[tuple[str, str | bytes]] = [("authorization", "Bearer x"), ("traceparent", other.encode())]
    assert extract_trace_context(metadata) == TraceParent("1" * 32, "2" * 16, 0)
    assert extract_trace_context(metadata, {"traceparent": HEADER}) == TraceParent(TRACE, SPAN, 1)
    assert extract_trace_context(None, {"traceparent": "bad"}) is None


def test_event_link() -> None:
    assert event_link({"traceparent": HEADER}) == {"trace_id": TRACE, "span_id": SPAN}
    assert event_link({}) is None


def test_attached_span_context_is_current_inside_only() -> None:
    with attached_span_context(TRACE, SPAN):
        context = trace.get_current_span().get_span_context()
        assert f"{context.trace_id:032x}" == TRACE
    assert not trace.get_current_span().get_span_context().is_valid


# ---------- interceptors against a real server ----------

_ECHO = "/test.Echo/Metadata"


def _metadata_handler() -> grpc.GenericRpcHandler:
    async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        found = {k: v for k, v in context.invocation_metadata() if k in ("traceparent", "tracestate")}
        return repr(sorted(found.items())).encode()

    async def stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield await unary(request, context)

    return grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Metadata": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )


@pytest.fixture
async def echo_server() -> AsyncIterator[str]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_metadata_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


def _seen(reply: bytes) -> dict[str, str]:
    items: Any = eval(reply.decode())  # the server's repr of a list of pairs
    return dict(items)


async def test_aio_interceptor_injects_env_traceparent_into_every_call(echo_server: str) -> None:
    interceptors = trace_context_interceptors(env={"TRACEPARENT": HEADER, "TRACESTATE": "a=b"})
    async with grpc.aio.insecure_channel(echo_server, interceptors=interceptors) as channel:
        unary = channel.unary_unary(_ECHO)
        seen = _seen(await unary(b"", metadata=(("traceparent", "00-stale-stale-00"),)))
        assert seen == {"traceparent": HEADER, "tracestate": "a=b"}
        stream = channel.unary_stream("/test.Echo/Stream")
        replies = [r async for r in stream(b"")]
        assert _seen(replies[0])["traceparent"] == HEADER


async def test_aio_interceptor_uses_the_active_span(echo_server: str) -> None:
    interceptors = trace_context_interceptors(env={"TRACEPARENT": HEADER})
    tracer = TracerProvider().get_tracer("test")
    async with grpc.aio.insecure_channel(echo_server, interceptors=interceptors) as channel:
        with tracer.start_as_current_span("cli") as span:
            seen = _seen(await channel.unary_unary(_ECHO)(b""))
        parsed = parse_traceparent(seen["traceparent"])
        assert parsed is not None
        assert parsed.span_id == f"{span.get_span_context().span_id:016x}"


async def test_aio_interceptor_adds_nothing_without_context(echo_server: str) -> None:
    interceptors = trace_context_interceptors(env={})
    async with grpc.aio.insecure_channel(echo_server, interceptors=interceptors) as channel:
        assert _seen(await channel.unary_unary(_ECHO)(b"")) == {}


async def test_sync_interceptor(echo_server: str) -> None:
    channel = grpc.intercept_channel(
        grpc.insecure_channel(echo_server), SyncTraceContextClientInterceptor(env={"TRACEPARENT": HEADER})
    )
    try:
        import asyncio

        reply = await asyncio.to_thread(channel.unary_unary(_ECHO), b"")
        assert _seen(reply) == {"traceparent": HEADER}
    finally:
        channel.close()


async def test_server_interceptor_makes_the_callers_context_current_for_logs() -> None:
    from coordinator.telemetry.propagation import TraceContextServerInterceptor

    async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        span = trace.get_current_span().get_span_context()
        return f"{span.trace_id:032x}-{span.span_id:016x}".encode() if span.is_valid else b"none"

    async def stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield await unary(request, context)

    server = grpc.aio.server(interceptors=[TraceContextServerInterceptor()])
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Echo",
                {
                    "Metadata": grpc.unary_unary_rpc_method_handler(unary),
                    "Stream": grpc.unary_stream_rpc_method_handler(stream),
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            traced = (("traceparent", HEADER),)
            assert await channel.unary_unary(_ECHO)(b"", metadata=traced) == f"{TRACE}-{SPAN}".encode()
            assert await channel.unary_unary(_ECHO)(b"") == b"none"
            replies = [r async for r in channel.unary_stream("/test.Echo/Stream")(b"", metadata=traced)]
            assert replies == [f"{TRACE}-{SPAN}".encode()]
    finally:
        await server.stop(None)
