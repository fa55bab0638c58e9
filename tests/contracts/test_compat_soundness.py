"""Regression tests for each class of unsound verdict the checker once gave (issue 17).

Each case is a schema change together with an instance the *old* schema accepts and the *new*
one rejects, as decided by the very validator Accord runs on payloads
(:func:`contracts.validation.compiled_validator`). The checker must never call such a change
compatible; it either names a breaking instance or says it cannot prove the change safe.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.compat import check_input_compat, check_output_compat, check_subschema
from contracts.errors import InvalidSchemaError
from contracts.validation import compiled_validator

BREAKING: dict[str, tuple[Any, Any, Any]] = {
    # unevaluatedItems counts the prefixItems beside it: one entry fewer frees nothing.
    "unevaluatedItems after one fewer prefixItems": (
        {
            "type": "array",
            "prefixItems": [{"type": "integer"}, {"type": "integer"}],
            "unevaluatedItems": False,
        },
        {"type": "array", "prefixItems": [{"type": "integer"}], "unevaluatedItems": False},
        [1, 2],
    ),
    "unevaluatedItems now applies to the third item": (
        {"type": "array", "prefixItems": [{}, {}, {}], "unevaluatedItems": {"type": "string"}},
        {"type": "array", "prefixItems": [{}, {}], "unevaluatedItems": {"type": "string"}},
        [1, 2, 3],
    ),
    "unevaluatedProperties after a property is dropped": (
        {"type": "object", "properties": {"a": {}}, "unevaluatedProperties": False},
        {"type": "object", "properties": {}, "unevaluatedProperties": False},
        {"a": 1},
    ),
    "unevaluatedProperties beside changed anyOf branches": (
        {"anyOf": [{"properties": {"a": {"type": "integer"}}}], "unevaluatedProperties": False},
        {"anyOf": [{"properties": {"b": {}}}], "unevaluatedProperties": False},
        {"a": 1},
    ),
    "unevaluatedProperties seen through $ref": (
        {
            "$defs": {"base": {"properties": {"a": {}}}},
            "$ref": "#/$defs/base",
            "unevaluatedProperties": False,
        },
        {
            "$defs": {"base": {"properties": {"b": {}}}},
            "$ref": "#/$defs/base",
            "unevaluatedProperties": False,
        },
        {"a": 1},
    ),
    # An enum value admitted only thanks to annotations of several anyOf branches at once.
    "enum beside anyOf with unevaluatedProperties": (
        {
            "anyOf": [{"enum": [{"a": 1, "b": 2}]}, {"properties": {"a": {}}}, {"properties": {"b": {}}}],
            "unevaluatedProperties": False,
        },
        {
            "anyOf": [
                {"properties": {"a": {}}, "additionalProperties": False},
                {"properties": {"b": {}}, "additionalProperties": False},
            ]
        },
        {"a": 1, "b": 2},
    ),
    # "#/$defs/x" inside a subschema with its own $id resolves against that subschema.
    "$ref inside a subschema with its own $id": (
        {
            "$defs": {"x": {"type": "string"}},
            "properties": {
                "a": {
                    "$id": "https://example.com/a",
                    "$defs": {"x": {"type": "integer"}},
                    "$ref": "#/$defs/x",
                }
            },
        },
        {
            "$defs": {"x": {"type": "string"}},
            "properties": {
                "a": {
                    "$id": "https://example.com/a",
                    "$defs": {"x": {"type": "boolean"}},
                    "$ref": "#/$defs/x",
                }
            },
        },
        {"a": 1},
    ),
    # The validator divides floats: 0.7 / 0.1 == 6.999999999999999.
    "multipleOf 0.7 to 0.1": (
        {"type": "number", "multipleOf": 0.7},
        {"type": "number", "multipleOf": 0.1},
        0.7,
    ),
    "multipleOf 0.3 to 0.1": (
        {"type": "number", "multipleOf": 0.3},
        {"type": "number", "multipleOf": 0.1},
        0.3,
    ),
    # 2.0 is a float divisor: 2**60 + 1 converts to the float 2**60, a multiple of 2.0.
    "multipleOf 2.0 to 2": (
        {"type": "integer", "multipleOf": 2.0},
        {"type": "integer", "multipleOf": 2},
        2**60 + 1,
    ),
}


@pytest.mark.parametrize("name", list(BREAKING))
def test_a_breaking_change_is_never_called_compatible(name: str) -> None:
    old, new, instance = BREAKING[name]
    # The case itself is right: old accepts the instance, new rejects it.
    assert compiled_validator(old).is_valid(instance)
    assert not compiled_validator(new).is_valid(instance)
    findings = check_input_compat(old, new)
    assert findings, f"{name}: {old!r} -> {new!r} called compatible, yet {instance!r} breaks"
    # Output narrows the other way round: new output `old` was not promised by `new`.
    assert check_output_compat(new, old)
    for finding in findings:
        # A finding names a breaking instance or says it cannot prove safety; never a value the
        # old schema did not accept.
        assert finding.breaking


def test_an_unevaluated_keyword_alone_with_its_siblings_is_reasoned_about() -> None:
    # Adding an optional property next to unevaluatedProperties: false widens input exactly as
    # with additionalProperties: false.
    old = {"type": "object", "properties": {"a": {"type": "integer"}}, "unevaluatedProperties": False}
    new = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
        "unevaluatedProperties": False,
    }
    assert check_input_compat(old, new) == []
    assert check_output_compat(old, new)
    old_items = {"type": "array", "prefixItems": [{"type": "integer"}], "unevaluatedItems": False}
    new_items = {"type": "array", "prefixItems": [{"type": "integer"}, {}], "unevaluatedItems": False}
    assert check_input_compat(old_items, new_items) == []


def test_unevaluated_beside_a_changed_combinator_is_refused_as_unprovable() -> None:
    old = {"anyOf": [{"properties": {"a": {}}}, {"type": "string"}], "unevaluatedProperties": False}
    new = {"anyOf": [{"properties": {"a": {}, "b": {}}}, {"type": "string"}], "unevaluatedProperties": False}
    findings = check_input_compat(old, new)
    assert findings and all(f.message.startswith("cannot prove") for f in findings), findings
    # Identical schemas stay compatible whatever keywords they use.
    assert check_input_compat(old, old) == []


def test_an_identical_multiple_of_a_fraction_is_compatible() -> None:
    assert (
        check_input_compat({"type": "number", "multipleOf": 0.1}, {"type": "number", "multipleOf": 0.1}) == []
    )
    # Integer divisors are exact for the validator too.
    assert (
        check_input_compat({"type": "integer", "multipleOf": 6}, {"type": "integer", "multipleOf": 3}) == []
    )
    findings = check_input_compat(
        {"type": "number", "multipleOf": 0.7}, {"type": "number", "multipleOf": 0.1}
    )
    assert "cannot prove" in findings[0].message and "dividing floats" in findings[0].message


def test_format_is_asserted_as_the_validator_asserts_it() -> None:
    # The validator rejects "2020-13-45" as a date, so the old schema never accepted it and
    # dropping it from the enum is no break.
    old = {"type": "string", "format": "date", "enum": ["2020-13-45", "2020-01-01"]}
    assert not compiled_validator(old).is_valid("2020-13-45")
    assert check_input_compat(old, {"enum": ["2020-01-01"]}) == []
    # A format added on the new side cannot be proven to hold for the old strings.
    findings = check_input_compat({"type": "string"}, {"type": "string", "format": "date"})
    assert findings and findings[0].message.startswith("cannot prove"), findings


@pytest.mark.parametrize(
    "sub, sup",
    [({}, {"type": "foo"}), ({"type": "foo"}, {}), ({"minimum": "1"}, {}), ({}, {"properties": []})],
)
def test_an_invalid_schema_is_a_clear_error(sub: Any, sup: Any) -> None:
    with pytest.raises(InvalidSchemaError) as caught:
        check_subschema(sub, sup)
    assert "is not a valid JSON Schema 2020-12" in str(caught.value)
    assert caught.value.exit_code == 2


def test_an_old_schema_that_accepts_nothing_breaks_nothing() -> None:
    for nothing in ({"not": {}}, {"not": True}, {"type": "object", "not": {"description": "x"}}):
        assert check_input_compat(nothing, {"type": "string", "maxLength": 1}) == []
        assert check_output_compat({"type": "integer"}, nothing) == []


def test_removed_dependent_schemas_entries_widen_input() -> None:
    old = {
        "type": "object",
        "dependentSchemas": {"a": {"required": ["b"]}, "c": {"properties": {"d": {"type": "integer"}}}},
    }
    new = {"type": "object", "dependentSchemas": {"a": {"required": ["b"]}}}
    assert check_input_compat(old, new) == []
    findings = check_input_compat(new, old)
    assert findings and findings[0].message.startswith("cannot prove"), findings
    # Output: adding an entry narrows what the new version may produce.
    assert check_output_compat(new, old) == []


def test_a_finding_never_names_a_value_the_old_schema_did_not_accept() -> None:
    # oneOf: 1 and 2 match both alternatives, so the old schema accepts only 3.
    old = {"oneOf": [{"enum": [1, 2]}, {"enum": [1, 2, 3]}]}
    assert check_input_compat(old, {"enum": [3]}) == []
    [finding] = check_input_compat(old, {"enum": [4]})
    assert finding.message == "input no longer accepts 3"


@pytest.mark.parametrize(
    "branches, compatible",
    [
        ([{"type": "integer", "maximum": 5}, {"type": "integer", "minimum": 5}], True),
        ([{"type": "integer", "maximum": 4}, {"type": "integer", "minimum": 5}], True),
        ([{"type": "integer", "maximum": 4}, {"type": "integer", "minimum": 6}], False),
        ([{"type": "number", "exclusiveMaximum": 5}, {"type": "number", "minimum": 5}], True),
        ([{"type": "number", "exclusiveMaximum": 5}, {"type": "number", "exclusiveMinimum": 5}], False),
        ([{"type": "integer"}, {"type": "number", "minimum": 5}], False),
    ],
)
def test_a_range_covered_by_the_union_of_anyof_branches(branches: list[Any], compatible: bool) -> None:
    old = {"type": "number", "minimum": 0, "maximum": 10}
    if all(b.get("type") == "integer" for b in branches):
        old["type"] = "integer"
    findings = check_input_compat(old, {"anyOf": branches})
    assert (findings == []) is compatible, findings
    if not compatible:
        # The instance named (if any) is one the old schema accepts: 5 or a fraction near it (the
        # integers 0 to 10 are few enough to be checked one by one).
        assert all(
            "below" in f.message or f.message.startswith("cannot prove") or f.message.endswith("accepts 5")
            for f in findings
        ), findings


@pytest.mark.parametrize(
    "old, branches, compatible",
    [
        ({"type": "string", "maxLength": 5}, [{"type": "string", "maxLength": 3}, {"minLength": 2}], True),
        ({"type": "string"}, [{"type": "string", "maxLength": 3}, {"type": "string", "minLength": 4}], True),
        ({"type": "string"}, [{"type": "string", "maxLength": 3}, {"type": "string", "minLength": 5}], False),
        # a branch that says more than a length is not used: "cannot prove", not a wrong "yes"
        ({"type": "string"}, [{"maxLength": 3}, {"type": "string", "minLength": 4, "pattern": "a"}], False),
        ({"type": "array"}, [{"type": "array", "maxItems": 1}, {"type": "array", "minItems": 2}], True),
        ({"type": "array", "minItems": 2}, [{"type": "array", "maxItems": 1}, {"minItems": 3}], False),
        ({"type": "array", "minItems": 2}, [{"type": "integer"}, {"type": "array", "minItems": 2}], True),
    ],
)
def test_lengths_covered_by_the_union_of_anyof_branches(
    old: Any, branches: list[Any], compatible: bool
) -> None:
    """A string or array length allowed by one branch or another, none alone taking them all."""
    findings = check_input_compat(old, {"anyOf": branches})
    assert (findings == []) is compatible, findings
    if not compatible:
        assert all(f.message.startswith("cannot prove") for f in findings), findings
    # The other way round (output: new within old) the union is the old side, which is exact.
    assert (check_output_compat({"anyOf": branches}, old) == []) is compatible


@pytest.mark.parametrize(
    "old, new, compatible",
    [
        ({"type": "boolean"}, {"anyOf": [{"const": True}, {"const": False}]}, True),
        ({"type": ["boolean", "null"]}, {"oneOf": [{"const": True}, {"enum": [False, None]}]}, True),
        (
            {"type": "integer", "minimum": 0, "maximum": 3},
            {"anyOf": [{"enum": [0, 1]}, {"minimum": 2}]},
            True,
        ),
        (
            {"type": "integer", "minimum": 0, "maximum": 3},
            {"anyOf": [{"enum": [0, 1]}, {"minimum": 3}]},
            False,
        ),
        # 2 matches both alternatives of a oneOf: refused, naming 2
        (
            {"type": "integer", "minimum": 0, "maximum": 3},
            {"oneOf": [{"enum": [0, 1, 2]}, {"minimum": 2}]},
            False,
        ),
        (
            {"type": "integer", "minimum": 0, "maximum": 3},
            {"oneOf": [{"enum": [0, 1]}, {"minimum": 2}]},
            True,
        ),
    ],
)
def test_a_few_values_are_checked_one_by_one_against_alternatives(
    old: Any, new: Any, compatible: bool
) -> None:
    """Booleans, null and a short integer range are few: each value is checked against the new
    alternatives exactly, so a union or a oneOf of them is proven, or a value that breaks is named."""
    findings = check_input_compat(old, new)
    assert (findings == []) is compatible, findings
    if not compatible:
        assert findings[0].message in ("input no longer accepts 2", "input no longer accepts 3"), findings
    assert (check_output_compat(new, old) == []) is compatible


_CARD = {
    "type": "object",
    "properties": {"kind": {"const": "card"}, "last4": {"type": "string"}},
    "required": ["kind"],
}
_IBAN = {"type": "object", "properties": {"kind": {"const": "iban"}}, "required": ["kind"]}
_PAYMENT = {
    "type": "object",
    "properties": {"kind": {"enum": ["card", "iban"]}, "last4": {"type": "string"}},
    "required": ["kind"],
}


@pytest.mark.parametrize(
    "old, new, compatible",
    [
        (_PAYMENT, {"oneOf": [_CARD, _IBAN]}, True),
        (_PAYMENT, {"anyOf": [_CARD, _IBAN]}, True),
        (
            {"type": "object", "properties": {"pay": _PAYMENT}},
            {"properties": {"pay": {"oneOf": [_CARD, _IBAN]}}},
            True,
        ),
        # {"kind": "iban"} fits no alternative: named
        (_PAYMENT, {"oneOf": [_CARD]}, False),
        # {"kind": "card", "last4": 1234} was accepted: last4 was not declared
        ({**_PAYMENT, "properties": {"kind": {"enum": ["card", "iban"]}}}, {"anyOf": [_CARD, _IBAN]}, False),
        # {} was accepted: kind was not required
        ({**_PAYMENT, "required": []}, {"anyOf": [_CARD, _IBAN]}, False),
    ],
)
def test_objects_split_by_a_required_field_of_a_few_values(old: Any, new: Any, compatible: bool) -> None:
    """Old objects whose required field takes a few values, against new alternatives keyed by that
    field (a discriminated union): each value's objects are checked against the alternatives."""
    findings = check_input_compat(old, new)
    assert (findings == []) is compatible, findings
    assert (check_output_compat(new, old) == []) is compatible


def test_oneof_branches_that_cannot_overlap() -> None:
    card = {"type": "object", "properties": {"kind": {"const": "card"}}, "required": ["kind"]}
    iban = {"type": "object", "properties": {"kind": {"const": "iban"}}, "required": ["kind"]}
    assert check_input_compat(card, {"oneOf": [card, iban]}) == []
    # Without a discriminator both may match: not provable.
    loose = {"type": "object", "properties": {"kind": {"type": "string"}}}
    assert check_input_compat(card, {"oneOf": [card, loose]})
    # A finite branch none of whose values the old schema admits cannot overlap.
    short = {"type": "string", "maxLength": 0}
    assert check_input_compat(short, {"oneOf": [{"type": "string"}, {"enum": ["x", 2]}]}) == []
    findings = check_input_compat({"type": "string"}, {"oneOf": [{"type": "string"}, {"enum": ["x", 2]}]})
    assert findings and findings[0].message.startswith("cannot prove"), findings


# A field's own schema says nothing of the schema around it: old schemas under which the field
# (or the break) never occurs, each with the new schema (issue 17).
FIELD_CLAIMS_NOT_MADE: dict[str, tuple[Any, Any]] = {
    "the old schema never has the field (not required)": (
        {"type": "object", "properties": {"a": {"type": "integer"}}, "not": {"required": ["a"]}},
        {"type": "object", "properties": {"a": {"type": "string"}}},
    ),
    "the old schema never has the field (propertyNames)": (
        {"type": "object", "properties": {"a": {"type": "integer"}}, "propertyNames": {"maxLength": 0}},
        {"type": "object", "properties": {"a": {"type": "string"}}},
    ),
    "the old schema has no fields at all (maxProperties 0)": (
        {"type": "object", "maxProperties": 0},
        {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
    ),
    "the old enum field never occurs": (
        {"type": "object", "properties": {"a": {"enum": ["x", "y"]}}, "maxProperties": 0},
        {"type": "object", "properties": {"a": {"enum": ["x"]}}},
    ),
    "the field was already forced by dependentRequired": (
        {"type": "object", "required": ["b"], "dependentRequired": {"b": ["a"]}},
        {"type": "object", "required": ["a", "b"]},
    ),
    "the field was already forced by minProperties": (
        {"type": "object", "properties": {"a": {}}, "additionalProperties": False, "minProperties": 1},
        {"type": "object", "properties": {"a": {}}, "additionalProperties": False, "required": ["a"]},
    ),
    "the field was never allowed (maxProperties 0) and now is false": (
        {"type": "object", "maxProperties": 0},
        {"type": "object", "properties": {"a": False}},
    ),
}


@pytest.mark.parametrize("name", sorted(FIELD_CLAIMS_NOT_MADE))
def test_a_field_break_is_claimed_only_with_a_whole_value_the_old_schema_accepts(name: str) -> None:
    old, new = FIELD_CLAIMS_NOT_MADE[name]
    for finding in check_input_compat(old, new):
        if finding.example is not None:
            (whole,) = finding.example
            assert compiled_validator(old).is_valid(whole), (finding, whole)
            assert not compiled_validator(new).is_valid(whole), (finding, whole)
        else:
            # Before: "input field 'a' no longer accepts integers (e.g. 0)", "... is now required".
            assert finding.message.startswith("cannot prove"), finding
        assert "(e.g." not in finding.message or finding.example is not None, finding


def test_a_field_example_is_named_with_the_whole_value_it_breaks() -> None:
    old = {
        "type": "object",
        "required": ["order"],
        "properties": {
            "order": {
                "type": "object",
                "required": ["n"],
                "properties": {"n": {"type": "integer", "minimum": 1}, "m": {"type": "integer"}},
            }
        },
    }
    new = json.loads(json.dumps(old))
    new["properties"]["order"]["properties"]["m"]["type"] = "string"
    [finding] = check_input_compat(old, new)
    assert finding.message == (
        "input field 'order.m' no longer accepts integers (e.g. 0, as in input "
        '{"order": {"n": 1, "m": 0}}): type changed from integer to string'
    )
    assert finding.example == ({"order": {"n": 1, "m": 0}},)
    new["properties"]["order"]["required"] = ["n", "m"]
    new["properties"]["order"]["properties"]["m"]["type"] = "integer"
    [finding] = check_input_compat(old, new)
    assert finding.message == "input field 'order.m' is now required"
    (whole,) = finding.example
    assert compiled_validator(old).is_valid(whole) and not compiled_validator(new).is_valid(whole)
