"""A run's spans, scoped to what the viewer may see (``GetRunTrace``).

The servicer stays thin: ``spans = await scoped_run_spans(store, run, principal)``, then each
``SpanView`` goes to the wire with ``coordinator.api.convert.span_to_pb`` (clients read it back
with ``span_from_pb``).
"""

from __future__ import annotations

from typing import Protocol

from coordinator.store.records import RunRecord, SpanRecord
from coordinator.telemetry.sensitivity import RunSensitivity, SensitivityStore
from coordinator.telemetry.visibility import SpanView, scope_spans


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
