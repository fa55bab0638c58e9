"""Metrics served for Prometheus and exported by OTLP, for the coordinator and the agents alike
(docs/production.md, "Metrics").

The OpenTelemetry SDK's metrics, read by up to two readers:

- Prometheus: ``--metrics HOST:PORT`` serves ``/metrics`` (the OpenTelemetry Prometheus exporter on
  prometheus_client's HTTP server); ``off`` serves nothing.
- OTLP: by the standard variables, as for spans: ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` or
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` (gRPC), or ``OTEL_METRICS_EXPORTER=otlp``; ``OTEL_METRICS_EXPORTER=none``
  or ``OTEL_SDK_DISABLED=true`` turn it off. ``OTEL_METRIC_EXPORT_INTERVAL`` (ms) as usual.

Each process part (a coordinator, an agent) has its own ``MeterProvider``: nothing is global, so
several in one process (tests) do not mix.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.metrics import Meter, MeterProvider, NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

logger = logging.getLogger(__name__)

DISABLED = ("", "off")


def otlp_wanted(env: Mapping[str, str]) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {e.strip().lower() for e in env.get("OTEL_METRICS_EXPORTER", "").split(",") if e.strip()}
    if "none" in exporters:
        return False
    if "otlp" in exporters:
        return True
    return bool(
        env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


class MetricsServer:
    """A MeterProvider with its readers, and the /metrics HTTP server when asked for."""

    def __init__(
        self,
        service: str,
        listen: str,
        env: Mapping[str, str],
        buckets: Mapping[str, Iterable[float]] | None = None,
    ) -> None:
        """``listen``: HOST:PORT for Prometheus ("" or "off": none; port 0 picks a free one, see
        ``address``); ``buckets``: histogram name -> its bucket bounds. Raises OSError when the
        address cannot be bound."""
        buckets = dict(buckets or {})
        self.address = ""
        self._http: Any = None
        self._thread: threading.Thread | None = None
        readers: list[MetricReader] = []
        if listen.strip().lower() not in DISABLED:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CollectorRegistry, start_http_server

            # A registry of its own (not prometheus_client's global one): only these metrics,
            # and several servers in one process do not collide.
            self._registry = CollectorRegistry(auto_describe=True)
            readers.append(PrometheusMetricReader(registry=self._registry))
            host, _, port = listen.rpartition(":")
            self._http, self._thread = start_http_server(
                int(port), addr=host.strip("[]"), registry=self._registry
            )
            bound = self._http.server_address
            self.address = f"{host}:{bound[1]}"
        if otlp_wanted(env):
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        self.exporting = bool(readers)
        if readers:
            views = [
                View(instrument_name=name, aggregation=_buckets(bounds)) for name, bounds in buckets.items()
            ]
            self.provider: MeterProvider = SdkMeterProvider(
                metric_readers=readers, resource=Resource.create({"service.name": service}), views=views
            )
        else:
            self.provider = NoOpMeterProvider()

    def meter(self, name: str) -> Meter:
        return self.provider.get_meter(name)

    def close(self) -> None:
        if isinstance(self.provider, SdkMeterProvider):
            try:
                self.provider.shutdown(timeout_millis=5_000)
            except Exception:  # a collector that is away must not stop the shutdown
                logger.warning("shutting the metrics down failed", exc_info=True)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


def _buckets(bounds: Iterable[float]) -> ExplicitBucketHistogramAggregation:
    return ExplicitBucketHistogramAggregation(boundaries=list(bounds))
