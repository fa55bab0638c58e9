"""Golden cases for the JSON Schema compatibility checker.

Each case gives the OLD and NEW schema, the direction (input may only widen, output may only
narrow) and the exact findings expected: their pointers into the NEW schema, in order, each with
a substring of its message. An empty expectation means "proven compatible".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from contracts.compat import (
    Finding,
    check_contract_compat,
    check_input_compat,
    check_output_compat,
    check_subschema,
    is_breaking,
)


@dataclass(frozen=True)
class Case:
    id: str
    direction: str  # "input" or "output"
    old: Any
    new: Any
    expected: list[tuple[str, str]] = field(default_factory=list)  # (pointer, message substring)


def obj(props: dict[str, Any], required: tuple[str, ...] = (), **more: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required), **more}


S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741
N = {"type": "number"}
NULL = {"type": "null"}

NODE_INT = {
    "$defs": {"node": obj({"value": I, "next": {"anyOf": [{"$ref": "#/$defs/node"}, NULL]}})},
    "$ref": "#/$defs/node",
}
NODE_NUM = {
    "$defs": {"node": obj({"value": N, "next": {"anyOf": [{"$ref": "#/$defs/node"}, NULL]}})},
    "$ref": "#/$defs/node",
}
TREE_V1 = {
    "$defs": {"tree": obj({"name": S, "children": {"type": "array", "items": {"$ref": "#/$defs/tree"}}})},
    "$ref": "#/$defs/tree",
}
TREE_V2_OK = {
    "title": "tree, with a description this time",
    "$defs": {
        "tree": obj({"name": S, "children": {"type": "array", "items": {"$ref": "#/$defs/tree"}}}),
        "unused": I,
    },
    "$ref": "#/$defs/tree",
}

CASES: list[Case] = [
    # ---------------------------------------------------------------- compatible
    Case("identical", "input", obj({"a": S}, ("a",)), obj({"a": S}, ("a",))),
    Case(
        "annotations_ignored", "input", obj({"a": S}), {**obj({"a": {**S, "description": "A"}}), "title": "T"}
    ),
    Case("true_schema_accepts_all", "input", obj({"a": S}), {}),
    Case("input_integer_widened_to_number", "input", obj({"n": I}), obj({"n": N})),
    Case("output_number_narrowed_to_integer", "output", obj({"n": N}), obj({"n": I})),
    Case("input_required_dropped", "input", obj({"a": S, "b": S}, ("a", "b")), obj({"a": S, "b": S}, ("a",))),
    Case("output_required_added", "output", obj({"a": S, "b": S}, ("a",)), obj({"a": S, "b": S}, ("a", "b"))),
    Case(
        "input_optional_field_added_to_closed_object",
        "input",
        obj({"a": S}, additionalProperties=False),
        obj({"a": S, "b": I}),
    ),
    Case("output_closed_object", "output", obj({"a": S}), obj({"a": S}, additionalProperties=False)),
    Case("input_nullable_added_type_list", "input", obj({"a": S}), obj({"a": {"type": ["string", "null"]}})),
    Case("input_nullable_added_anyof", "input", obj({"a": S}), obj({"a": {"anyOf": [S, NULL]}})),
    Case(
        "nullable_type_list_to_anyof",
        "input",
        obj({"a": {"type": ["integer", "null"]}}),
        obj({"a": {"anyOf": [N, NULL]}}),
    ),
    Case(
        "input_enum_widened", "input", obj({"s": {"enum": ["a", "b"]}}), obj({"s": {"enum": ["a", "b", "c"]}})
    ),
    Case("output_enum_narrowed", "output", obj({"s": {"enum": ["a", "b"]}}), obj({"s": {"const": "a"}})),
    Case("input_enum_to_type", "input", obj({"s": {"enum": ["a", "b"]}}), obj({"s": {**S, "maxLength": 1}})),
    Case(
        "input_bounds_widened",
        "input",
        obj({"n": {**I, "minimum": 5, "maximum": 10}, "s": {**S, "minLength": 2, "maxLength": 5}}),
        obj({"n": {**I, "minimum": 1}, "s": {**S, "maxLength": 8}}),
    ),
    Case(
        "integer_exclusive_bound_equivalent",
        "input",
        obj({"n": {**I, "minimum": 5, "maximum": 9}}),
        obj({"n": {**I, "exclusiveMinimum": 4, "exclusiveMaximum": 10}}),
    ),
    Case(
        "input_multipleof_relaxed",
        "input",
        obj({"n": {**I, "multipleOf": 4}}),
        obj({"n": {**I, "multipleOf": 2}}),
    ),
    Case(
        "ref_into_defs_and_definitions",
        "input",
        {"$defs": {"money": {**I, "minimum": 1}}, **obj({"amount": {"$ref": "#/$defs/money"}})},
        {"definitions": {"money": I}, **obj({"amount": {"$ref": "#/definitions/money"}})},
    ),
    Case("recursive_ref_widened", "input", NODE_INT, NODE_NUM),
    Case("recursive_ref_unchanged", "input", TREE_V1, TREE_V2_OK),
    Case("oneof_disjoint_types", "input", obj({"id": S}), obj({"id": {"oneOf": [S, I]}})),
    Case(
        "sub_allof_merged",
        "input",
        {"allOf": [obj({"a": S}, ("a",)), obj({"b": I}, ("b",))]},
        obj({"a": S, "b": N}, ("a", "b")),
    ),
    Case("sub_anyof_each_branch_fits", "input", {"anyOf": [I, S]}, {"type": ["number", "string"]}),
    Case(
        "arrays_widened",
        "input",
        {"type": "array", "prefixItems": [S], "items": I, "minItems": 1, "maxItems": 3, "uniqueItems": True},
        {"type": "array", "prefixItems": [S, N], "items": N},
    ),
    Case(
        "identical_unsupported_keywords",
        "input",
        {**obj({"a": S}), "if": obj({"a": {"const": "x"}}), "then": {"required": ["a"]}},
        {**obj({"a": S}), "if": obj({"a": {"const": "x"}}), "then": {"required": ["a"]}},
    ),
    Case(
        "identical_pattern_and_format",
        "input",
        {**S, "pattern": "^a", "format": "email"},
        {**S, "pattern": "^a", "format": "email"},
    ),
    Case(
        "min_properties_implied_by_required",
        "input",
        obj({"a": S}, ("a",)),
        obj({"a": S}, ("a",), minProperties=1),
    ),
    # ---------------------------------------------------------------- breaking
    Case(
        "input_type_changed",
        "input",
        obj({"amount": N}),
        obj({"amount": S}),
        [
            (
                "/properties/amount/type",
                "input field 'amount' no longer accepts numbers (e.g. 0, as in input {\"amount\": 0}): type changed from number to string",
            )
        ],
    ),
    Case(
        "input_number_narrowed_to_integer",
        "input",
        obj({"n": N}),
        obj({"n": I}),
        [("/properties/n/type", "no longer accepts non-integer numbers")],
    ),
    Case(
        "output_integer_widened_to_number",
        "output",
        obj({"n": I}),
        obj({"n": N}),
        [
            (
                "/properties/n/type",
                "output field 'n' may now be non-integer numbers (e.g. 0.5, as in output {\"n\": 0.5}), which the previous version did not promise",
            )
        ],
    ),
    Case(
        "input_required_added",
        "input",
        obj({"a": S, "b": S}, ("a",)),
        obj({"a": S, "b": S}, ("a", "b")),
        [("/required", "input field 'b' is now required")],
    ),
    Case(
        "input_nested_required_added",
        "input",
        obj({"customer": obj({"email": S})}),
        obj({"customer": obj({"email": S}, ("email",))}),
        [("/properties/customer/required", "input field 'customer.email' is now required")],
    ),
    Case(
        "output_required_dropped",
        "output",
        obj({"payment_ref": S}, ("payment_ref",)),
        obj({"payment_ref": S}),
        [("/required", "output field 'payment_ref' may now be missing")],
    ),
    Case(
        "input_optional_field_added_to_open_object",
        "input",
        obj({"a": S}),
        obj({"a": S, "b": I}),
        [("/properties/b/type", "input field 'b' no longer accepts values other than integers")],
    ),
    Case(
        "output_enum_widened",
        "output",
        obj({"status": {"enum": ["paid", "failed"]}}),
        obj({"status": {"enum": ["paid", "failed", "refunded"]}}),
        [
            (
                "/properties/status/enum",
                "output field 'status' may now be 'refunded', as in output {\"status\": \"refunded\"}, which the previous version did not promise",
            )
        ],
    ),
    Case(
        "input_enum_narrowed",
        "input",
        obj({"status": {"enum": ["paid", "failed"]}}),
        obj({"status": {"enum": ["paid"]}}),
        [("/properties/status/enum", "input field 'status' no longer accepts 'failed'")],
    ),
    Case(
        "input_enum_added",
        "input",
        obj({"currency": S}),
        obj({"currency": {**S, "enum": ["EUR", "USD"]}}),
        [("/properties/currency/enum", "no longer accepts values other than 'EUR', 'USD'")],
    ),
    Case(
        "output_const_changed",
        "output",
        obj({"kind": {"const": "v1"}}),
        obj({"kind": {"const": "v2"}}),
        [("/properties/kind/const", "output field 'kind' may now be 'v2'")],
    ),
    Case(
        "input_nullable_dropped_type_list",
        "input",
        obj({"note": {"type": ["string", "null"]}}),
        obj({"note": S}),
        [("/properties/note/type", "input field 'note' no longer accepts null")],
    ),
    Case(
        "input_nullable_dropped_anyof",
        "input",
        obj({"note": {"anyOf": [S, NULL]}}),
        obj({"note": S}),
        [("/properties/note/type", "input field 'note' no longer accepts null")],
    ),
    Case(
        "output_nullable_added_anyof",
        "output",
        obj({"ref": S}),
        obj({"ref": {"anyOf": [S, NULL]}}),
        [("/properties/ref/anyOf/1/type", "output field 'ref' may now be null")],
    ),
    Case(
        "input_nullable_inner_narrowed",
        "input",
        obj({"code": {"type": ["string", "null"]}}),
        obj({"code": {"anyOf": [{**S, "maxLength": 3}, NULL]}}),
        [
            (
                "/properties/code/anyOf/0/maxLength",
                "input field 'code' no longer accepts strings longer than 3 characters",
            )
        ],
    ),
    Case(
        "input_minimum_raised",
        "input",
        obj({"n": {**I, "minimum": 1}}),
        obj({"n": {**I, "minimum": 5}}),
        [
            (
                "/properties/n/minimum",
                'no longer accepts integers below 5 (e.g. 1, as in input {"n": 1}): lower bound changed from minimum 1 to minimum 5',
            )
        ],
    ),
    Case(
        "input_exclusive_maximum_added",
        "input",
        obj({"n": {**N, "maximum": 10}}),
        obj({"n": {**N, "exclusiveMaximum": 10}}),
        [("/properties/n/exclusiveMaximum", "no longer accepts numbers greater than or equal to 10")],
    ),
    Case(
        "output_maximum_removed",
        "output",
        obj({"n": {**N, "maximum": 10}}),
        obj({"n": N}),
        [("/properties/n", "output field 'n' may now be numbers above 10")],
    ),
    Case(
        "input_multipleof_added",
        "input",
        obj({"n": I}),
        obj({"n": {**I, "multipleOf": 5}}),
        [("/properties/n/multipleOf", "integers that are not multiples of 5")],
    ),
    Case(
        "input_string_length_tightened",
        "input",
        obj({"s": {**S, "minLength": 1, "maxLength": 50}}),
        obj({"s": {**S, "minLength": 2, "maxLength": 20}}),
        [
            ("/properties/s/minLength", "strings shorter than 2 characters"),
            ("/properties/s/maxLength", "strings longer than 20 characters"),
        ],
    ),
    Case(
        "input_pattern_added_cannot_prove",
        "input",
        obj({"sku": S}),
        obj({"sku": {**S, "pattern": "^[A-Z]+$"}}),
        [("/properties/sku/pattern", "cannot prove input field 'sku' stays compatible: pattern changed")],
    ),
    Case(
        "input_pattern_changed_cannot_prove",
        "input",
        {**S, "pattern": "^[a-z]+$"},
        {**S, "pattern": "^[a-z0-9]+$"},
        [
            (
                "/pattern",
                "cannot prove input stays compatible: pattern changed from '^[a-z]+$' to '^[a-z0-9]+$'",
            )
        ],
    ),
    Case(
        "input_format_added_cannot_prove",
        "input",
        obj({"email": S}),
        obj({"email": {**S, "format": "email"}}),
        [("/properties/email/format", "cannot prove")],
    ),
    Case(
        "input_items_narrowed",
        "input",
        obj({"lines": {"type": "array", "items": obj({"qty": N})}}),
        obj({"lines": {"type": "array", "items": obj({"qty": I})}}),
        [
            (
                "/properties/lines/items/properties/qty/type",
                "input field 'lines[].qty' no longer accepts non-integer numbers",
            )
        ],
    ),
    Case(
        "input_prefix_items_narrowed",
        "input",
        {"type": "array", "prefixItems": [S, N]},
        {"type": "array", "prefixItems": [S, I]},
        [("/prefixItems/1/type", "input field '[1]' no longer accepts non-integer numbers")],
    ),
    Case(
        "input_array_size_and_uniqueness",
        "input",
        {"type": "array", "items": S, "maxItems": 10},
        {"type": "array", "items": S, "minItems": 1, "maxItems": 5, "uniqueItems": True},
        [
            ("/minItems", "arrays with fewer than 1 items"),
            ("/maxItems", "arrays with more than 5 items"),
            ("/uniqueItems", "arrays with duplicate items"),
        ],
    ),
    Case(
        "input_additional_properties_closed",
        "input",
        obj({"a": S}),
        obj({"a": S}, additionalProperties=False),
        [("/additionalProperties", "input no longer accepts fields other than 'a'")],
    ),
    Case(
        "input_field_removed_from_closed_object",
        "input",
        obj({"a": S, "b": S}, additionalProperties=False),
        obj({"a": S}, additionalProperties=False),
        [("/additionalProperties", "input field 'b' is no longer allowed")],
    ),
    Case(
        "input_additional_properties_schema_narrowed",
        "input",
        {"type": "object", "additionalProperties": N},
        {"type": "object", "additionalProperties": I},
        [("/additionalProperties/type", "input field '*' no longer accepts non-integer numbers")],
    ),
    Case(
        "input_object_size_bounds",
        "input",
        {"type": "object"},
        {"type": "object", "minProperties": 1, "maxProperties": 3},
        [
            ("/minProperties", "objects with fewer than 1 fields"),
            ("/maxProperties", "objects with more than 3 fields"),
        ],
    ),
    Case(
        "input_pattern_properties_changed_cannot_prove",
        "input",
        {"type": "object", "patternProperties": {"^x-": S}},
        {"type": "object", "patternProperties": {"^y-": S}},
        [("/patternProperties", "cannot prove input stays compatible: patternProperties changed")],
    ),
    Case(
        "input_ref_target_narrowed",
        "input",
        {"$defs": {"money": N}, **obj({"amount": {"$ref": "#/$defs/money"}})},
        {"$defs": {"money": I}, **obj({"amount": {"$ref": "#/$defs/money"}})},
        [("/$defs/money/type", "input field 'amount' no longer accepts non-integer numbers")],
    ),
    Case(
        "input_definitions_ref_required_added",
        "input",
        {"definitions": {"addr": obj({"zip": S})}, **obj({"ship_to": {"$ref": "#/definitions/addr"}})},
        {
            "definitions": {"addr": obj({"zip": S}, ("zip",))},
            **obj({"ship_to": {"$ref": "#/definitions/addr"}}),
        },
        [("/definitions/addr/required", "input field 'ship_to.zip' is now required")],
    ),
    Case(
        "input_recursive_ref_narrowed",
        "input",
        NODE_NUM,
        NODE_INT,
        [("/$defs/node/properties/value/type", "input field 'value' no longer accepts non-integer numbers")],
    ),
    Case(
        "input_anyof_no_branch_fits",
        "input",
        obj({"id": {"type": ["string", "integer"]}}),
        obj({"id": {"anyOf": [S, {"type": "boolean"}]}}),
        [
            (
                "/properties/id/anyOf",
                "input field 'id' no longer accepts integers (e.g. 0, as in input {\"id\": 0}): none of the anyOf alternatives accepts integers",
            )
        ],
    ),
    Case(
        "input_oneof_overlap_cannot_prove",
        "input",
        obj({"n": I}),
        obj({"n": {"oneOf": [N, {**I, "minimum": 0}]}}),
        [
            (
                "/properties/n/oneOf",
                "cannot prove input field 'n' stays compatible: integers might match more than one oneOf alternative",
            )
        ],
    ),
    Case(
        "input_allof_member_narrowed",
        "input",
        obj({"a": S, "b": S}),
        {"allOf": [obj({"a": S}), obj({"b": S}, ("b",))]},
        [("/allOf/1/required", "input field 'b' is now required")],
    ),
    Case(
        "input_not_added_cannot_prove",
        "input",
        S,
        {**S, "not": {"pattern": "^x"}},
        [("/not", "cannot prove input stays compatible: the 'not' constraint changed")],
    ),
    Case(
        "input_oneof_number_overlaps_integer_cannot_prove",
        "input",
        N,
        {"oneOf": [N, I]},
        [
            (
                "/oneOf",
                "cannot prove input stays compatible: numbers might match more than one oneOf alternative",
            )
        ],
    ),
    Case("input_not_disjoint_type", "input", obj({"id": S}), obj({"id": {"not": I}})),
    Case("input_not_of_excluded_value", "input", {"enum": ["a", "b"]}, {"not": {"const": "c"}}),
    Case(
        "input_if_then_added_cannot_prove",
        "input",
        obj({"a": S}),
        {**obj({"a": S}), "if": {"required": ["a"]}, "then": {"required": ["b"]}},
        [("/if", "cannot prove input stays compatible: 'if' is not supported unless identical")],
    ),
    Case(
        "input_dependent_required_added",
        "input",
        obj({"card": S, "cvc": S}),
        {**obj({"card": S, "cvc": S}), "dependentRequired": {"card": ["cvc"]}},
        [("/dependentRequired", "objects that have 'card' without 'cvc'")],
    ),
    Case(
        "input_contains_added_cannot_prove",
        "input",
        {"type": "array"},
        {"type": "array", "contains": S},
        [("/contains", "cannot prove input stays compatible: the 'contains' constraint changed")],
    ),
    Case(
        "input_property_names_added_cannot_prove",
        "input",
        {"type": "object"},
        {"type": "object", "propertyNames": {"maxLength": 3}},
        [("/propertyNames", "cannot prove")],
    ),
    Case("input_false_schema", "input", S, False, [("", "input is no longer allowed")]),
    Case(
        "input_external_ref_cannot_prove",
        "input",
        obj({"a": S}),
        obj({"a": {"$ref": "https://example.com/a.json"}}),
        [("/properties/a/$ref", "cannot prove input field 'a' stays compatible: cannot resolve $ref")],
    ),
    Case(
        "output_new_field_where_old_was_closed",
        "output",
        obj({"a": S}, additionalProperties=False),
        obj({"a": S, "b": S}),
        [
            ("/properties/b", "output field 'b' may now be present"),
            ("", "output may now contain fields other than 'a'"),
        ],
    ),
]


def _run(case: Case) -> list[Finding]:
    if case.direction == "input":
        return check_input_compat(case.old, case.new)
    return check_output_compat(case.old, case.new)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_golden(case: Case) -> None:
    findings = _run(case)
    got = [(f.pointer, f.message) for f in findings]
    assert [p for p, _ in got] == [p for p, _ in case.expected], got
    for (_, message), (_, fragment) in zip(got, case.expected, strict=True):
        assert fragment in message, got
    assert all(f.breaking for f in findings)
    assert is_breaking(findings) == bool(case.expected)


def test_golden_suite_is_big_and_balanced() -> None:
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)
    compatible = sum(1 for c in CASES if not c.expected)
    assert 15 <= compatible <= len(CASES) - 15


def test_contract_compat_prefixes_pointers() -> None:
    findings = check_contract_compat(
        obj({"a": S}), obj({"ref": S}, ("ref",)), obj({"a": S}, ("a",)), obj({"ref": S})
    )
    assert [(f.pointer, f.message) for f in findings] == [
        ("/input/required", "input field 'a' is now required"),
        (
            "/output/required",
            "output field 'ref' may now be missing, although the previous version always included it",
        ),
    ]


def test_contract_compat_ref_pointers_are_prefixed() -> None:
    schema_old = {"$defs": {"m": N}, **obj({"x": {"$ref": "#/$defs/m"}})}
    schema_new = {"$defs": {"m": I}, **obj({"x": {"$ref": "#/$defs/m"}})}
    findings = check_contract_compat(schema_old, schema_old, schema_new, schema_old)
    assert [f.pointer for f in findings] == ["/input/$defs/m/type"]


def test_subschema_uses_roots_pointer_and_subject() -> None:
    upstream_root = {
        "$defs": {"ref": {**S, "maxLength": 40}},
        **obj({"payment_ref": {"$ref": "#/$defs/ref"}}),
    }
    downstream = obj({"payment_ref": {**S, "maxLength": 20}})
    findings = check_subschema(
        upstream_root["properties"]["payment_ref"],
        downstream["properties"]["payment_ref"],
        pointer="/properties/payment_ref",
        sub_root=upstream_root,
        subject="output.payment_ref",
    )
    assert [(f.pointer, f.message) for f in findings] == [
        (
            "/properties/payment_ref/maxLength",
            "output field 'payment_ref' may be strings longer than 20 characters (e.g. 'aaaaaaaaaaaaaaaaaaaaa'), which the target schema does not "
            "accept: maxLength is 40 here but 20 in the target schema",
        )
    ]
    assert check_subschema({**S, "maxLength": 10}, downstream["properties"]["payment_ref"]) == []


def test_is_breaking() -> None:
    assert not is_breaking([])
    assert is_breaking([Finding("", "x")])
    assert not is_breaking([Finding("", "x", breaking=False)])


def test_adding_a_field_to_an_open_input_says_how_to_make_it_compatible() -> None:
    old = {"type": "object", "properties": {"a": {"type": "string"}}}
    new = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    [finding] = check_input_compat(old, new)
    assert finding.pointer == "/properties/b/type"
    assert "declare additionalProperties: false" in finding.message
    closed = {"additionalProperties": False}
    assert check_input_compat({**old, **closed}, {**new, **closed}) == []


def test_dropping_a_field_from_an_open_output_says_to_keep_declaring_it() -> None:
    old = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    new = {"type": "object", "properties": {"a": {"type": "string"}}}
    [finding] = check_output_compat(old, new)
    assert "keep declaring it until the next major version" in finding.message
    assert "previous version accepted" not in finding.message
