"""The quick check (contracts.quickcheck) answers as jsonschema does for every schema it compiles:
a derandomized property test over schemas made of the keywords it knows, nested, and JSON values
near them; JSON's equality and types at their edges; the keywords it leaves to jsonschema; and
the inline budget it ticks."""

from __future__ import annotations

import collections
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from contracts.limits import InlineBudgetSpent, inline_budget
from contracts.quickcheck import quick_check
from contracts.validation import compiled_validator, validate_payload
from tests.support.soak import sized

_NAMES = ["a", "b", "c", "d"]
_TYPE_NAMES = ["object", "array", "string", "integer", "number", "boolean", "null"]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 0.5, 1.0, 2.0, -1.0, 2.5, 1e300]),
    st.floats(-4, 4, allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "a", "ab", "b1", "123", "é", "abc"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_NAMES), inner, max_size=4),
    max_leaves=10,
)
_bounds = st.integers(-2, 3) | st.sampled_from([0.5, 1.0, 2.5])
_counts = st.integers(0, 3)
_types = st.sampled_from(_TYPE_NAMES) | st.lists(
    st.sampled_from(_TYPE_NAMES), min_size=1, max_size=3, unique=True
)

_LEAF_KEYWORDS = {
    "type": _types,
    "minimum": _bounds,
    "maximum": _bounds,
    "exclusiveMinimum": _bounds,
    "exclusiveMaximum": _bounds,
    "minLength": _counts,
    "maxLength": _counts,
    "minItems": _counts,
    "maxItems": _counts,
    "minProperties": _counts,
    "maxProperties": _counts,
    "enum": st.lists(_values, min_size=1, max_size=3),
    "const": _values,
    "pattern": st.sampled_from(["^a", "b", "^[0-9]+$", "é"]),
    "required": st.lists(st.sampled_from(_NAMES), unique=True, max_size=3),
    "title": st.just("annotations assert nothing"),
}


@st.composite
def _node(draw: st.DrawFn, keywords: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    # A few keywords per node: with many, a value nearly always fails one of them, and the
    # others' edges (a value equal to a bound) would be seen too seldom to be tested.
    chosen = draw(st.lists(st.sampled_from(sorted(keywords)), unique=True, max_size=3))
    return {keyword: draw(keywords[keyword]) for keyword in chosen}


def _leaf() -> st.SearchStrategy[Any]:
    return st.just(True) | _node(_LEAF_KEYWORDS)


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return _node(
        {
            **_LEAF_KEYWORDS,
            "properties": st.dictionaries(st.sampled_from(_NAMES), children, max_size=3),
            "additionalProperties": st.booleans() | children,
            "items": st.booleans() | children,
        }
    )


_schemas = st.recursive(_leaf(), _extend, max_leaves=6)

# (valid by jsonschema) -> how many examples, so that both verdicts are seen often.
_SEEN: collections.Counter[bool] = collections.Counter()


def _pivots(schema: Any) -> list[Any]:
    """Values at the schema's own edges: each number in it, one either side of it, and strings,
    arrays and objects of each such size (a bound's off-by-one is found only there)."""
    numbers: set[Any] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, int | float) and not isinstance(node, bool):
            numbers.add(node)

    walk(schema)
    out: list[Any] = []
    for number in sorted(numbers):
        out += [number, number - 1, number + 1, float(number)]
        if isinstance(number, int) and 0 <= number <= 4:
            out += ["x" * number, list(range(number)), {name: 1 for name in _NAMES[:number]}]
    return out or [0]


@sized("examples", short=1_500, soak=40_000)
def test_the_quick_check_answers_as_jsonschema_does(examples: int) -> None:
    _SEEN.clear()

    # Derandomized: the verdicts counted below are those of the same examples every run.
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(_schemas, st.data())
    def check(schema: Any, data: st.DataObject) -> None:
        values = data.draw(st.lists(_values | st.sampled_from(_pivots(schema)), min_size=1, max_size=4))
        quick = quick_check(schema)
        assert quick is not None, schema
        validator = compiled_validator(schema)
        for value in values:
            valid = validator.is_valid(value)
            assert quick(value) is valid, (schema, value)
            # validate_payload answers through the quick check, and as jsonschema alone does.
            assert (validate_payload(schema, value) == []) is valid, (schema, value)
            _SEEN[valid] += 1

    check()
    assert _SEEN[True] > examples / 4 and _SEEN[False] > examples / 4, _SEEN


@pytest.mark.parametrize(
    ("schema", "value", "valid"),
    [
        ({"type": "integer"}, 3.0, True),  # Draft 2020-12: a float with no fraction is an integer
        ({"type": "integer"}, 3.5, False),
        ({"type": "integer"}, True, False),  # a bool is not a number of any kind
        ({"type": "number"}, False, False),
        ({"minimum": 1}, True, True),  # not a number: the bound does not apply to it
        ({"enum": [1]}, 1.0, True),  # JSON's equality: 1 == 1.0
        ({"enum": [1]}, True, False),  # ... but true is not 1
        ({"enum": [True]}, 1, False),
        ({"const": {"a": [1, {"b": None}]}}, {"a": [1.0, {"b": None}]}, True),
        ({"const": {"a": [1]}}, {"a": [True]}, False),
        ({"const": [1, 2]}, [2, 1], False),
        ({"additionalProperties": False, "properties": {"a": True}}, {"a": 1, "b": 2}, False),
        ({"additionalProperties": {"type": "string"}, "properties": {"a": True}}, {"a": 1, "b": "x"}, True),
        ({"items": False}, [], True),
        ({"items": False}, [1], False),
        ({"items": {"type": "string"}}, ["a", 1], False),
        ({"required": ["a"]}, "not an object", True),
        ({"maxLength": 1}, "é", True),  # code points, not bytes
        ({"pattern": "^[0-9]+$"}, "12", True),
        ({"pattern": "^[0-9]+$"}, "1a", False),
        (True, {"anything": [1]}, True),
    ],
)
def test_json_types_and_equality_at_their_edges(schema: Any, value: Any, valid: bool) -> None:
    quick = quick_check(schema)
    assert quick is not None
    assert compiled_validator(schema).is_valid(value) is valid, "the case itself is wrong"
    assert quick(value) is valid


@pytest.mark.parametrize(
    "schema",
    [
        False,
        {"$ref": "#/$defs/a", "$defs": {"a": {"type": "string"}}},
        {"allOf": [{"type": "string"}]},
        {"format": "date-time"},
        {"type": "array", "uniqueItems": True},
        {"patternProperties": {"^x": {"type": "string"}}, "additionalProperties": False},
        {"prefixItems": [{"type": "string"}], "items": {"type": "integer"}},
        {"multipleOf": 0.1},
        {"properties": {"a": {"not": {"type": "string"}}}},  # deep inside
        {"items": {"x-vendor": 1}},  # a keyword nobody knows: left to jsonschema
        {"type": "any"},
        {"minimum": True},
        {"minLength": 1.0},
    ],
)
def test_schemas_with_keywords_it_does_not_know_are_left_to_jsonschema(schema: Any) -> None:
    assert quick_check(schema) is None


def test_a_value_it_is_not_sure_of_goes_to_jsonschema() -> None:
    from decimal import Decimal

    quick = quick_check({"type": "number"})
    assert quick is not None
    assert quick(Decimal("1.5")) is False  # not JSON's: "not sure", and jsonschema decides
    assert validate_payload({"type": "number"}, Decimal("1.5")) == []


def test_it_ticks_the_inline_budget_as_it_walks() -> None:
    schema = {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}}
    quick = quick_check(schema)
    assert quick is not None
    value = [{"n": i} for i in range(300_000)]
    with pytest.raises(InlineBudgetSpent), inline_budget(0.001):
        quick(value)
    assert quick(value)
