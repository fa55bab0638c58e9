"""Compact JSON text, fast: orjson where it writes exactly what the standard library would
mean, the standard library where it would not (docs/performance.md, "Large payloads"). And the
same for reading (``loads``) and for a value that must be JSON's own types (``plain``).

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

import copyreg
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


# An integer or a mantissa of 19 digits or more (orjson reads an integer beyond 64 bits as a
# float) is found as a run of 19 zeros once every digit is a zero: a substring search, where a
# regex for 19 digits costs as much as json's whole decoding.
_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19


def loads(text: str) -> Any:
    """``json.loads(text)``: the same value, or the same ``ValueError``. orjson (~3x faster on a
    large text) reads it when it reads the same value: it refuses NaN and Infinity, a lone
    surrogate escape, a number too large for a double and nesting past 1,024 levels, which ``json``
    then reads (or refuses) itself; a run of 19 digits (an integer beyond 64 bits, or a mantissa
    longer than a double holds) goes to ``json`` without trying."""
    data = text.encode("utf-8", "surrogatepass")  # a lone surrogate: not UTF-8, orjson refuses it
    if _LONG_NUMBER not in data.translate(_DIGITS):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


# orjson writes these natively where ``json`` would hand them to ``default``; with these options
# (and no ``default``) they make it raise, as anything else that is not JSON does.
_ONLY_JSON = (
    orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
)
# In a pickle of protocol 4 or 5, an object of a class that is not one of pickle's own types names
# its class (the first time) with STACK_GLOBAL, right after the module's and the class's names:
# each a string just memoized (MEMOIZE) or one fetched from the memo (BINGET, LONG_BINGET). The
# opcode alone would also match inside UTF-8 text ("ē" is C4 93).
_STACK_GLOBAL, _MEMOIZE, _BINGET, _LONG_BINGET = 0x93, 0x94, ord("h"), ord("j")


def _names_a_class(data: bytes) -> bool:
    """Whether the pickle ``data`` may name a class: never False when it does."""
    at = data.find(_STACK_GLOBAL)
    while at != -1:
        if (
            (at >= 1 and data[at - 1] == _MEMOIZE)
            or (at >= 2 and data[at - 2] == _BINGET)
            or (at >= 5 and data[at - 5] == _LONG_BINGET)
        ):
            return True
        at = data.find(_STACK_GLOBAL, at + 1)
    return False


def plain(value: Any) -> str | None:
    """Compact JSON text of ``value`` when it is made of JSON's own types only (dicts with str
    keys, lists and tuples, str, int within 64 bits, finite float, bool, None; no subclasses), so
    that ``json.dumps`` with any ``default`` would write the same value; None for anything else.

    The text is orjson's: UTF-8 rather than ``\\u`` escapes, floats in their shortest form. Two
    types orjson writes natively give themselves away only in a pickle (an enum member, written by
    its value where ``default=str`` would write its name; a UUID), and so does a float that is not
    finite (written as ``null``); the pickle costs about a fifth of ``json``'s encoding."""
    try:
        text = orjson.dumps(value, option=_ONLY_JSON)
    except TypeError:
        return None
    if getattr(copyreg, "_extension_registry", True):  # classes pickled by a code (EXT1/2/4), not by name
        return None
    try:
        data = pickle.dumps(value, protocol=5)
    except Exception:
        return None
    if _names_a_class(data) or _NON_FINITE.search(data) is not None:
        return None
    return text.decode()
