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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from coordinator.telemetry.hops import ATTEMPT, NOT_STARTED, STEP, Hop, assign_hops, hop_summary, is_hop_row
from coordinator.telemetry.visibility import SpanView

_BAR = "█"
_TICK = "▏"  # a span too short to fill one cell still shows where it happened


@dataclass(frozen=True)
class WaterfallStyle:
    bar_width: int = 32
    name_width: int = 0  # 0: as wide as the longest name, 24 to 72 columns
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


def render_waterfall(
    spans: Sequence[SpanView],
    *,
    trace_id: str = "",
    style: WaterfallStyle | None = None,
    all_spans: bool = True,
    step_errors: Mapping[str, str] | None = None,
) -> str:
    """The waterfall text (ends with a newline). An empty trace says so in one line.

    ``all_spans=False`` prints one row per hop (the run, each step, each for_each item) instead
    of every span. ``step_errors`` (step id -> "Type: message", what ``runs show`` says) gives a
    failed hop its error where the viewer's spans do not carry it (another team's hop)."""
    style = style or WaterfallStyle()
    if not spans:
        return f"trace {trace_id or '?'}: no spans recorded\n"
    step_errors = step_errors or {}
    hops = assign_hops(spans)
    t0 = min(span.start_ns for span in spans)
    t1 = max(span.end_ns for span in spans)
    total = max(t1 - t0, 0)
    trace = trace_id or spans[0].trace_id
    order = tree_order(spans)
    shown = order if all_spans else [(d, s) for d, s in order if is_hop_row(hops[s.span_id])]
    rows = f"{len(spans)} spans" if all_spans else f"{len(shown)} hops of {len(spans)} spans"
    lines = [f"trace {trace} · {rows} · {format_duration(total)}"]
    names = [_name(span, hops[span.span_id], depth, style) for depth, span in shown]
    if not style.name_width:
        style = replace(style, name_width=min(max(24, *(len(n) for n in names)), 72))
    lines.append(
        f"{('span' if all_spans else 'hop').ljust(style.name_width)}  {'team'.ljust(style.team_width)}  "
        f"{'duration':>8}  {'timeline'.ljust(style.bar_width)}  status"
    )
    for name, (_depth, span) in zip(names, shown, strict=True):
        lines.append(_line(name, span, hops[span.span_id], t0, total, style, all_spans, step_errors))
    return "\n".join(lines) + "\n"


def _name(span: SpanView, hop: Hop, depth: int, style: WaterfallStyle) -> str:
    name = style.indent * depth + hop.label
    if span.redacted and hop.role not in (STEP, ATTEMPT):  # steps and attempts have a team column
        name += " (other team)"
    return name


def _line(
    name: str,
    span: SpanView,
    hop: Hop,
    t0: int,
    total: int,
    style: WaterfallStyle,
    all_spans: bool,
    step_errors: Mapping[str, str],
) -> str:
    team = span.team or span.owner or "-"
    not_run = hop.state in (NOT_STARTED, "skipped")
    duration = "-" if not_run else format_duration(span.duration_ns)
    bar = " " * style.bar_width if not_run else _bar(span, t0, total, style.bar_width)
    summary = "" if all_spans else hop_summary(hop)  # "2 attempts": the retry, expanded by --all-spans
    status = f"{hop.state} ({summary})" if summary else hop.state
    line = f"{_fit(name, style.name_width)}  {_fit(team, style.team_width)}  {duration:>8}  {bar}  {status}"
    message = _message(span, hop, step_errors)
    # The message only when it says more than the status (spans stored before the engine
    # left a never-started step's status unset carry the message "error").
    if hop.state == "error" and message and message != hop.state:
        line += f"  {message}"
    return line.rstrip()


def _message(span: SpanView, hop: Hop, step_errors: Mapping[str, str]) -> str:
    if span.status_message:
        return span.status_message
    if hop.role == "step":
        return step_errors.get(hop.step_id, "")
    return ""
