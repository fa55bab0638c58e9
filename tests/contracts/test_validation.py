"""Payload validation: every violation with its JSON path; validators are cached."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import _utils as jsonschema_utils

from contracts import validation
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


# JSON values with the pairs JSON Schema's equality is subtle about: 1 and 1.0 (equal), true and 1
# (not), objects with their keys in another order (equal).
_JSON = st.recursive(
    st.none() | st.booleans() | st.sampled_from([0, 1, 1.0, 0.0, -2, 2.5]) | st.sampled_from(["", "a", "1"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abc"), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_JSON, max_size=6))
def test_unique_items_agrees_with_jsonschemas_own_equality(items: list) -> None:
    """The one-pass ``uniqueItems`` says what jsonschema's pairwise comparison says."""
    reference = jsonschema_utils.uniq(items)
    ours = validate_payload({"type": "array", "uniqueItems": True}, items) == []
    assert ours == reference, items


def test_unique_items_names_the_repeated_item_not_the_array() -> None:
    items = [{"a": 1, "b": [1]}, {"x": 0}, {"b": [1.0], "a": 1}]
    assert validate_payload({"uniqueItems": True}, items) == [
        Violation("$", "item 2 repeats an earlier item: the items must be unique")
    ]


def test_unique_items_over_many_objects_is_one_pass() -> None:
    """30,000 distinct objects (about 400 KB, the kind of run input a team may send): jsonschema's
    own check compares every pair (4.5e8 comparisons, minutes on the event loop); this one
    looks at each item once, so the whole payload is validated here in well under a second."""
    items = [{"n": i, "tags": [i % 7, str(i)]} for i in range(30_000)]
    calls = 0
    real = validation._equality_key

    def counting(value):
        nonlocal calls
        calls += 1
        return real(value)

    validation._equality_key = counting
    try:
        assert validate_payload({"type": "array", "uniqueItems": True}, items) == []
    finally:
        validation._equality_key = real
    # Once per value (an item, its two members, the list's two items), never per pair of items.
    assert calls == 5 * len(items)
