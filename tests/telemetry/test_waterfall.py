"""The terminal waterfall: one line per span, indented by parent, team, duration, bar, status."""

from __future__ import annotations

from coordinator.telemetry.visibility import SpanView, scope_spans
from coordinator.telemetry.waterfall import WaterfallStyle, format_duration, render_waterfall, tree_order

from .spans_fixture import TRACE, three_team_trace


def test_waterfall_lines_follow_the_tree_with_team_duration_status_and_error() -> None:
    text = render_waterfall(scope_spans(three_team_trace(), None), trace_id=TRACE)
    lines = text.splitlines()
    assert lines[0] == f"trace {TRACE} · 7 spans · 4.00s"
    body = lines[2:]
    assert len(body) == 7
    names = [line[: lines[1].index("team")].rstrip() for line in body]
    assert names == [
        "run shipping/order-to-cash",
        "  charge · payments/charge-card@1.2.0",
        "    attempt 1/2",
        "      engine.http",
        "    attempt 2/2",
        "  reserve · warehouse/reserve-stock@2.0.1",
        "    engine.shell",
    ]
    assert "shipping" in body[0] and "4.00s" in body[0] and "error  step charge failed" in body[0]
    assert body[2].endswith("error  EngineError: gateway timeout for card tok_x")
    assert body[3].endswith("error  HTTP 504")
    assert body[4].rstrip().endswith("ok") and "1.00s" in body[4]
    assert body[6].rstrip().endswith("-")  # unset status
    assert "200ms" in body[6]


def test_bars_sit_on_the_runs_timeline() -> None:
    style = WaterfallStyle(bar_width=40, name_width=44)
    text = render_waterfall(scope_spans(three_team_trace(), None), style=style)
    body = text.splitlines()[2:]

    def bar(line: str) -> str:
        start = 44 + 2 + 12 + 2 + 8 + 2
        return line[start : start + 40]

    assert bar(body[0]) == "█" * 40  # the run spans the whole trace
    second_attempt = bar(body[4])  # 2s..3s of 4s
    assert second_attempt.index("█") == 20 and second_attempt.count("█") == 10


def test_redacted_spans_are_marked_and_show_no_error_text() -> None:
    text = render_waterfall(scope_spans(three_team_trace(), "warehouse"))
    attempt = next(line for line in text.splitlines() if line.startswith("    attempt 1/2"))
    assert attempt.rstrip().endswith("error")
    inner = next(line for line in text.splitlines() if line.startswith("      payments/charge-card@1.2.0"))
    assert "(other team)" in inner
    assert "gateway" not in text and "engine.http" not in text


def test_orphans_are_roots_and_cycles_do_not_hang() -> None:
    views = [
        SpanView("t" * 32, "1" * 16, "9" * 16, "orphan", 0, 10),
        SpanView("t" * 32, "2" * 16, "3" * 16, "cycle-a", 1, 2),
        SpanView("t" * 32, "3" * 16, "2" * 16, "cycle-b", 1, 2),
    ]
    order = tree_order(views)
    assert (order[0][0], order[0][1].name) == (0, "orphan")
    assert len(order) <= 3
    assert render_waterfall([], trace_id="abc") == "trace abc: no spans recorded\n"


def test_durations() -> None:
    assert format_duration(850_000) == "850µs"
    assert format_duration(12_000_000) == "12ms"
    assert format_duration(1_234_000_000) == "1.23s"
    assert format_duration(123_000_000_000) == "2m03s"
    assert format_duration(3_723_000_000_000) == "1h02m"
