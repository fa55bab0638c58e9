"""A trace as a waterfall in the terminal: one line per span, indented under its parent, with the
owning team, duration, a bar placed on the run's timeline, the status, and a failed span's error.

    trace 4bf92f3577b34da6a3ce929d0e0e4736 · 6 spans · 2.31s
    span                          team      duration  timeline                        status
    run shipping/order-to-cash    shipping     2.31s  ████████████████████████████████  ok
      step charge                 payments     1.20s  ████████████████                  ok
        attempt 1                 payments    400ms   ██████                            error  CardDeclined: card expired

Pure: spans in, text out (``accord runs trace`` prints it; the demo reuses it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.telemetry.visibility import SpanView

_BAR = "█"
_TICK = "▏"  # a span too short to fill one cell still shows where it happened


@dataclass(frozen=True)
class WaterfallStyle:
    bar_width: int = 32
    name_width: int = 44
    team_width: int = 12
    indent: str = "  "


def format_duration(ns: int) -> str:
    """Short human duration: ``850µs``, ``12ms``, ``1.23s``, ``2m03s``."""
    if ns < 1_000_000:
        return f"{ns / 1_000:.0f}µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.0f}ms"
    seconds = ns / 1_000_000_000
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def tree_order(spans: Sequence[SpanView]) -> list[tuple[int, SpanView]]:
    """(depth, span) in depth-first order, children by start time. A span whose parent is not
    in the trace (an agent's span whose parent was not sampled, a caller's span) is a root."""
    ids = {span.span_id for span in spans}
    children: dict[str, list[SpanView]] = {}
    roots: list[SpanView] = []
    for span in spans:
        if span.parent_span_id and span.parent_span_id in ids and span.parent_span_id != span.span_id:
            children.setdefault(span.parent_span_id, []).append(span)
        else:
            roots.append(span)
    order: list[tuple[int, SpanView]] = []
    visited: set[str] = set()

    def visit(span: SpanView, depth: int) -> None:
        if span.span_id in visited:  # a cycle in bad data must not hang the terminal
            return
        visited.add(span.span_id)
        order.append((depth, span))
        for child in sorted(children.get(span.span_id, []), key=_start_key):
            visit(child, depth + 1)

    for root in sorted(roots, key=_start_key):
        visit(root, 0)
    return order


def _start_key(span: SpanView) -> tuple[int, int, str]:
    return (span.start_ns, span.end_ns, span.span_id)


def _fit(text: str, width: int) -> str:
    if len(text) <= width:
        return text.ljust(width)
    return text[: width - 1] + "…"


def _bar(span: SpanView, t0: int, total: int, width: int) -> str:
    if total <= 0:
        return _BAR * width
    start = round((span.start_ns - t0) / total * width)
    end = round((span.end_ns - t0) / total * width)
    start = min(max(start, 0), width - 1)
    end = min(max(end, start), width)
    cells = [" "] * width
    if end == start:
        cells[start] = _TICK
    else:
        for i in range(start, end):
            cells[i] = _BAR
    return "".join(cells)


def _never_started(span: SpanView) -> str:
    """ "not started" or "skipped" for a step span of a step that never ran, else "". Older
    spans lack ``accord.step_started``: a zero-length cancelled or skipped step never ran."""
    step_status = span.attributes.get("accord.step_status")
    if step_status not in ("cancelled", "skipped"):
        return ""
    started = span.attributes.get("accord.step_started")
    if started or (started is None and span.duration_ns > 0):
        return ""
    return "skipped" if step_status == "skipped" else "not started"


def _status(span: SpanView) -> str:
    if span.status == "error":
        return "error"
    if span.status == "ok":
        return "ok"
    if span.attributes.get("accord.step_status") == "cancelled":
        return "cancelled"
    return "-"


def render_waterfall(
    spans: Sequence[SpanView], *, trace_id: str = "", style: WaterfallStyle | None = None
) -> str:
    """The waterfall text (ends with a newline). An empty trace says so in one line."""
    style = style or WaterfallStyle()
    if not spans:
        return f"trace {trace_id or '?'}: no spans recorded\n"
    t0 = min(span.start_ns for span in spans)
    t1 = max(span.end_ns for span in spans)
    total = max(t1 - t0, 0)
    trace = trace_id or spans[0].trace_id
    lines = [f"trace {trace} · {len(spans)} spans · {format_duration(total)}"]
    lines.append(
        f"{'span'.ljust(style.name_width)}  {'team'.ljust(style.team_width)}  {'duration':>8}  "
        f"{'timeline'.ljust(style.bar_width)}  status"
    )
    for depth, span in tree_order(spans):
        name = style.indent * depth + span.name + (" (other team)" if span.redacted else "")
        team = span.team or span.owner or "-"
        not_run = _never_started(span)
        duration = "-" if not_run else format_duration(span.duration_ns)
        bar = " " * style.bar_width if not_run else _bar(span, t0, total, style.bar_width)
        status = not_run or _status(span)
        line = (
            f"{_fit(name, style.name_width)}  {_fit(team, style.team_width)}  {duration:>8}  {bar}  {status}"
        )
        # The message only when it says more than the status (spans stored before the engine
        # left a never-started step's status unset carry the message "error").
        if span.status == "error" and span.status_message and not not_run and span.status_message != status:
            line += f"  {span.status_message}"
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"
