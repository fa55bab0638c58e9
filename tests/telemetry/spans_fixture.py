"""A small three-team trace, shaped like what the coordinator and agents record."""

from __future__ import annotations

from coordinator.store.records import SpanRecord

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
S = 1_000_000_000  # one second in ns
T0 = 1_700_000_000 * S


def span(span_id: str, parent: str, name: str, start: float, end: float, **kw: object) -> SpanRecord:
    return SpanRecord(
        trace_id=TRACE,
        span_id=span_id.ljust(16, "0"),
        parent_span_id=parent.ljust(16, "0") if parent else "",
        name=name,
        start_ns=T0 + int(start * S),
        end_ns=T0 + int(end * S),
        **kw,  # type: ignore[arg-type]
    )


def three_team_trace() -> list[SpanRecord]:
    charge = {"accord.contract": "payments/charge-card", "accord.contract_version": "1.2.0"}
    reserve = {"accord.contract": "warehouse/reserve-stock", "accord.contract_version": "2.0.1"}
    return [
        span(
            "a1",
            "",
            "run shipping/order-to-cash",
            0,
            4,
            team="shipping",
            status="error",
            status_message="step charge failed",
            attributes={
                "accord.run_id": "r-1",
                "accord.workflow": "shipping/order-to-cash",
                "accord.team": "shipping",
            },
        ),
        span(
            "b1",
            "a1",
            "step charge",
            0.1,
            3,
            team="payments",
            status="ok",
            attributes={
                **charge,
                "accord.step_id": "charge",
                "accord.team": "payments",
                "accord.step_status": "succeeded",
                "accord.step_started": True,
            },
        ),
        span(
            "c1",
            "b1",
            "attempt 1 payments/charge-card@1.2.0",
            0.1,
            1,
            team="payments",
            kind="client",
            status="error",
            status_message="EngineError: gateway timeout for card tok_x",
            attributes={
                **charge,
                "accord.step_id": "charge",
                "accord.attempt": 1,
                "accord.attempt_status": "failed",
                "accord.agent_id": "pay-1",
                "error.type": "EngineError",
            },
        ),
        span(
            "d1",
            "c1",
            "engine.http",
            0.2,
            0.9,
            team="payments",
            service="accord-agent",
            status="error",
            status_message="HTTP 504",
            attributes={"http.url": "http://pay.internal/charge"},
        ),
        span(
            "c2",
            "b1",
            "attempt 2 payments/charge-card@1.2.0",
            2,
            3,
            team="payments",
            kind="client",
            status="ok",
            attributes={
                **charge,
                "accord.step_id": "charge",
                "accord.attempt": 2,
                "accord.attempt_status": "succeeded",
                "accord.agent_id": "pay-2",
            },
        ),
        span(
            "b2",
            "a1",
            "step reserve",
            0.15,
            0.5,
            team="warehouse",
            status="ok",
            attributes={
                **reserve,
                "accord.step_id": "reserve",
                "accord.team": "warehouse",
                "accord.step_status": "succeeded",
                "accord.step_started": True,
            },
        ),
        span(
            "d2",
            "b2",
            "engine.shell",
            0.2,
            0.4,
            team="warehouse",
            service="accord-agent",
            status="unset",
            events=[{"name": "stdout", "time_ns": T0, "attributes": {"line": "reserved"}}],
            attributes={"process.command": "./reserve.sh"},
        ),
    ]
