"""The telemetry server hook: start-up checks, receiver + forwarder + retention wired together."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from contracts.errors import DurationError
from coordinator.api.auth import AuthInterceptor, current_principal
from coordinator.store.sqlite import SqliteStore
from coordinator.telemetry.forward import ForwardConfigError
from coordinator.telemetry.hook import TelemetryHook
from coordinator.telemetry.otlp import to_resource_spans
from coordinator.telemetry.sampling import SamplerConfigError
from coordinator.tokens import TokenAuthority, hash_token

from .otlp_collector import OtlpCollector
from .spans_fixture import T0, three_team_trace


def test_bad_configuration_fails_at_start_up() -> None:
    with pytest.raises(SamplerConfigError):
        TelemetryHook(env={"OTEL_TRACES_SAMPLER": "sometimes"}, principal=current_principal)
    with pytest.raises(DurationError, match="--span-retention"):
        TelemetryHook(env={}, span_retention="a week", principal=current_principal)
    hook = TelemetryHook(
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
        principal=current_principal,
    )
    with pytest.raises(ForwardConfigError):
        hook.sink(object())  # type: ignore[arg-type]


async def test_received_and_engine_spans_are_stored_and_forwarded(tmp_path: Path) -> None:
    collector = OtlpCollector()
    backend = await collector.start()
    store = SqliteStore(tmp_path / "accord.db")
    await store.open()
    hook = TelemetryHook(
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{backend}"},
        span_retention="7d",
        principal=current_principal,
    )
    coordinator = SimpleNamespace(store=store)
    authority = TokenAuthority()
    authority.set_team_token("payments", hash_token("pay-token"))
    server = grpc.aio.server(interceptors=[AuthInterceptor(authority)])
    hook.configure(server, coordinator)
    receiver_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    closer = await hook.start(coordinator)
    try:
        # Recent spans: the retention task (7d) prunes the fixture's 2023 timestamps.
        shift = time.time_ns() - T0
        recent = [
            replace(s, start_ns=s.start_ns + shift, end_ns=s.end_ns + shift) for s in three_team_trace()
        ]
        engine_spans, agent_spans = recent[:3], recent[3:]
        await hook.sink(store).emit(engine_spans)  # what the engine does
        async with grpc.aio.insecure_channel(f"127.0.0.1:{receiver_port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
            await stub.Export(
                trace_service_pb2.ExportTraceServiceRequest(resource_spans=to_resource_spans(agent_spans)),
                metadata=(("authorization", "Bearer pay-token"),),
            )
        every = {s.span_id for s in three_team_trace()}
        assert {s.span_id for s in await store.spans_for_trace(engine_spans[0].trace_id)} == every
        assert await collector.wait_for(every) == every
    finally:
        await closer()
        await server.stop(None)
        await store.close()
        await collector.stop()
