"""A quick first look at a payload before jsonschema's: for the schemas most contracts are made of
(types, properties, required, bounds, enums), a plain Python function that says "valid" in a
microsecond or two where jsonschema's ``iter_errors`` takes ten or more, which every task input
and output paid, on the coordinator's event loop and in every agent (docs/contracts.md,
"Validation").

:func:`quick_check` compiles a schema into such a function, or None when the schema uses any
keyword it does not know (``$ref``, ``allOf``, ``format``, ``uniqueItems``, ...: jsonschema alone
checks those). The function is only ever trusted when it answers True: it answers True exactly when
jsonschema finds no violation (a property test compares the two), and False when it finds one or
is not sure (a number type other than int and float); on False, jsonschema validates the payload
again, so every violation and message is still jsonschema's.

Each keyword follows jsonschema's own (``jsonschema._keywords``, Draft 2020-12): a keyword about
one JSON type passes a value of any other type; ``integer`` takes a float with no fraction; a bool
is never a number; ``enum`` and ``const`` compare as JSON does (``1`` equals ``1.0``, ``true`` does
not equal ``1``). It ticks the inline budget once per object or array it looks into and every 64
array items (``contracts.limits.spend_inline``), as jsonschema's keywords do, so that a check on
the event loop stops when its budget is spent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sized
from typing import Any

from contracts import regex
from contracts.limits import spend_inline

__all__ = ["Check", "quick_check"]

Check = Callable[[Any], bool]

# Keywords that annotate and assert nothing.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly"}
)


def _always(value: Any) -> bool:
    return True


def _is_number(value: Any) -> bool:
    # jsonschema: numbers.Number but not bool. Only int and float come from JSON; any other
    # number is left to jsonschema (answered False here: "not sure").
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


_TYPES: dict[str, Check] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: isinstance(value, bool),
    "null": lambda value: value is None,
    "integer": _is_integer,
    "number": _is_number,
}


def _is_count(value: Any) -> bool:
    # The metaschema's non-negative integer; a float such as 2.0 is left to jsonschema.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _type(arg: Any, schema: Mapping[str, Any]) -> Check | None:
    names = [arg] if isinstance(arg, str) else arg
    if not isinstance(names, list) or not names or not all(name in _TYPES for name in names):
        return None
    tests = tuple(_TYPES[name] for name in names)
    if len(tests) == 1:
        return tests[0]
    return lambda value: any(test(value) for test in tests)


def _properties(arg: Any, schema: Mapping[str, Any]) -> Check | None:
    if not isinstance(arg, dict):
        return None
    pairs = []
    for name, subschema in arg.items():
        check = _node(subschema)
        if check is None:
            return None
        if check is not _always:
            pairs.append((name, check))
    if not pairs:
        return _always
    checked = tuple(pairs)

    def properties(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        spend_inline()
        for name, check in checked:
            if name in value and not check(value[name]):
                return False
        return True

    return properties


def _required(arg: Any, schema: Mapping[str, Any]) -> Check | None:
    if not isinstance(arg, list) or not all(isinstance(name, str) for name in arg):
        return None
    if not arg:
        return _always
    names = frozenset(arg)
    return lambda value: not isinstance(value, dict) or names <= value.keys()


def _additional_properties(arg: Any, schema: Mapping[str, Any]) -> Check | None:
    # patternProperties is a keyword this module does not know: such a schema has no quick check.
    known = schema.get("properties", {})
    if not isinstance(known, dict):
        return None
    named = frozenset(known)
    if arg is True:
        return _always
    if arg is False:
        return lambda value: not isinstance(value, dict) or named.issuperset(value)
    check = _node(arg)
    if check is None:
        return None
    if check is _always:
        return _always

    def additional(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        spend_inline()
        for name, item in value.items():
            if name not in named and not check(item):
                return False
        return True

    return additional


def _items(arg: Any, schema: Mapping[str, Any]) -> Check | None:
    if "prefixItems" in schema:
        return None
    if arg is False:
        return lambda value: not isinstance(value, list) or not value
    check = _node(arg)
    if check is None:
        return None
    if check is _always:
        return _always

    def items(value: Any) -> bool:
        if not isinstance(value, list):
            return True
        spend_inline()
        for index, item in enumerate(value):
            if not index & 63:
                spend_inline()
            if not check(item):
                return False
        return True

    return items


def _enum(arg: Any, schema: Mapping[str, Any]) -> Check | None:
    # JSON's equality as uniqueItems has it; imported here, as contracts.validation imports this
    # module.
    from contracts.validation import _equality_key

    if not isinstance(arg, list):
        return None
    try:
        keys = frozenset(_equality_key(item) for item in arg)
    except TypeError:
        return None

    def enum(value: Any) -> bool:
        try:
            return _equality_key(value) in keys
        except TypeError:  # a value no JSON decoder makes, unhashable: jsonschema decides
            return False

    return enum


def _const(arg: Any, schema: Mapping[str, Any]) -> Check | None:
    return _enum([arg], schema)


def _bound(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Mapping[str, Any]], Check | None]:
    def make(arg: Any, schema: Mapping[str, Any]) -> Check | None:
        if not _is_number(arg):
            return None
        return lambda value: not _is_number(value) or compare(value, arg)

    return make


def _size(
    kind: type[Sized], compare: Callable[[int, int], bool]
) -> Callable[[Any, Mapping[str, Any]], Check | None]:
    def make(arg: Any, schema: Mapping[str, Any]) -> Check | None:
        if not _is_count(arg):
            return None
        return lambda value: not isinstance(value, kind) or compare(len(value), arg)

    return make


def _pattern(arg: Any, schema: Mapping[str, Any]) -> Check | None:
    if not isinstance(arg, str):
        return None
    # jsonschema's ``pattern`` searches with contracts.regex (RE2) once it is installed.
    return lambda value: not isinstance(value, str) or regex.search(arg, value) is not None


_KEYWORDS: dict[str, Callable[[Any, Mapping[str, Any]], Check | None]] = {
    "type": _type,
    "properties": _properties,
    "required": _required,
    "additionalProperties": _additional_properties,
    "items": _items,
    "enum": _enum,
    "const": _const,
    "minimum": _bound(lambda value, bound: value >= bound),
    "maximum": _bound(lambda value, bound: value <= bound),
    "exclusiveMinimum": _bound(lambda value, bound: value > bound),
    "exclusiveMaximum": _bound(lambda value, bound: value < bound),
    "minLength": _size(str, lambda length, bound: length >= bound),
    "maxLength": _size(str, lambda length, bound: length <= bound),
    "minItems": _size(list, lambda length, bound: length >= bound),
    "maxItems": _size(list, lambda length, bound: length <= bound),
    "minProperties": _size(dict, lambda length, bound: length >= bound),
    "maxProperties": _size(dict, lambda length, bound: length <= bound),
    "pattern": _pattern,
}


def _node(schema: Any) -> Check | None:
    if schema is True:
        return _always
    if not isinstance(schema, dict):
        return None  # false (nothing is valid: jsonschema says why), or not a schema
    checks = []
    for keyword, arg in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        make = _KEYWORDS.get(keyword)
        if make is None:
            return None
        check = make(arg, schema)
        if check is None:
            return None
        if check is not _always:
            checks.append(check)
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    every = tuple(checks)

    def all_of(value: Any) -> bool:
        for check in every:
            if not check(value):
                return False
        return True

    return all_of


def quick_check(schema: Any) -> Check | None:
    """A function of a payload that answers True only when ``schema`` (JSON Schema 2020-12, as
    ``contracts.validation`` validates it) finds no violation in it; None when ``schema`` uses a
    keyword this module leaves to jsonschema (see the module docstring)."""
    return _node(schema)
