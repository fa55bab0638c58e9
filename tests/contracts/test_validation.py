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
