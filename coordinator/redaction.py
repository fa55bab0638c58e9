"""Masking a contract's ``sensitive`` fields (``input.card_token``) in payloads.

One implementation for every place that shows a payload: the API redacts the fields for viewers
of another team (``coordinator.api.convert``), the UI masks them for every viewer, owners
included (``coordinator.web._redact``), and the span scrubber writes the same mask
(``coordinator.telemetry.scrub``). A plain-value module, so each of those layers may import it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

__all__ = [
    "REDACTED",
    "redact_flows",
    "redact_paths",
    "redact_step_input",
    "scalar_values",
    "scrub_text",
    "scrub_values",
]

REDACTED = "[redacted]"


def _maskable(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool) and str(value) != ""


def redact_paths(value: Any, side: str, sensitive: Iterable[str], found: set[str] | None = None) -> Any:
    """A copy of the payload ``value`` with each sensitive path on ``side`` (``input`` or
    ``output``: ``input.card.number`` -> ``value["card"]["number"]``) replaced by ``REDACTED``;
    ``value`` itself is not changed. Each scalar masked is added to ``found`` when given, so
    callers can mask the same value where it reappears (``scrub_values``)."""
    paths = [p.split(".")[1:] for p in sensitive if p.split(".", 1)[0] == side]
    if not paths or not isinstance(value, dict):
        return value
    value = copy.deepcopy(value)
    for path in paths:
        node: Any = value
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and path and path[-1] in node and node[path[-1]] != REDACTED:
            if found is not None and _maskable(node[path[-1]]):
                found.add(str(node[path[-1]]))
            node[path[-1]] = REDACTED
    return value


def scrub_values(value: Any, secrets: set[str]) -> Any:
    """``value`` with every scalar equal to one of ``secrets`` replaced by ``REDACTED``."""
    if not secrets:
        return value
    if isinstance(value, dict):
        return {k: scrub_values(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_values(v, secrets) for v in value]
    if _maskable(value) and str(value) in secrets:
        return REDACTED
    return value


def redact_flows(value: Any, prefix: str, flows: Iterable[str], found: set[str] | None = None) -> Any:
    """A copy of ``value`` (the payload at ``prefix``: ``steps.pay.input``, ``output``) with each
    place a sensitive value flows to (``steps.pay.input.card``, the composition checker's
    ``sensitive_flows``) replaced by ``REDACTED``; list elements are named by index or ``*``.
    Each scalar masked is added to ``found`` when given."""
    paths = [f[len(prefix) :].split(".")[1:] for f in flows if f == prefix or f.startswith(prefix + ".")]
    if not paths or value is None:
        return value
    if any(not path for path in paths):  # the whole payload
        _collect(value, found)
        return REDACTED
    value = copy.deepcopy(value)
    for path in paths:
        _mask_at(value, path, found)
    return value


def redact_step_input(step_id: str, value: Any, flows: Iterable[str], found: set[str] | None = None) -> Any:
    """``redact_flows`` for a step's input. A for_each step's items (``label[0]``) take the flows
    of its input template; the step itself (``label``), whose input is the array it went over,
    those of its ``for_each``."""
    flows = list(flows)
    base, bracket, _ = step_id.partition("[")
    value = redact_flows(value, f"steps.{base}.input", flows, found)
    return value if bracket else redact_flows(value, f"steps.{base}.for_each", flows, found)


def scalar_values(*values: Any) -> set[str]:
    """Every scalar inside ``values`` as text: what a log line about a payload must not quote
    (``scrub_text`` with them leaves the message's reasons and paths)."""
    found: set[str] = set()
    for value in values:
        _collect(value, found)
    return found


def _mask_at(node: Any, path: list[str], found: set[str] | None) -> None:
    part, rest = path[0], path[1:]
    keys: list[Any]
    if isinstance(node, dict):
        keys = [part] if part in node else []
    elif isinstance(node, list):
        indexes = range(len(node)) if part == "*" else [int(part)] if part.isdigit() else []
        keys = [k for k in indexes if k < len(node)]
    else:
        return
    for key in keys:
        if rest:
            _mask_at(node[key], rest, found)
        elif node[key] != REDACTED:
            _collect(node[key], found)
            node[key] = REDACTED


def _collect(value: Any, found: set[str] | None) -> None:
    if found is None:
        return
    if isinstance(value, dict):
        for v in value.values():
            _collect(v, found)
    elif isinstance(value, list):
        for v in value:
            _collect(v, found)
    elif _maskable(value):
        found.add(str(value))


# Below this length a value is only masked where it is the whole text: "contains" on a short
# value would blank out unrelated text (as coordinator.telemetry.scrub does for spans).
_MIN_CONTAINED = 4


def scrub_text(text: str, values: set[str]) -> str:
    """``text`` (an error message) with every sensitive value in it replaced by ``REDACTED``."""
    if not values or not text:
        return text
    if text in values:
        return REDACTED
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= _MIN_CONTAINED and value in text:
            text = text.replace(value, REDACTED)
    return text
