"""Real OTLP/gRPC collectors for tests: TraceService/Export and MetricsService/Export on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

# As the coordinator's own server: no other process may bind the port while this one holds it
# (gRPC's default SO_REUSEPORT would let a server started later on the same port take some of
# its connections, grpc/grpc#10755).
_EXCLUSIVE_PORT = [("grpc.so_reuseport", 0)]


class OtlpCollector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metadata: list[dict[str, str]] = []
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self._arrived = asyncio.Event()

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        self.metadata.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        self._arrived.set()
        return trace_service_pb2.ExportTraceServiceResponse()

    async def start(self) -> str:
        self.server = grpc.aio.server(options=_EXCLUSIVE_PORT)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)  # type: ignore[no-untyped-call]
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)

    def span_ids(self) -> set[str]:
        return {
            span.span_id.hex()
            for request in self.requests
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        }

    async def wait_for(self, span_ids: set[str], timeout: float = 30.0) -> set[str]:  # noqa: ASYNC109
        """Wait until every id in ``span_ids`` arrived (or the timeout); returns what arrived."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not span_ids <= self.span_ids() and loop.time() < deadline:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), max(deadline - loop.time(), 0.01))
            except TimeoutError:
                break
        return self.span_ids()


class OtlpMetricsCollector(metrics_service_pb2_grpc.MetricsServiceServicer):
    """A real OTLP/gRPC metrics collector for tests: MetricsService/Export on 127.0.0.1:0."""

    def __init__(self) -> None:
        self.requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def Export(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: Any
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self.requests.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()

    async def start(self) -> str:
        self.server = grpc.aio.server(options=_EXCLUSIVE_PORT)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self, self.server)  # type: ignore[no-untyped-call]
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)

    def points(self, name: str) -> list[tuple[dict[str, str], float]]:
        """The newest value of each attribute set of metric ``name`` (a sum's or a gauge's value,
        a histogram's count) across every export so far."""
        newest: dict[tuple[tuple[str, str], ...], float] = {}
        for request in self.requests:
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        if metric.name != name:
                            continue
                        kind = metric.WhichOneof("data")
                        for point in getattr(metric, kind).data_points:
                            labels = tuple(sorted((a.key, a.value.string_value) for a in point.attributes))
                            if kind == "histogram":
                                value = float(point.count)
                            else:
                                value = float(point.as_int if point.HasField("as_int") else point.as_double)
                            newest[labels] = value
        return [(dict(labels), value) for labels, value in newest.items()]
