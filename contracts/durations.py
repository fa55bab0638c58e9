"""Durations: one grammar wherever Accord reads one (contract and workflow files, the agent
config, engine adapters' ``with:`` blocks, the coordinator's ``--span-retention`` and
``accord run --timeout``)::

    duration := number                  a number of seconds: 30, 1.5
              | (number unit)+          500ms, 30s, 2m, 1h, 2d, 1w, 1m30s, 1h 30m
    number   := digits ["." digits]     (also "1." and ".5")
    unit     := ms | s | m | h | d | w  (in any case)

White space may stand around the duration and between its parts. An int or a float (not a
bool) is a number of seconds as well. A duration is never negative.

Contract and workflow files are stricter than this grammar: their JSON Schemas ask for a string
with a unit, so a bare ``timeout: 30`` there is reported with "add a unit, e.g. 30s".
"""

from __future__ import annotations

import math
import re

from contracts.errors import DurationError

__all__ = ["DurationError", "parse_duration"]

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_BARE = re.compile(rf"\s*({_NUMBER})\s*")
_PART = re.compile(rf"\s*({_NUMBER})\s*(ms|s|m|h|d|w)\s*", re.IGNORECASE)
_EXAMPLES = "expected e.g. 30s, 2m, 1h, 500ms or 1m30s (units ms, s, m, h, d, w; a bare number is seconds)"


def parse_duration(value: str | float, *, what: str = "") -> float:
    """Seconds in ``value`` (see the module's grammar): ``"1m30s"`` -> 90.0, ``"500ms"`` -> 0.5,
    ``"30"`` and ``30`` -> 30.0.

    Raises ``DurationError`` (a ``ValueError``) saying what was wrong, after ``what:`` when
    given (the option or field that held the value, e.g. ``--span-retention``).
    """
    prefix = f"{what}: " if what else ""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DurationError(f"{prefix}{value!r} is not a duration; {_EXAMPLES}")
    if not isinstance(value, str):
        if not math.isfinite(value) or value < 0:
            raise DurationError(f"{prefix}{value!r} is not a duration: it must be a number >= 0")
        return float(value)
    if not value.strip():
        raise DurationError(f"{prefix}empty; {_EXAMPLES}")
    bare = _BARE.fullmatch(value)
    if bare:
        return _finite(float(bare[1]), value, prefix)
    total, position = 0.0, 0
    for part in _PART.finditer(value):
        if part.start() != position:
            break
        total += float(part[1]) * _UNIT_SECONDS[part[2].lower()]
        position = part.end()
    if position == 0 or position != len(value):
        raise DurationError(f"{prefix}{value!r} is not a duration; {_EXAMPLES}")
    return _finite(total, value, prefix)


def _finite(seconds: float, value: str, prefix: str) -> float:
    if not math.isfinite(seconds):
        raise DurationError(f"{prefix}{value[:40]!r} is too long a duration")
    return seconds


def format_duration(seconds: float) -> str:
    """``seconds`` as a duration a person reads and ``parse_duration`` reads back: ``2d``,
    ``1h30m``, ``45s``, ``500ms``."""
    total_ms = max(0, round(seconds * 1000))
    if total_ms < 1000:
        return f"{total_ms}ms"
    parts = []
    rest = total_ms // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    if total_ms % 1000:
        parts.append(f"{total_ms % 1000}ms")
    return "".join(parts)
