"""Walking JSON Schemas along field paths (``properties``, ``items``, local ``$ref``, ``allOf``...).

Used by the loader (do ``sensitive`` paths exist?) and the composition checker (what schema does
``steps.charge.output.payment_ref`` have, and what does the callee's ``input.payment_ref`` accept?).
Only local references (``#/...``) are followed: contracts never fetch schemas over the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contracts import regex

Schema = Mapping[str, Any] | bool
_MAX_REF_DEPTH = 64


class UnresolvableRef(Exception):
    """A ``$ref`` that does not point inside the schema's own document."""


def resolve_pointer(root: Any, ref: str) -> Any:
    """The value at local reference ``ref`` (``#/$defs/item``) in ``root``."""
    if not ref.startswith("#"):
        raise UnresolvableRef(f"'{ref}' is not a local reference (only '#/...' is supported)")
    current = root
    for raw in ref[1:].split("/")[1:] if ref != "#" else []:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, Mapping) and token in current:
            current = current[token]
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            raise UnresolvableRef(f"'{ref}' points to nothing in the schema")
    return current


def deref(schema: Schema, root: Schema) -> Schema:
    """``schema`` with its local ``$ref`` followed (siblings of ``$ref`` kept as an ``allOf``)."""
    for _ in range(_MAX_REF_DEPTH):
        if not isinstance(schema, Mapping) or not isinstance(schema.get("$ref"), str):
            return schema
        target = resolve_pointer(root, schema["$ref"])
        siblings = {k: v for k, v in schema.items() if k not in ("$ref", "$comment", "description", "title")}
        schema = {"allOf": [target, siblings]} if siblings else target
    raise UnresolvableRef("$ref chain too deep (a reference cycle?)")


@dataclass(frozen=True)
class Lookup:
    """The schema of one child of an object or array schema.

    ``schema`` is None when the child is not allowed at all; ``declared`` is False when the schema
    says nothing about it (any value allowed); ``required`` is True when it is always present.
    """

    schema: Schema | None
    declared: bool
    required: bool


def child(schema: Schema, key: str | int, root: Schema) -> Lookup:
    """Look up field ``key`` (or array element ``key``; ``"*"`` = any element) of ``schema``."""
    schema = deref(schema, root)
    if schema is True or (isinstance(schema, Mapping) and not schema):
        return Lookup(True, False, False)
    if schema is False or not isinstance(schema, Mapping):
        return Lookup(None, False, False)
    own = _own_child(schema, key, root)
    branches: list[Lookup] = [own] if own is not None else []
    for branch in schema.get("allOf", []) or []:
        branches.append(child(branch, key, root))
    if not branches and not (schema.get("anyOf") or schema.get("oneOf")):
        return Lookup(True, False, False)
    if any(b.schema is None for b in branches):
        return Lookup(None, False, False)
    declared = [b for b in branches if b.declared]
    schemas = [b.schema for b in declared] or [True]
    required = any(b.required for b in branches)
    found: Schema | None = schemas[0] if len(schemas) == 1 else {"allOf": schemas}
    alternatives = [child(alt, key, root) for alt in (schema.get("anyOf") or schema.get("oneOf") or [])]
    if alternatives:
        allowed = [alt for alt in alternatives if alt.schema is not None]
        if not allowed:
            return Lookup(None, False, False)
        union = {"anyOf": [alt.schema for alt in allowed]}
        found = union if not declared else {"allOf": [found, union]}
        required = required or all(alt.required for alt in allowed)
        declared = declared or [alt for alt in allowed if alt.declared]
    return Lookup(found, bool(declared), required)


def _own_child(schema: Mapping[str, Any], key: str | int, root: Schema) -> Lookup | None:
    """The lookup from this schema's own keywords (None if it has no keyword about children)."""
    if isinstance(key, int) or key == "*":
        prefix = schema.get("prefixItems")
        if isinstance(key, int) and isinstance(prefix, list) and key < len(prefix):
            return Lookup(prefix[key], True, key < int(schema.get("minItems", 0)))
        if "items" in schema:
            items = schema["items"]
            if items is False:
                return Lookup(None, False, False)
            required = isinstance(key, int) and key < int(schema.get("minItems", 0))
            return Lookup(items, True, required)
        return None
    properties = schema.get("properties")
    if isinstance(properties, Mapping) and key in properties:
        return Lookup(properties[key], True, key in (schema.get("required") or []))
    patterns = schema.get("patternProperties")
    if isinstance(patterns, Mapping):
        for pattern, sub in patterns.items():
            if regex.search(pattern, key):
                return Lookup(sub, True, key in (schema.get("required") or []))
    if "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        if extra is False:
            return Lookup(None, False, False)
        return Lookup(extra, extra is not True and extra != {}, key in (schema.get("required") or []))
    if isinstance(properties, Mapping) or "required" in schema:
        return Lookup(True, False, key in (schema.get("required") or []))
    return None


def types_of(schema: Schema, root: Schema) -> set[str] | None:
    """The JSON types ``schema`` may have, or None when it does not say."""
    schema = deref(schema, root)
    if not isinstance(schema, Mapping):
        return None if schema else set()
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {str(t) for t in declared}
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else list(schema["enum"] or [])
        return {json_type(v) for v in values}
    for branch in schema.get("allOf", []) or []:
        found = types_of(branch, root)
        if found is not None:
            return found
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives:
        union: set[str] = set()
        for alt in alternatives:
            found = types_of(alt, root)
            if found is None:
                return None
            union |= found
        return union
    return None


def json_type(value: Any) -> str:
    """The JSON Schema type of a value; 1.0 is an integer, as in JSON Schema 2020-12."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def declared_fields(schema: Schema, root: Schema) -> list[str]:
    """Names of the properties ``schema`` declares (for "it has: a, b" hints)."""
    schema = deref(schema, root)
    if not isinstance(schema, Mapping):
        return []
    names = list((schema.get("properties") or {}).keys())
    for branch in [*(schema.get("allOf") or []), *(schema.get("anyOf") or []), *(schema.get("oneOf") or [])]:
        names.extend(n for n in declared_fields(branch, root) if n not in names)
    return names


def required_fields(schema: Schema, root: Schema) -> list[str]:
    """Names ``schema`` requires (own ``required`` plus every ``allOf`` branch's)."""
    schema = deref(schema, root)
    if not isinstance(schema, Mapping):
        return []
    names = list(schema.get("required") or [])
    for branch in schema.get("allOf") or []:
        names.extend(n for n in required_fields(branch, root) if n not in names)
    return names


def local_refs(schema: Any, pointer: str = "") -> list[tuple[str, str]]:
    """Every ``$ref`` in ``schema`` as (pointer of the holder, ref)."""
    found: list[tuple[str, str]] = []
    if isinstance(schema, Mapping):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            found.append((pointer, ref))
        for key, value in schema.items():
            if key in ("const", "enum", "default", "examples"):
                continue
            found.extend(local_refs(value, f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}"))
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            found.extend(local_refs(value, f"{pointer}/{index}"))
    return found


def standalone(schema: Schema, root: Schema) -> Schema:
    """``schema`` made valid on its own: the root's ``$defs``/``definitions`` carried along."""
    if not isinstance(root, Mapping) or schema is root:
        return schema
    carried = {k: root[k] for k in ("$defs", "definitions") if k in root}
    if not carried or not local_refs(schema):
        return schema
    return {**carried, "allOf": [schema]}


# Keywords whose subschemas apply to the same instance as the schema holding them ("in place"):
# a $ref that leads back to where it started through these alone never reaches a smaller value.
_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_LIST = ("allOf", "anyOf", "oneOf")


def unguarded_ref_cycle(root: Any) -> str | None:
    """The pointer of a ``$ref`` (its holder) that leads back to a schema it is part of without
    first descending into a field or an item, if there is one (``{anyOf: [{$ref: '#'}, ...]}``).

    Validating a value against such a schema never ends (the validator Accord runs recurses until
    Python's recursion limit), so the loader refuses it and the compatibility checker cannot
    reason about it. A ``$ref`` reached through ``properties``, ``items`` and the like is fine:
    each step is about a smaller part of the value (docs/contracts.md, "Schemas").
    """
    # Depth-first over the "applies in place to the same value" edges; a cycle among them
    # necessarily passes through a $ref (a JSON document is a tree).
    state: dict[int, int] = {}  # id(node) -> 1 on the current path, 2 finished

    def edges(node: Any, pointer: str) -> list[tuple[Any, str, bool]]:
        out: list[tuple[Any, str, bool]] = []
        if not isinstance(node, Mapping):
            return out
        ref = node.get("$ref")
        if isinstance(ref, str):
            try:
                out.append((resolve_pointer(root, ref), ref[1:], True))
            except UnresolvableRef:
                pass
        for kw in _IN_PLACE_ONE:
            if isinstance(node.get(kw), Mapping):
                out.append((node[kw], f"{pointer}/{kw}", False))
        for kw in _IN_PLACE_LIST:
            if isinstance(node.get(kw), list):
                out += [
                    (m, f"{pointer}/{kw}/{i}", False)
                    for i, m in enumerate(node[kw])
                    if isinstance(m, Mapping)
                ]
        dependent = node.get("dependentSchemas")
        if isinstance(dependent, Mapping):
            for name, member in dependent.items():
                if isinstance(member, Mapping):
                    out.append((member, f"{pointer}/dependentSchemas/{_escape(str(name))}", False))
        return out

    for start, start_ptr in _every_schema(root):
        if id(start) in state:
            continue
        state[id(start)] = 1
        # (node, its pointer, the $ref holder whose reference led to it or None, edges left)
        stack: list[tuple[Any, str, str | None, Any]] = [
            (start, start_ptr, None, iter(edges(start, start_ptr)))
        ]
        while stack:
            node, pointer, _, todo = stack[-1]
            step = next(todo, None)
            if step is None:
                stack.pop()
                state[id(node)] = 2
                continue
            target, target_ptr, via_ref = step
            mark = state.get(id(target))
            if mark == 1:
                if via_ref:
                    return pointer
                # Closed by a plain subschema edge: name the $ref on the loop.
                at = next(i for i, entry in enumerate(stack) if entry[0] is target)
                return next((e[2] for e in stack[at:] if e[2] is not None), pointer)
            if mark == 2:
                continue
            state[id(target)] = 1
            holder = pointer if via_ref else None
            stack.append((target, target_ptr, holder, iter(edges(target, target_ptr))))
    return None


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _every_schema(schema: Any, pointer: str = "") -> list[tuple[Any, str]]:
    """Every mapping inside ``schema`` that may be a subschema, with its pointer (values of
    const/enum/default/examples are data, not schemas)."""
    found: list[tuple[Any, str]] = []
    todo: list[tuple[Any, str]] = [(schema, pointer)]
    while todo:
        node, here = todo.pop()
        if isinstance(node, Mapping):
            found.append((node, here))
            for key, value in node.items():
                if key not in ("const", "enum", "default", "examples"):
                    todo.append((value, f"{here}/{_escape(str(key))}"))
        elif isinstance(node, list):
            todo += [(value, f"{here}/{i}") for i, value in enumerate(node)]
    return found
