"""Payload validation: every violation with its JSON path; validators are cached."""

from __future__ import annotations

import pytest

from contracts.errors import ValidationFailed, Violation
from contracts.validation import check_schema, compiled_validator, ensure_valid, json_path, validate_payload

ORDER = {
    "type": "object",
    "required": ["order_id", "items"],
    "additionalProperties": False,
    "properties": {
        "order_id": {"type": "string"},
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
        "placed_on": {"type": "string", "format": "date"},
    },
    "$defs": {
        "item": {
            "type": "object",
            "required": ["sku"],
            "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
        }
    },
}


def test_valid_payload_has_no_violations() -> None:
    assert validate_payload(ORDER, {"order_id": "o-1", "items": [{"sku": "a", "qty": 2}]}) == []
    ensure_valid(ORDER, {"order_id": "o-1", "items": []})


def test_every_violation_has_its_json_path() -> None:
    value = {"items": [{"sku": 1}, {"qty": 0}], "extra": True, "placed_on": "yesterday"}
    violations = validate_payload(ORDER, value)
    by_path = {v.path: v.message for v in violations}
    assert by_path["$.order_id"] == "is required but missing"
    assert "not of type 'string'" in by_path["$.items[0].sku"]
    assert by_path["$.items[1].sku"] == "is required but missing"
    assert "less than the minimum of 1" in by_path["$.items[1].qty"]
    assert "'extra' was unexpected" in by_path["$"]
    assert "is not a 'date'" in by_path["$.placed_on"]
    assert len(violations) == 6


def test_ensure_valid_raises_with_all_violations() -> None:
    with pytest.raises(ValidationFailed) as caught:
        ensure_valid(ORDER, {"items": "no"}, what="input of payments/charge-card@1.2.0")
    assert caught.value.what == "input of payments/charge-card@1.2.0"
    assert {v.path for v in caught.value.violations} == {"$.order_id", "$.items"}
    assert "input of payments/charge-card@1.2.0 does not match its schema" in str(caught.value)
    assert caught.value.exit_code == 2


def test_validators_are_cached_by_canonical_json() -> None:
    reordered = dict(reversed(list(ORDER.items())))
    assert compiled_validator(ORDER) is compiled_validator(reordered)
    assert compiled_validator(ORDER) is not compiled_validator({"type": "object"})


def test_json_path() -> None:
    assert json_path(["items", 0, "sku"]) == "$.items[0].sku"
    assert json_path([]) == "$"
    assert json_path(["a b"]) == '$["a b"]'


def test_check_schema_names_the_broken_keyword() -> None:
    assert check_schema(ORDER) == []
    problems = check_schema({"type": "object", "properties": {"a": {"minimum": "one"}}})
    assert problems == [Violation("$.properties.a.minimum", "'one' is not of type 'number'")]
    assert check_schema({"type": "strnig"})[0].path == "$.type"


# uniqueItems: the project's linear-time keyword agrees with jsonschema's own (quadratic) one.
TRICKY_ARRAYS = [
    [1, 1.0],  # equal numbers
    [True, 1],  # a boolean is not a number
    [False, 0],
    [True, True],
    [0, 0.0, False],
    [{"a": 1, "b": 2}, {"b": 2, "a": 1}],  # objects whatever their key order
    [{"a": 1}, {"a": 1.0}],
    [{"a": True}, {"a": 1}],
    [[1, 2], [2, 1]],  # arrays in order
    [[1, 2], [1.0, 2.0]],
    [[True], [1]],
    [None, None],
    [None, "null"],
    ["1", 1],
    [{"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]}],
    [{"a": [1, {"b": None}]}, {"a": [1, {"b": False}]}],
    [{}, []],
    [{}, {}],
    [[], []],
    [2**60, 2**60 + 1],
    [0.1 + 0.2, 0.3],
    [],
    ["x"],
]


@pytest.mark.parametrize("array", TRICKY_ARRAYS, ids=[repr(a) for a in TRICKY_ARRAYS])
def test_unique_items_agrees_with_jsonschema(array: list[object]) -> None:
    from jsonschema import Draft202012Validator

    schema = {"type": "array", "uniqueItems": True}
    stock = Draft202012Validator(schema).is_valid(array)
    ours = validate_payload(schema, array) == []
    assert ours == stock, (array, stock)
    assert validate_payload({"type": "array", "uniqueItems": False}, array + array) == []


def test_unique_items_is_linear_on_many_distinct_objects() -> None:
    """The auditor's run input (issue 15): 1,500 distinct one-key objects, 13.9 KB, took
    jsonschema's pairwise comparison 7.9 s on the event loop. The project's keyword hashes each
    item once: the validation fits in the inline step budget, which counts one step per item."""
    from contracts.validation import TooCostly

    schema = {"type": "object", "properties": {"xs": {"type": "array", "uniqueItems": True}}}
    value = {"xs": [{"": i} for i in range(1500)]}
    assert validate_payload(schema, value, max_steps=5_000) == []
    duplicated = {"xs": [*value["xs"], {"": 7}]}
    assert [v.message for v in validate_payload(schema, duplicated)] == [
        v.message for v in validate_payload(schema, duplicated, max_steps=5_000)
    ]
    assert "non-unique" in validate_payload(schema, duplicated)[0].message
    with pytest.raises(TooCostly):
        validate_payload(schema, value, max_steps=1_000)


def branching(depth: int) -> tuple[dict[str, object], dict[str, object]]:
    """A schema whose two ``anyOf`` branches both descend into ``a`` (the first fails only after
    it did), and a value nested ``depth`` deep: 2^depth evaluations from a few hundred bytes."""
    schema = {
        "anyOf": [
            {"properties": {"a": {"$ref": "#"}}, "required": ["zz"]},
            {"properties": {"a": {"$ref": "#"}}},
        ]
    }
    value: dict[str, object] = {}
    for _ in range(depth):
        value = {"a": value}
    return schema, value


def test_a_metered_validation_stops_after_its_steps() -> None:
    from contracts.validation import TooCostly

    schema, value = branching(40)
    with pytest.raises(TooCostly):
        validate_payload(schema, value, max_steps=20_000)
    small_schema, small_value = branching(3)
    assert validate_payload(small_schema, small_value, max_steps=20_000) == []
