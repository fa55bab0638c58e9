"""Payload validation against contract schemas (JSON Schema 2020-12, with ``$ref``/``$defs``).

This runs on hot paths (every task input and output), so compiled validators are cached, keyed by
the schema's canonical JSON: equal schemas share one validator whatever object holds them.
``pattern`` and ``patternProperties`` match on RE2, in linear time (``contracts.regex``), and
``uniqueItems`` hashes a canonical form of each item, in linear time (jsonschema's own compares
every pair: a 14 KB array of small objects took 8 s). A validation on the coordinator's event loop
is given a number of keyword evaluations (``max_steps``); one that needs more (a schema whose
``anyOf`` branches each descend into the same value, doubling per level) raises
:class:`TooCostly` and is made again in a worker process with a time budget
(coordinator/checks.py; docs/architecture.md, "Checks off the event loop").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from functools import lru_cache
from itertools import islice
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator

from contracts import regex
from contracts.errors import ValidationFailed, Violation

regex.install()

__all__ = [
    "TooCostly",
    "canonical_json",
    "check_schema",
    "compiled_validator",
    "ensure_valid",
    "json_path",
    "unique_key",
    "validate_payload",
]

#: The most violations of one payload reported (and looked for).
MAX_VIOLATIONS = 50

_REQUIRED_RE = re.compile(r"^'(.+)' is a required property$")


def canonical_json(value: Any) -> str:
    """A stable text for a JSON value (sorted keys, no spaces): the cache key of schemas."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


class TooCostly(Exception):
    """A validation given ``max_steps`` needed more keyword evaluations: make it in a worker."""


class _Meter:
    """The keyword evaluations a validation may still make."""

    __slots__ = ("left",)

    def __init__(self, steps: int) -> None:
        self.left = steps

    def spend(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise TooCostly


# The meter of the validation running in this context; None: not metered (in a worker).
_meter: ContextVar[_Meter | None] = ContextVar("accord_validation_meter", default=None)


def unique_key(value: Any) -> Any:
    """A hashable form of a JSON value, equal for two values exactly when JSON Schema calls them
    equal: numbers by value (1 and 1.0 are one), booleans apart from numbers (true is not 1),
    arrays in order, objects by their keys and values whatever their order."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list):
        return ("a", tuple(unique_key(item) for item in value))
    if isinstance(value, dict):
        return ("o", frozenset((key, unique_key(item)) for key, item in value.items()))
    if value is None:
        return ("z",)
    return ("x", repr(value))  # not JSON (validate_payload only sees decoded JSON)


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """``uniqueItems`` in time linear in the array (see the module docstring)."""
    if not unique or not validator.is_type(instance, "array"):
        return
    meter = _meter.get()
    if meter is not None:
        meter.spend(len(instance))
    seen: set[Any] = set()
    for item in instance:
        key = unique_key(item)
        if key in seen:
            yield ValidationError(f"{_short(instance)} has non-unique elements")
            return
        seen.add(key)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _metered(keyword: Callable[..., Any]) -> Callable[..., Any]:
    """``keyword`` spending one step of the running validation's meter, and one more per item of
    the value or of the schema's ``enum``/``const`` it compares (those cost their size)."""

    def evaluate(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        meter = _meter.get()
        if meter is not None:
            cost = 1
            if isinstance(instance, (list, dict)):
                cost += len(instance)
            if isinstance(value, (list, dict)):
                cost += len(value)
            meter.spend(cost)
        return keyword(validator, value, instance, schema)

    return evaluate


_KEYWORDS = dict(Draft202012Validator.VALIDATORS)
_KEYWORDS["uniqueItems"] = _unique_items
_Validator = validators.extend(
    Draft202012Validator, {name: _metered(keyword) for name, keyword in _KEYWORDS.items()}
)


@lru_cache(maxsize=2048)
def _compile(canonical: str) -> Validator:
    schema = json.loads(canonical)
    validator: Validator = _Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return validator


def compiled_validator(schema: Mapping[str, Any] | bool) -> Validator:
    """The cached Draft 2020-12 validator of ``schema`` (formats are asserted)."""
    # A contract's schema is one long-lived object: its validator is found by identity (and a
    # copy of the schema as it was, compared in C, tells one changed in place), which spares
    # writing the canonical JSON of the schema for every payload.
    known = _by_object.get(id(schema))
    if known is not None and known[0] is schema and known[1] == schema:
        return known[2]
    canonical = canonical_json(schema)
    validator = _compile(canonical)
    if isinstance(schema, Mapping):
        if len(_by_object) >= _BY_OBJECT_KEPT:
            _by_object.clear()
        _by_object[id(schema)] = (schema, json.loads(canonical), validator)
    return validator


# compiled_validator's memo: id -> (the schema, a copy of it as it was, its validator).
_by_object: dict[int, tuple[Any, Any, Validator]] = {}
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


def validate_payload(
    schema: Mapping[str, Any] | bool, value: Any, what: str = "input", max_steps: int | None = None
) -> list[Violation]:
    """Every way ``value`` violates ``schema``, each at its JSON path (``$.items[0].sku``).

    ``what`` only names the payload in messages raised by :func:`ensure_valid`; an empty list
    means the value is valid. With ``max_steps``, a validation that needs more keyword
    evaluations raises :class:`TooCostly` after about that many (see the module docstring).
    """
    token = _meter.set(_Meter(max_steps) if max_steps is not None else None)
    try:
        errors = compiled_validator(schema).iter_errors(value)
        violations = [_violation(error) for error in islice(errors, MAX_VIOLATIONS + 1)]
    finally:
        _meter.reset(token)
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
