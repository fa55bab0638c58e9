"""Payload validation against contract schemas (JSON Schema 2020-12, with ``$ref``/``$defs``).

This runs on hot paths (every task input and output), so compiled validators are cached, keyed by
the schema's canonical JSON: equal schemas share one validator whatever object holds them.
``pattern`` and ``patternProperties`` match on RE2, in linear time (``contracts.regex``), and
``uniqueItems`` hashes each item once (``_unique_items``): jsonschema's own compares every pair of
items that cannot be sorted (objects, mixed types), seconds for a 12 KB array of 1,000 objects,
on whichever loop validates it (docs/architecture.md, "Checks off the event loop").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from itertools import islice
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator

from contracts import regex
from contracts.errors import ValidationFailed, Violation
from contracts.limits import spend_inline
from contracts.quickcheck import Check, quick_check

regex.install()

__all__ = [
    "canonical_json",
    "check_schema",
    "compiled_validator",
    "ensure_valid",
    "json_path",
    "validate_payload",
]

#: The most violations of one payload reported (and looked for).
MAX_VIOLATIONS = 50

_REQUIRED_RE = re.compile(r"^'(.+)' is a required property$")


def canonical_json(value: Any) -> str:
    """A stable text for a JSON value (sorted keys, no spaces): the cache key of schemas."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _equality_key(value: Any) -> Any:
    """A hashable stand-in for a JSON value, equal for values JSON Schema calls equal: ``1`` and
    ``1.0`` alike (Python hashes equal numbers alike), ``true`` and ``1`` not, object keys in any
    order. Nesting is bounded where payloads arrive (``coordinator/api/validate.py``: 64 levels)."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, Mapping):
        return ("o", frozenset((key, _equality_key(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return ("a", tuple(_equality_key(item) for item in value))
    return ("z", value)  # null


def _unique_items(validator: Validator, unique: Any, instance: Any, schema: Any) -> Iterable[ValidationError]:
    """``uniqueItems`` in one pass over the items (see the module docstring); the message names
    the repeated item's index rather than quoting the whole array."""
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Any] = set()
    for index, item in enumerate(instance):
        key = _equality_key(item)
        if key in seen:
            yield ValidationError(f"item {index} repeats an earlier item: the items must be unique")
            return
        seen.add(key)


def _ticking(keyword: Callable[..., Any]) -> Callable[..., Any]:
    """``keyword`` (a jsonschema keyword function) that first ticks the inline budget, so that a
    validation on the coordinator's event loop stops once it is spent (``contracts.limits``):
    the cost of a few schemas grows exponentially with their nesting (``unevaluatedProperties``
    under nested ``anyOf`` re-validates every alternative at every level), whatever the payload."""

    def ticked(validator: Validator, value: Any, instance: Any, schema: Any) -> Any:
        spend_inline()
        return keyword(validator, value, instance, schema)

    return ticked


_Validator = validators.extend(
    Draft202012Validator,
    {
        keyword: _ticking(function)
        for keyword, function in {**Draft202012Validator.VALIDATORS, "uniqueItems": _unique_items}.items()
    },
)


@lru_cache(maxsize=2048)
def _compile(canonical: str) -> tuple[Validator, Check | None]:
    schema = json.loads(canonical)
    validator: Validator = _Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return validator, quick_check(schema)


def _compiled(schema: Mapping[str, Any] | bool) -> tuple[Validator, Check | None]:
    """The cached validator of ``schema`` and its quick check (``contracts.quickcheck``)."""
    # A contract's schema is one long-lived object: its validator is found by identity (and a
    # copy of the schema as it was, compared in C, tells one changed in place), which spares
    # writing the canonical JSON of the schema for every payload.
    known = _by_object.get(id(schema))
    if known is not None and known[0] is schema and known[1] == schema:
        return known[2]
    canonical = canonical_json(schema)
    compiled = _compile(canonical)
    if isinstance(schema, Mapping):
        if len(_by_object) >= _BY_OBJECT_KEPT:
            _by_object.clear()
        _by_object[id(schema)] = (schema, json.loads(canonical), compiled)
    return compiled


def compiled_validator(schema: Mapping[str, Any] | bool) -> Validator:
    """The cached Draft 2020-12 validator of ``schema`` (formats are asserted)."""
    return _compiled(schema)[0]


# _compiled's memo: id -> (the schema, a copy of it as it was, its validator and quick check).
_by_object: dict[int, tuple[Any, Any, tuple[Validator, Check | None]]] = {}
_BY_OBJECT_KEPT = 2048


def json_path(parts: Iterable[str | int]) -> str:
    """``("items", 0, "sku")`` -> ``$.items[0].sku`` (keys that are not identifiers are quoted)."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _violation(error: ValidationError) -> Violation:
    path = list(error.absolute_path)
    message = error.message
    if error.validator == "required":
        missing = _REQUIRED_RE.match(message)
        if missing:
            return Violation(json_path([*path, missing.group(1)]), "is required but missing")
    if len(message) > 300:
        message = message[:297] + "..."
    return Violation(json_path(path), message)


def validate_payload(schema: Mapping[str, Any] | bool, value: Any, what: str = "input") -> list[Violation]:
    """Every way ``value`` violates ``schema``, each at its JSON path (``$.items[0].sku``).

    ``what`` only names the payload in messages raised by :func:`ensure_valid`; an empty list
    means the value is valid.
    """
    validator, quick = _compiled(schema)
    if quick is not None and quick(value):
        return []  # what jsonschema would find (contracts.quickcheck), in a fraction of its time
    errors = validator.iter_errors(value)
    violations = [_violation(error) for error in islice(errors, MAX_VIOLATIONS + 1)]
    listed = sorted(violations[:MAX_VIOLATIONS], key=lambda v: (v.path, v.message))
    if len(violations) > MAX_VIOLATIONS:
        # The rest are not looked for: a payload of 20,000 bad items would otherwise cost its
        # whole validation and an answer larger than gRPC carries.
        listed.append(Violation("$", f"and more violations (only the first {MAX_VIOLATIONS} are listed)"))
    return listed


def ensure_valid(schema: Mapping[str, Any] | bool, value: Any, what: str = "input") -> None:
    """Raise ValidationFailed listing every violation if ``value`` does not match ``schema``."""
    violations = validate_payload(schema, value, what)
    if violations:
        raise ValidationFailed(what, violations)


def check_schema(schema: Any) -> list[Violation]:
    """Problems that make ``schema`` an invalid JSON Schema 2020-12 (empty if it is valid).

    Paths are JSON paths inside the schema (``$.properties.amount.type``).
    """
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    problems = [_violation(error) for error in meta.iter_errors(schema)]
    if not problems:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            problems.append(Violation(json_path(exc.absolute_path), exc.message))
    return sorted(problems, key=lambda v: (v.path, v.message))
