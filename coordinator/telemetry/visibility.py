"""Team boundaries in traces: what a viewer may see of each span.

A team sees the spans it owns with every attribute. Another team's span appears as a
contract-level box: the contract and version it served, the owning team, timing and status, and
nothing else (no attributes, events, payloads, error details, nor the span's own name, which would
tell how the team does its part). The admin sees everything.

Who owns a span: the team that produced it (``SpanRecord.team``, the authenticated agent's team);
for the coordinator's own spans, the team of the contract a step/attempt span served, or of the
workflow for a run span.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coordinator.store.records import SpanRecord
from coordinator.telemetry import attributes as attrs
from coordinator.telemetry.scrub import Scrubber


@dataclass(frozen=True)
class SpanView:
    """A span as one viewer may see it (the domain form of the wire ``Span``)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    start_ns: int
    end_ns: int
    team: str = ""  # producing team; "" for the coordinator
    service: str = ""
    kind: str = "internal"
    status: str = "unset"
    status_message: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)
    events: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    links: Sequence[Mapping[str, str]] = field(default_factory=tuple)
    redacted: bool = False
    owner: str = ""  # team that owns the span ("" = the platform)

    @property
    def duration_ns(self) -> int:
        return max(self.end_ns - self.start_ns, 0)


def _team_of(name: Any) -> str:
    return str(name).split("/", 1)[0] if name and "/" in str(name) else ""


def owner_of(span: SpanRecord) -> str:
    """The team that owns ``span`` ("" when it belongs to nobody but the platform)."""
    if span.team:
        return span.team
    attributes = span.attributes
    return (
        _team_of(attributes.get(attrs.CONTRACT))
        or str(attributes.get(attrs.TEAM) or "")
        or _team_of(attributes.get(attrs.WORKFLOW))
    )


def _box_identity(span: SpanRecord, by_id: Mapping[str, SpanRecord]) -> tuple[str, dict[str, Any]]:
    """The contract a span served (looked up the parent chain: agent spans sit under the attempt
    span that names it), as a box label and its attributes."""
    seen: set[str] = set()
    current: SpanRecord | None = span
    while current is not None and current.span_id not in seen:
        seen.add(current.span_id)
        contract = current.attributes.get(attrs.CONTRACT)
        if contract:
            version = current.attributes.get(attrs.CONTRACT_VERSION)
            if not version and "@" in str(contract):  # agents may write "team/name@1.2.0"
                contract, _, version = str(contract).partition("@")
            box = {attrs.CONTRACT: contract}
            if version:
                box[attrs.CONTRACT_VERSION] = version
            adapted = current.attributes.get(attrs.ADAPTED)
            if adapted:  # the caller's own call, adapted: the caller may know it
                box[attrs.ADAPTED] = adapted
            return (f"{contract}@{version}" if version else str(contract)), box
        workflow = current.attributes.get(attrs.WORKFLOW)
        if workflow:
            return f"workflow {workflow}", {}
        current = by_id.get(current.parent_span_id)
    return "hidden", {}


def _full(span: SpanRecord, owner: str) -> SpanView:
    return SpanView(
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
        name=span.name,
        start_ns=span.start_ns,
        end_ns=span.end_ns,
        team=span.team,
        service=span.service,
        kind=span.kind,
        status=span.status,
        status_message=span.status_message,
        attributes=dict(span.attributes),
        events=tuple(span.events),
        links=tuple(span.links),
        owner=owner,
    )


# What a box keeps of the coordinator's step and attempt spans: which step of the viewer's run
# it is, which attempt, and how it ended. The run's viewers see these in ``runs show`` already;
# the hop view of a trace (``hops.py``) groups and labels the boxes by them.
_STEP_KEYS = (attrs.STEP_ID, "accord.step_status", "accord.step_started")
_ATTEMPT_KEYS = (attrs.STEP_ID, attrs.ATTEMPT, "accord.attempt_status")


def _hop_identity(span: SpanRecord) -> dict[str, Any]:
    attributes = span.attributes
    if "accord.step_status" in attributes:
        keys = _STEP_KEYS
    elif "accord.attempt_status" in attributes:
        keys = _ATTEMPT_KEYS
    else:
        return {}
    return {key: attributes[key] for key in keys if key in attributes}


def _box(span: SpanRecord, owner: str, by_id: Mapping[str, SpanRecord]) -> SpanView:
    label, box_attributes = _box_identity(span, by_id)
    box_attributes.update(_hop_identity(span))
    return SpanView(
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
        name=label,
        start_ns=span.start_ns,
        end_ns=span.end_ns,
        team=owner,
        service="",
        kind=span.kind,
        status=span.status,
        attributes=box_attributes,
        redacted=True,
        owner=owner,
    )


def scope_spans(
    spans: Iterable[SpanRecord],
    viewer_team: str | None,
    *,
    sensitive_values: Iterable[str] = (),
) -> list[SpanView]:
    """``spans`` as ``viewer_team`` may see them (``None`` = the admin), ordered by start time.

    ``sensitive_values`` are redacted from every span for every viewer, the admin included
    (the receiver already scrubs on the way in; this covers spans stored before a contract
    marked a field sensitive).
    """
    records = list(spans)
    by_id = {span.span_id: span for span in records}
    scrubber = Scrubber(sensitive_values)
    views: list[SpanView] = []
    for span in records:
        owner = owner_of(span)
        if viewer_team is None or owner in ("", viewer_team):
            views.append(_full(scrubber.record(span), owner))
        else:
            views.append(_box(span, owner, by_id))
    views.sort(key=lambda view: (view.start_ns, view.end_ns))
    return views
