"""A step that never started (its run failed or was cancelled first) is shown as such in the
waterfall: no zero-length bar, no error of its own, and never the status twice."""

from __future__ import annotations

from coordinator.engine.spans import step_span
from coordinator.store.records import RunRecord, StepRecord
from coordinator.telemetry.visibility import SpanView
from coordinator.telemetry.waterfall import render_waterfall

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def _span(
    name: str, start_ms: int, end_ms: int, status: str, message: str = "", **attributes: object
) -> SpanView:
    return SpanView(
        trace_id="t" * 32,
        span_id=name.replace(" ", "-").ljust(16, "0")[:16],
        parent_span_id="" if name.startswith("run") else "run-shipping0000",
        name=name,
        start_ns=T0 + start_ms * MS,
        end_ns=T0 + end_ms * MS,
        team="shipping",
        status=status,
        status_message=message,
        attributes=attributes,
    )


def _lines(*spans: SpanView) -> dict[str, str]:
    lines = render_waterfall(list(spans)).splitlines()
    width = lines[1].index("team")
    return {line[:width].strip(): line for line in lines[2:]}


def test_a_never_started_step_says_not_started_without_a_fake_error() -> None:
    lines = _lines(
        _span("run shipping", 0, 1000, "error", "step charge failed"),
        _span("step charge", 0, 900, "error", "CardDeclined: expired", **{"accord.step_status": "failed"}),
        # as the engine now writes it
        _span(
            "step ship",
            1000,
            1000,
            "unset",
            **{"accord.step_status": "cancelled", "accord.step_started": False},
        ),
        # as spans stored before it were written: status error, message "error"
        _span("step notify", 1000, 1000, "error", "error", **{"accord.step_status": "cancelled"}),
        _span(
            "step gift", 1000, 1000, "ok", **{"accord.step_status": "skipped", "accord.step_started": False}
        ),
    )
    for step in ("step ship", "step notify"):
        line = lines[step]
        assert line.rstrip().endswith("not started"), line
        assert "error" not in line and "0µs" not in line and "▏" not in line, line
    assert lines["step gift"].rstrip().endswith("skipped")
    assert lines["step charge"].rstrip().endswith("error  CardDeclined: expired")


def test_the_status_is_never_printed_twice() -> None:
    lines = _lines(
        _span("run shipping", 0, 1000, "error", "error"),
        _span("step charge", 0, 900, "error", "error", **{"accord.step_status": "failed"}),
    )
    assert lines["run shipping"].rstrip().endswith("error") and "error  error" not in lines["run shipping"]
    assert "error  error" not in lines["step charge"]


def test_a_cancelled_step_that_ran_keeps_its_duration() -> None:
    lines = _lines(
        _span("run shipping", 0, 1000, "error", "cancelled by user"),
        _span(
            "step ship",
            100,
            600,
            "unset",
            "",
            **{"accord.step_status": "cancelled", "accord.step_started": True},
        ),
    )
    assert "500ms" in lines["step ship"] and lines["step ship"].rstrip().endswith("cancelled")


def test_the_engine_leaves_a_never_started_steps_status_unset() -> None:
    run = RunRecord(
        run_id="r",
        workflow="shipping/flow",
        workflow_version=1,
        team="shipping",
        status="failed",
        input={},
        created_ms=1,
        trace_id="t" * 32,
        span_id="s" * 16,
    )
    step = StepRecord(
        run_id="r",
        step_id="ship",
        spec_id="ship",
        contract="shipping/ship",
        contract_version="1.0.0",
        team="shipping",
        status="cancelled",
        idempotency_key="k",
        span_id="p" * 16,
        started_ms=5,  # the engine sets it to finished_ms when the step never started
        finished_ms=5,
    )
    span = step_span(run, step, "s" * 16)
    assert (span.status, span.status_message) == ("unset", "")
    assert span.attributes["accord.step_started"] is False
