"""The ``${...}`` reference language of workflow files, shared by the coordinator (run time) and
the composition checker (registration time).

A reference names a path in the *scope* of a step:

===============================  ==================================================
``${input.order_id}``            the workflow's input
``${steps.charge.output.ref}``   an earlier step's output
``${item.sku}``                  the current element, inside a ``for_each`` step
``${event.order_id}``            the triggering event's payload, in a trigger
``${input.items[0].sku}``        array elements by index
===============================  ==================================================

A string that is exactly one reference (``"${input.amount}"``) evaluates to the referenced value
with its JSON type. Text around references makes a string; non-string values are JSON-encoded
into it. ``$${`` writes a literal ``${``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from contracts.errors import ReferenceError_

__all__ = [
    "EMITS_ROOTS",
    "ROOTS",
    "MissingValue",
    "PathPart",
    "Ref",
    "evaluate",
    "evaluate_condition",
    "find_references",
    "format_path",
    "parse_path",
    "truthy",
]

PathPart = str | int
ROOTS = ("input", "steps", "item", "event")
# What a reference in a contract's ``emits:`` payload may start with: the step's input and output.
EMITS_ROOTS = ("input", "output")

_SEGMENT_RE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[(\*)\]")
_ROOT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_OPEN = "${"


@lru_cache(maxsize=4096)
def parse_path(text: str, *, wildcard: bool = False, roots: tuple[str, ...] = ROOTS) -> tuple[PathPart, ...]:
    """Parse ``input.items[0].sku`` into ``("input", "items", 0, "sku")``.

    With ``wildcard``, ``[*]`` (any element) is accepted and kept as the string ``"*"``;
    ``roots`` lists the names a path may start with.
    """
    stripped = text.strip()
    root = _ROOT_RE.match(stripped)
    if root is None:
        raise ReferenceError_(f"'${{{text}}}' is not a reference; expected e.g. ${{input.order_id}}")
    parts: list[PathPart] = [root.group(0)]
    position = root.end()
    while position < len(stripped):
        segment = _SEGMENT_RE.match(stripped, position)
        if segment is None or (segment.group(3) and not wildcard):
            raise ReferenceError_(
                f"'${{{text}}}' is not a valid path at '{stripped[position:]}'; "
                "use dots for fields and [N] for array elements, e.g. ${input.items[0].sku}"
            )
        name, index, star = segment.groups()
        parts.append(name if name is not None else int(index) if index is not None else star)
        position = segment.end()
    if parts[0] not in roots:
        raise ReferenceError_(
            f"'${{{text}}}' starts with '{parts[0]}'; a reference starts with one of " + ", ".join(roots)
        )
    return tuple(parts)


def format_path(parts: tuple[PathPart, ...] | list[PathPart]) -> str:
    """The inverse of :func:`parse_path`: ``("input", "items", 0)`` -> ``input.items[0]``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "*":
            out += "[*]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass(frozen=True)
class Ref:
    """One ``${...}`` reference found in a template.

    ``pointer`` is the JSON pointer of the string holding it inside the template (``""`` for the
    template itself); ``start``/``end`` are offsets in that string; ``whole`` is True when the
    string is exactly this reference (so it keeps its JSON type).
    """

    path: tuple[PathPart, ...]
    pointer: str = ""
    start: int = 0
    end: int = 0
    whole: bool = True

    @property
    def text(self) -> str:
        """The path as written: ``steps.charge.output.payment_ref``."""
        return format_path(self.path)

    @property
    def root(self) -> str:
        """``input``, ``steps``, ``item`` or ``event``."""
        return str(self.path[0])

    @property
    def step_id(self) -> str | None:
        """The referenced step for ``steps.<id>...``, else None."""
        if self.root == "steps" and len(self.path) > 1 and isinstance(self.path[1], str):
            return self.path[1]
        return None

    def __str__(self) -> str:
        return f"${{{self.text}}}"


def _scan(text: str) -> Iterator[tuple[int, int, str | None]]:
    """Yield (start, end, inner) for each reference and (start, end, None) for each ``$${``."""
    position = 0
    while True:
        start = text.find(_OPEN, position)
        if start < 0:
            return
        if start > 0 and text[start - 1] == "$":
            yield start - 1, start + 2, None
            position = start + 2
            continue
        end = text.find("}", start + 2)
        if end < 0:
            raise ReferenceError_(f"unterminated reference in '{text}': '${{' without a closing '}}'")
        yield start, end + 1, text[start + 2 : end]
        position = end + 1


def _escape_pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def find_references(template: Any, pointer: str = "", *, roots: tuple[str, ...] = ROOTS) -> list[Ref]:
    """Every reference in ``template`` (strings, lists and mappings, walked recursively), in order.

    Raises ReferenceError_ for a malformed reference, naming it. ``roots``: what a reference may
    start with (a contract's ``emits:`` payload: ``input`` and ``output``).
    """
    found: list[Ref] = []
    if isinstance(template, str):
        if _OPEN not in template:
            return found
        for start, end, inner in _scan(template):
            if inner is None:
                continue
            whole = start == 0 and end == len(template)
            found.append(Ref(parse_path(inner, roots=roots), pointer, start, end, whole))
    elif isinstance(template, Mapping):
        for key, value in template.items():
            found.extend(find_references(value, f"{pointer}/{_escape_pointer(str(key))}", roots=roots))
    elif isinstance(template, list | tuple):
        for index, value in enumerate(template):
            found.extend(find_references(value, f"{pointer}/{index}", roots=roots))
    return found


class MissingValue(ReferenceError_):
    """A reference whose path is absent from the data (an optional field that was not given)."""


def _lookup(path: tuple[PathPart, ...], scope: Mapping[str, Any]) -> Any:
    current: Any = scope
    for depth, part in enumerate(path):
        where = format_path(path[:depth]) or "the scope"
        if isinstance(part, int):
            if not isinstance(current, list) or part >= len(current):
                size = f"has {len(current)} elements" if isinstance(current, list) else "is not an array"
                raise MissingValue(f"${{{format_path(path)}}}: {where} {size}, no element [{part}]")
            current = current[part]
        else:
            if not isinstance(current, Mapping) or part not in current:
                what = "is not an object" if not isinstance(current, Mapping) else f"has no '{part}'"
                raise MissingValue(f"${{{format_path(path)}}}: {where} {what}")
            current = current[part]
    return current


def evaluate(template: Any, scope: Mapping[str, Any], *, roots: tuple[str, ...] = ROOTS) -> Any:
    """Evaluate ``template`` in ``scope`` (``{"input": ..., "steps": {id: {"output": ...}}, ...}``).

    In a mapping, a key whose value is exactly one reference to an absent value is left out (an
    optional field passed on as optional); anywhere else an absent value raises MissingValue (a
    ReferenceError_) naming the path. The composition checker refuses, at registration, mappings
    where this could leave out a field the callee requires.
    """
    if isinstance(template, str):
        if _OPEN not in template:
            return template
        pieces: list[str] = []
        position = 0
        for start, end, inner in _scan(template):
            pieces.append(template[position:start])
            position = end
            if inner is None:
                pieces.append(_OPEN)
                continue
            value = _lookup(parse_path(inner, roots=roots), scope)
            if start == 0 and end == len(template):
                return value
            pieces.append(value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))
        pieces.append(template[position:])
        return "".join(pieces)
    if isinstance(template, Mapping):
        result: dict[Any, Any] = {}
        for key, value in template.items():
            try:
                result[key] = evaluate(value, scope, roots=roots)
            except MissingValue:
                if not _is_whole_reference(value):
                    raise
        return result
    if isinstance(template, list | tuple):
        return [evaluate(value, scope, roots=roots) for value in template]
    return template


def _is_whole_reference(value: Any) -> bool:
    if not isinstance(value, str) or _OPEN not in value:
        return False
    spans = list(_scan(value))
    return len(spans) == 1 and spans[0][0] == 0 and spans[0][1] == len(value) and spans[0][2] is not None


def evaluate_condition(template: Any, scope: Mapping[str, Any]) -> bool:
    """A ``when`` condition: the truthiness of ``template``, where an absent value is false."""
    try:
        return truthy(evaluate(template, scope))
    except MissingValue:
        return False


def truthy(value: Any) -> bool:
    """JSON truthiness for ``when``: null, false, 0, "", [] and {} are false; the rest true."""
    if value is None or value is False:
        return False
    if isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | list | tuple | Mapping):
        return len(value) > 0
    return True
