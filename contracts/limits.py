"""Bounds on the schemas a contract or workflow file embeds (docs/contracts.md, "Limits").

Every check a schema goes through (meta-validation, compatibility, composition, validating
payloads) costs time growing with its size, and runs in the coordinator. A schema is therefore
refused at registration, with a message naming the limit, when it is larger than
:data:`MAX_SCHEMA_BYTES`, declares more than :data:`MAX_SCHEMA_PROPERTIES` properties, or nests
deeper than :data:`MAX_SCHEMA_DEPTH`; a contract lists at most :data:`MAX_SENSITIVE_PATHS`
sensitive paths. The whole file is bounded before that by ``contracts._yaml`` (bytes, values once
aliases are expanded, nesting).

Within those bounds a check may still take a while; the coordinator runs small ones on its event
loop under an *inline budget* of CPU time (:func:`inline_budget`): the checks call
:func:`spend_inline` as they work, which raises :class:`InlineBudgetSpent` once the budget is
used, and the coordinator runs the check again in a worker process (``coordinator/checks.py``).
Outside such a budget (the CLI, a worker) :func:`spend_inline` does nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from contracts._yaml import escape

__all__ = [
    "MAX_SCHEMA_BYTES",
    "MAX_SCHEMA_DEPTH",
    "MAX_SCHEMA_PROPERTIES",
    "MAX_SENSITIVE_PATHS",
    "InlineBudgetSpent",
    "inline_budget",
    "patterns",
    "schema_limit_problems",
    "spend_inline",
]

#: The largest embedded schema, in bytes of compact JSON.
MAX_SCHEMA_BYTES = 256 * 1024
#: The most properties (``properties`` and ``patternProperties`` entries, all levels together) one
#: schema declares.
MAX_SCHEMA_PROPERTIES = 2_000
#: The deepest nesting of mappings and lists inside one schema.
MAX_SCHEMA_DEPTH = 40
#: The most entries of a contract's ``sensitive`` list.
MAX_SENSITIVE_PATHS = 500


class InlineBudgetSpent(BaseException):
    """A check running under :func:`inline_budget` used it up. A ``BaseException``, like a task's
    cancellation, so that no ``except Exception`` inside a check takes it for a failure."""


class _Budget:
    """The inline budget of one check, in two halves: until ``wall_until`` (wall time, read
    from a cheap clock) the check runs freely, since its CPU time cannot exceed the wall time
    elapsed; from then on it has half its budget of thread CPU time (``cpu_until``, 0.0 until
    then)."""

    __slots__ = ("cpu_until", "half", "outer", "wall_until")

    def __init__(self, seconds: float, outer: _Budget | None = None) -> None:
        self.half = seconds / 2
        self.wall_until = time.perf_counter() + self.half
        self.cpu_until = 0.0
        # A budget entered inside another ends no later than it: its wall half no later than the
        # other's, and its CPU half no later than the other's (``_cpu_phase``).
        self.outer = outer
        if outer is not None:
            self.wall_until = min(self.wall_until, outer.wall_until)

    def _cpu_phase(self) -> None:
        """The wall half is over: from now on, half the budget of thread CPU time (no more than
        what the enclosing budget has left)."""
        now = time.thread_time()
        self.cpu_until = now + self.half
        outer = self.outer
        if outer is not None:
            if not outer.cpu_until:
                # The enclosing budget's CPU half starts now at the latest (it gets at least that
                # half still: its CPU time so far was no more than the wall time), so that this one
                # can end with it.
                outer._cpu_phase()
            self.cpu_until = min(self.cpu_until, outer.cpu_until)


# The budget of the check running in this context; None: no budget.
_inline: ContextVar[_Budget | None] = ContextVar("accord_inline_budget", default=None)
# The CPU clock is read every _CLOCK_EVERY calls: a thread's CPU clock is a system call.
_CLOCK_EVERY = 16
_calls = 0


class inline_budget:
    """Run the checks inside with ``seconds`` of this thread's CPU time at most (see the module
    docstring). A busy machine that holds the thread back counts against half the budget at
    most: a check stops after between half its budget and its budget of CPU time.

    Most checks on the event loop are small and end within half their budget of wall time; they
    never read the thread's CPU clock, a system call (entering a budget is on every transition's
    path). One that runs longer reads it then and gets the other half from there.

    A budget entered inside another (a large payload's check within a transition) ends no later
    than the one around it: checks made one after another inside a budget never hold the loop
    for more than it in all, however many have budgets of their own."""

    __slots__ = ("_token", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        self._token = _inline.set(_Budget(self.seconds, _inline.get()))

    def __exit__(self, *exc: object) -> None:
        _inline.reset(self._token)


def spend_inline() -> None:
    """Called as a check works: :class:`InlineBudgetSpent` once the inline budget is used up."""
    global _calls
    budget = _inline.get()
    if budget is None:
        return
    if not budget.cpu_until:
        if time.perf_counter() > budget.wall_until:
            budget._cpu_phase()
        return
    _calls += 1
    if _calls % _CLOCK_EVERY == 0 and time.thread_time() > budget.cpu_until:
        raise InlineBudgetSpent


# Keywords whose value is a mapping of names to subschemas, one subschema, or a list of them
# (JSON Schema 2020-12, with the older ``definitions``/``additionalItems`` spellings).
_NAMED = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SINGLE = (
    "items",
    "additionalItems",
    "additionalProperties",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
)
_LISTED = ("allOf", "anyOf", "oneOf", "prefixItems")


def _depth(value: Any) -> int:
    """The nesting of mappings and lists in ``value`` (iterative: a deep value is what we refuse)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in item)
    return deepest


def subschemas(schema: Any, pointer: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every mapping in schema position inside ``schema``, with its JSON pointer (not the values of
    ``const``, ``enum``, ``default`` or ``examples``, which are data)."""
    stack: list[tuple[Any, str]] = [(schema, pointer)]
    while stack:
        node, where = stack.pop()
        if not isinstance(node, Mapping):
            continue
        yield where, node
        for key, value in node.items():
            inner = f"{where}/{escape(str(key))}"
            if key in _NAMED and isinstance(value, Mapping):
                stack.extend((sub, f"{inner}/{escape(str(name))}") for name, sub in value.items())
            elif key in _SINGLE:
                stack.append((value, inner))
            elif key in _LISTED and isinstance(value, list):
                stack.extend((sub, f"{inner}/{index}") for index, sub in enumerate(value))


def patterns(schema: Any, pointer: str = "") -> Iterator[tuple[str, str]]:
    """Every regular expression of ``schema`` (``pattern`` values, ``patternProperties`` keys),
    each with the pointer of the field holding it."""
    for where, node in subschemas(schema, pointer):
        if isinstance(node.get("pattern"), str):
            yield f"{where}/pattern", node["pattern"]
        pattern_properties = node.get("patternProperties")
        if isinstance(pattern_properties, Mapping):
            for key in pattern_properties:
                yield f"{where}/patternProperties/{escape(str(key))}", str(key)


def schema_limit_problems(schema: Any, what: str) -> list[str]:
    """Why ``schema`` (the ``what`` schema) is over a limit; empty if it is within all of them."""
    problems: list[str] = []
    depth = _depth(schema)
    if depth > MAX_SCHEMA_DEPTH:
        problems.append(
            f"the {what} schema nests {depth} levels deep, over the limit of {MAX_SCHEMA_DEPTH}; "
            "flatten it (a $defs entry can be referenced with $ref)"
        )
        return problems  # the counts below would walk what we refuse
    size = len(json.dumps(schema, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    if size > MAX_SCHEMA_BYTES:
        problems.append(
            f"the {what} schema is {size} bytes as JSON, over the limit of {MAX_SCHEMA_BYTES}; "
            "make it smaller (long descriptions belong in docs)"
        )
    count = 0
    for _, node in subschemas(schema):
        for key in ("properties", "patternProperties"):
            if isinstance(node.get(key), Mapping):
                count += len(node[key])
    if count > MAX_SCHEMA_PROPERTIES:
        problems.append(
            f"the {what} schema declares {count} properties, over the limit of {MAX_SCHEMA_PROPERTIES}; "
            "split the contract"
        )
    return problems
