"""Conversion between Accord's span records and OTLP: protobuf both ways, and OTLP JSON.

One place knows the OTLP shapes: the receiver decodes ``ResourceSpans`` with
``records_from_resource_spans``, the forwarder and ``accord runs trace --json`` encode with
``to_resource_spans`` / ``otlp_json``. Spans are grouped into one ``ResourceSpans`` per
(service, team): ``service.name`` and ``accord.team`` are resource attributes.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from google.protobuf import json_format
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import (
    ResourceSpans,
    ScopeSpans,
    Status,
    TracesData,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan

from coordinator.store.records import SpanRecord
from coordinator.telemetry import attributes as attrs

SERVICE_NAME = "service.name"
RESOURCE_TEAM = "accord.team"
SCOPE_NAME = "accord"

_KIND_TO_OTLP = {
    "internal": OtlpSpan.SPAN_KIND_INTERNAL,
    "server": OtlpSpan.SPAN_KIND_SERVER,
    "client": OtlpSpan.SPAN_KIND_CLIENT,
    "producer": OtlpSpan.SPAN_KIND_PRODUCER,
    "consumer": OtlpSpan.SPAN_KIND_CONSUMER,
}
_KIND_FROM_OTLP = {v: k for k, v in _KIND_TO_OTLP.items()}
_STATUS_TO_OTLP = {
    "unset": Status.STATUS_CODE_UNSET,
    "ok": Status.STATUS_CODE_OK,
    "error": Status.STATUS_CODE_ERROR,
}
_STATUS_FROM_OTLP = {v: k for k, v in _STATUS_TO_OTLP.items()}


class SpanLike(Protocol):
    """What encoding needs: ``SpanRecord`` and the scoped ``SpanView`` both fit."""

    @property
    def trace_id(self) -> str: ...
    @property
    def span_id(self) -> str: ...
    @property
    def parent_span_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def start_ns(self) -> int: ...
    @property
    def end_ns(self) -> int: ...
    @property
    def team(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def status_message(self) -> str: ...
    @property
    def attributes(self) -> Mapping[str, Any]: ...
    @property
    def events(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def links(self) -> Sequence[Mapping[str, str]]: ...


# ---------- values ----------


def to_any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, Mapping):
        return AnyValue(kvlist_value=KeyValueList(values=to_key_values(value)))
    if isinstance(value, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[to_any_value(v) for v in value]))
    if value is None:
        return AnyValue()
    return AnyValue(string_value=str(value))


def from_any_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [from_any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return from_key_values(value.kvlist_value.values)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, which)


def to_key_values(attributes: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=str(k), value=to_any_value(v)) for k, v in attributes.items()]


def from_key_values(values: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: from_any_value(kv.value) for kv in values}


# ---------- records -> OTLP ----------


def _hex_bytes(value: str) -> bytes:
    try:
        return bytes.fromhex(value) if value else b""
    except ValueError:
        return b""


def to_otlp_span(span: SpanLike) -> OtlpSpan:
    otlp = OtlpSpan(
        trace_id=_hex_bytes(span.trace_id),
        span_id=_hex_bytes(span.span_id),
        parent_span_id=_hex_bytes(span.parent_span_id),
        name=span.name,
        kind=_KIND_TO_OTLP.get(span.kind, OtlpSpan.SPAN_KIND_INTERNAL),
        start_time_unix_nano=max(span.start_ns, 0),
        end_time_unix_nano=max(span.end_ns, 0),
        attributes=to_key_values(
            {**span.attributes, attrs.REDACTED: True} if getattr(span, "redacted", False) else span.attributes
        ),
        status=Status(
            code=_STATUS_TO_OTLP.get(span.status, Status.STATUS_CODE_UNSET),
            message=span.status_message,
        ),
    )
    for event in span.events:
        otlp.events.append(
            OtlpSpan.Event(
                name=str(event.get("name", "")),
                time_unix_nano=int(event.get("time_ns", 0) or 0),
                attributes=to_key_values(event.get("attributes") or {}),
            )
        )
    for link in span.links:
        otlp.links.append(
            OtlpSpan.Link(
                trace_id=_hex_bytes(link.get("trace_id", "")),
                span_id=_hex_bytes(link.get("span_id", "")),
            )
        )
    return otlp


def to_resource_spans(spans: Iterable[SpanLike]) -> list[ResourceSpans]:
    """One ``ResourceSpans`` per (service, team), in first-seen order."""
    groups: dict[tuple[str, str], list[OtlpSpan]] = {}
    for span in spans:
        groups.setdefault((span.service, span.team), []).append(to_otlp_span(span))
    out = []
    for (service, team), otlp_spans in groups.items():
        resource_attributes: dict[str, Any] = {SERVICE_NAME: service} if service else {}
        if team:
            resource_attributes[RESOURCE_TEAM] = team
        out.append(
            ResourceSpans(
                resource=Resource(attributes=to_key_values(resource_attributes)),
                scope_spans=[ScopeSpans(scope=InstrumentationScope(name=SCOPE_NAME), spans=otlp_spans)],
            )
        )
    return out


_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _ids_to_hex(node: dict[str, Any]) -> None:
    # The protobuf JSON mapping writes bytes as base64; the OTLP JSON encoding wants hex ids.
    for key in _ID_FIELDS:
        if key in node:
            node[key] = base64.b64decode(node[key]).hex()


def otlp_json(spans: Iterable[SpanLike]) -> dict[str, Any]:
    """The spans as an OTLP JSON ``TracesData`` document (``{"resourceSpans": [...]}``): camelCase
    keys, hex trace/span ids, integer enums, 64-bit integers as strings."""
    data = TracesData(resource_spans=to_resource_spans(spans))
    document: dict[str, Any] = json_format.MessageToDict(data, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                _ids_to_hex(span)
                for link in span.get("links", []):
                    _ids_to_hex(link)
    document.setdefault("resourceSpans", [])
    return document


# ---------- OTLP -> records ----------


def records_from_resource_spans(
    resource_spans: Iterable[ResourceSpans], *, team: str
) -> tuple[list[SpanRecord], int]:
    """Decode received spans, stamped with ``team`` (the authenticated sender, never a resource
    attribute). Returns the records and how many spans were rejected for invalid ids."""
    records: list[SpanRecord] = []
    rejected = 0
    for record in iter_span_records(resource_spans, team=team):
        if record is None:
            rejected += 1
        else:
            records.append(record)
    return records, rejected


def iter_span_records(resource_spans: Iterable[ResourceSpans], *, team: str) -> Iterator[SpanRecord | None]:
    """``records_from_resource_spans`` one span at a time (None: a span rejected for invalid
    ids), for a caller that pauses between them (the receiver, on the event loop)."""
    for resource in resource_spans:
        resource_attributes = from_key_values(resource.resource.attributes)
        service = str(resource_attributes.get(SERVICE_NAME) or "unknown_service")
        for scope in resource.scope_spans:
            for span in scope.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8 or not any(span.trace_id):
                    yield None
                    continue
                attributes = from_key_values(span.attributes)
                yield SpanRecord(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex() if len(span.parent_span_id) == 8 else "",
                    name=span.name,
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    team=team,
                    service=service,
                    kind=_KIND_FROM_OTLP.get(span.kind, "internal"),
                    status=_STATUS_FROM_OTLP.get(span.status.code, "unset"),
                    status_message=span.status.message,
                    attributes=attributes,
                    events=[
                        {
                            "name": event.name,
                            "time_ns": event.time_unix_nano,
                            "attributes": from_key_values(event.attributes),
                        }
                        for event in span.events
                    ],
                    links=[
                        {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()}
                        for link in span.links
                        if len(link.trace_id) == 16 and len(link.span_id) == 8
                    ],
                    run_id=str(attributes.get(attrs.RUN_ID) or resource_attributes.get(attrs.RUN_ID) or ""),
                )
