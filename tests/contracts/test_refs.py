"""The ${...} reference language: finding, evaluating, truthiness."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.errors import ReferenceError_
from contracts.refs import Ref, evaluate, find_references, format_path, parse_path, truthy

SCOPE: dict[str, Any] = {
    "input": {"order_id": "o-1", "amount": 250, "items": [{"sku": "a"}, {"sku": "b"}], "flags": {"x": True}},
    "steps": {"charge": {"output": {"payment_ref": "p-9", "zero": 0}}},
    "item": {"sku": "a", "qty": 2},
    "event": {"order_id": "o-2"},
}


def test_parse_and_format_paths() -> None:
    assert parse_path("input.items[0].sku") == ("input", "items", 0, "sku")
    assert parse_path("steps.charge.output.payment_ref") == ("steps", "charge", "output", "payment_ref")
    assert parse_path("item") == ("item",)
    assert format_path(("input", "items", 0, "sku")) == "input.items[0].sku"
    assert parse_path("output.items[*].sku", wildcard=True, roots=("output",)) == (
        "output",
        "items",
        "*",
        "sku",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo.bar", "starts with 'foo'"),
        ("input..a", "not a valid path at '..a'"),
        ("input.items[x]", "not a valid path"),
        ("input.items[*]", "not a valid path"),
        ("", "not a reference"),
    ],
)
def test_bad_paths_are_named(text: str, message: str) -> None:
    with pytest.raises(ReferenceError_, match=message.replace("[", r"\[").replace(".", r"\.")):
        parse_path(text)


def test_find_references_reports_where() -> None:
    template = {
        "a": "${input.order_id}",
        "b": ["x", "id-${input.order_id}-${steps.charge.output.payment_ref}"],
        "c/d": "${item.sku}",
    }
    refs = find_references(template)
    assert refs == [
        Ref(("input", "order_id"), "/a", 0, 17, True),
        Ref(("input", "order_id"), "/b/1", 3, 20, False),
        Ref(("steps", "charge", "output", "payment_ref"), "/b/1", 21, 55, False),
        Ref(("item", "sku"), "/c~1d", 0, 11, True),
    ]
    assert refs[2].step_id == "charge"
    assert refs[0].step_id is None
    assert str(refs[3]) == "${item.sku}"


def test_unterminated_reference() -> None:
    with pytest.raises(ReferenceError_, match="unterminated"):
        find_references("${input.a")


def test_whole_reference_keeps_json_type() -> None:
    assert evaluate("${input.amount}", SCOPE) == 250
    assert evaluate("${input.items}", SCOPE) == [{"sku": "a"}, {"sku": "b"}]
    assert evaluate("${input.items[1].sku}", SCOPE) == "b"
    assert evaluate("${input.flags}", SCOPE) == {"x": True}


def test_text_around_references_makes_a_string() -> None:
    assert evaluate("amount=${input.amount}", SCOPE) == "amount=250"
    assert evaluate("${input.order_id}/${item.sku}", SCOPE) == "o-1/a"
    assert evaluate("flags: ${input.flags}", SCOPE) == 'flags: {"x":true}'
    assert evaluate("literal $${input.amount}", SCOPE) == "literal ${input.amount}"


def test_templates_evaluate_recursively() -> None:
    template = {"order": "${input.order_id}", "refs": ["${steps.charge.output.payment_ref}", 3, None]}
    assert evaluate(template, SCOPE) == {"order": "o-1", "refs": ["p-9", 3, None]}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("${input.missing}", r"\$\{input.missing\}: input has no 'missing'"),
        ("${steps.ship.output.id}", r"steps has no 'ship'"),
        ("${input.items[5]}", r"input.items has 2 elements, no element \[5\]"),
        ("${input.order_id.x}", r"input.order_id is not an object"),
    ],
)
def test_missing_values_name_the_path(template: str, message: str) -> None:
    with pytest.raises(ReferenceError_, match=message):
        evaluate(template, SCOPE)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (False, False),
        (0, False),
        (0.0, False),
        ("", False),
        ([], False),
        ({}, False),
        (True, True),
        (1, True),
        (-0.5, True),
        ("false", True),
        ([0], True),
        ({"a": None}, True),
    ],
)
def test_truthy(value: Any, expected: bool) -> None:
    assert truthy(value) is expected


def test_an_absent_optional_value_leaves_its_key_out_of_a_mapping() -> None:
    from contracts.refs import MissingValue

    scope = {"input": {"order_id": "o-1"}}
    template = {"order_id": "${input.order_id}", "card_token": "${input.card}"}
    assert evaluate(template, scope) == {"order_id": "o-1"}
    # inside text, or as an array element, an absent value cannot be left out
    with pytest.raises(MissingValue):
        evaluate({"note": "card ${input.card}"}, scope)
    with pytest.raises(MissingValue):
        evaluate({"cards": ["${input.card}"]}, scope)


def test_a_condition_on_an_absent_value_is_false() -> None:
    from contracts.refs import evaluate_condition

    assert evaluate_condition("${steps.ship.output.express}", {"steps": {"ship": {"output": {}}}}) is False
    assert evaluate_condition("${steps.ship.output.express}", {"steps": {"ship": {"output": {"express": 1}}}})
