"""GetRunTrace: a run's spans, scoped to what the viewer may see, in wire form.

The servicer stays thin: ``trace_id, spans = await get_run_trace(store, run, principal)``.
``span_view_from_proto`` is the inverse, for clients (``accord runs trace``).
"""

from __future__ import annotations

import json
from typing import Protocol

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from coordinator.store.records import RunRecord
from coordinator.telemetry.sensitivity import RunSensitivity, SensitivityStore
from coordinator.telemetry.spans import SpanRecord
from coordinator.telemetry.visibility import SpanView, scope_spans

_STATUS_TO_PROTO = {"ok": pb.SPAN_STATUS_OK, "error": pb.SPAN_STATUS_ERROR}
_STATUS_FROM_PROTO = {pb.SPAN_STATUS_OK: "ok", pb.SPAN_STATUS_ERROR: "error"}


class Viewer(Protocol):
    """Who asks (``coordinator.api.auth.Principal``): a team, or the admin."""

    @property
    def team(self) -> str: ...
    @property
    def admin(self) -> bool: ...


class TraceStore(SensitivityStore, Protocol):
    async def spans_for_trace(self, trace_id: str) -> list[SpanRecord]: ...


async def scoped_run_spans(
    store: TraceStore, run: RunRecord, viewer: Viewer, *, sensitivity: RunSensitivity | None = None
) -> list[SpanView]:
    """The spans of ``run``'s trace as ``viewer`` may see them (sensitive values scrubbed for
    every viewer)."""
    spans = await store.spans_for_trace(run.trace_id)
    values = await (sensitivity or RunSensitivity(store)).values(run)
    return scope_spans(spans, None if viewer.admin else viewer.team, sensitive_values=values)


async def get_run_trace(
    store: TraceStore, run: RunRecord, viewer: Viewer, *, sensitivity: RunSensitivity | None = None
) -> tuple[str, list[pb.Span]]:
    """(trace id, wire spans) for ``GetRunTraceResponse``. The caller has already checked that
    ``viewer`` may see the run at all."""
    views = await scoped_run_spans(store, run, viewer, sensitivity=sensitivity)
    return run.trace_id, [span_view_to_proto(view) for view in views]


def span_view_to_proto(view: SpanView) -> pb.Span:
    return pb.Span(
        trace_id=view.trace_id,
        span_id=view.span_id,
        parent_span_id=view.parent_span_id,
        name=view.name,
        team=view.team,
        service=view.service,
        start_unix_nano=view.start_ns,
        end_unix_nano=view.end_ns,
        status=_STATUS_TO_PROTO.get(view.status, pb.SPAN_STATUS_UNSPECIFIED),
        status_message=view.status_message,
        attributes_json=json.dumps(dict(view.attributes), default=str) if view.attributes else "",
        redacted=view.redacted,
        kind=view.kind,
        events_json=json.dumps(list(view.events), default=str) if view.events else "",
        links_json=json.dumps(list(view.links)) if view.links else "",
    )


def span_view_from_proto(span: pb.Span) -> SpanView:
    return SpanView(
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
        name=span.name,
        start_ns=span.start_unix_nano,
        end_ns=span.end_unix_nano,
        team=span.team,
        service=span.service,
        kind=span.kind or "internal",
        status=_STATUS_FROM_PROTO.get(span.status, "unset"),
        status_message=span.status_message,
        attributes=json.loads(span.attributes_json) if span.attributes_json else {},
        events=tuple(json.loads(span.events_json)) if span.events_json else (),
        links=tuple(json.loads(span.links_json)) if span.links_json else (),
        redacted=span.redacted,
        owner=span.team,
    )
