"""Durations in agent configs: the contract files' form (``500ms``, ``2m``, ``1m30s``) plus,
for convenience, a bare number of seconds (``30``, ``1.5``)."""

from __future__ import annotations

from typing import Any

from contracts.loader import parse_duration as parse_duration_text


def parse_duration(value: Any) -> float | None:
    """Seconds, or None when ``value`` is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text) if text.replace(".", "", 1).isdigit() else parse_duration_text(text)
        except ValueError:
            return None
    return None
