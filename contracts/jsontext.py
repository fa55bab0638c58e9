"""Compact JSON text, fast: orjson where it writes exactly what the standard library would
mean, the standard library where it would not (docs/performance.md, "Large payloads").

orjson encodes a 64 KiB payload about ten times faster than ``json``. It differs in four ways, and
``compact`` keeps to the standard library's meaning in each:

- NaN and Infinity become ``null`` in orjson, while ``json`` writes ``NaN`` and ``Infinity``.
  Payloads cannot hold them (``coordinator.api.validate`` refuses them), but a workflow's literal
  or a contract's schema from YAML can. So when orjson's text holds a ``null``, the value is
  looked at for a float that is not finite (``_may_hold_non_finite``), and ``json`` encodes one
  that may have it.
- An integer beyond 64 bits, a dict key that is not a string, a string with a lone surrogate and
  nesting deeper than 254 levels make orjson raise. ``json`` encodes those.
- Text is UTF-8 rather than ASCII with ``\\u`` escapes, and floats are written in their shortest
  form (``1e-7``, not ``1e-07``). Every JSON reader reads the same values from both.
- Dataclasses are encoded field by field, as ``dataclasses.asdict`` and then ``json`` would.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable
from typing import Any

import orjson

_STANDARD = json.JSONEncoder(separators=(",", ":"))


def compact(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """``value`` as compact JSON text (``json.dumps(value, separators=(",", ":"))``, with
    ``default`` for what JSON has no type for); TypeError for a value neither can encode."""
    try:
        text = orjson.dumps(value, default=default)
    except TypeError:  # orjson.JSONEncodeError: see the module's docstring
        return _standard(value, default)
    if b"null" in text and _may_hold_non_finite(value):
        return _standard(value, default)
    return text.decode()


def _standard(value: Any, default: Callable[[Any], Any] | None) -> str:
    if default is None:
        return _STANDARD.encode(value)
    return json.JSONEncoder(separators=(",", ":"), default=default).encode(value)


# A float in a pickle: BINFLOAT ("G") and its 8 bytes, big-endian. Its first 12 bits after the
# sign are all ones exactly when it is NaN or infinite.
_NON_FINITE = re.compile(rb"G[\x7f\xff][\xf0-\xff]")


def _may_hold_non_finite(value: Any) -> bool:
    """Whether ``value`` may hold a float that is NaN or infinite: never False when it does.

    Pickling a 64 KiB payload costs a fifth of encoding it with ``json``, where a walk through it
    in Python would cost twice as much. Every float is pickled as BINFLOAT, also within dataclasses.
    A match that is no float (bytes of a string that happen to look like one) only sends the value
    to the standard library, whose text is right too. A value pickle cannot take goes there as
    well."""
    try:
        data = pickle.dumps(value, protocol=5)
    except Exception:
        return True
    return _NON_FINITE.search(data) is not None
