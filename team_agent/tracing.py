"""Tracing for the agent: SDK setup (entry point only), W3C context on gRPC calls, trace ids in
logs, and an exporter wrapper that masks secrets in everything it exports.

Spans of a task are recorded inside the attempt's trace (``Task.trace_context``):
``agent.receive`` → ``engine.<name>``, and an error span ``agent.validate_input`` or
``agent.validate_output`` under ``agent.receive`` when a payload breaks the contract.
They go over OTLP/gRPC to the coordinator, authenticated with the team's token.

Sampling is the run's, decided once by the coordinator and carried in the task's ``traceparent``
flags: the provider's sampler is always parent-based, whatever ``OTEL_TRACES_SAMPLER`` says in
the agent's environment, so an unsampled run gets non-recording spans here (and its engine an
unsampled ``traceparent``), and a run's trace is never half-sampled.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import Status
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from contracts.channels import Channels
from contracts.endpoints import parse_addresses
from team_agent.redact import Redactor

SERVICE_NAME = "accord-agent"
PROPAGATOR = TraceContextTextMapPropagator()


def extract_context(carrier: Mapping[str, str]) -> otel_context.Context:
    """The OTel context carried by a task (``traceparent``/``tracestate``)."""
    return PROPAGATOR.extract(carrier=dict(carrier))


def inject_context(context: otel_context.Context | None = None) -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of ``context`` (default: the current one)."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier, context=context)
    return carrier


class _HashedResource(Resource):
    """A Resource whose hash is computed once. The OTLP encoder groups every span it encodes by
    its resource, and a Resource hashes the sorted JSON of its attributes at each call (~3% of the
    agent's CPU under load); a Resource is immutable, so its hash never changes."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash


def _redact_attributes(redactor: Redactor, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if isinstance(value, str):
            out[key] = redactor.text(value)
        elif isinstance(value, list | tuple):
            out[key] = tuple(redactor.text(v) if isinstance(v, str) else v for v in value)
        else:
            out[key] = value
    return out


class RedactingSpanExporter(SpanExporter):
    """Masks every secret in span names, attributes, events and status before export."""

    def __init__(self, inner: SpanExporter, redactor: Redactor) -> None:
        self._inner = inner
        self._redactor = redactor

    def _may_hold_secret(self, span: ReadableSpan) -> bool:
        """False only when no string ``_clean`` masks holds a secret: the span is exported as it
        is (most spans: ids, names and numbers), rather than copied. Its strings are searched
        joined by NULs, once per secret form (a form spanning two of them, only possible with a
        NUL in a secret, just takes the full cleaning)."""
        strings = [span.name, span.status.description or ""]
        for attributes in (span.attributes, *(event.attributes for event in span.events)):
            for value in (attributes or {}).values():
                if isinstance(value, str):
                    strings.append(value)
                elif isinstance(value, list | tuple):
                    strings.extend(v for v in value if isinstance(v, str))
        strings.extend(event.name for event in span.events)
        return self._redactor.found_in("\0".join(strings))

    def _clean(self, span: ReadableSpan) -> ReadableSpan:
        redactor = self._redactor
        if not self._may_hold_secret(span):
            return span
        status = span.status
        if status.description:
            status = Status(status.status_code, redactor.text(status.description))
        return ReadableSpan(
            name=redactor.text(span.name),
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=_redact_attributes(redactor, span.attributes),
            events=[
                Event(redactor.text(e.name), _redact_attributes(redactor, e.attributes), e.timestamp)
                for e in span.events
            ],
            links=span.links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self._redactor:
            return self._inner.export(spans)
        return self._inner.export([self._clean(span) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class TokenFollowingExporter(SpanExporter):
    """An exporter made anew (by ``make``) whenever the agent's token changes, so spans go out
    with the token in use (a rotated token is reloaded from its secret file while the agent
    runs). Export runs on the span processor's thread, one batch at a time."""

    def __init__(self, make: Callable[[str], SpanExporter], token: Callable[[], str]) -> None:
        self._make = make
        self._token = token
        self._current_token = token()
        self._inner = make(self._current_token)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        token = self._token()
        if token != self._current_token:
            old, self._inner, self._current_token = self._inner, self._make(token), token
            old.shutdown()
        return self._inner.export(spans)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class FailoverSpanExporter(SpanExporter):
    """Exports to one of several coordinators sharing a database (the agent config's list): the
    one that took the last batch, else the next that takes it."""

    def __init__(self, exporters: Sequence[SpanExporter]) -> None:
        self._exporters = list(exporters)
        self._current = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for step in range(len(self._exporters)):
            index = (self._current + step) % len(self._exporters)
            if self._exporters[index].export(spans) == SpanExportResult.SUCCESS:
                self._current = index
                return SpanExportResult.SUCCESS
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        for exporter in self._exporters:
            exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(exporter.force_flush(timeout_millis) for exporter in self._exporters)


def build_tracer_provider(
    *,
    team: str,
    coordinator: str,
    token: str | Callable[[], str],
    redactor: Redactor,
    exporter: SpanExporter | None = None,
    export: bool = True,
    channels: Channels | None = None,
) -> TracerProvider:
    """The agent's TracerProvider. Call only from the process's entry point. By default spans
    go over OTLP/gRPC to the coordinator with the team's token (``token``: the token, or a function
    giving the one in use, followed as it changes), over TLS when ``channels`` has it; pass
    ``exporter`` to replace it, or ``export=False`` to record spans without sending them anywhere.

    The sampler follows the parent's sampled flag (the coordinator's decision for the run); a
    span without a parent, which a task never produces, is sampled."""
    provider = TracerProvider(
        sampler=ParentBased(root=ALWAYS_ON),
        resource=_HashedResource(Resource.create({"service.name": SERVICE_NAME, "accord.team": team})),
    )
    if not export:
        return provider
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        channels = channels or Channels()
        follow = token if callable(token) else lambda: token

        def otlp_to(address: str) -> SpanExporter:
            def otlp(token: str) -> SpanExporter:
                return OTLPSpanExporter(
                    endpoint=address,
                    insecure=channels.credentials is None,
                    credentials=channels.credentials,
                    channel_options=tuple(channels.options()) or None,  # type: ignore[arg-type]
                    headers=(("authorization", f"Bearer {token}"),),
                    timeout=5,
                )

            return TokenFollowingExporter(otlp, follow)

        exporters = [otlp_to(address) for address in parse_addresses(coordinator, "coordinator")]
        exporter = exporters[0] if len(exporters) == 1 else FailoverSpanExporter(exporters)
    provider.add_span_processor(BatchSpanProcessor(RedactingSpanExporter(exporter, redactor)))
    return provider


class TraceContextClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Adds the current span's W3C trace context to every outgoing call's metadata."""

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        carrier = inject_context()
        if carrier:
            metadata = list(client_call_details.metadata or ())
            metadata.extend(carrier.items())
            client_call_details = grpc.aio.ClientCallDetails(
                client_call_details.method,
                client_call_details.timeout,
                grpc.aio.Metadata(*metadata),
                client_call_details.credentials,
                client_call_details.wait_for_ready,
            )
        return await continuation(client_call_details, request)


class TraceIdLogFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex, or "") of the current span to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        else:
            record.trace_id = ""
            record.span_id = ""
        return True
