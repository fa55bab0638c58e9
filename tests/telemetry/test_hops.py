"""Hops: a trace read one step at a time (the run, each step, each for_each item), with
attempts labelled "attempt 2/3" and one state word per step shared by every view."""

from __future__ import annotations

from dataclasses import replace

from coordinator.telemetry.hops import (
    ATTEMPT,
    INNER,
    RUN,
    STEP,
    assign_hops,
    hop_summary,
    step_state,
    with_hops,
)
from coordinator.telemetry.visibility import SpanView, scope_spans
from coordinator.telemetry.waterfall import render_waterfall

from .spans_fixture import three_team_trace

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
NOTIFY = {"accord.contract": "crm/notify-customer", "accord.contract_version": "1.0.0"}


def _span(span_id: str, parent: str, name: str, start: int, end: int, **kw: object) -> SpanView:
    return SpanView(
        trace_id="t" * 32,
        span_id=span_id.ljust(16, "0"),
        parent_span_id=parent.ljust(16, "0") if parent else "",
        name=name,
        start_ns=T0 + start * MS,
        end_ns=T0 + end * MS,
        **kw,  # type: ignore[arg-type]
    )


def fan_out_trace() -> list[SpanView]:
    """A for_each over two items as the coordinator records it: the parent step span, one step
    span per item, their attempts (item 1 failed twice then gave up after 3) and agent spans."""

    def step(step_id: str, status: str) -> dict[str, object]:
        return {
            **NOTIFY,
            "accord.step_id": step_id,
            "accord.step_status": status,
            "accord.step_started": True,
        }

    def attempt(step_id: str, number: int, status: str) -> dict[str, object]:
        return {
            **NOTIFY,
            "accord.step_id": step_id,
            "accord.attempt": number,
            "accord.attempt_status": status,
        }

    return [
        _span("a0", "", "run shipping/order-to-cash", 0, 100, team="shipping", status="error"),
        _span("b0", "a0", "step notify", 1, 90, team="crm", status="error", attributes=step("notify", "failed")),
        _span("c0", "b0", "step notify[0]", 2, 20, team="crm", status="ok", attributes=step("notify[0]", "succeeded")),
        _span("d0", "c0", "attempt 1 crm/notify-customer@1.0.0", 2, 20, team="crm", status="ok",
              attributes=attempt("notify[0]", 1, "succeeded")),
        _span("e0", "d0", "engine.python", 3, 19, team="crm"),
        _span("c1", "b0", "step notify[1]", 2, 90, team="crm", status="error",
              status_message="Bounce: gave up after 3 attempts", attributes=step("notify[1]", "failed")),
        *[
            _span(f"d{n}", "c1", f"attempt {n} crm/notify-customer@1.0.0", 10 * n, 10 * n + 5, team="crm",
                  status="error", status_message="Bounce: mailbox full", attributes=attempt("notify[1]", n, "failed"))
            for n in (1, 2, 3)
        ],
    ]  # fmt: skip


def test_for_each_items_are_hops_labelled_by_index_and_attempts_by_number_of_total() -> None:
    hops = {
        span.name: hop for span in fan_out_trace() for hop in [assign_hops(fan_out_trace())[span.span_id]]
    }
    assert hops["run shipping/order-to-cash"].role == RUN
    parent = hops["step notify"]
    assert (parent.role, parent.label, parent.items, parent.state) == (
        STEP,
        "notify · crm/notify-customer@1.0.0",
        2,
        "error",
    )
    assert hop_summary(parent) == "2 items"
    first, second = hops["step notify[0]"], hops["step notify[1]"]
    assert first.label == "[0] · crm/notify-customer@1.0.0" and first.attempts == 1
    assert second.label == "[1] · crm/notify-customer@1.0.0" and hop_summary(second) == "3 attempts"
    assert hops["attempt 2 crm/notify-customer@1.0.0"].role == ATTEMPT
    assert hops["attempt 2 crm/notify-customer@1.0.0"].label == "attempt 2/3"
    assert hops["attempt 2 crm/notify-customer@1.0.0"].step_id == "notify[1]"
    engine = hops["engine.python"]
    assert engine.role == INNER and engine.step_id == "notify[0]"


def test_the_hop_view_has_one_row_per_hop_and_the_failed_items_message() -> None:
    text = render_waterfall(fan_out_trace(), all_spans=False)
    lines = text.splitlines()
    assert lines[0].startswith("trace " + "t" * 32 + " · 4 hops of 9 spans")
    width = lines[1].index("team")
    rows = {line[:width].strip(): line[width:] for line in lines[2:]}
    assert list(rows) == [
        "run shipping/order-to-cash",
        "notify · crm/notify-customer@1.0.0",
        "[0] · crm/notify-customer@1.0.0",
        "[1] · crm/notify-customer@1.0.0",
    ]
    assert "error (2 items)" in rows["notify · crm/notify-customer@1.0.0"]
    assert rows["[1] · crm/notify-customer@1.0.0"].endswith(
        "error (3 attempts)  Bounce: gave up after 3 attempts"
    )
    everything = render_waterfall(fan_out_trace(), all_spans=True)
    assert "attempt 3/3" in everything and "engine.python" in everything


def test_another_teams_failed_hop_shows_the_steps_error() -> None:
    """The box of another team's step carries no message; the step's error (what `runs show`
    gives the viewer) fills it in."""
    records = [
        replace(r, status="error", attributes={**r.attributes, "accord.step_status": "failed"})
        if r.name == "step charge"
        else r
        for r in three_team_trace()
    ]
    views = scope_spans(records, "warehouse")
    assert all(v.status_message == "" for v in views if v.team == "payments")
    text = render_waterfall(views, all_spans=False, step_errors={"charge": "EngineError: gateway timeout"})
    charge = next(line for line in text.splitlines() if line.lstrip().startswith("charge ·"))
    assert charge.rstrip().endswith("error (2 attempts)  EngineError: gateway timeout")


def test_step_states_are_one_word_for_every_view() -> None:
    assert step_state("succeeded", True) == "ok"
    assert step_state("failed", True) == "error"
    assert step_state("cancelled", True) == "cancelled"
    assert step_state("cancelled", False) == "not started"
    assert step_state("cancelled", None, has_duration=False) == "not started"
    assert step_state("skipped", False) == "skipped"
    assert step_state("running", True) == "running"


def test_json_spans_carry_their_hop() -> None:
    spans = with_hops(fan_out_trace())
    by_name = {s.name: s.attributes for s in spans}
    assert by_name["engine.python"]["accord.hop"] == "notify[0]"
    assert by_name["attempt 3 crm/notify-customer@1.0.0"]["accord.hop"] == "notify[1]"
    assert by_name["run shipping/order-to-cash"]["accord.hop"] == ""
    assert by_name["engine.python"]["accord.hop_span_id"] == "c0".ljust(16, "0")
