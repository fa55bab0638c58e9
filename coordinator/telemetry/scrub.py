"""Keep sensitive values and secrets out of stored spans (defence in depth).

Agents redact before they export; the coordinator does not rely on it. It knows a run's step
payloads and the contracts' ``sensitive`` fields, so the OTLP receiver drops any attribute value
(and any part of a status message or event attribute) that equals or contains one of those values.
Attributes whose key names a credential (``password``, ``authorization``...) are redacted whatever
their value, because an agent's secrets never reach the coordinator in a payload it could compare.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from functools import lru_cache
from typing import Any

from coordinator.redaction import REDACTED
from coordinator.store.records import SpanRecord

# Below this length a value is only redacted where it is the whole attribute: "contains" on a
# 2-character value would blank out unrelated text.
MIN_CONTAINED_LENGTH = 4

_SECRET_KEY = re.compile(
    r"(password|passwd|secret|token|authorization|api[_-]?key|credential|cookie|private[_-]?key)",
    re.IGNORECASE,
)


def values_at(document: Any, path: str) -> list[Any]:
    """The values at a dotted ``path`` ("input.card.number") in a JSON document. Lists fan out
    (``items.sku`` reads every item's sku); ``[3]``/``[*]`` segments index explicitly."""
    current: list[Any] = [document]
    for raw in path.split("."):
        name, _, index = raw.partition("[")
        nxt: list[Any] = []
        for value in current:
            if name:
                targets = value if isinstance(value, list) else [value]
                for target in targets:
                    if isinstance(target, Mapping) and name in target:
                        nxt.append(target[name])
            else:
                nxt.append(value)
        if index:
            index = index.rstrip("]")
            indexed: list[Any] = []
            for value in nxt:
                if not isinstance(value, list):
                    continue
                if index == "*":
                    indexed.extend(value)
                elif index.isdigit() and int(index) < len(value):
                    indexed.append(value[int(index)])
            nxt = indexed
        current = nxt
    return current


def leaf_strings(value: Any) -> set[str]:
    """Every scalar inside ``value`` as text (a sensitive object makes all its leaves sensitive)."""
    out: set[str] = set()
    if isinstance(value, Mapping):
        for item in value.values():
            out |= leaf_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            out |= leaf_strings(item)
    elif isinstance(value, bool) or value is None:
        pass
    else:
        text = str(value)
        if text:
            out.add(text)
    return out


def sensitive_values(sensitive_paths: Iterable[str], *, input: Any = None, output: Any = None) -> set[str]:
    """The values of a step's sensitive fields. Paths are the contract's form, rooted at
    ``input.`` or ``output.`` ("input.card_token")."""
    roots = {"input": input, "output": output}
    found: set[str] = set()
    for path in sensitive_paths:
        root, _, rest = path.partition(".")
        if root not in roots or roots[root] is None:
            continue
        for value in values_at(roots[root], rest) if rest else [roots[root]]:
            found |= leaf_strings(value)
    return found


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    # Cached: span attribute keys repeat across every span (accord.run_id, http.url...), and the
    # search ran once per attribute of every span the coordinator keeps.
    return bool(_SECRET_KEY.search(key))


class Scrubber:
    """Redacts a fixed set of sensitive values from span records."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._exact = frozenset(v for v in values if v)
        # Longest first, so a value that contains a shorter one is replaced whole.
        self._contained = sorted(
            (v for v in self._exact if len(v) >= MIN_CONTAINED_LENGTH), key=len, reverse=True
        )

    def _hit(self, text: str) -> bool:
        return text in self._exact or any(v in text for v in self._contained)

    def text(self, text: str) -> str:
        """``text`` with every sensitive value in it replaced (for messages worth keeping)."""
        if text in self._exact:
            return REDACTED
        for value in self._contained:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return REDACTED if self._exact and self._hit(value) else value
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int | float):
            return REDACTED if str(value) in self._exact else value
        if isinstance(value, Mapping):
            return self.attributes(value)
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def attributes(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        return {
            key: REDACTED if is_secret_key(key) and value not in ("", None) else self.value(value)
            for key, value in attributes.items()
        }

    def record(self, record: SpanRecord) -> SpanRecord:
        if not self._exact and not _names_secret(record):
            # Nothing to compare and no credential-named key: the span as it is (most spans).
            return record
        return replace(
            record,
            name=self.text(record.name),
            status_message=self.text(record.status_message),
            attributes=self.attributes(record.attributes),
            events=[
                {
                    **event,
                    "name": self.text(str(event.get("name", ""))),
                    "attributes": self.attributes(event.get("attributes") or {}),
                }
                for event in record.events
            ],
        )


# Attribute values with nothing nested to look into (most of them).
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _names_secret(record: SpanRecord) -> bool:
    """Whether any attribute key of the span or its events, at any depth, names a credential."""

    def in_mapping(attributes: Mapping[str, Any]) -> bool:
        for key, value in attributes.items():
            if is_secret_key(key):
                return True
            if type(value) not in _SCALARS and in_value(value):
                return True
        return False

    def in_value(value: Any) -> bool:
        if isinstance(value, Mapping):
            return in_mapping(value)
        if isinstance(value, list | tuple):
            return any(in_value(item) for item in value)
        return False

    return in_mapping(record.attributes) or any(
        in_mapping(event.get("attributes") or {}) for event in record.events
    )
