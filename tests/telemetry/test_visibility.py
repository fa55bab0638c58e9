"""Team boundaries: own spans in full, another team's as contract-level boxes, admin sees all."""

from __future__ import annotations

from coordinator.telemetry.visibility import SpanView, owner_of, scope_spans

from .spans_fixture import three_team_trace


def _by_id(views: list[SpanView]) -> dict[str, SpanView]:
    return {v.span_id[:2]: v for v in views}


def test_admin_sees_every_span_in_full() -> None:
    views = _by_id(scope_spans(three_team_trace(), None))
    assert len(views) == 7
    assert not any(v.redacted for v in views.values())
    assert views["d1"].attributes == {"http.url": "http://pay.internal/charge"}
    assert views["c1"].status_message.startswith("EngineError")


def test_a_team_sees_its_own_spans_with_all_attributes() -> None:
    views = _by_id(scope_spans(three_team_trace(), "payments"))
    for own in ("b1", "c1", "d1", "c2"):
        assert not views[own].redacted
    assert views["d1"].name == "engine.http"
    assert views["d1"].attributes["http.url"] == "http://pay.internal/charge"
    assert views["c1"].attributes["accord.agent_id"] == "pay-1"


def test_another_teams_spans_are_contract_level_boxes() -> None:
    views = _by_id(scope_spans(three_team_trace(), "payments"))
    for foreign in ("b2", "d2"):
        box = views[foreign]
        assert box.redacted
        # contract, version, team, timing, status — and nothing else
        assert box.name == "warehouse/reserve-stock@2.0.1"
        assert box.team == "warehouse"
    # The team's own span inside: the contract and version, nothing else.
    assert views["d2"].attributes == {
        "accord.contract": "warehouse/reserve-stock",
        "accord.contract_version": "2.0.1",
    }
    # The coordinator's step span also says which step of the viewer's run it is and how it
    # ended (what `runs show` tells the run's viewers), so the trace groups it into its hop.
    assert views["b2"].attributes == {
        "accord.contract": "warehouse/reserve-stock",
        "accord.contract_version": "2.0.1",
        "accord.step_id": "reserve",
        "accord.step_status": "succeeded",
        "accord.step_started": True,
    }
    for foreign in ("b2", "d2"):
        box = views[foreign]
        assert box.events == () and box.links == () and box.status_message == ""
    original = {s.span_id[:2]: s for s in three_team_trace()}
    assert views["d2"].start_ns == original["d2"].start_ns and views["d2"].end_ns == original["d2"].end_ns
    assert views["d2"].status == "unset" and views["b2"].status == "ok"
    assert "engine.shell" not in repr(views["d2"]) and "reserve.sh" not in repr(views["d2"])
    # The run belongs to the workflow's team: participants see when and how it ended, not why.
    run = views["a1"]
    assert run.redacted and run.name == "workflow shipping/order-to-cash"
    assert run.status == "error" and run.status_message == "" and run.attributes == {}


def test_failed_spans_of_another_team_hide_error_details() -> None:
    views = _by_id(scope_spans(three_team_trace(), "warehouse"))
    assert views["c1"].attributes == {
        "accord.contract": "payments/charge-card",
        "accord.contract_version": "1.2.0",
        "accord.step_id": "charge",
        "accord.attempt": 1,
        "accord.attempt_status": "failed",
    }
    assert views["c1"].redacted and views["c1"].status == "error"
    assert views["c1"].status_message == "" and "EngineError" not in repr(views["c1"])
    assert "gateway" not in repr(views["d1"]) and "504" not in repr(views["d1"])
    assert not views["d2"].redacted and views["d2"].events[0]["attributes"] == {"line": "reserved"}


def test_structure_and_order_are_kept_for_every_viewer() -> None:
    for viewer in (None, "payments", "warehouse", "shipping", "crm"):
        views = scope_spans(three_team_trace(), viewer)
        assert [v.parent_span_id for v in views] == [
            v.parent_span_id for v in scope_spans(three_team_trace(), None)
        ]
        assert [v.start_ns for v in views] == sorted(v.start_ns for v in views)


def test_sensitive_values_are_hidden_from_every_viewer_including_admin() -> None:
    for viewer in (None, "payments"):
        views = scope_spans(three_team_trace(), viewer, sensitive_values={"tok_x"})
        assert "tok_x" not in repr(views)


def test_owner_of_coordinator_spans_comes_from_contract_or_workflow() -> None:
    spans = {s.span_id[:2]: s for s in three_team_trace()}
    from dataclasses import replace

    assert owner_of(replace(spans["c1"], team="")) == "payments"
    assert owner_of(replace(spans["a1"], team="")) == "shipping"
    assert owner_of(replace(spans["d2"], team="", attributes={})) == ""
