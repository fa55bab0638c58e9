"""Waterfall layout and step graph: pure functions the pages draw from."""

from __future__ import annotations

from typing import Any

from coordinator.web._graph import step_graph, team_graph
from coordinator.web._trace import layout_trace
from tests.web.fake_source import WORKFLOW_SOURCE


def span(sid: str, parent: str, start: int, end: int, status: str = "ok", team: str = "") -> dict[str, Any]:
    return {
        "span_id": sid,
        "parent_span_id": parent,
        "name": sid,
        "team": team,
        "start_ns": start,
        "end_ns": end,
        "status": status,
        "attributes": {"accord.step_id": sid},
    }


def test_critical_path_follows_the_last_finishing_chain_and_retries() -> None:
    trace = {
        "trace_id": "t",
        "spans": [
            span("run", "", 0, 100, "error"),
            span("charge", "run", 0, 30, team="payments"),
            span("reserve", "run", 0, 50, team="warehouse"),
            span("ship", "run", 50, 100, "error", team="shipping"),
            span("ship-1", "ship", 50, 60, "error", team="shipping"),
            span("ship-2", "ship", 70, 100, "error", team="shipping"),
            span("ship-2-engine", "ship-2", 72, 98, "error", team="shipping"),
        ],
    }
    out = layout_trace(trace)
    assert [s["span_id"] for s in out["spans"]] == [
        "run",
        "charge",
        "reserve",
        "ship",
        "ship-1",
        "ship-2",
        "ship-2-engine",
    ]
    assert [s["depth"] for s in out["spans"]] == [0, 1, 1, 1, 2, 2, 3]
    assert set(out["critical_path"]) == {"run", "reserve", "ship", "ship-1", "ship-2", "ship-2-engine"}
    # The failure started in attempt 1 (the first error with no error below it).
    assert out["failing_span_id"] == "ship-1"
    assert out["teams"] == ["", "payments", "shipping", "warehouse"]
    assert out["spans"][3]["offset_ms"] == 50 / 1e6


def test_open_spans_end_now_and_orphans_become_roots() -> None:
    out = layout_trace({"spans": [span("a", "missing-parent", 10, 0)]}, now_ns=50)
    assert out["spans"][0]["open"] is True and out["spans"][0]["end_ns"] == 50
    assert out["spans"][0]["depth"] == 0


def test_step_graph_edges_come_from_references_and_fold_for_each_items() -> None:
    workflow = {
        "name": "shipping/order-to-cash",
        "team": "shipping",
        "source_text": WORKFLOW_SOURCE,
        "definition": {},
    }
    steps = [
        {
            "id": "charge",
            "status": "succeeded",
            "contract": "payments/charge-card",
            "contract_version": "1.1.0",
            "team": "payments",
        },
        {
            "id": "reserve",
            "status": "succeeded",
            "contract": "warehouse/reserve-stock",
            "contract_version": "2.0.0",
            "team": "warehouse",
        },
        {
            "id": "ship",
            "status": "failed",
            "contract": "shipping/create-shipment",
            "contract_version": "1.0.0",
            "team": "shipping",
        },
    ]
    graph = step_graph(workflow, steps)
    assert sorted((e["from"], e["to"]) for e in graph["edges"]) == [("charge", "ship"), ("reserve", "ship")]
    layers = {n["id"]: n["layer"] for n in graph["nodes"]}
    assert layers == {"charge": 0, "reserve": 0, "ship": 1}
    items = [
        dict(steps[0], id="notify[0]", status="succeeded"),
        dict(steps[0], id="notify[1]", status="failed"),
    ]
    folded = step_graph(None, items)
    assert [(n["id"], n["status"], n["items"]) for n in folded["nodes"]] == [("notify", "failed", 2)]
    # As the coordinator sends it: the for_each step's own record too. Still two items, not three.
    parent = dict(steps[0], id="notify", status="failed")
    cancelled = dict(steps[0], id="notify[2]", status="cancelled", state="not started")
    folded = step_graph(None, [parent, *items, cancelled])
    (node,) = folded["nodes"]
    assert (node["items"], node["step_ids"]) == (3, ["notify[0]", "notify[1]", "notify[2]"])
    assert node["item_statuses"] == {"succeeded": 1, "failed": 1, "not started": 1}
    assert step_graph(None, [parent])["nodes"][0]["items"] == 1  # no items yet: the step itself
    # A retry's steps that reuse the retried run's output say so.
    reused = [dict(steps[0], reused_from="run-1"), steps[1], steps[2]]
    assert {n["id"]: n["reused"] for n in step_graph(workflow, reused)["nodes"]} == {
        "charge": 1,
        "reserve": 0,
        "ship": 0,
    }


def test_step_graph_reads_the_registrys_resolved_dependencies() -> None:
    workflow = {
        "name": "t/w",
        "team": "t",
        "definition": {
            "order": ["a", "b"],
            "dependencies": {"a": [], "b": ["a"]},
            "steps": {"a": {"contract": "x/a", "range": "^1"}, "b": {"contract": "y/b", "range": "^2"}},
        },
    }
    graph = step_graph(workflow, [])
    assert graph["edges"] == [{"from": "a", "to": "b"}]
    assert [(n["id"], n["team"], n["version_range"], n["layer"]) for n in graph["nodes"]] == [
        ("a", "x", "^1", 0),
        ("b", "y", "^2", 1),
    ]


def test_team_graph_points_from_caller_to_contract_owner() -> None:
    workflow = {
        "name": "shipping/order-to-cash",
        "team": "shipping",
        "source_text": WORKFLOW_SOURCE,
        "definition": {},
    }
    graph = team_graph(["crm"], [workflow])
    assert [(e["from"], e["to"]) for e in graph["edges"]] == [
        ("shipping", "payments"),
        ("shipping", "shipping"),
        ("shipping", "warehouse"),
    ]
    assert {t["name"] for t in graph["teams"]} == {"crm", "payments", "shipping", "warehouse"}


def test_team_graph_has_event_edges_from_the_publisher_to_the_triggered_team() -> None:
    source = (
        "workflow: shipping/on-paid\ninput: {type: object}\nsteps: {}\n"
        "triggers:\n  - on: payments/order-paid@^1\n    input: {}\n"
        "  - on: payments/refunded@^2\n    input: {}\n"
    )
    workflow = {"name": "shipping/on-paid", "team": "shipping", "source_text": source, "definition": {}}
    graph = team_graph([], [workflow])
    assert graph["event_edges"] == [
        {
            "from": "payments",
            "to": "shipping",
            "workflows": ["shipping/on-paid"],
            "events": ["payments/order-paid", "payments/refunded"],
        }
    ]
    assert graph["edges"] == [] and {t["name"] for t in graph["teams"]} == {"payments", "shipping"}


def test_the_failure_starts_where_a_step_failed_not_at_an_attempt_cancelled_with_it() -> None:
    """A run that fails cancels the other step's attempt in the same millisecond: the failing
    span is the failed attempt, whichever of the two is listed first."""

    def span(span_id: str, parent: str, end: int, **attributes: Any) -> dict[str, Any]:
        return {
            "span_id": span_id,
            "parent_span_id": parent,
            "name": span_id,
            "start_ns": 0,
            "end_ns": end,
            "status": "error",
            "attributes": attributes,
        }

    trace = {
        "trace_id": "t",
        "spans": [
            span("run", "", 10),
            span("reserve", "run", 5, **{"accord.step_status": "cancelled", "accord.step_id": "reserve"}),
            span("reserve-1", "reserve", 5, **{"accord.attempt_status": "cancelled", "accord.attempt": 1}),
            span("charge", "run", 5, **{"accord.step_status": "failed", "accord.step_id": "charge"}),
            span("charge-1", "charge", 5, **{"accord.attempt_status": "failed", "accord.attempt": 1}),
        ],
    }
    out = layout_trace(trace, now_ns=100)
    assert out["failing_span_id"] == "charge-1" and out["failing_hop_id"] == "charge"
