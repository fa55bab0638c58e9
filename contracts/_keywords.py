"""The keywords of JSON Schema 2020-12, and the unknown ones inside a schema (typos).

A validator ignores a keyword it does not know, so ``requried: [id]`` silently requires nothing.
Contract, event and workflow files therefore refuse unknown keywords inside their schemas, with
a "did you mean" for near misses; an extension keyword is allowed when it starts with ``x-``
(docs/contracts.md, "Schemas").
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["KEYWORDS", "UnknownKeyword", "suggest", "unknown_fields", "unknown_keywords", "workflow_schemas"]

# Keywords holding one subschema, a map of subschemas, a list of subschemas.
_ONE = frozenset(
    {
        "additionalProperties",
        "items",
        "contains",
        "propertyNames",
        "if",
        "then",
        "else",
        "not",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contentSchema",
    }
)
_MAP = frozenset({"properties", "patternProperties", "dependentSchemas", "$defs", "definitions"})
_LIST = frozenset({"prefixItems", "allOf", "anyOf", "oneOf"})
KEYWORDS = frozenset(
    {
        # core
        "$schema", "$id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary", "$comment",
        # validation
        "type", "const", "enum", "multipleOf", "maximum", "exclusiveMaximum", "minimum",
        "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
        "uniqueItems", "maxContains", "minContains", "maxProperties", "minProperties", "required",
        "dependentRequired",
        # meta-data, format, content
        "title", "description", "default", "deprecated", "readOnly", "writeOnly", "examples",
        "format", "contentEncoding", "contentMediaType",
    }
) | _ONE | _MAP | _LIST  # fmt: skip
# Keywords of earlier drafts, ignored by a 2020-12 validator: named with their replacement.
_RENAMED = {
    "additionalItems": "items (with prefixItems)",
    "dependencies": "dependentRequired or dependentSchemas",
    "$recursiveRef": "$dynamicRef",
    "$recursiveAnchor": "$dynamicAnchor",
}


class UnknownKeyword:
    """An unknown keyword at ``pointer`` (a JSON pointer to the keyword inside the schema)."""

    def __init__(self, pointer: str, keyword: str) -> None:
        self.pointer = pointer
        self.keyword = keyword

    @property
    def message(self) -> str:
        hint = suggest(self.keyword)
        if hint is not None:
            return f"unknown JSON Schema keyword '{self.keyword}'; did you mean '{hint}'?"
        return (
            f"unknown JSON Schema keyword '{self.keyword}' (a validator ignores it); "
            "name an extension keyword with an 'x-' prefix"
        )


def suggest(keyword: str) -> str | None:
    """The keyword `keyword` is probably a misspelling of, if any."""
    if keyword in _RENAMED:
        return _RENAMED[keyword]
    close = difflib.get_close_matches(keyword, sorted(KEYWORDS), n=1, cutoff=0.6)
    if not close:
        lowered = {k.lower(): k for k in KEYWORDS}
        return lowered.get(keyword.lower())
    return close[0]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def unknown_keywords(schema: Any, pointer: str = "") -> Iterator[UnknownKeyword]:
    """Every keyword inside `schema` that JSON Schema 2020-12 does not define and that does not
    start with ``x-``, walking subschemas only (never enum/const/default/examples values)."""
    if not isinstance(schema, Mapping):
        return
    for key, value in schema.items():
        if not isinstance(key, str):
            continue
        here = f"{pointer}/{_escape(key)}"
        if key not in KEYWORDS and not key.startswith("x-"):
            yield UnknownKeyword(here, key)
            continue
        if key in _ONE:
            yield from unknown_keywords(value, here)
        elif key in _MAP and isinstance(value, Mapping):
            for name, child in value.items():
                yield from unknown_keywords(child, f"{here}/{_escape(str(name))}")
        elif key in _LIST and isinstance(value, list):
            for index, child in enumerate(value):
                yield from unknown_keywords(child, f"{here}/{index}")


def unknown_fields(schemas: Iterable[tuple[str, Any]]) -> list[str]:
    """The unknown keywords of named schemas (``("input", schema)``), as dotted fields
    (``input.requried``): how registered versions with them are named in logs and lists."""
    return [name + u.pointer.replace("/", ".") for name, schema in schemas for u in unknown_keywords(schema)]


def workflow_schemas(data: Any) -> list[tuple[str, Any]]:
    """The schemas a workflow file holds, named by their field: ``input`` and each waiting
    step's signal payload (``steps.<id>.wait_for.signal.schema``)."""
    if not isinstance(data, Mapping):
        return []
    found: list[tuple[str, Any]] = [("input", data["input"])] if "input" in data else []
    steps = data.get("steps")
    for step_id, step in steps.items() if isinstance(steps, Mapping) else ():
        wait = step.get("wait_for") if isinstance(step, Mapping) else None
        signal = wait.get("signal") if isinstance(wait, Mapping) else None
        if isinstance(signal, Mapping) and "schema" in signal:
            found.append((f"steps.{step_id}.wait_for.signal.schema", signal["schema"]))
    return found
