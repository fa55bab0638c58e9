"""JSON Schema compatibility: is every instance valid under one schema valid under another?

Contracts evolve inside a major version under two rules (docs/contracts.md, "Compatibility
rules"): input may only widen (every input the old version accepted is still accepted) and output
may only narrow (everything the new version produces was promised by the old one). Both reduce to
one relation between JSON Schemas (2020-12), the subschema relation ``sub ⊆ sup``: every instance
valid under ``sub`` is valid under ``sup``.

The checker is *sound but incomplete*: an empty list of findings is a proof that ``sub ⊆ sup``;
whatever it cannot prove becomes a breaking finding that says so ("cannot prove ..."), never a
silent pass. It works type by type (keywords such as ``minimum`` only constrain numbers), splits
the sub schema into disjuncts (``anyOf``/``oneOf``/``type`` lists) and the sup schema into
conjuncts (``allOf``, sibling keywords), and checks each pair. Finite value sets (``enum``,
``const``) are checked exactly by validating each value. Recursive ``$ref`` uses the standard
coinductive rule: a pair of schemas already under examination is assumed compatible.

Each finding carries a JSON pointer into the *new* schema (or, for :func:`check_subschema`, the
target ``sup`` schema) and one sentence a person can act on.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal, TypeAlias, TypeGuard

from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator

from contracts import _schemas, regex
from contracts._schemas import json_type
from contracts.errors import InvalidSchemaError, Violation
from contracts.limits import spend_inline
from contracts.validation import canonical_json, compiled_validator, json_path

__all__ = [
    "Finding",
    "check_contract_compat",
    "check_input_compat",
    "check_output_compat",
    "check_subschema",
    "is_breaking",
]


@dataclass(frozen=True)
class Finding:
    """One reason why a schema change may break someone.

    ``pointer`` is a JSON pointer into the new (or target) schema, ``""`` for its root;
    ``message`` is one plain English sentence naming the field in user terms.
    """

    pointer: str
    message: str
    breaking: bool = True
    # A finding that names an example (or claims a break, such as a field now required) keeps
    # here, as a 1-tuple, a whole value (document) the old schema accepts and the new one refuses
    # (input; for output, one the new may produce that the old did not promise), checked with the
    # validator payloads meet. Not part of equality.
    example: tuple[Any] | None = field(default=None, compare=False, repr=False)


# A JSON Schema is a mapping or a boolean.
Schema: TypeAlias = Mapping[str, Any] | bool
Voice: TypeAlias = Literal["input", "output", "generic"]

_ALL_TYPES = frozenset({"null", "boolean", "object", "array", "number", "string"})
_KNOWN_TYPES = _ALL_TYPES | {"integer"}
_PLURAL = {
    "null": "null",
    "boolean": "booleans",
    "object": "objects",
    "array": "arrays",
    "number": "numbers",
    "integer": "integers",
    "string": "strings",
}
# Keywords this checker reasons about.
_HANDLED = frozenset(
    {
        "type",
        "enum",
        "const",
        "required",
        "properties",
        "additionalProperties",
        "patternProperties",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
        "$ref",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "dependentRequired",
        "propertyNames",
        "contains",
        "additionalItems",  # only meaningful beside the old tuple form of items, handled there
        # Rewritten into additionalProperties / items where their siblings allow it (see
        # _Checker.unevaluated_view), refused otherwise.
        "unevaluatedProperties",
        "unevaluatedItems",
    }
)
# Keywords that constrain instances but that the checker only accepts when identical on both
# sides; the value is the instance type they apply to (None: any type).
_OPAQUE: dict[str, str | None] = {
    "if": None,
    "dependentSchemas": "object",
    "dependencies": "object",
    "$dynamicRef": None,
    "$recursiveRef": None,
}
_CONSTRAINING = _HANDLED | frozenset(_OPAQUE)
# Sub-side constraints that could not be merged into one keyword during an allOf merge are kept
# under this key (never a valid JSON Schema keyword) so equality checks can still use them.
_ALSO = "\x00also"
# Regular expressions that match every string, so a pattern of this kind constrains nothing.
_TRIVIAL_PATTERNS = frozenset({"", ".*", "^.*", ".*$"})
_MAX_DEPTH = 200
# Keywords whose annotations unevaluatedProperties / unevaluatedItems see besides the plain
# properties/items family: beside any of these, "unevaluated" depends on which subschemas an
# instance happens to match, which this checker does not model.
_UNEVALUATED = ("unevaluatedProperties", "unevaluatedItems")
_IN_PLACE_APPLICATORS = frozenset(
    {
        "$ref",
        "$dynamicRef",
        "$recursiveRef",
        "allOf",
        "anyOf",
        "oneOf",
        "if",
        "then",
        "else",
        "dependentSchemas",
    }
)
_MAX_DISJUNCTS = 64


class _CannotProveError(Exception):
    """Raised internally when a schema shape is outside what the checker can reason about."""


class _OutOfBudgetError(Exception):
    """Raised internally when a check has taken its whole work budget (``_MAX_STEPS``): it ends
    the check (it is not a _CannotProveError, which is handled locally and lets the check go on)."""


# How many schema pairs one check may examine (and how many candidate values it may validate
# while looking for examples). Real contracts take a few hundred steps; recursive or very
# branchy schemas could otherwise take exponential time on the coordinator. Past the budget the
# change is refused as one the checker cannot prove safe (docs/contracts.md, "Limits").
_MAX_STEPS = 5_000


def _key(value: Any) -> Hashable:
    """A hashable key equal for JSON-equal values (1 == 1.0, but true != 1)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("num", value)
    if isinstance(value, float):
        return ("num", int(value) if value.is_integer() else value)
    return _canon(value)


def _collect_refs(value: Any, out: list[Any]) -> bool:
    """Collect every $ref inside `value`; False if it holds a dynamic/recursive reference."""
    if isinstance(value, Mapping):
        if "$dynamicRef" in value or "$recursiveRef" in value:
            return False
        if "$ref" in value:
            out.append(value["$ref"])
        return all(_collect_refs(v, out) for v in value.values())
    if isinstance(value, list):
        return all(_collect_refs(v, out) for v in value)
    return True


def _has_embedded_id(value: Any, top: bool = True) -> bool:
    """Whether a subschema below the root declares its own ``$id`` (its own base URI)."""
    if isinstance(value, Mapping):
        if not top and isinstance(value.get("$id"), str):
            return True
        return any(_has_embedded_id(v, False) for v in value.values())
    if isinstance(value, list):
        return any(_has_embedded_id(v, False) for v in value)
    return False


@lru_cache(maxsize=1)
def _meta_validator() -> Validator:
    # Built once: constructing the 2020-12 meta-schema validator costs more than using it.
    meta: Validator = Draft202012Validator(
        Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    return meta


@lru_cache(maxsize=512)
def _schema_problems(canonical: str) -> tuple[Violation, ...]:
    errors = _meta_validator().iter_errors(json.loads(canonical))
    found = {Violation(json_path(e.absolute_path), e.message[:300]) for e in errors}
    return tuple(sorted(found, key=lambda v: (v.path, v.message)))


def _ensure_schema(what: str, schema: Any) -> bool:
    """Raise InvalidSchemaError if `schema` is not a valid JSON Schema 2020-12: the checker's
    reasoning (and its wording) assumes valid keywords, e.g. a known ``type``. Returns whether
    a subschema below the root declares its own ``$id``."""
    text = canonical_json(schema)
    problems = _schema_problems(text)
    if problems:
        raise InvalidSchemaError(what, list(problems))
    return '"$id"' in text and _has_embedded_id(schema)


def _canon(value: Any) -> str:
    """Canonical JSON text, treating 1 and 1.0 as equal (as JSON Schema does)."""

    def norm(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, Mapping):
            return {k: norm(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [norm(x) for x in v]
        return v

    return json.dumps(norm(value), sort_keys=True, default=str)


def _esc(token: str) -> str:
    if "~" not in token and "/" not in token:
        return token
    return token.replace("~", "~0").replace("/", "~1")


_QUICK_KEYWORDS = frozenset({"type", "enum", "const"})


def _quick_valid(schema: Schema, instance: Any) -> bool | None:
    """Validate against a schema made only of type/enum/const without building a validator
    (the common shape of enumerated fields); None when the schema is anything else."""
    if isinstance(schema, bool):
        return schema
    if not _QUICK_KEYWORDS.issuperset(k for k in schema if k in _CONSTRAINING or k == _ALSO):
        return None
    if "type" in schema:
        types = schema["type"]
        types = [types] if isinstance(types, str) else types
        if not isinstance(types, list) or not any(_accepts(set(types), t) for t in _instance_types(instance)):
            return False
    values = _enum_values(schema)
    return values is None or _key(instance) in {_key(v) for v in values}


def _instance_types(value: Any) -> tuple[str, ...]:
    t = json_type(value)
    return ("integer", "number") if t == "integer" else (t,)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return (
        type(value) is int
        or type(value) is float
        or (isinstance(value, int | float) and not isinstance(value, bool))
    )


def _frac(value: int | float) -> Fraction:
    # Through str() so that 0.1 means one tenth, not the nearest binary float.
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    return json.dumps(value, default=str)


_FORMAT_SAMPLES = {
    "date": "2020-01-01",
    "date-time": "2020-01-01T00:00:00Z",
    "time": "00:00:00Z",
    "email": "a@example.com",
    "idn-email": "a@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uri": "https://example.com/a",
    "uri-reference": "https://example.com/a",
    "iri": "https://example.com/a",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "duration": "P1D",
    "regex": "a",
    "json-pointer": "/a",
}


# Which types examples are drawn from first: the plainest values read best in a message.
_EXAMPLE_ORDER = ("integer", "number", "string", "boolean", "null", "object", "array")


def _numbers_near(schemas: Sequence[Mapping[str, Any]]) -> list[int | float]:
    """Numbers at and around the bounds and multiples the schemas name."""
    out: list[int | float] = [0, 1, -1, 2, 10, 0.5, -0.5, 1.5]
    for schema in schemas:
        for kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            b = schema.get(kw)
            if _is_number(b) and math.isfinite(b) and abs(b) < 1e15:
                floor = math.floor(b)
                out += [b, b - 1, b + 1, b - 0.5, b + 0.5, floor, floor + 1, floor - 1]
        m = schema.get("multipleOf")
        if _is_number(m) and m > 0 and math.isfinite(m):
            out += [m * k for k in (1, 2, 3, -1, 7)]
            for kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                b = schema.get(kw)
                if _is_number(b) and math.isfinite(b) and abs(b / m) < 1e9:
                    k = math.floor(b / m)
                    out += [m * (k + j) for j in (-1, 0, 1, 2)]
    return out


def _strings_near(schemas: Sequence[Mapping[str, Any]]) -> list[str]:
    """Strings of the lengths, patterns and formats the schemas name."""
    from contracts import _patterns  # the checker's only user of the regex parser

    out: list[str] = ["", "a", "ab", "abc", "x"]
    lengths: set[int] = set()
    for schema in schemas:
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            out += _patterns.samples(pattern)
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMAT_SAMPLES:
            out.append(_FORMAT_SAMPLES[fmt])
        for kw in ("minLength", "maxLength"):
            n = schema.get(kw)
            if _is_number(n) and 0 <= n < 10_000:
                lengths |= {int(n) - 1, int(n), int(n) + 1}
    base = list(out)
    for n in sorted(x for x in lengths if x >= 0):
        out.append("a" * n)
        for text in base:  # a sample of the pattern, grown or cut to the length
            if text and len(text) != n:
                out.append((text * (n // len(text) + 1))[:n] if n > len(text) else text[:n])
    return out


def _samples(
    schema: Schema, types: Iterable[str], near: Sequence[Mapping[str, Any]], depth: int = 0
) -> list[Any]:
    """Candidate values of the given types for an example: built from `schema`'s own keywords
    (and those of `near`, the schema it is compared with), never trusted: the checker validates
    each before naming it."""
    own = schema if isinstance(schema, Mapping) else {}
    schemas = [own, *near]
    out: list[Any] = []
    for t in sorted(types, key=_EXAMPLE_ORDER.index):
        if t == "null":
            out.append(None)
        elif t == "boolean":
            out += [True, False]
        elif t == "integer":
            out += sorted({int(v) for v in _numbers_near(schemas) if float(v).is_integer()}, key=abs)
        elif t == "number":
            out += _numbers_near(schemas)
        elif t == "string":
            out += _strings_near(schemas)
        elif t == "array":
            out.append([])
            if depth < 3:
                raw_items = own.get("items")
                items: Mapping[str, Any] = raw_items if isinstance(raw_items, Mapping) else {}
                prefix = [p for p in own.get("prefixItems") or [] if isinstance(p, Mapping)]
                item_values = _samples(items, _types(items) or _ALL_TYPES, (), depth + 1)[:4] or [1]
                head = [(_samples(p, _types(p) or _ALL_TYPES, (), depth + 1) or [None])[0] for p in prefix]
                counts = {1, 2, 3}
                for sch in schemas:
                    for kw in ("minItems", "maxItems"):
                        n = sch.get(kw)
                        if _is_number(n) and 0 <= n < 100:
                            counts |= {int(n), int(n) + 1}
                for item in item_values:
                    for n in sorted(counts):
                        out.append((head + [item] * n)[: max(n, len(head))])
                out.append([*head, item_values[0], item_values[0]])
        elif t == "object":
            out.append({})
            if depth < 3:
                raw_props = own.get("properties")
                props: Mapping[str, Any] = raw_props if isinstance(raw_props, Mapping) else {}
                filled: dict[str, Any] = {}
                for name, prop in props.items():
                    values = _samples(
                        prop, _types(prop) if isinstance(prop, Mapping) else _ALL_TYPES, (), depth + 1
                    )
                    if values:
                        filled[name] = values[0]
                required = [r for r in own.get("required") or [] if isinstance(r, str)]
                base = {r: filled.get(r, 1) for r in required}
                out += [base, {**base, **filled}]
                for extra in (1, "a", None, True):
                    out += [{**base, "x": extra}, {**base, **filled, "x": extra}]
                out.append({**base, **filled, "x": 1, "y": 1, "z": 1})
    return out


def _place(parent: Any, seg: str, child: Any, d: Mapping[str, Any], sup: Mapping[str, Any]) -> list[Any]:
    """`parent` (an object or array value) with `child` at the field path segment `seg` (a
    field name, ``*`` for a field neither schema names, ``[i]`` or ``[]`` for further items)."""
    if seg.startswith("["):
        if not isinstance(parent, list):
            return []
        if seg == "[]":
            return [[*parent, child], [child] * max(1, len(parent))]
        i = int(seg[1:-1])
        items = list(parent)
        if len(items) > i:
            items[i] = child
        else:
            items += [child] * (i + 1 - len(items))
        return [items]
    if not isinstance(parent, dict):
        return []
    if seg == "*":
        declared = {*(d.get("properties") or {}), *(sup.get("properties") or {}), *parent}
        seg = next(
            n for n in itertools.chain(["x"], (f"x{i}" for i in itertools.count(1))) if n not in declared
        )
    return [{**parent, seg: child}]


def _string_lengths(schema: Mapping[str, Any]) -> tuple[int, int | None]:
    """The shortest and longest (None: no limit) length of the strings a simple schema admits,
    from minLength/maxLength and the lengths its patterns imply (``contracts/_patterns.py``;
    also those kept aside by an allOf merge)."""
    from contracts import _patterns

    lo = math.ceil(schema["minLength"]) if _is_number(schema.get("minLength")) else 0
    hi = math.floor(schema["maxLength"]) if _is_number(schema.get("maxLength")) else None
    patterns = [schema.get("pattern")] + [v for k, v in schema.get(_ALSO, ()) if k == "pattern"]
    for pattern in patterns:
        implied = _patterns.implied_lengths(pattern) if isinstance(pattern, str) else None
        if implied is not None:
            lo = max(lo, implied[0])
            if implied[1] is not None:
                hi = implied[1] if hi is None else min(hi, implied[1])
    return lo, hi


def _show_type(schema: Mapping[str, Any]) -> str:
    t = schema.get("type")
    if t is None:
        return "any type"
    if isinstance(t, str):
        return t
    return "[" + ", ".join(str(x) for x in t) + "]"


def _constraining(schema: Schema) -> bool:
    if isinstance(schema, bool):
        return not schema
    return not _CONSTRAINING.isdisjoint(schema) or _ALSO in schema


def _types(schema: Mapping[str, Any]) -> set[str]:
    """The JSON types a simple schema admits; "number" already covers integers."""
    t = schema.get("type")
    if t is None:
        found = set(_ALL_TYPES)
    else:
        found = {t} if isinstance(t, str) else {x for x in t if isinstance(x, str)}
    if "number" in found:
        found.discard("integer")
        m = schema.get("multipleOf")
        # A number that is a multiple of an integer is itself an integer. Only for an integer
        # divisor: with a float one the validator divides floats (see _multiple_implies).
        if type(m) is int and m > 0:
            found.discard("number")
            found.add("integer")
    return found


def _accepts(types: set[str], t: str) -> bool:
    return t in types or (t == "integer" and "number" in types)


def _overlaps(types: set[str], t: str) -> bool:
    """Whether a schema admitting `types` may share an instance with values of type `t`."""
    return _accepts(types, t) or (t == "number" and "integer" in types)


def _enum_values(schema: Mapping[str, Any]) -> list[Any] | None:
    values: list[Any] | None = None
    if "const" in schema:
        values = [schema["const"]]
    if "enum" in schema and isinstance(schema["enum"], list):
        enum = list(schema["enum"])
        if values is None:
            values = enum
        else:
            keys = {_key(v) for v in enum}
            values = [v for v in values if _key(v) in keys]
    return values


def _conj_lazy(a: Schema, b: Schema) -> Schema:
    """The conjunction of two schemas, merged later when (if) it is examined."""
    if a is False or b is False:
        return False
    if not _constraining(a):
        return b
    if not _constraining(b):
        return a
    return {"allOf": [a, b]}


def _lower_bound(schema: Mapping[str, Any]) -> tuple[float, bool, str] | None:
    """Tightest lower bound as (value, exclusive, keyword)."""
    best: tuple[float, bool, str] | None = None
    for kw, excl in (("minimum", False), ("exclusiveMinimum", True)):
        v = schema.get(kw)
        if _is_number(v) and (best is None or v > best[0] or (v == best[0] and excl)):
            best = (v, excl, kw)
    return best


def _upper_bound(schema: Mapping[str, Any]) -> tuple[float, bool, str] | None:
    best: tuple[float, bool, str] | None = None
    for kw, excl in (("maximum", False), ("exclusiveMaximum", True)):
        v = schema.get(kw)
        if _is_number(v) and (best is None or v < best[0] or (v == best[0] and excl)):
            best = (v, excl, kw)
    return best


def _int_lower(bound: tuple[float, bool, str]) -> int:
    v, excl, _ = bound
    return math.floor(v) + 1 if excl else math.ceil(v)


def _int_upper(bound: tuple[float, bool, str]) -> int:
    v, excl, _ = bound
    return math.ceil(v) - 1 if excl else math.floor(v)


def _multiple_implies(sub: Any, sup: Any) -> bool:
    """Whether every number the validator accepts under ``multipleOf: sub`` it also accepts
    under ``multipleOf: sup``.

    The validator Accord runs (jsonschema) tests an integer divisor exactly (``x % d``) but a
    float divisor in floating point (``int(x / d) == x / d``), so 0.7 passes ``multipleOf: 0.7``
    and fails ``multipleOf: 0.1`` (0.7 / 0.1 is 6.999999999999999). Exact decimal reasoning is
    therefore only right for integer divisors; a float divisor is only known to imply itself.
    """
    if type(sub) is int and type(sup) is int:
        return sub > 0 and sup > 0 and sub % sup == 0
    return type(sub) is float and type(sup) is float and sub == sup and sub > 0


def _merge_multiple(a: Any, b: Any) -> Any | None:
    """One multipleOf implied by both (for the sub side of an allOf), None if there is none."""
    if _multiple_implies(a, b):
        return a
    if _multiple_implies(b, a):
        return b
    if type(a) is int and type(b) is int and a > 0 and b > 0:
        return math.lcm(a, b)
    return None


def _merge_types(a: Any, b: Any) -> list[str]:
    ta = _types({"type": a})
    tb = _types({"type": b})
    out = ta & tb
    for x, y in ((ta, tb), (tb, ta)):
        if "number" in x and "integer" in y:
            out.add("integer")
    return sorted(out)


def _conjoin(a: Mapping[str, Any], b: Mapping[str, Any]) -> Mapping[str, Any] | bool:
    """Merge two combinator-free schemas into one that admits exactly (or fewer of) their
    common instances. Used only on the sub side, where dropping a constraint is always sound."""
    out: dict[str, Any] = dict(a)
    also: list[tuple[str, Any]] = list(a.get(_ALSO, ())) + list(b.get(_ALSO, ()))
    object_keys = ("properties", "patternProperties", "additionalProperties")
    array_keys = ("items", "prefixItems", "additionalItems")
    if any(k in b for k in object_keys) and any(k in a for k in object_keys):
        if "patternProperties" in a or "patternProperties" in b:
            raise _CannotProveError("cannot merge allOf members that both use patternProperties")
        pa, pb = a.get("properties", {}), b.get("properties", {})
        aa, ab = a.get("additionalProperties", True), b.get("additionalProperties", True)
        out["properties"] = {
            k: _conj_lazy(pa.get(k, aa), pb.get(k, ab)) for k in list(pa) + [k for k in pb if k not in pa]
        }
        out["additionalProperties"] = _conj_lazy(aa, ab)
    else:
        for k in object_keys:
            if k in b:
                out[k] = b[k]
    if any(k in b for k in array_keys) and any(k in a for k in array_keys):
        if (
            "prefixItems" in a
            or "prefixItems" in b
            or isinstance(a.get("items"), list)
            or isinstance(b.get("items"), list)
        ):
            if _canon([a.get(k) for k in array_keys]) != _canon([b.get(k) for k in array_keys]):
                raise _CannotProveError("cannot merge allOf members that both use prefixItems")
        else:
            out["items"] = _conj_lazy(a.get("items", True), b.get("items", True))
    else:
        for k in array_keys:
            if k in b:
                out[k] = b[k]
    for k, vb in b.items():
        if k in object_keys or k in array_keys or k == _ALSO:
            continue
        if k not in out:
            out[k] = vb
            continue
        va = out[k]
        if _canon(va) == _canon(vb):
            continue
        if k == "type":
            out[k] = _merge_types(va, vb)
            if not out[k]:
                return False
        elif k in ("enum", "const"):
            keys = {_key(v) for v in _enum_values(b) or []}
            out["enum"] = [v for v in _enum_values(out) or [] if _key(v) in keys]
            out.pop("const", None)
        elif k == "required" and isinstance(va, list) and isinstance(vb, list):
            out[k] = list(dict.fromkeys([*va, *vb]))
        elif k in ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties", "minContains"):
            out[k] = max(va, vb) if _is_number(va) and _is_number(vb) else va
        elif k in ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties", "maxContains"):
            out[k] = min(va, vb) if _is_number(va) and _is_number(vb) else va
        elif k == "uniqueItems":
            out[k] = bool(va) or bool(vb)
        elif k == "multipleOf" and _merge_multiple(va, vb) is not None:
            out[k] = _merge_multiple(va, vb)
        elif k == "dependentRequired" and isinstance(va, Mapping) and isinstance(vb, Mapping):
            out[k] = {n: list(dict.fromkeys([*va.get(n, []), *vb.get(n, [])])) for n in {*va, *vb}}
        else:
            # Keep one value as the keyword and remember the other for equality matches.
            also.append((k, vb))
    if also:
        out[_ALSO] = tuple(also)
    return out


def _disjoint_discriminator(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether no object matches both `a` and `b`: a field one of them requires takes values
    from finite sets (enum/const) that do not meet (``kind: {const: card}`` vs ``{const: iban}``)."""
    required = [r for s in (a, b) for r in (s.get("required") or []) if isinstance(r, str)]
    for name in required:
        sides = []
        for s in (a, b):
            props = s.get("properties")
            field = props.get(name) if isinstance(props, Mapping) else None
            values = _enum_values(field) if isinstance(field, Mapping) else None
            sides.append(values)
        if sides[0] is not None and sides[1] is not None:
            if not {_key(v) for v in sides[0]} & {_key(v) for v in sides[1]}:
                return True
    return False


# Keywords a branch may hold and still be read as a plain numeric interval.
_INTERVAL_KEYWORDS = frozenset(
    {"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
    | {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly"}
)


#: The most values of one type the checker enumerates to check them one by one.
_MAX_DOMAIN = 256


def _finite_domain(d: Mapping[str, Any], t: str) -> list[Any] | None:
    """Every value of type t that d may accept, when they are few: both booleans, null, or the
    integers between d's own bounds (``_MAX_DOMAIN`` at most); None otherwise. The values d
    rejects are among them (the caller validates each against d)."""
    if t == "boolean":
        return [False, True]
    if t == "null":
        return [None]
    if t == "integer":
        lo, hi = _lower_bound(d), _upper_bound(d)
        if lo is None or hi is None:
            return None
        first, last = _int_lower(lo), _int_upper(hi)
        if last - first >= _MAX_DOMAIN:
            return None
        return list(range(first, last + 1))
    return None


def _int_ranges_cover(ranges: Sequence[tuple[float, float]], cur: float, end: float) -> bool:
    """Whether the integers from ``cur`` to ``end`` (either may be infinite) all lie in the union
    of the closed integer ``ranges``."""
    for _ in range(len(ranges) + 1):
        if cur > end:
            return True
        reach = max((b for a, b in ranges if a <= cur), default=None)
        if reach is None or reach < cur:
            return False
        if reach == math.inf:
            return True
        cur = reach + 1
    return cur > end


# The length keywords of each type a plain length interval may bound.
_LENGTHS = {"string": ("minLength", "maxLength"), "array": ("minItems", "maxItems")}


def _length_union_covers(d: Mapping[str, Any], t: str, branches: Sequence[Schema]) -> bool:
    """Whether every length d allows (t: "string" or "array") is allowed by one of the anyOf
    branches that constrain nothing but that length (other branches are not used, which only
    makes this answer "no" more often); d's other keywords are ignored, as above."""
    lo_kw, hi_kw = _LENGTHS[t]
    plain = _INTERVAL_KEYWORDS - {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} | {
        lo_kw,
        hi_kw,
    }

    def length(schema: Mapping[str, Any], kw: str) -> int | None:
        value = schema.get(kw)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    ranges: list[tuple[float, float]] = []
    for branch in branches:
        if branch is True:
            return True
        if not isinstance(branch, Mapping) or not plain.issuperset(branch):
            continue
        if any(kw in branch and length(branch, kw) is None for kw in (lo_kw, hi_kw)):
            continue
        if "type" in branch and not _accepts(_types({"type": branch["type"]}), t):
            continue
        hi = length(branch, hi_kw)
        ranges.append((length(branch, lo_kw) or 0, math.inf if hi is None else hi))
    sub_hi = length(d, hi_kw)
    return _int_ranges_cover(ranges, length(d, lo_kw) or 0, math.inf if sub_hi is None else sub_hi)


def _numeric_union_covers(d: Mapping[str, Any], t: str, branches: Sequence[Schema]) -> bool:
    """Whether the numbers (t: "number" or "integer") within d's bounds are covered by the
    union of the anyOf branches that are plain intervals (other branches are not used, which
    only makes this answer "no" more often). d's other keywords are ignored: proving a wider
    set covered is still a proof."""
    intervals: list[tuple[tuple[float, bool] | None, tuple[float, bool] | None]] = []
    for branch in branches:
        if branch is True:
            return True
        if not isinstance(branch, Mapping) or not _INTERVAL_KEYWORDS.issuperset(branch):
            continue
        bounds = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
        if any(k in branch and not _is_number(branch[k]) for k in bounds):
            continue
        if "type" in branch:
            types = _types({"type": branch["type"]})
            if not (_accepts(types, t) if t == "integer" else "number" in types):
                continue
        lo, hi = _lower_bound(branch), _upper_bound(branch)
        intervals.append(((lo[0], lo[1]) if lo else None, (hi[0], hi[1]) if hi else None))
    sub_lo, sub_hi = _lower_bound(d), _upper_bound(d)
    if t == "integer":
        ranges = [
            (
                -math.inf if lo is None else _int_lower((lo[0], lo[1], "")),
                math.inf if hi is None else _int_upper((hi[0], hi[1], "")),
            )
            for lo, hi in intervals
        ]
        return _int_ranges_cover(
            ranges,
            -math.inf if sub_lo is None else _int_lower(sub_lo),
            math.inf if sub_hi is None else _int_upper(sub_hi),
        )
    # Real numbers: `need` is the point from which on everything must still be covered, with
    # True when that point itself is excluded (covered already).
    need: tuple[float, bool] = (-math.inf, False) if sub_lo is None else (sub_lo[0], sub_lo[1])
    stop: tuple[float, bool] = (math.inf, False) if sub_hi is None else (sub_hi[0], sub_hi[1])

    def starts_by(lo: tuple[float, bool] | None, point: tuple[float, bool]) -> bool:
        if lo is None:
            return True
        return lo[0] < point[0] or (lo[0] == point[0] and (not lo[1] or point[1]))

    for _ in range(len(intervals) + 1):
        if need[0] > stop[0] or (need[0] == stop[0] and (need[1] or stop[1])):
            return True
        reaches = [hi for lo, hi in intervals if starts_by(lo, need)]
        if not reaches:
            return False
        if any(hi is None for hi in reaches):
            return True
        best = max(reaches, key=lambda hi: (hi[0], not hi[1]))  # type: ignore[index]
        assert best is not None
        after = (best[0], not best[1])  # covered up to best: next needed is > or >= best
        if after[0] < need[0] or (after[0] == need[0] and after[1] <= need[1]):
            return False  # no progress
        need = after
    return False


_OPEN_OBJECT_HINTS: dict[str, str] = {
    "input": (
        " (the previous version accepted any value for fields it did not declare, because"
        " additionalProperties was not false; declare additionalProperties: false so that adding"
        " an optional field is a compatible change)"
    ),
    "output": (
        " (this version no longer declares the field, and without additionalProperties: false it"
        " may return any value there; keep declaring it until the next major version)"
    ),
}


@dataclass
class _Ctx:
    """Where the checker is: pointers into each side and the field path in user terms."""

    sp: str
    pp: str
    path: tuple[str, ...]
    depth: int

    def down(self, sub_token: str | None, sup_token: str | None, field: str | None) -> _Ctx:
        return _Ctx(
            self.sp + ("/" + sub_token if sub_token is not None else ""),
            self.pp + ("/" + sup_token if sup_token is not None else ""),
            self.path + ((field,) if field is not None else ()),
            self.depth + 1,
        )

    def at(self, sp: str | None = None, pp: str | None = None) -> _Ctx:
        return _Ctx(self.sp if sp is None else sp, self.pp if pp is None else pp, self.path, self.depth + 1)


class _Checker:
    def __init__(
        self,
        *,
        sub_root: Schema,
        sup_root: Schema,
        sub_root_ptr: str,
        sup_root_ptr: str,
        point_at_sup: bool,
        voice: Voice,
        subject: str,
        embedded_ids: bool,
    ) -> None:
        self.sub_root = sub_root
        self.sup_root = sup_root
        # The whole values compared (the roots may be larger documents holding them): every
        # example is a value valid under top_sub and invalid under top_sup.
        self.top_sub: Schema = sub_root
        self.top_sup: Schema = sup_root
        # The object and array schemas being examined, outermost first, with their field path:
        # a field's example is placed in values of these to make a whole value (see witness()).
        self.levels: list[tuple[tuple[str, ...], Mapping[str, Any], Mapping[str, Any]]] = []
        self.sub_root_ptr = sub_root_ptr
        self.sup_root_ptr = sup_root_ptr
        self.point_at_sup = point_at_sup
        self.voice = voice
        kind, _, rest = subject.partition(".")
        self.kind = kind or "value"
        self.base_path: tuple[str, ...] = tuple(rest.split(".")) if rest else ()
        self.findings: list[Finding] = []
        # Pairs assumed compatible (coinduction); holding the schemas keeps their ids unique.
        self.assumed: dict[tuple[int, ...], tuple[Any, ...]] = {}
        self._validators: dict[int, Validator] = {}
        self._defs_equal: bool | None = None
        # The sub schemas being split into disjuncts, innermost last: a disjunct may admit
        # values the whole does not (oneOf read as anyOf, dropped keywords), and a finding
        # must never name a value the old schema did not accept.
        self.sub_nodes: list[tuple[Mapping[str, Any], tuple[str, ...]]] = []
        # Likewise the sup schemas being checked against, outermost first: a value named must be
        # refused by the whole of sup at its field, not only by one anyOf branch of it.
        self.sup_nodes: list[tuple[Schema, tuple[str, ...]]] = []
        # A subschema with its own $id resolves the $refs inside it against its own base URI;
        # the checker does not follow base URIs, so it refuses every $ref in such documents.
        self.embedded_ids = embedded_ids
        # Rewritten views of schemas with unevaluated* keywords, by id (kept alive here so
        # that identity-keyed coinduction keeps working on recursive schemas).
        self._views: dict[tuple[int, bool], tuple[Any, Mapping[str, Any], frozenset[str]]] = {}
        # For a view: keyword in the view -> the keyword it stands for in the user's schema.
        self._renames: dict[int, dict[str, str]] = {}
        # Inside trial(): its findings are counted, never shown (a trial whose findings explain a
        # refusal is checked again for real), so no example value is looked for.
        self.trying = 0
        # Work done so far (see _MAX_STEPS).
        self.steps = 0
        # d with its type narrowed to one type, by (id(d), type): the same object every time, so
        # that identity-keyed coinduction recognises a pair it is already examining.
        self._typed: dict[tuple[int, str], tuple[Mapping[str, Any], Mapping[str, Any]]] = {}

    # ----------------------------------------------------------------- reporting helpers

    def where(self, path: tuple[str, ...]) -> str:
        full = self.base_path + path
        if not full:
            return self.kind
        dotted = ""
        for seg in full:
            dotted += seg if seg.startswith("[") or not dotted else "." + seg
        return f"{self.kind} field '{dotted}'"

    def ptr(self, ctx: _Ctx, sub: Mapping[str, Any], sup: Mapping[str, Any], kw: str | None) -> str:
        base, schema = (ctx.pp, sup) if self.point_at_sup else (ctx.sp, sub)
        return base + "/" + _esc(self.tok(schema, kw)) if kw is not None and kw in schema else base

    def tok(self, schema: Mapping[str, Any], kw: str) -> str:
        """The pointer token of `kw` in the user's schema (a view may have renamed it)."""
        return self._renames.get(id(schema), {}).get(kw, kw)

    def report(self, pointer: str, message: str, example: tuple[Any] | None = None) -> None:
        self.findings.append(Finding(pointer, message, example=example))

    def escapes(
        self,
        pointer: str,
        path: tuple[str, ...],
        what: str,
        detail: str = "",
        example: tuple[Any] | None = None,
    ) -> None:
        """Report that instances described by `what` are valid under sub but not under sup."""
        where = self.where(path)
        detail = f": {detail}" if detail else ""
        if self.voice == "input":
            msg = f"{where} no longer accepts {what}{detail}"
        elif self.voice == "output":
            msg = f"{where} may now be {what}, which the previous version did not promise{detail}"
        else:
            msg = f"{where} may be {what}, which the target schema does not accept{detail}"
        self.report(pointer, msg, example)

    def breaks(
        self,
        pointer: str,
        ctx: _Ctx,
        d: Mapping[str, Any],
        sup: Mapping[str, Any],
        what: str,
        detail: str,
        candidates: Iterable[Any],
    ) -> None:
        """Report that values described by `what` are valid under sub but not under sup, naming
        one (``e.g. ...``) found among `candidates` that the sub schema really accepts and sup
        refuses. Without such a value the claim is not made: the change is reported as one the
        checker cannot prove safe (a refusal never names a value the old schema did not accept)."""
        if self.trying:
            self.escapes(pointer, ctx.path, what, detail)
            return
        found = self.example(d, sup, candidates, ctx.path)
        if found is None:
            self.cannot_prove(pointer, ctx.path, f"{detail} ({self.no_example()})")
        else:
            value, whole = found
            shown = f"{what} (e.g. {_show(value)}{self.as_in(ctx.path, whole)})"
            self.escapes(pointer, ctx.path, shown, detail, (whole,))

    def as_in(self, path: tuple[str, ...], whole: Any) -> str:
        """How a field's example is shown in its whole value (nothing for the whole value)."""
        return f", as in {self.where(())} {_show(whole)}" if path else ""

    def no_example(self) -> str:
        if self.voice == "input":
            return "no value the previous version accepted was found that this one refuses"
        if self.voice == "output":
            return "no value this version may produce was found that the previous one did not promise"
        return "no value was found that this schema accepts and the target schema refuses"

    def example(
        self, d: Mapping[str, Any], sup: Mapping[str, Any], candidates: Iterable[Any], path: tuple[str, ...]
    ) -> tuple[Any, Any] | None:
        """The first candidate valid under the disjunct `d` and every sub schema being examined
        at the same field (the whole it came from; by the very validator Accord runs) and
        invalid under `sup`, that also makes a whole value valid under the whole sub schema and
        invalid under the whole sup schema (see witness()): ``(candidate, whole value)``."""
        wholes = self.wholes(d, path)
        seen: set[str] = set()
        tried = 0
        try:
            for value in candidates:
                text = json.dumps(value, sort_keys=True, default=str)
                if text in seen:
                    continue
                seen.add(text)
                if len(seen) > 60:
                    break
                self.spend()
                if (
                    all(self.is_valid(self.sub_root, w, value) for w in wholes)
                    and not self.is_valid(self.sup_root, sup, value)
                    and not self.is_valid(self.sup_root, self.outer_sup(sup, path), value)
                ):
                    whole = self.witness(path, [value])
                    if whole is not None:
                        return value, whole[0]
                    tried += 1
                    if tried >= 5:  # the field's values are fine, its surroundings are not
                        break
        except _CannotProveError:
            return None
        return None

    def containers(self, d: Mapping[str, Any], sup: Mapping[str, Any], t: str) -> list[Any]:
        """A few objects (or arrays) for d, the first ones with every declared field (required
        ones first) holding a value its own schema accepts: plain samples take the first value
        of each field's candidates, which its bounds may refuse (``minimum: 1`` and 0)."""
        out: list[Any] = []
        if t == "object" and isinstance(d.get("properties"), Mapping):
            filled: dict[str, Any] = {}
            try:
                for name, prop in d["properties"].items():
                    if not isinstance(prop, Mapping):
                        continue
                    for value in _samples(prop, _types(prop), (), 1)[:30]:
                        if self.is_valid(self.sub_root, prop, value, spend=False):
                            filled[name] = value
                            break
            except _CannotProveError:
                pass
            required = [r for r in d.get("required") or [] if isinstance(r, str)]
            base = {r: filled[r] for r in required if r in filled}
            out += [base, {**base, **filled}]
        out += _samples(d, {t}, [sup])
        return out[:10]

    def level_at(self, path: tuple[str, ...]) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
        for at, d, sup in reversed(self.levels):
            if at == path:
                return d, sup
        return None

    def witness(self, path: tuple[str, ...], values: Sequence[Any]) -> tuple[Any] | None:
        """A whole value valid under the whole sub schema and invalid under the whole sup schema,
        with one of `values` at the field `path`, as a 1-tuple; None if none was found.

        A field's schema alone says nothing about the schema around it (``not: {required:
        [a]}``, ``maxProperties: 0`` next to ``properties``): a break is claimed only with such
        a whole value, built from values of the enclosing object and array schemas."""
        docs: list[Any] = list(values)[:8]
        for i in range(len(path) - 1, -1, -1):
            level = self.level_at(path[:i])
            if level is None:
                return None
            d, sup = level
            seg = path[i]
            parents = self.containers(d, sup, "array" if seg.startswith("[") else "object")
            built: dict[str, Any] = {}
            for parent in parents:
                for child in docs:
                    for doc in _place(parent, seg, child, d, sup):
                        built.setdefault(json.dumps(doc, sort_keys=True, default=str), doc)
            docs = list(built.values())[:48]
        try:
            for doc in docs:
                if self.is_valid(self.sub_root, self.top_sub, doc, spend=False) and not self.is_valid(
                    self.sup_root, self.top_sup, doc, spend=False
                ):
                    return (doc,)
        except _CannotProveError:
            return None
        return None

    def wholes(self, d: Mapping[str, Any], path: tuple[str, ...]) -> list[Schema]:
        """The disjunct `d` and the sub schemas under examination at the same field: a value
        named in a finding must be valid under all of them (a disjunct alone may admit values
        the whole does not: oneOf read as anyOf, keywords dropped)."""
        found: list[Schema] = [{k: v for k, v in d.items() if k != _ALSO}]
        found += [node for node, at in self.sub_nodes if at == path]
        return found

    def outer_sup(self, sup: Schema, path: tuple[str, ...]) -> Schema:
        """The outermost sup schema under examination at the field `path` (`sup` if none)."""
        return next((node for node, at in self.sup_nodes if at == path), sup)

    def cannot_prove(self, pointer: str, path: tuple[str, ...], reason: str) -> None:
        self.report(pointer, f"cannot prove {self.where(path)} stays compatible: {reason}")

    def cannot_prove_finding(self, pointer: str, reason: str) -> Finding:
        return Finding(pointer, f"cannot prove {self.where(())} stays compatible: {reason}")

    def change(self, kw: str, sub_value: str, sup_value: str) -> str:
        """Describe a keyword change in old/new terms for the current voice."""
        if self.voice == "input":
            return f"{kw} changed from {sub_value} to {sup_value}"
        if self.voice == "output":
            return f"{kw} changed from {sup_value} to {sub_value}"
        return f"{kw} is {sub_value} here but {sup_value} in the target schema"

    # ----------------------------------------------------------------- refs and validators

    def resolve(self, root: Schema, root_ptr: str, ref: Any) -> tuple[Schema, str]:
        if self.embedded_ids:
            raise _CannotProveError(
                f"cannot resolve $ref {ref!r}: a subschema declares its own $id, which changes the"
                " base URI its references resolve against (not supported by the checker)"
            )
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise _CannotProveError(
                f"cannot resolve $ref {ref!r} (only local '#/...' references are supported)"
            )
        fragment = ref[1:]
        node: Any = root
        if fragment and not fragment.startswith("/"):
            raise _CannotProveError(f"cannot resolve $ref {ref!r} (anchors are not supported)")
        for raw in fragment.split("/")[1:]:
            token = re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), raw)
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise _CannotProveError(f"cannot resolve $ref {ref!r}")
        if not isinstance(node, Mapping | bool):
            raise _CannotProveError(f"$ref {ref!r} does not point at a schema")
        return node, root_ptr + fragment

    def is_valid(self, root: Schema, schema: Schema, instance: Any, *, spend: bool = True) -> bool:
        quick = _quick_valid(schema, instance)
        if quick is not None:
            return quick
        if spend:  # examples are bounded per finding, not counted (see witness())
            self.spend()
        base = self._validators.get(id(root))
        if base is None:
            # The very validator payloads are checked with (formats asserted, same regex engine).
            base = compiled_validator(root)
            self._validators[id(root)] = base
        if self.embedded_ids:
            refs: list[Any] = []
            if not _collect_refs(schema, refs) or refs:
                raise _CannotProveError("a $ref inside a document with an embedded $id cannot be evaluated")
        spend_inline()
        try:
            return bool(base.evolve(schema=schema).is_valid(instance))
        except Exception as exc:  # an unresolvable $ref or a bad regex inside the schema
            raise _CannotProveError(f"cannot evaluate the schema ({exc.__class__.__name__})") from exc

    def same(self, a: Any, b: Any) -> bool:
        """Identical constraint text on both sides, with any $ref inside resolving alike."""
        if a != b:  # cheap first: most differing values differ here already
            return False
        # Python equates 1 and True; JSON Schema does not. repr() tells them apart (and is fast);
        # a mere difference in key order makes this fail too, which only costs a full check.
        text = repr(a)
        if text != repr(b):
            return False
        if "Ref" not in text and "$ref" not in text:
            return True
        if self.sub_root is self.sup_root:
            return True
        if self.embedded_ids:
            return False
        refs: list[Any] = []
        if not _collect_refs(a, refs):
            return False
        # Identical text only means the same thing if every $ref lands in identical definitions.
        return (
            all(isinstance(r, str) and r.startswith(("#/$defs/", "#/definitions/")) for r in refs)
            and self.defs_equal()
        )

    def defs_equal(self) -> bool:
        if self._defs_equal is None:
            defs = ("$defs", "definitions")
            sub_defs = [self.sub_root.get(k) if isinstance(self.sub_root, Mapping) else None for k in defs]
            sup_defs = [self.sup_root.get(k) if isinstance(self.sup_root, Mapping) else None for k in defs]
            self._defs_equal = json.dumps(sub_defs, sort_keys=True, default=str) == json.dumps(
                sup_defs, sort_keys=True, default=str
            )
        return self._defs_equal

    # ----------------------------------------------------------------- trial runs

    def trial(self, sub: Schema, sup: Schema, ctx: _Ctx) -> list[Finding]:
        """Check without reporting; assumptions made by a failed trial are withdrawn."""
        saved_findings, saved_assumed = self.findings, dict(self.assumed)
        self.findings = []
        self.trying += 1
        try:
            self.check(sub, sup, ctx)
            return self.findings
        finally:
            self.trying -= 1
            failed = bool(self.findings)
            self.findings = saved_findings
            if failed:
                self.assumed = saved_assumed

    # ----------------------------------------------------------------- the relation

    def spend(self, steps: int = 1) -> None:
        self.steps += steps
        if self.steps > _MAX_STEPS:
            raise _OutOfBudgetError
        spend_inline()  # on the coordinator's event loop, bounded in CPU time too (contracts.limits)

    def check(self, sub: Schema, sup: Schema, ctx: _Ctx) -> None:
        """Report why `sub` ⊆ `sup` may fail."""
        self.spend()
        self.sup_nodes.append((sup, ctx.path))
        try:
            self._check(sub, sup, ctx)
        finally:
            self.sup_nodes.pop()

    def _check(self, sub: Schema, sup: Schema, ctx: _Ctx) -> None:
        if ctx.depth > _MAX_DEPTH:
            self.cannot_prove(
                ctx.pp if self.point_at_sup else ctx.sp, ctx.path, "the schemas nest too deeply"
            )
            return
        if sub is False or not _constraining(sup):
            return
        if sup is False:
            try:
                if not self.flatten(sub, ctx.sp, 0):
                    return  # sub admits nothing
            except _CannotProveError:
                pass
            self.forbidden(sub, ctx)
            return
        if sub is True:
            sub = {}
        assert isinstance(sub, Mapping) and isinstance(sup, Mapping)
        if self.same(sub, sup):
            return  # an unchanged part of the schema, by far the most common case
        if "$ref" in sub or "$ref" in sup:
            key, held = self.memo_key(sub, sup, ctx.path)
            if key in self.assumed:
                return  # coinduction: this pair is already being (or has been) examined
            self.assumed[key] = held
        # The sup side is a conjunction: check each part separately.
        if "$ref" in sup:
            try:
                target, target_ptr = self.resolve(self.sup_root, self.sup_root_ptr, sup["$ref"])
            except _CannotProveError as exc:
                self.cannot_prove(self.ptr(ctx, sub, sup, "$ref"), ctx.path, str(exc))
                return
            self.check(sub, target, ctx.at(pp=target_ptr))
            rest = {k: v for k, v in sup.items() if k != "$ref"}
            if _constraining(rest):
                self.check(sub, rest, ctx.at())
            return
        if "allOf" in sup and isinstance(sup["allOf"], list):
            for i, member in enumerate(sup["allOf"]):
                self.check(sub, member, ctx.at(pp=f"{ctx.pp}/allOf/{i}"))
            rest = {k: v for k, v in sup.items() if k != "allOf"}
            if _constraining(rest):
                self.check(sub, rest, ctx.at())
            return
        # The sub side is a disjunction: every part must fit.
        try:
            disjuncts = self.flatten(sub, ctx.sp, 0)
        except _CannotProveError as exc:
            self.fallback(sub, sup, ctx, str(exc))
            return
        self.sub_nodes.append((sub, ctx.path))
        try:
            for d, dp in disjuncts:
                self.check_simple(d, sup, ctx.at(sp=dp))
        finally:
            self.sub_nodes.pop()

    def forbidden(self, sub: Schema, ctx: _Ctx) -> None:
        pointer = ctx.pp if self.point_at_sup else ctx.sp
        found: tuple[Any] | None = None
        if not self.trying:
            # A value the field may have under the old schema, in a whole value it accepts.
            own = sub if isinstance(sub, Mapping) else {}
            values = [
                v
                for v in _samples(own, _types(own) or _ALL_TYPES, [])
                if self.is_valid(self.sub_root, own, v)
            ]
            found = self.witness(ctx.path, values[:8])
            if found is None:
                self.cannot_prove(pointer, ctx.path, f"it is no longer allowed ({self.no_example()})")
                return
        where = self.where(ctx.path)
        if self.voice == "input":
            msg = f"{where} is no longer allowed"
        elif self.voice == "output":
            msg = f"{where} may now be present, which the previous version did not promise"
        else:
            msg = f"{where} may be present, but the target schema does not allow it"
        self.report(pointer, msg, found)

    def fallback(self, sub: Mapping[str, Any], sup: Mapping[str, Any], ctx: _Ctx, reason: str) -> None:
        """sub could not be decomposed: accept only if one of its conjuncts alone fits sup."""
        conjuncts: list[Schema] = []
        if isinstance(sub.get("allOf"), list):
            conjuncts.extend(sub["allOf"])
        if "$ref" in sub:
            try:
                conjuncts.append(self.resolve(self.sub_root, self.sub_root_ptr, sub["$ref"])[0])
            except _CannotProveError:
                pass
        # Without its allOf/$ref, an unevaluated* keyword would see fewer evaluated fields and
        # reject more: not a superset of sub any more, so it is left out (which only widens).
        rest = {k: v for k, v in sub.items() if k not in ("allOf", "$ref", *_UNEVALUATED)}
        if conjuncts and _constraining(rest):
            conjuncts.append(rest)
        for c in conjuncts:
            if not self.trial(c, sup, ctx):
                return
        self.cannot_prove(ctx.pp if self.point_at_sup else ctx.sp, ctx.path, reason)

    def flatten(self, schema: Schema, ptr: str, depth: int) -> list[tuple[Mapping[str, Any], str]]:
        """Rewrite a sub-side schema as a union of combinator-free schemas (with pointers)."""
        self.spend()
        if depth > 50:
            raise _CannotProveError("$ref or allOf nesting is too deep (a reference cycle?)")
        if schema is False:
            return []
        if schema is True:
            return [({}, ptr)]
        if "not" in schema and not _constraining(schema["not"]):
            return []  # "not" of a schema that accepts everything: admits nothing
        if not any(k in schema for k in ("$ref", "allOf", "anyOf", "oneOf")):
            return [(self.unevaluated_view(schema, sub_side=True)[0], ptr)]
        # unevaluated* beside combinators depends on which branches match: left out on the sub
        # side (which only widens it, so stays sound).
        base = {
            k: v for k, v in schema.items() if k not in ("$ref", "allOf", "anyOf", "oneOf", *_UNEVALUATED)
        }
        out: list[tuple[Mapping[str, Any], str]] = [(base, ptr)]
        if "$ref" in schema:
            target, target_ptr = self.resolve(self.sub_root, self.sub_root_ptr, schema["$ref"])
            out = self._product(out, self.flatten(target, target_ptr, depth + 1))
        for i, member in enumerate(schema.get("allOf") or []):
            out = self._product(out, self.flatten(member, f"{ptr}/allOf/{i}", depth + 1))
        for kw in ("anyOf", "oneOf"):
            # oneOf is treated as anyOf here: a superset of its instances, so still sound.
            if isinstance(schema.get(kw), list):
                branches: list[tuple[Mapping[str, Any], str]] = []
                for i, branch in enumerate(schema[kw]):
                    branches.extend(self.flatten(branch, f"{ptr}/{kw}/{i}", depth + 1))
                out = self._product(out, branches)
        return out

    def _product(
        self, left: list[tuple[Mapping[str, Any], str]], right: list[tuple[Mapping[str, Any], str]]
    ) -> list[tuple[Mapping[str, Any], str]]:
        out: list[tuple[Mapping[str, Any], str]] = []
        for a, ap in left:
            for b, bp in right:
                # Keep the original object when one side adds nothing: coinduction keys on identity.
                merged = b if not _constraining(a) else a if not _constraining(b) else _conjoin(a, b)
                if merged is not False:
                    assert isinstance(merged, Mapping)
                    out.append((merged, bp if _constraining(b) or not _constraining(a) else ap))
        if len(out) > _MAX_DISJUNCTS:
            raise _CannotProveError("too many anyOf/oneOf combinations to examine")
        return out

    def unevaluated_view(
        self, schema: Mapping[str, Any], *, sub_side: bool
    ) -> tuple[Mapping[str, Any], frozenset[str]]:
        """`schema` with unevaluatedProperties / unevaluatedItems rewritten into the keywords
        they equal when nothing but the properties / items family sits beside them.

        Alone with ``properties``/``patternProperties``, ``unevaluatedProperties`` is
        ``additionalProperties`` (and does nothing if that is present); alone with
        ``prefixItems``, ``unevaluatedItems`` is ``items``. Beside in-place applicators (anyOf,
        oneOf, if, dependentSchemas, $ref, allOf) or ``contains`` its meaning depends on what
        an instance matches: such keywords are dropped and returned as the second value (on the
        sub side dropping only widens the schema; on the sup side the caller must refuse).
        """
        if not any(k in schema for k in _UNEVALUATED):
            return schema, frozenset()
        key = (id(schema), sub_side)
        cached = self._views.get(key)
        if cached is not None:
            return cached[1], cached[2]
        out = {k: v for k, v in schema.items() if k not in _UNEVALUATED}
        dropped: set[str] = set()
        renames: dict[str, str] = {}
        applicators = not _IN_PLACE_APPLICATORS.isdisjoint(schema)
        if "unevaluatedProperties" in schema:
            if applicators:
                dropped.add("unevaluatedProperties")
            elif "additionalProperties" not in schema:
                out["additionalProperties"] = schema["unevaluatedProperties"]
                renames["additionalProperties"] = "unevaluatedProperties"
        if "unevaluatedItems" in schema:
            if applicators or "contains" in schema or isinstance(schema.get("items"), list):
                dropped.add("unevaluatedItems")
            elif "items" not in schema:
                out["items"] = schema["unevaluatedItems"]
                renames["items"] = "unevaluatedItems"
        result = (schema, out, frozenset(dropped))
        self._views[key] = result
        if renames:
            self._renames[id(out)] = renames
        return out, result[2]

    def memo_key(self, sub: Any, sup: Any, path: tuple[str, ...]) -> tuple[tuple[int, ...], tuple[Any, ...]]:
        """The key under which a pair's examination is remembered (``assumed``), and the schemas
        it names (held with it, so that their ids stay theirs): the pair, and the schemas around
        it at the same field (``wholes``, ``outer_sup``), since a verdict on finite values holds
        only among the values those admit (a pair proven for the booleans of an old schema is
        not proven for its nulls)."""
        held = (sub, sup, self.outer_sup(sup, path), *(node for node, at in self.sub_nodes if at == path))
        return tuple(id(x) for x in held), held

    def check_simple(self, d: Mapping[str, Any], sup: Mapping[str, Any], ctx: _Ctx) -> None:
        """sub `d` has no combinators; sup has no $ref/allOf at its top."""
        key, held = self.memo_key(d, sup, ctx.path)
        if key in self.assumed:
            return  # already examined (or being examined further up a recursive schema)
        self.assumed[key] = held
        try:
            self._check_simple(d, sup, ctx)
        except _CannotProveError as exc:
            self.cannot_prove(ctx.pp if self.point_at_sup else ctx.sp, ctx.path, str(exc))

    def _check_simple(self, d: Mapping[str, Any], sup: Mapping[str, Any], ctx: _Ctx) -> None:
        values = _enum_values(d)
        if values is not None:
            self.check_values(d, sup, values, ctx)  # validates each value against sup as it is
            return
        orig_sup = sup
        sup, unresolved = self.unevaluated_view(sup, sub_side=False)
        sub_types = _types(d)
        raw = d.get("type", [])
        unknown = [t for t in (raw if isinstance(raw, list) else [raw]) if t not in _KNOWN_TYPES]
        if unknown:
            raise _CannotProveError(f"unknown type {sorted(unknown)}")
        if not sub_types:
            return
        accepted = self.check_type(d, sup, sub_types, ctx)
        if not accepted:
            return
        for kw, applies_to in (("unevaluatedProperties", "object"), ("unevaluatedItems", "array")):
            if kw in unresolved and applies_to in accepted:
                self.cannot_prove(
                    self.ptr(ctx, d, orig_sup, kw),
                    ctx.path,
                    f"what '{kw}' allows depends on which anyOf/oneOf/if/$ref/dependentSchemas branches"
                    " match, and the schema around it changed",
                )
        if "enum" in sup or "const" in sup:
            self.check_sup_enum(d, sup, accepted, ctx)
        for kw in ("anyOf", "oneOf"):
            if isinstance(sup.get(kw), list):
                for t in sorted(accepted):
                    self.check_alternatives(d, t, sup, kw, ctx)
        if "not" in sup:
            self.check_not(d, sup, accepted, ctx)
        for t in sorted(accepted):
            if t in ("number", "integer"):
                self.check_number(d, sup, t, ctx)
            elif t == "string":
                self.check_string(d, sup, ctx)
            elif t == "array":
                self.check_array(d, sup, ctx)
            elif t == "object":
                self.check_object(d, sup, ctx)
        self.check_opaque(d, sup, accepted, ctx)

    # ----------------------------------------------------------------- keyword families

    def check_values(
        self, d: Mapping[str, Any], sup: Mapping[str, Any], values: list[Any], ctx: _Ctx
    ) -> None:
        # A finite set of values: check each one exactly against both schemas.
        wholes = self.wholes(d, ctx.path)
        rejected = [
            v
            for v in values
            if not self.is_valid(self.sup_root, sup, v)
            and all(self.is_valid(self.sub_root, w, v) for w in wholes)
            and not self.is_valid(self.sup_root, self.outer_sup(sup, ctx.path), v)
        ]
        if rejected:
            target = sup if self.point_at_sup else d
            kw = next((k for k in ("const", "enum", "type") if k in target), None)
            pointer = self.ptr(ctx, d, sup, kw)
            if self.trying:
                self.escapes(pointer, ctx.path, ", ".join(_show(v) for v in rejected))
                return
            # Only the values that break a whole value the old schema accepts are named.
            found = [(v, w[0]) for v in rejected[:20] if (w := self.witness(ctx.path, [v])) is not None]
            if not found:
                self.cannot_prove(
                    pointer, ctx.path, f"{', '.join(_show(v) for v in rejected)} ({self.no_example()})"
                )
                return
            shown = ", ".join(_show(v) for v, _ in found) + self.as_in(ctx.path, found[0][1])
            self.escapes(pointer, ctx.path, shown, example=(found[0][1],))

    def check_type(
        self, d: Mapping[str, Any], sup: Mapping[str, Any], sub_types: set[str], ctx: _Ctx
    ) -> set[str]:
        if "type" not in sup:
            return sub_types
        sup_types = _types({"type": sup["type"]})
        rejected = [t for t in sorted(sub_types) if not _accepts(sup_types, t)]
        if rejected:
            what = [
                "non-integer numbers" if t == "number" and "integer" in sup_types else _PLURAL[t]
                for t in rejected
            ]
            phrase = " or ".join(what)
            if "type" not in d:
                phrase = "values other than " + " or ".join(_PLURAL[t] for t in sorted(sup_types))
            detail = self.change("type", _show_type(d), _show_type(sup))
            candidates = _samples(d, set(rejected), [sup])
            self.breaks(self.ptr(ctx, d, sup, "type"), ctx, d, sup, phrase, detail, candidates)
        return {t for t in sub_types if t not in rejected}

    def check_sup_enum(
        self, d: Mapping[str, Any], sup: Mapping[str, Any], accepted: set[str], ctx: _Ctx
    ) -> None:
        allowed = _enum_values(sup) or []
        keys = {_key(v) for v in allowed}
        named: list[Any] = []  # null and booleans outside the set, which sub really admits
        classes: list[str] = []
        for t in sorted(accepted):
            if t == "null":
                named += [None] if _key(None) not in keys else []
            elif t == "boolean":
                named += [b for b in (True, False) if _key(b) not in keys]
            else:
                classes.append(t)
        whole: tuple[Any] | None = None
        unshown = False  # values sub admits outside the set, none of them in a whole value found
        if not self.trying:
            checked = [(v, self.example(d, sup, [v], ctx.path)) for v in named]
            unshown = bool(named) and all(found is None for _, found in checked)
            named = [v for v, found in checked if found is not None]
            whole = next(((found[1],) for _, found in checked if found is not None), None)
        kw = "const" if "const" in sup else "enum"
        listed = ", ".join(_show(v) for v in allowed) or "nothing"
        if self.voice == "output":
            detail = f"the previous version promised only {listed}"
        else:
            detail = f"only {listed} {'is' if len(allowed) == 1 else 'are'} accepted now"
        pointer = self.ptr(ctx, d, sup, kw)
        if not named and not classes:
            if unshown:
                # Sub admits values outside the set here, but no whole value showing it was found:
                # that is no proof of safety (the whole value may need more than was tried).
                self.cannot_prove(pointer, ctx.path, f"{detail} ({self.no_example()})")
            return
        if classes or len(named) > 2:
            candidates = [*named, *_samples(d, classes, [sup])]
            self.breaks(pointer, ctx, d, sup, f"values other than {listed}", detail, candidates)
        else:
            shown = ", ".join(_show(v) for v in named) + (self.as_in(ctx.path, whole[0]) if whole else "")
            self.escapes(pointer, ctx.path, shown, detail, whole)

    def branch_types(self, schema: Schema, depth: int = 0) -> set[str]:
        """Types a sup-side schema may admit (an over-approximation)."""
        self.spend()
        if schema is False:
            return set()
        if schema is True or depth > 20:
            return set(_ALL_TYPES)
        if "$ref" in schema:
            try:
                target, _ = self.resolve(self.sup_root, self.sup_root_ptr, schema["$ref"])
            except _CannotProveError:
                return set(_ALL_TYPES)
            found = self.branch_types(target, depth + 1)
        else:
            found = set(_ALL_TYPES)
        if "type" in schema:
            own = _types({"type": schema["type"]})
            found = {t for t in found if _accepts(own, t)} | (
                {"integer"} if "number" in found and "integer" in own else set()
            )
        values = _enum_values(schema)
        if values is not None:
            vt = {json_type(v) for v in values}
            found = {t for t in found if t in vt or (t == "number" and vt & {"number", "integer"})} | (
                {"integer"} if "integer" in vt and found & {"number", "integer"} else set()
            )
        for m in schema.get("allOf") or []:
            mt = self.branch_types(m, depth + 1)
            found = {t for t in found if _accepts(mt, t)} | (
                {"integer"} if "number" in found and "integer" in mt else set()
            )
        for kw in ("anyOf", "oneOf"):
            if isinstance(schema.get(kw), list):
                union: set[str] = set()
                for b in schema[kw]:
                    union |= self.branch_types(b, depth + 1)
                found = {t for t in found if _accepts(union, t)} | (
                    {"integer"} if "number" in found and "integer" in union else set()
                )
        return found

    def check_alternatives(
        self, d: Mapping[str, Any], t: str, sup: Mapping[str, Any], kw: str, ctx: _Ctx
    ) -> None:
        sub_t = self.typed(d, t)
        branches: list[Schema] = list(sup[kw])
        fits: list[int] = []
        failures: dict[int, list[Finding]] = {}
        for i, branch in enumerate(branches):
            found = self.trial(sub_t, branch, ctx.at(pp=f"{ctx.pp}/{kw}/{i}"))
            if found:
                failures[i] = found
            else:
                fits.append(i)
        pointer = self.ptr(ctx, d, sup, kw)
        if fits and kw == "anyOf":
            return
        if fits:
            # oneOf: fitting one branch is not enough if another branch may also match.
            for i in fits:
                if all(self.never_both(sub_t, t, branches[i], b) for j, b in enumerate(branches) if j != i):
                    return
            if self.by_values(d, t, sup, ctx) or self.by_discriminator(sub_t, t, sup, ctx):
                return
            self.cannot_prove(pointer, ctx.path, f"{_PLURAL[t]} might match more than one oneOf alternative")
            return
        if kw == "anyOf" and t in ("integer", "number") and _numeric_union_covers(d, t, branches):
            return
        if kw == "anyOf" and t in _LENGTHS and _length_union_covers(d, t, branches):
            return
        candidates = [i for i, b in enumerate(branches) if _accepts(self.branch_types(b), t)]
        if len(candidates) == 1:
            # The one alternative that takes this type explains the break best.
            # Checked again for real: a trial's findings name no example (see ``trying``).
            i = candidates[0]
            self.check(sub_t, branches[i], ctx.at(pp=f"{ctx.pp}/{kw}/{i}"))
        elif not candidates:
            self.breaks(
                pointer,
                ctx,
                d,
                sup,
                _PLURAL[t],
                f"none of the {kw} alternatives accepts {_PLURAL[t]}",
                _samples(d, {t}, []),
            )
        elif not self.by_values(d, t, sup, ctx) and not self.by_discriminator(sub_t, t, sup, ctx):
            self.cannot_prove(pointer, ctx.path, f"no single {kw} alternative accepts every such {t} value")

    def by_values(self, d: Mapping[str, Any], t: str, sup: Mapping[str, Any], ctx: _Ctx) -> bool:
        """When d's values of type t are few (``_finite_domain``), each is checked against the
        whole of sup (``check_values``): exact, and a break is named by its value. False when
        they are not few (nothing checked)."""
        domain = _finite_domain(d, t)
        if domain is None:
            return False
        self.spend(len(domain))
        self.check_values(d, sup, domain, ctx)
        return True

    def by_discriminator(self, sub_t: Mapping[str, Any], t: str, sup: Mapping[str, Any], ctx: _Ctx) -> bool:
        """Objects whose required field takes a few values (``kind: {enum: [card, iban]}``) are
        split by that value: each part (the field a ``const``) is checked against the whole of
        sup, alternatives and all. True when every part fits (nothing reported); False when a
        part does not, or there is no such field (nothing reported either: the caller says it
        cannot prove). Each part admits at least what the old objects with that value do."""
        properties, required = sub_t.get("properties"), sub_t.get("required")
        if t != "object" or not isinstance(properties, Mapping) or not isinstance(required, list):
            return False
        for name in required:
            field = properties.get(name)
            values = _enum_values(field) if isinstance(field, Mapping) else None
            if values is None or not 2 <= len(values) <= _MAX_DOMAIN:
                continue
            self.spend(len(values))
            return all(
                not self.trial({**sub_t, "properties": {**properties, name: {"const": value}}}, sup, ctx)
                for value in values
            )
        return False

    def typed(self, d: Mapping[str, Any], t: str) -> Mapping[str, Any]:
        """`d` admitting only values of type `t` (one object per (d, t), see ``_typed``)."""
        if d.get("type") == t:
            return d
        cached = self._typed.get((id(d), t))
        if cached is None:
            cached = (d, {**d, "type": t})
            self._typed[(id(d), t)] = cached
        return cached[1]

    def never_both(self, sub_t: Mapping[str, Any], t: str, fit: Schema, other: Schema) -> bool:
        """Whether no value of type t in sub_t (which fits the oneOf branch `fit`) can also match
        the branch `other`: other admits no such type, other is a finite set of values sub_t
        does not admit, or (objects) a required field takes disjoint finite values in both."""
        if not _overlaps(self.branch_types(other), t):
            return True
        if not isinstance(other, Mapping):
            return False
        values = _enum_values(other)
        if values is not None and not any(self.is_valid(self.sub_root, sub_t, v) for v in values):
            return True
        if t == "object" and isinstance(fit, Mapping) and _disjoint_discriminator(fit, other):
            return True
        return False

    def check_not(self, d: Mapping[str, Any], sup: Mapping[str, Any], accepted: set[str], ctx: _Ctx) -> None:
        negated = sup["not"]
        # sub ⊆ ¬X holds when sub and X share no instance type, ...
        if not any(_overlaps(self.branch_types(negated), t) for t in accepted):
            return
        # ... when sub itself says not Y with X ⊆ Y, ...
        if "not" in d and not self.trial(negated, d["not"], ctx.at()):
            return
        # ... or when X is a finite set of values none of which sub admits.
        values = _enum_values(negated) if isinstance(negated, Mapping) else None
        if values is not None and not any(self.is_valid(self.sub_root, d, v) for v in values):
            return
        self.cannot_prove(self.ptr(ctx, d, sup, "not"), ctx.path, "the 'not' constraint changed")

    def check_number(self, d: Mapping[str, Any], sup: Mapping[str, Any], t: str, ctx: _Ctx) -> None:
        noun = _PLURAL[t]
        for lower in (True, False):
            bound = _lower_bound if lower else _upper_bound
            sup_b, sub_b = bound(sup), bound(d)
            if sup_b is None:
                continue
            if t == "integer":
                to_int = _int_lower if lower else _int_upper
                ok = sub_b is not None and (
                    to_int(sub_b) >= to_int(sup_b) if lower else to_int(sub_b) <= to_int(sup_b)
                )
            else:
                ok = sub_b is not None and (
                    (sub_b[0] > sup_b[0] if lower else sub_b[0] < sup_b[0])
                    or (sub_b[0] == sup_b[0] and (sub_b[1] or not sup_b[1]))
                )
            if ok:
                continue
            v = _show(sup_b[0])
            if lower:
                what = f"{noun} less than or equal to {v}" if sup_b[1] else f"{noun} below {v}"
            else:
                what = f"{noun} greater than or equal to {v}" if sup_b[1] else f"{noun} above {v}"
            sub_desc = f"{sub_b[2]} {_show(sub_b[0])}" if sub_b else "no bound"
            detail = self.change("lower bound" if lower else "upper bound", sub_desc, f"{sup_b[2]} {v}")
            kw = sup_b[2] if self.point_at_sup else (sub_b[2] if sub_b else None)
            self.breaks(self.ptr(ctx, d, sup, kw), ctx, d, sup, what, detail, _samples(d, {t}, [sup]))
        for kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
            if kw in sup and not _is_number(sup[kw]):
                self.cannot_prove(self.ptr(ctx, d, sup, kw), ctx.path, f"{kw} is not a number")
        m = sup.get("multipleOf")
        if _is_number(m) and m > 0:
            sm = d.get("multipleOf")
            also = [v for k, v in d.get(_ALSO, ()) if k == "multipleOf"]
            ok = any(_multiple_implies(x, m) for x in [sm, *also]) or (
                t == "integer" and m == 1 and type(m) is int
            )
            if (
                not ok
                and type(m) is float
                and any(
                    _is_number(x) and x > 0 and (_frac(x) / _frac(m)).denominator == 1 for x in [sm, *also]
                )
            ):
                # In exact arithmetic this holds; the validator's float division may disagree.
                reason = (
                    f"multipleOf {_show(m)} is checked by dividing floats, which may reject multiples of "
                    f"{_show(sm)} (write both as integers, e.g. count cents, to make this provable)"
                )
                self.cannot_prove(self.ptr(ctx, d, sup, "multipleOf"), ctx.path, reason)
            elif not ok:
                detail = self.change("multipleOf", _show(sm) if sm is not None else "none", _show(m))
                self.breaks(
                    self.ptr(ctx, d, sup, "multipleOf"),
                    ctx,
                    d,
                    sup,
                    f"{noun} that are not multiples of {_show(m)}",
                    detail,
                    _samples(d, {t}, [sup]),
                )

    def check_string(self, d: Mapping[str, Any], sup: Mapping[str, Any], ctx: _Ctx) -> None:
        lo, hi = sup.get("minLength"), sup.get("maxLength")
        sub_lo, sub_hi = _string_lengths(d)
        if sub_hi is not None and sub_lo > sub_hi:
            return  # the lengths sub's keywords and patterns allow leave no string at all
        if _is_number(lo) and lo > 0 and sub_lo < lo:
            detail = self.change("minLength", _show(d.get("minLength", 0)), _show(lo))
            self.breaks(
                self.ptr(ctx, d, sup, "minLength"),
                ctx,
                d,
                sup,
                f"strings shorter than {lo} characters",
                detail,
                _samples(d, {"string"}, [sup]),
            )
        if _is_number(hi) and (sub_hi is None or sub_hi > hi):
            detail = self.change(
                "maxLength", _show(d["maxLength"]) if "maxLength" in d else "none", _show(hi)
            )
            self.breaks(
                self.ptr(ctx, d, sup, "maxLength"),
                ctx,
                d,
                sup,
                f"strings longer than {hi} characters",
                detail,
                _samples(d, {"string"}, [sup]),
            )
        also = dict.fromkeys(_canon(pair) for pair in d.get(_ALSO, ()))
        for kw in ("pattern", "format"):
            if kw not in sup or (kw == "pattern" and sup[kw] in _TRIVIAL_PATTERNS):
                continue
            if (kw in d and _canon(d[kw]) == _canon(sup[kw])) or _canon((kw, sup[kw])) in also:
                continue
            reason = self.change(kw, _show(d[kw]) if kw in d else "none", _show(sup[kw]))
            self.cannot_prove(self.ptr(ctx, d, sup, kw), ctx.path, reason)

    def check_array(self, d: Mapping[str, Any], sup: Mapping[str, Any], ctx: _Ctx) -> None:
        self.levels.append((ctx.path, d, sup))
        try:
            self._check_array(d, sup, ctx)
        finally:
            self.levels.pop()

    def _check_array(self, d: Mapping[str, Any], sup: Mapping[str, Any], ctx: _Ctx) -> None:
        def layout(s: Mapping[str, Any]) -> tuple[list[Schema], Schema, str, str]:
            if isinstance(s.get("items"), list):  # draft 2019 and older tuple form
                return list(s["items"]), s.get("additionalItems", True), "items", "additionalItems"
            return list(s.get("prefixItems") or []), s.get("items", True), "prefixItems", self.tok(s, "items")

        sub_prefix, sub_rest, sub_pkw, sub_rkw = layout(d)
        sup_prefix, sup_rest, sup_pkw, sup_rkw = layout(sup)
        sub_max: float = d["maxItems"] if _is_number(d.get("maxItems")) else math.inf
        if sub_rest is False:
            sub_max = min(sub_max, len(sub_prefix))
        sub_min = d["minItems"] if _is_number(d.get("minItems")) else 0
        if sub_min > sub_max:
            return  # sub admits no arrays at all
        for i in range(max(len(sub_prefix), len(sup_prefix))):
            if i >= sub_max:
                break
            s_item, s_ptr = (sub_prefix[i], f"{sub_pkw}/{i}") if i < len(sub_prefix) else (sub_rest, sub_rkw)
            p_item, p_ptr = (sup_prefix[i], f"{sup_pkw}/{i}") if i < len(sup_prefix) else (sup_rest, sup_rkw)
            self.check(s_item, p_item, ctx.down(s_ptr, p_ptr, f"[{i}]"))
        if sub_max > max(len(sub_prefix), len(sup_prefix)):
            self.check(sub_rest, sup_rest, ctx.down(sub_rkw, sup_rkw, "[]"))
        lo, hi = sup.get("minItems"), sup.get("maxItems")
        if _is_number(lo) and sub_min < lo:
            detail = self.change("minItems", _show(sub_min), _show(lo))
            self.breaks(
                self.ptr(ctx, d, sup, "minItems"),
                ctx,
                d,
                sup,
                f"arrays with fewer than {lo} items",
                detail,
                _samples(d, {"array"}, [sup]),
            )
        if _is_number(hi) and sub_max > hi:
            detail = self.change("maxItems", "none" if sub_max == math.inf else _show(sub_max), _show(hi))
            self.breaks(
                self.ptr(ctx, d, sup, "maxItems"),
                ctx,
                d,
                sup,
                f"arrays with more than {hi} items",
                detail,
                _samples(d, {"array"}, [sup]),
            )
        if sup.get("uniqueItems") is True and d.get("uniqueItems") is not True and sub_max > 1:
            detail = self.change("uniqueItems", "false", "true")
            self.breaks(
                self.ptr(ctx, d, sup, "uniqueItems"),
                ctx,
                d,
                sup,
                "arrays with duplicate items",
                detail,
                _samples(d, {"array"}, [sup]),
            )
        if "contains" in sup:
            self.check_contains(d, sup, ctx)

    def check_contains(self, d: Mapping[str, Any], sup: Mapping[str, Any], ctx: _Ctx) -> None:
        group = ("contains", "minContains", "maxContains")
        if self.same([d.get(k) for k in group], [sup.get(k) for k in group]):
            return
        sup_min = sup.get("minContains", 1)
        if (
            "contains" in d
            and "maxContains" not in sup
            and d.get("minContains", 1) >= sup_min
            and not self.trial(d["contains"], sup["contains"], ctx.down("contains", "contains", "[]"))
        ):
            return
        if sup_min == 0 and "maxContains" not in sup:
            return
        self.cannot_prove(self.ptr(ctx, d, sup, "contains"), ctx.path, "the 'contains' constraint changed")

    def check_object(self, d: Mapping[str, Any], sup: Mapping[str, Any], ctx: _Ctx) -> None:
        self.levels.append((ctx.path, d, sup))
        try:
            self._check_object(d, sup, ctx)
        finally:
            self.levels.pop()

    def _check_object(self, d: Mapping[str, Any], sup: Mapping[str, Any], ctx: _Ctx) -> None:
        sub_props: Mapping[str, Schema] = d.get("properties") or {}
        sup_props: Mapping[str, Schema] = sup.get("properties") or {}
        sub_pp: Mapping[str, Schema] = d.get("patternProperties") or {}
        sup_pp: Mapping[str, Schema] = sup.get("patternProperties") or {}
        sub_ap: Schema = d.get("additionalProperties", True)
        sup_ap: Schema = sup.get("additionalProperties", True)
        sub_ap_tok, sup_ap_tok = self.tok(d, "additionalProperties"), self.tok(sup, "additionalProperties")

        def matching(patterns: Mapping[str, Schema], name: str) -> list[tuple[str, Schema]]:
            try:
                return [(p, s) for p, s in patterns.items() if regex.search(p, name)]
            except re.error as exc:
                raise _CannotProveError(
                    f"patternProperties has a pattern Python cannot read ({exc})"
                ) from exc

        def sub_for(name: str) -> tuple[Schema, str]:
            if name in sub_props:
                return sub_props[name], "properties/" + _esc(name)
            hits = matching(sub_pp, name)
            if hits:
                return (hits[0][1] if len(hits) == 1 else {"allOf": [s for _, s in hits]}), (
                    "patternProperties/" + _esc(hits[0][0])
                )
            return sub_ap, sub_ap_tok

        def sup_for(name: str) -> list[tuple[Schema, str]]:
            found = [(sup_props[name], "properties/" + _esc(name))] if name in sup_props else []
            found += [(s, "patternProperties/" + _esc(p)) for p, s in matching(sup_pp, name)]
            return found or [(sup_ap, sup_ap_tok)]

        names = list(sup_props) + [n for n in sub_props if n not in sup_props]
        for name in names:
            sub_s, sub_tok = sub_for(name)
            if sub_s is False:
                continue  # sub never has this field
            before = len(self.findings)
            for sup_s, sup_tok in sup_for(name):
                self.check(sub_s, sup_s, ctx.down(sub_tok, sup_tok, name))
            hint = _OPEN_OBJECT_HINTS.get(self.voice)
            if hint and sub_tok == sub_ap_tok and not _constraining(sub_s):
                # The most common surprise: a field added to (input) or dropped from (output) an
                # open object. Say why it breaks and how to avoid it.
                self.findings[before:] = [
                    replace(f, message=f.message + hint) for f in self.findings[before:]
                ]

        # Fields named in neither schema.
        if _constraining(sup_ap) or sup_pp:
            others: list[tuple[Schema, str]] = [(sub_ap, sub_ap_tok)]
            others += [(s, "patternProperties/" + _esc(p)) for p, s in sub_pp.items()]
            if not sup_pp:
                for sub_s, sub_tok in others:
                    if sub_s is False:
                        continue
                    if sup_ap is False:
                        self.extra_fields(d, sup, ctx, sorted(sup_props))
                    else:
                        self.check(sub_s, sup_ap, ctx.down(sub_tok, sup_ap_tok, "*"))
            elif set(sub_pp) == set(sup_pp):
                for p in sup_pp:
                    tok = "patternProperties/" + _esc(p)
                    self.check(sub_pp[p], sup_pp[p], ctx.down(tok, tok, "*"))
                if sub_ap is not False and sup_ap is False:
                    self.extra_fields(d, sup, ctx, sorted(sup_props))
                else:
                    self.check(sub_ap, sup_ap, ctx.down(sub_ap_tok, sup_ap_tok, "*"))
            else:
                targets = [(s, "patternProperties/" + _esc(p)) for p, s in sup_pp.items()] + [
                    (sup_ap, sup_ap_tok)
                ]
                if any(
                    self.trial(sub_s, sup_s, ctx.down(sub_tok, sup_tok, "*"))
                    for sub_s, sub_tok in others
                    for sup_s, sup_tok in targets
                ):
                    self.cannot_prove(
                        self.ptr(ctx, d, sup, "patternProperties"), ctx.path, "patternProperties changed"
                    )

        required = [r for r in sup.get("required") or [] if isinstance(r, str)]
        sub_required = set(d.get("required") or [])
        for name in required:
            if name not in sub_required:
                self.newly_required(self.ptr(ctx, d, sup, "required"), ctx, d, sup, name)

        sub_min = max(
            d.get("minProperties", 0) if _is_number(d.get("minProperties")) else 0, len(sub_required)
        )
        sub_max: float = d["maxProperties"] if _is_number(d.get("maxProperties")) else math.inf
        if sub_ap is False and not sub_pp:
            sub_max = min(sub_max, sum(1 for s in sub_props.values() if s is not False))
        lo, hi = sup.get("minProperties"), sup.get("maxProperties")
        if _is_number(lo) and sub_min < lo:
            detail = self.change("minProperties", _show(sub_min), _show(lo))
            self.breaks(
                self.ptr(ctx, d, sup, "minProperties"),
                ctx,
                d,
                sup,
                f"objects with fewer than {lo} fields",
                detail,
                _samples(d, {"object"}, [sup]),
            )
        if _is_number(hi) and sub_max > hi:
            detail = self.change(
                "maxProperties", "none" if sub_max == math.inf else _show(sub_max), _show(hi)
            )
            self.breaks(
                self.ptr(ctx, d, sup, "maxProperties"),
                ctx,
                d,
                sup,
                f"objects with more than {hi} fields",
                detail,
                _samples(d, {"object"}, [sup]),
            )

        dep = sup.get("dependentRequired")
        if isinstance(dep, Mapping):
            sub_dep = d.get("dependentRequired") or {}
            for trigger, needs in dep.items():
                if sub_for(trigger)[0] is False:
                    continue  # sub never has the trigger field
                missing = [
                    n for n in needs if n not in sub_required and n not in (sub_dep.get(trigger) or [])
                ]
                if missing:
                    # Sample objects with the trigger field and without the fields it now needs.
                    samples = [
                        {k: v for k, v in o.items() if k not in missing}
                        for o in _samples(d, {"object"}, [sup])
                        if isinstance(o, dict)
                    ]
                    samples = [o for o in samples if trigger in o] + [{**o, trigger: 1} for o in samples]
                    self.breaks(
                        self.ptr(ctx, d, sup, "dependentRequired"),
                        ctx,
                        d,
                        sup,
                        f"objects that have '{trigger}' without {', '.join(repr(m) for m in missing)}",
                        f"'{trigger}' now requires {', '.join(repr(m) for m in missing)}",
                        samples,
                    )

        if "propertyNames" in sup and _constraining(sup["propertyNames"]):
            names_schema = sup["propertyNames"]
            # Only the same names schema is taken as proof (comparing two of them went wrong beside
            # `not`: a change from `not: {const: x}` to `not: {type: boolean}` was called safe).
            if "propertyNames" in d and _key(d["propertyNames"]) == _key(names_schema):
                return
            closed = sub_ap is False and not sub_pp
            if closed and all(
                self.is_valid(self.sup_root, names_schema, n) for n, s in sub_props.items() if s is not False
            ):
                return
            self.cannot_prove(
                self.ptr(ctx, d, sup, "propertyNames"), ctx.path, "the 'propertyNames' constraint changed"
            )

    def extra_fields(
        self, d: Mapping[str, Any], sup: Mapping[str, Any], ctx: _Ctx, listed: Sequence[str]
    ) -> None:
        pointer = self.ptr(ctx, d, sup, "additionalProperties")
        names = ", ".join(f"'{n}'" for n in listed) or "none"
        found = None if self.trying else self.example(d, sup, _samples(d, {"object"}, [sup]), ctx.path)
        if found is None and not self.trying:
            reason = f"fields other than {names} are no longer allowed ({self.no_example()})"
            self.cannot_prove(pointer, ctx.path, reason)
            return
        if found is not None:
            names += f" (e.g. {_show(found[0])}{self.as_in(ctx.path, found[1])})"
        where = self.where(ctx.path)
        if self.voice == "input":
            msg = f"{where} no longer accepts fields other than {names}: additionalProperties is now false"
        elif self.voice == "output":
            msg = f"{where} may now contain fields other than {names}, which the previous version did not promise"
        else:
            msg = f"{where} may contain fields other than {names}, which the target schema does not allow"
        self.report(pointer, msg, None if found is None else (found[1],))

    def newly_required(
        self, pointer: str, ctx: _Ctx, d: Mapping[str, Any], sup: Mapping[str, Any], name: str
    ) -> None:
        path = (*ctx.path, name)
        found: tuple[Any] | None = None
        if not self.trying:
            # An object without the field that the old schema accepts as a whole (it may already
            # force the field some other way: dependentRequired, minProperties, anyOf...).
            wholes = self.wholes(d, ctx.path)
            try:
                parents = [
                    o
                    for o in (
                        {k: v for k, v in x.items() if k != name}
                        for x in self.containers(d, sup, "object")
                        if isinstance(x, dict)
                    )
                    if all(self.is_valid(self.sub_root, w, o) for w in wholes)
                ]
            except _CannotProveError:
                parents = []
            found = self.witness(ctx.path, parents[:8])
            if found is None:
                reason = f"'{name}' is now required ({self.no_example()} without it)"
                self.cannot_prove(pointer, ctx.path, reason)
                return
        where = self.where(path)
        if self.voice == "input":
            msg = f"{where} is now required"
        elif self.voice == "output":
            msg = f"{where} may now be missing, although the previous version always included it"
        else:
            msg = f"{where} is required by the target schema but may be missing"
        self.report(pointer, msg, found)

    def dependents_kept(self, d: Mapping[str, Any], sup: Mapping[str, Any]) -> bool:
        """Every dependentSchemas entry of sup is in sub, identical: sub only has more entries
        (an entry removed from input widens it; one added to output narrows it)."""
        sub_dep, sup_dep = d.get("dependentSchemas"), sup.get("dependentSchemas")
        if not isinstance(sub_dep, Mapping) or not isinstance(sup_dep, Mapping):
            return False
        return all(t in sub_dep and self.same(sub_dep[t], s) for t, s in sup_dep.items())

    def check_opaque(
        self, d: Mapping[str, Any], sup: Mapping[str, Any], accepted: set[str], ctx: _Ctx
    ) -> None:
        for kw, applies_to in _OPAQUE.items():
            if kw not in sup:
                continue
            if applies_to is not None and applies_to not in accepted:
                continue
            group = ("if", "then", "else") if kw == "if" else (kw,)
            if self.same([d.get(k) for k in group], [sup.get(k) for k in group]):
                continue
            if kw == "dependentSchemas" and self.dependents_kept(d, sup):
                continue
            self.cannot_prove(
                self.ptr(ctx, d, sup, kw),
                ctx.path,
                f"'{kw}' is not supported unless identical in both versions",
            )


def _run(
    sub: Schema,
    sup: Schema,
    *,
    sub_root: Schema | None,
    sup_root: Schema | None,
    sub_ptr: str,
    sup_ptr: str,
    point_at_sup: bool,
    voice: Voice,
    subject: str,
    names: tuple[str, str],
) -> list[Finding]:
    embedded_ids = False
    for name, schema, root in ((names[0], sub, sub_root), (names[1], sup, sup_root)):
        embedded_ids = _ensure_schema(name, schema) or embedded_ids
        if root is not None and root is not schema:
            embedded_ids = _ensure_schema(name, root) or embedded_ids
    name_of = {id(sub): names[0], id(sup): names[1]}
    checker = _Checker(
        sub_root=sub if sub_root is None else sub_root,
        sup_root=sup if sup_root is None else sup_root,
        # A defaulted root *is* the schema, so $ref targets live under the same pointer prefix.
        sub_root_ptr=sub_ptr if sub_root is None else "",
        sup_root_ptr=sup_ptr if sup_root is None else "",
        point_at_sup=point_at_sup,
        voice=voice,
        subject=subject,
        embedded_ids=embedded_ids,
    )
    checker.top_sub, checker.top_sup = sub, sup
    for schema, root, pointed in ((sub, sub_root, not point_at_sup), (sup, sup_root, point_at_sup)):
        cycle = _schemas.unguarded_ref_cycle(schema if root is None else root)
        if cycle is not None:
            # The validator cannot evaluate such a schema (it recurses without end), so nothing
            # can be said about which values it accepts; coinduction would wrongly call it a match.
            in_pointed = pointed and root is None
            return [
                checker.cannot_prove_finding(
                    (sup_ptr if point_at_sup else sub_ptr) + (cycle if in_pointed else ""),
                    f"the $ref at '{cycle or '/'}' in {name_of[id(schema)]} leads back to a schema it is part"
                    " of without first going into a field or an item, so the validator cannot evaluate it",
                )
            ]
    try:
        checker.check(sub, sup, _Ctx(sub_ptr, sup_ptr, (), 0))
    except _OutOfBudgetError:
        checker.findings.append(
            checker.cannot_prove_finding(
                sup_ptr if point_at_sup else sub_ptr,
                f"the check took its whole work budget ({_MAX_STEPS} steps) before reaching an answer"
                " (the schemas are too recursive or have too many alternatives to compare);"
                " simplify the change, or make it in a new major version",
            )
        )
    return _dedupe(checker.findings)


def _dedupe(findings: Iterable[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))


def check_subschema(
    sub: Mapping[str, Any] | bool,
    sup: Mapping[str, Any] | bool,
    *,
    pointer: str = "",
    sub_root: Mapping[str, Any] | None = None,
    sup_root: Mapping[str, Any] | None = None,
    subject: str = "value",
) -> list[Finding]:
    """Findings explaining why some instance valid under `sub` may be invalid under `sup`.

    An empty list is a proof that every instance valid under `sub` is valid under `sup`.
    Anything the checker cannot prove is reported as a breaking "cannot prove ..." finding,
    never passed silently. `sub_root`/`sup_root` are the documents against which local `$ref`s
    resolve (default: `sub`/`sup` themselves). Pointers point into `sup` (the target), prefixed
    with `pointer`; `subject` names the value in messages (e.g. "input", "output.payment_ref").
    """
    return _run(
        sub,
        sup,
        sub_root=sub_root,
        sup_root=sup_root,
        sub_ptr="",
        sup_ptr=pointer,
        point_at_sup=True,
        voice="generic",
        subject=subject,
        names=("the source schema", "the target schema"),
    )


def check_input_compat(old: Mapping[str, Any] | bool, new: Mapping[str, Any] | bool) -> list[Finding]:
    """Input may only widen: every input `old` accepted must be accepted by `new` (old ⊆ new).

    Findings point into `new` and speak of "input".
    """
    return _run(
        old,
        new,
        sub_root=None,
        sup_root=None,
        sub_ptr="",
        sup_ptr="",
        point_at_sup=True,
        voice="input",
        subject="input",
        names=("the old input schema", "the new input schema"),
    )


def check_output_compat(old: Mapping[str, Any] | bool, new: Mapping[str, Any] | bool) -> list[Finding]:
    """Output may only narrow: everything `new` may produce must have been promised by `old`
    (new ⊆ old). Findings point into `new` and speak of "output"."""
    return _run(
        new,
        old,
        sub_root=None,
        sup_root=None,
        sub_ptr="",
        sup_ptr="",
        point_at_sup=False,
        voice="output",
        subject="output",
        names=("the new output schema", "the old output schema"),
    )


def check_contract_compat(
    old_input: Mapping[str, Any] | bool,
    old_output: Mapping[str, Any] | bool,
    new_input: Mapping[str, Any] | bool,
    new_output: Mapping[str, Any] | bool,
) -> list[Finding]:
    """Both rules for a contract's new version; pointers are prefixed "/input" and "/output"."""
    findings = _run(
        old_input,
        new_input,
        sub_root=None,
        sup_root=None,
        sub_ptr="/input",
        sup_ptr="/input",
        point_at_sup=True,
        voice="input",
        subject="input",
        names=("the old input schema", "the new input schema"),
    )
    findings += _run(
        new_output,
        old_output,
        sub_root=None,
        sup_root=None,
        sub_ptr="/output",
        sup_ptr="/output",
        point_at_sup=False,
        voice="output",
        subject="output",
        names=("the new output schema", "the old output schema"),
    )
    return findings


def is_breaking(findings: Iterable[Finding]) -> bool:
    """True if any finding breaks compatibility."""
    return any(f.breaking for f in findings)
