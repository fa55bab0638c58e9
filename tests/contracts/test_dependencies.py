"""Workflow.dependencies: the one place a step's dependencies are worked out."""

from __future__ import annotations

from typing import Any

from contracts.model import StepSpec, Workflow


def _workflow(**steps: dict[str, Any]) -> Workflow:
    return Workflow(
        name="shipping/w",
        input_schema={},
        steps={
            step_id: StepSpec(id=step_id, contract="t/c", version_range="^1", **spec)
            for step_id, spec in steps.items()
        },
    )


def test_steps_read_in_order_of_first_reference_from_input_when_and_for_each() -> None:
    workflow = _workflow(
        charge={"input": {"order_id": "${input.order_id}"}},
        reserve={"input": {"order_id": "${input.order_id}"}},
        ship={
            "input": {
                "items": "${steps.reserve.output.items}",
                "note": "paid by ${steps.charge.output.payment_ref} (${steps.reserve.output.count})",
            }
        },
        notify={
            "input": {"sku": "${item.sku}"},
            "when": "${steps.ship.output.express}",
            "for_each": "${steps.reserve.output.items}",
        },
    )
    assert workflow.dependencies() == {
        "charge": [],
        "reserve": [],
        "ship": ["reserve", "charge"],
        "notify": ["ship", "reserve"],
    }


def test_only_steps_of_the_workflow_are_listed_and_a_self_read_is_kept() -> None:
    workflow = _workflow(
        a={"input": {"x": "${steps.nope.output.x}", "y": "${steps.b.output.y}"}},
        b={"input": {"x": "${steps.b.output.x}"}},
    )
    assert workflow.dependencies() == {"a": ["b"], "b": ["b"]}


def test_a_malformed_reference_adds_nothing_from_its_template() -> None:
    workflow = _workflow(
        a={"input": {"x": "${steps.b.output.x"}, "when": "${steps.c.output.ok}"},
        b={"input": {}},
        c={"input": {}},
    )
    assert workflow.dependencies() == {"a": ["c"], "b": [], "c": []}
