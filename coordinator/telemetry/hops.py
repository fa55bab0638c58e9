"""Hops: a run's trace read one step at a time, the same in the terminal and in the UI.

A *hop* is one step of the run handed to a team: the coordinator's step span and everything
under it (its attempts, the agent's and the engine's spans). A ``for_each`` step is a hop whose
items are hops of their own (``notify[0]``, ``notify[1]``). Read hop by hop, a trace of 40 spans
is a handful of rows: ``charge · payments/charge-card@1.2.0 · 2 attempts · ok``; expanded, the
hop shows its attempts (``attempt 1/2``) and, for its own team, the spans inside.

Every span gets the hop it belongs to (``hop_of``), a short label (``label``) and, for step
spans, one state word (``step_state``) that every view uses: ``ok``, ``error``, ``running``,
``cancelled`` (it ran, then its run ended), ``not started`` (its run ended before it began),
``skipped`` (its ``when`` was false).

Pure functions over ``SpanView``s (docs/ui.md, "Reading a trace").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from coordinator.telemetry import attributes as attrs
from coordinator.telemetry.visibility import SpanView

STEP_STATUS = "accord.step_status"
STEP_STARTED = "accord.step_started"
ATTEMPT_STATUS = "accord.attempt_status"
HOP = "accord.hop"  # added to every span of ``runs trace --json``: the step id of its hop
HOP_SPAN_ID = "accord.hop_span_id"

# Roles of a span in its hop.
RUN = "run"
STEP = "step"  # a step's span (a for_each item's too)
ATTEMPT = "attempt"
INNER = "inner"  # the agent's and the engine's spans inside an attempt
OTHER = "other"  # a span outside every step that is not a root

NOT_STARTED = "not started"


def step_state(status: str, started: bool | None, *, has_duration: bool = True) -> str:
    """The one word for a step's state in every view. ``status`` is the step's status
    (``succeeded``, ``failed``, ``cancelled``, ``skipped``, ``running``...); ``started`` whether
    it was ever handed to an agent or fanned out (``None`` when unknown: then a step with no
    duration never ran)."""
    if status == "cancelled":
        ran = started if started is not None else has_duration
        return "cancelled" if ran else NOT_STARTED
    return {"succeeded": "ok", "failed": "error"}.get(status, status or "-")


def shown_step_status(status: str, started: bool) -> str:
    """A step's status as ``runs show`` and the UI's step panels print it: the status, except
    that a step cancelled before it began is ``not started`` (as in the trace)."""
    return NOT_STARTED if status == "cancelled" and not started else status


def step_was_started(step_id: str, attempts: int, all_step_ids: Sequence[str]) -> bool:
    """Whether a step ever ran: it made an attempt, or it is a for_each step with items."""
    return attempts > 0 or any(other.startswith(f"{step_id}[") for other in all_step_ids)


@dataclass(frozen=True)
class Hop:
    """Where one span sits: its hop (a step span's id, ``""`` outside every step), its role in
    it, and the label every view prints for it."""

    hop_span_id: str
    step_id: str
    role: str
    label: str
    state: str
    attempts: int = 0  # of a step: how many attempts it made
    items: int = 0  # of a for_each step: how many items


def _attributes(span: SpanView) -> Mapping[str, Any]:
    return span.attributes or {}


def is_step_span(span: SpanView) -> bool:
    a = _attributes(span)
    if STEP_STATUS in a:
        return True
    return not span.redacted and span.name.startswith("step ") and bool(a.get(attrs.STEP_ID))


def span_state(span: SpanView) -> str:
    """A span's state word: a step span's from its step, any other span's from its status."""
    a = _attributes(span)
    if STEP_STATUS in a:
        started = a.get(STEP_STARTED)
        return step_state(
            str(a[STEP_STATUS]),
            None if started is None else bool(started),
            has_duration=span.duration_ns > 0,
        )
    if span.status == "error":
        return "error"
    if span.status == "ok":
        return "ok"
    return "-"


def _contract(span: SpanView) -> str:
    a = _attributes(span)
    contract = str(a.get(attrs.CONTRACT) or "")
    version = str(a.get(attrs.CONTRACT_VERSION) or "")
    if contract and version and "@" not in contract:
        return f"{contract}@{version}"
    return contract


def _item_suffix(step_id: str) -> str:
    """``notify[3]`` -> ``[3]``; ``charge`` -> ``""``."""
    return step_id[step_id.index("[") :] if "[" in step_id and step_id.endswith("]") else ""


def assign_hops(spans: Sequence[SpanView]) -> dict[str, Hop]:
    """span id -> its ``Hop``, for every span of a trace (as any viewer sees it)."""
    by_id = {span.span_id: span for span in spans}
    children: dict[str, list[SpanView]] = {}
    for span in spans:
        if span.parent_span_id in by_id and span.parent_span_id != span.span_id:
            children.setdefault(span.parent_span_id, []).append(span)

    def step_above(span: SpanView) -> SpanView | None:
        """The nearest step span at or above ``span`` (bounded: bad input may loop)."""
        current: SpanView | None = span
        seen: set[str] = set()
        while current is not None and current.span_id not in seen:
            seen.add(current.span_id)
            if is_step_span(current):
                return current
            current = by_id.get(current.parent_span_id)
        return None

    def attempts_of(step: SpanView) -> list[SpanView]:
        return sorted(
            (k for k in children.get(step.span_id, []) if _is_attempt(k, step)),
            key=lambda k: (_attempt_number(k), k.start_ns),
        )

    out: dict[str, Hop] = {}
    for span in spans:
        parent = by_id.get(span.parent_span_id) if span.parent_span_id != span.span_id else None
        hop = step_above(span)
        if hop is None:
            role = RUN if parent is None else OTHER
            out[span.span_id] = Hop(
                "", "", role, _run_label(span) if role == RUN else span.name, span_state(span)
            )
            continue
        step_id = str(_attributes(hop).get(attrs.STEP_ID) or "")
        if hop is span:
            items = [k for k in children.get(span.span_id, []) if is_step_span(k)]
            attempts = attempts_of(span)
            out[span.span_id] = Hop(
                span.span_id,
                step_id,
                STEP,
                _step_label(span, step_id, is_item=bool(parent is not None and is_step_span(parent))),
                span_state(span),
                attempts=len(attempts),
                items=len(items),
            )
        elif parent is hop and _is_attempt(span, hop):
            siblings = attempts_of(hop)
            number = _attempt_number(span) or (siblings.index(span) + 1)
            out[span.span_id] = Hop(
                hop.span_id, step_id, ATTEMPT, f"attempt {number}/{len(siblings)}", span_state(span)
            )
        else:
            out[span.span_id] = Hop(hop.span_id, step_id, INNER, span.name, span_state(span))
    return out


def _is_attempt(span: SpanView, step: SpanView) -> bool:
    return (
        span.parent_span_id == step.span_id
        and not is_step_span(span)
        and (attrs.ATTEMPT in _attributes(span) or span.name.startswith("attempt "))
    )


def _attempt_number(span: SpanView) -> int:
    try:
        return int(_attributes(span).get(attrs.ATTEMPT) or 0)
    except (TypeError, ValueError):
        return 0


def _run_label(span: SpanView) -> str:
    return span.name


def _step_label(span: SpanView, step_id: str, *, is_item: bool) -> str:
    contract = _contract(span) or (span.name if span.redacted else "")
    name = (_item_suffix(step_id) or step_id) if is_item else step_id
    if not name:
        name = span.name
    return f"{name} · {contract}" if contract else name


def hop_summary(hop: Hop) -> str:
    """What a collapsed hop row adds after its label: ``2 attempts``, ``2 items``."""
    parts = []
    if hop.items:
        parts.append(f"{hop.items} item{'s' if hop.items != 1 else ''}")
    if hop.attempts > 1:
        parts.append(f"{hop.attempts} attempts")
    return ", ".join(parts)


def is_hop_row(hop: Hop) -> bool:
    """Whether a span is one of the rows of the default (one row per hop) view."""
    return hop.role in (RUN, STEP, OTHER)


def with_hops(spans: Sequence[SpanView]) -> list[SpanView]:
    """The spans, each with the hop it belongs to as attributes (``accord.hop``: the step id,
    ``""`` for the run's own spans; ``accord.hop_span_id``), for ``runs trace --json``."""
    hops = assign_hops(spans)
    return [
        replace(
            span,
            attributes={
                **_attributes(span),
                HOP: hops[span.span_id].step_id,
                HOP_SPAN_ID: hops[span.span_id].hop_span_id,
            },
        )
        for span in spans
    ]
