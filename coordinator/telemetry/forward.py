"""Forward every span to the OTLP backend the standard variables name, without ever slowing a run.

Configuration is the OpenTelemetry exporter's own::

    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT   http://host:4317 (gRPC)
    OTEL_EXPORTER_OTLP_TRACES_HEADERS  / OTEL_EXPORTER_OTLP_HEADERS    k=v,k2=v2 (URL-encoded)
    OTEL_EXPORTER_OTLP_TRACES_INSECURE / OTEL_EXPORTER_OTLP_INSECURE   true: no TLS
    OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE / ..._CERTIFICATE            CA bundle for TLS
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT / OTEL_EXPORTER_OTLP_TIMEOUT     seconds per export
    OTEL_EXPORTER_OTLP_TRACES_COMPRESSION / ..._COMPRESSION            gzip | none

No endpoint set (or ``OTEL_TRACES_EXPORTER=none``, ``OTEL_SDK_DISABLED=true``): no forwarding.

``SpanForwarder.offer`` only appends to a bounded queue; a background task sends batches with the
collector service's gRPC stub. When the queue is full or the backend fails, spans are dropped and
counted (``dropped``), never waited for: the store keeps them either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.util.re import parse_env_headers

from contracts.errors import AccordError
from coordinator.store.codec import in_turns
from coordinator.store.records import SpanRecord
from coordinator.telemetry.otlp import to_resource_spans

logger = logging.getLogger(__name__)


class ForwardConfigError(AccordError):
    exit_code = 2


def _setting(env: Mapping[str, str], name: str) -> str:
    """``OTEL_EXPORTER_OTLP_TRACES_<name>`` if set, else ``OTEL_EXPORTER_OTLP_<name>``."""
    return (
        env.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}", "").strip()
        or env.get(f"OTEL_EXPORTER_OTLP_{name}", "").strip()
    )


@dataclass(frozen=True)
class ForwardConfig:
    target: str  # host:port for grpc
    insecure: bool
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 10.0
    certificate: str = ""
    gzip: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ForwardConfig | None:
        """The forwarding target the standard variables describe, or ``None`` for none."""
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
            return None
        endpoint = _setting(env, "ENDPOINT")
        if not endpoint:
            return None
        protocol = _setting(env, "PROTOCOL")
        if protocol and protocol != "grpc":
            raise ForwardConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: the coordinator forwards spans over "
                "OTLP/gRPC only; set it to 'grpc' (and the endpoint to the backend's gRPC port, "
                "usually 4317) or unset it"
            )
        parsed = urlparse(endpoint)
        if parsed.scheme in ("http", "https") and parsed.netloc:
            target = parsed.netloc
            insecure = parsed.scheme == "http"
        else:
            target = endpoint
            insecure = False
        flag = _setting(env, "INSECURE")
        if flag and parsed.scheme != "https":
            insecure = flag.lower() == "true"
        headers = tuple(
            (key.lower(), value)
            for key, value in parse_env_headers(_setting(env, "HEADERS"), liberal=True).items()
        )
        raw_timeout = _setting(env, "TIMEOUT")
        try:
            timeout = float(raw_timeout) if raw_timeout else 10.0
        except ValueError:
            raise ForwardConfigError(
                f"OTEL_EXPORTER_OTLP_TIMEOUT={raw_timeout!r} is not a number of seconds"
            ) from None
        return cls(
            target=target,
            insecure=insecure,
            headers=headers,
            timeout=timeout,
            certificate=_setting(env, "CERTIFICATE"),
            gzip=_setting(env, "COMPRESSION").lower() == "gzip",
        )

    def channel(self) -> grpc.aio.Channel:
        compression = grpc.Compression.Gzip if self.gzip else None
        if self.insecure:
            return grpc.aio.insecure_channel(self.target, compression=compression)
        root = Path(self.certificate).read_bytes() if self.certificate else None
        credentials = grpc.ssl_channel_credentials(root_certificates=root)
        return grpc.aio.secure_channel(self.target, credentials, compression=compression)


class SpanForwarder:
    """Batches spans to an OTLP/gRPC backend from a bounded queue; drops (and counts) rather than
    waits. ``start()`` inside the running loop; ``aclose()`` flushes what it can and stops."""

    def __init__(
        self,
        config: ForwardConfig,
        *,
        max_queue: int = 4096,
        max_batch: int = 512,
        flush_interval: float = 1.0,
    ) -> None:
        self.config = config
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.flush_interval = flush_interval
        self.dropped = 0
        self.exported = 0
        self._queue: list[SpanRecord] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._failing = False

    def offer(self, spans: Iterable[SpanRecord]) -> None:
        """Queue spans for the backend. Never blocks; drops what does not fit."""
        if self._closing:
            return
        for span in spans:
            if len(self._queue) >= self.max_queue:
                self.dropped += 1
            else:
                self._queue.append(span)
        if len(self._queue) >= self.max_batch:
            self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._channel = self.config.channel()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="accord-span-forwarder")

    async def aclose(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - a grace period, not a call timeout
        """Send what is queued (within ``timeout``), then stop. Unsent spans count as dropped."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
        self.dropped += len(self._queue)
        self._queue.clear()
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def _run(self) -> None:
        while True:
            if not self._queue and not self._closing:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            if not self._queue:
                if self._closing:
                    return
                continue
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            await self._send(batch)
            if not self._closing and len(self._queue) < self.max_batch:
                # Let spans of the same moment gather into one batch.
                await asyncio.sleep(0)

    async def _send(self, batch: list[SpanRecord]) -> None:
        assert self._channel is not None
        stub = TraceServiceStub(self._channel)  # type: ignore[no-untyped-call]
        # Encoded a few dozen spans per turn of the event loop (a batch is up to max_batch).
        resource_spans: list[Any] = []
        async for some in in_turns(batch):
            resource_spans.extend(to_resource_spans(some))
        request = ExportTraceServiceRequest(resource_spans=resource_spans)
        try:
            response = await stub.Export(
                request, timeout=self.config.timeout, metadata=self.config.headers or None
            )
        except grpc.aio.AioRpcError as exc:
            self.dropped += len(batch)
            if not self._failing:
                logger.warning(
                    "forwarding spans to %s failed (%s: %s); dropping them until it answers",
                    self.config.target,
                    exc.code().name,
                    exc.details(),
                    extra={"otlp_target": self.config.target},
                )
            self._failing = True
            return
        if self._failing:
            logger.info("forwarding spans to %s works again", self.config.target)
            self._failing = False
        rejected = response.partial_success.rejected_spans if response.HasField("partial_success") else 0
        self.dropped += rejected
        self.exported += len(batch) - rejected
