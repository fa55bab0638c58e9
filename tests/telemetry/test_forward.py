"""Forwarding to an OTLP backend: configuration from the standard variables, batching to a real
collector, and dropping (counted) instead of waiting when the backend is down."""

from __future__ import annotations

import time

import grpc
import pytest

from coordinator.telemetry.forward import ForwardConfig, ForwardConfigError, SpanForwarder
from tests.support.wait import wait_until

from .otlp_collector import OtlpCollector
from .spans_fixture import three_team_trace


def test_no_endpoint_means_no_forwarding() -> None:
    assert ForwardConfig.from_env({}) is None
    assert (
        ForwardConfig.from_env(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_TRACES_EXPORTER": "none"}
        )
        is None
    )
    assert (
        ForwardConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317", "OTEL_SDK_DISABLED": "true"})
        is None
    )


def test_config_follows_the_exporter_variables() -> None:
    config = ForwardConfig.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://generic:4317",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4317",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-api=abc,Other=a%20b",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2.5",
        }
    )
    assert config == ForwardConfig(
        target="traces:4317", insecure=True, headers=(("x-api", "abc"), ("other", "a b")), timeout=2.5
    )
    tls = ForwardConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4317"})
    assert tls is not None and not tls.insecure and tls.target == "collector:4317"
    bare = ForwardConfig.from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317", "OTEL_EXPORTER_OTLP_INSECURE": "true"}
    )
    assert bare is not None and bare.insecure and bare.target == "collector:4317"


def test_http_protocol_is_refused_with_the_fix() -> None:
    with pytest.raises(ForwardConfigError, match="gRPC only"):
        ForwardConfig.from_env(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        )


async def test_spans_reach_a_real_collector_in_batches_with_headers() -> None:
    collector = OtlpCollector()
    target = await collector.start()
    forwarder = SpanForwarder(
        ForwardConfig(target=target, insecure=True, headers=(("x-api", "abc"),)), flush_interval=0.05
    )
    forwarder.start()
    try:
        spans = three_team_trace()
        forwarder.offer(spans[:3])
        forwarder.offer(spans[3:])
        arrived = await collector.wait_for({s.span_id for s in spans})
        assert arrived == {s.span_id for s in spans}
        # The collector answers just before the forwarder counts.
        await wait_until(lambda: forwarder.exported == len(spans), f"exported {forwarder.exported}")
        assert forwarder.exported == len(spans) and forwarder.dropped == 0
        assert collector.metadata[0]["x-api"] == "abc"
        teams = {
            kv.value.string_value
            for request in collector.requests
            for resource in request.resource_spans
            for kv in resource.resource.attributes
            if kv.key == "accord.team"
        }
        assert teams == {"shipping", "payments", "warehouse"}
    finally:
        await forwarder.aclose()
        await collector.stop()


async def test_a_down_backend_drops_and_counts_without_blocking() -> None:
    # A port nobody listens on.
    probe = grpc.aio.server()
    port = probe.add_insecure_port("127.0.0.1:0")
    await probe.stop(None)
    forwarder = SpanForwarder(
        ForwardConfig(target=f"127.0.0.1:{port}", insecure=True, timeout=1), max_queue=5, flush_interval=0.01
    )
    forwarder.start()
    spans = three_team_trace()
    started = time.perf_counter()
    forwarder.offer(spans)  # 7 spans, room for 5
    # Far below the 1 s export timeout that an offer exporting in place would wait for; with
    # room for a loaded machine to deschedule this process for a moment.
    assert time.perf_counter() - started < forwarder.config.timeout / 2
    assert forwarder.dropped == 2 and forwarder.queued == 5
    await wait_until(lambda: forwarder.dropped == 7, f"dropped {forwarder.dropped} of 7 spans")
    assert forwarder.dropped == 7 and forwarder.exported == 0
    await forwarder.aclose(timeout=2)


async def test_close_flushes_what_is_queued() -> None:
    collector = OtlpCollector()
    target = await collector.start()
    forwarder = SpanForwarder(ForwardConfig(target=target, insecure=True), flush_interval=60)
    forwarder.start()
    spans = three_team_trace()
    forwarder.offer(spans)
    await forwarder.aclose()
    assert collector.span_ids() == {s.span_id for s in spans}
    await collector.stop()
