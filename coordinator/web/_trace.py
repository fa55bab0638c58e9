"""Waterfall layout of a run's trace: row order, depth, critical path, the failing span.

Pure functions over the span dicts of ``Source.get_trace``; the browser only draws the result.
"""

from __future__ import annotations

import time
from typing import Any

from coordinator.telemetry.attributes import STEP_ID
from coordinator.telemetry.hops import assign_hops, hop_summary, is_hop_row
from coordinator.telemetry.visibility import SpanView

JSONDict = dict[str, Any]

# Attribute keys that say which step a span belongs to (the coordinator's and agents' spans).
STEP_KEYS = (STEP_ID,)


def _step_of(span: JSONDict) -> str:
    attrs = span.get("attributes") or {}
    for key in STEP_KEYS:
        value = attrs.get(key)
        if value:
            return str(value)
    return ""


def layout_trace(trace: JSONDict, *, now_ns: int | None = None) -> JSONDict:
    """Order spans depth-first (children by start time), mark the critical path and the
    span where the failure started. Spans still open (``end_ns == 0``) end at ``now_ns``."""
    spans: list[JSONDict] = [dict(s) for s in trace.get("spans", [])]
    if now_ns is None:
        now_ns = time.time_ns()
    by_id: dict[str, JSONDict] = {}
    for span in spans:
        span["open"] = not span.get("end_ns")
        if span["open"]:
            span["end_ns"] = max(now_ns, span["start_ns"])
        span["step_id"] = _step_of(span)
        by_id[span["span_id"]] = span

    children: dict[str, list[JSONDict]] = {}
    roots: list[JSONDict] = []
    for span in spans:
        parent = span.get("parent_span_id") or ""
        if parent and parent in by_id and parent != span["span_id"]:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)
    for kids in children.values():
        kids.sort(key=lambda s: (s["start_ns"], s["end_ns"]))
    roots.sort(key=lambda s: (s["start_ns"], s["end_ns"]))

    ordered: list[JSONDict] = []
    stack: list[tuple[JSONDict, int]] = [(r, 0) for r in reversed(roots)]
    seen: set[str] = set()
    while stack:
        span, depth = stack.pop()
        if span["span_id"] in seen:  # defends against cycles in bad input
            continue
        seen.add(span["span_id"])
        span["depth"] = depth
        span["row"] = len(ordered)
        kids = children.get(span["span_id"], [])
        span["child_count"] = len(kids)
        ordered.append(span)
        stack.extend((kid, depth + 1) for kid in reversed(kids))

    _add_hops(ordered)
    critical = critical_path(roots, children)
    for span in ordered:
        span["critical"] = span["span_id"] in critical

    t0 = min((s["start_ns"] for s in ordered), default=0)
    t1 = max((s["end_ns"] for s in ordered), default=0)
    teams = sorted({s.get("team") or "" for s in ordered})
    failing = failing_span(ordered, children)
    # Offsets from the trace start in ms: exact, where ns since the epoch are not in a JS number.
    for span in ordered:
        span["offset_ms"] = (span["start_ns"] - t0) / 1e6
        span["duration_ms"] = (span["end_ns"] - span["start_ns"]) / 1e6
    return {
        "trace_id": trace.get("trace_id", ""),
        "t0_ns": t0,
        "t1_ns": t1,
        "duration_ms": (t1 - t0) / 1e6,
        "teams": teams,
        "span_count": len(ordered),
        "error_count": sum(1 for s in ordered if s.get("status") == "error"),
        "failing_span_id": failing["span_id"] if failing else "",
        # The hop (a step span) the failure is in: the row to open in the one-row-per-hop view.
        "failing_hop_id": (failing.get("hop_span_id") or failing["span_id"]) if failing else "",
        "hop_count": sum(1 for s in ordered if s["hop_row"]),
        "critical_path": [s["span_id"] for s in ordered if s["critical"]],
        "spans": ordered,
    }


def _add_hops(spans: list[JSONDict]) -> None:
    """Each span's hop (``hops.py``): the step span it belongs to, its role, label and state,
    and whether it is a row of the default one-row-per-hop view."""
    views = [
        SpanView(
            trace_id="",
            span_id=str(span["span_id"]),
            parent_span_id=str(span.get("parent_span_id") or ""),
            name=str(span.get("name") or ""),
            start_ns=int(span["start_ns"]),
            end_ns=int(span["end_ns"]),
            team=str(span.get("team") or ""),
            status=str(span.get("status") or "unset"),
            status_message=str(span.get("status_message") or ""),
            attributes=span.get("attributes") or {},
            redacted=bool(span.get("redacted")),
        )
        for span in spans
    ]
    hops = assign_hops(views)
    for span in spans:
        hop = hops[span["span_id"]]
        span["hop_span_id"] = hop.hop_span_id
        span["role"] = hop.role
        span["label"] = hop.label
        span["state"] = hop.state
        span["summary"] = hop_summary(hop)
        span["hop_row"] = is_hop_row(hop)
        if hop.step_id:
            span["step_id"] = hop.step_id


def critical_path(roots: list[JSONDict], children: dict[str, list[JSONDict]]) -> set[str]:
    """Span ids on the critical path: from the root that ends last, walk back from its end,
    each time into the child that finished last before the current point (as Jaeger does)."""
    if not roots:
        return set()
    path: set[str] = set()
    root = max(roots, key=lambda s: s["end_ns"])
    work: list[tuple[JSONDict, int]] = [(root, root["end_ns"])]
    while work:
        span, bound = work.pop()
        if span["span_id"] in path:
            continue
        path.add(span["span_id"])
        cursor = min(span["end_ns"], bound)
        for kid in sorted(children.get(span["span_id"], []), key=lambda s: s["end_ns"], reverse=True):
            if kid["start_ns"] >= cursor:
                continue
            work.append((kid, cursor))
            cursor = kid["start_ns"]
    return path


def failing_span(ordered: list[JSONDict], children: dict[str, list[JSONDict]]) -> JSONDict | None:
    """Where the failure started: among error spans with no error below them, the one that
    ended first (later errors are usually the same failure propagating upward)."""
    leaves = [
        s
        for s in ordered
        if s.get("status") == "error"
        and not any(k.get("status") == "error" for k in children.get(s["span_id"], []))
    ]
    if not leaves:
        return None
    # An attempt cancelled because the run failed elsewhere is not where the failure started,
    # even when it ended in the same millisecond.
    return min(leaves, key=lambda s: (_cancelled(s), s["end_ns"], -s["depth"]))


def _cancelled(span: JSONDict) -> bool:
    attributes = span.get("attributes") or {}
    return attributes.get("accord.attempt_status") == "cancelled" or (
        attributes.get("accord.step_status") == "cancelled"
    )
