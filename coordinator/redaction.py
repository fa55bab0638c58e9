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

__all__ = ["REDACTED", "redact_paths", "scrub_values"]

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
