"""Regular expressions of schemas run on RE2, a linear-time engine (docs/contracts.md, "Regular
expressions").

A ``pattern`` or ``patternProperties`` key comes from a team's contract, and the string it is
matched against from another team's run input or an agent's output. Python's ``re`` backtracks: a
pattern such as ``^(a+)+$`` takes time doubling with every character of a string that almost
matches, and that time is spent on the coordinator's event loop. RE2 matches in time linear in the
string, at the price of lookaround and backreferences, which it cannot express.

jsonschema matches these keywords with ``re.search`` in ``jsonschema._keywords`` (``pattern``,
``patternProperties``) and ``jsonschema._utils`` (which properties ``additionalProperties`` and
``unevaluatedProperties`` see as matched); :func:`install` points the ``re`` those modules use at
:data:`ENGINE`, which searches with RE2. A pattern RE2 cannot compile is refused when a contract or
workflow is registered (:func:`unsupported`); one registered before that rule existed still runs,
on Python's ``re``, and the coordinator lists it in a warning at start.
"""

from __future__ import annotations

import re
from functools import lru_cache
from types import ModuleType
from typing import Any

import re2

__all__ = ["DIALECT", "ENGINE", "install", "search", "unsupported"]

DIALECT = "RE2 (https://github.com/google/re2/wiki/Syntax)"

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is our answer to give, not a line on stderr


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> Any:
    """The RE2 program of ``pattern``, or Python's ``re`` one if RE2 cannot run it (a pattern
    registered before they were refused; see the module docstring)."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error:
        return re.compile(pattern)


def unsupported(pattern: str) -> str | None:
    """Why RE2 cannot run ``pattern`` (lookaround, backreference, bad syntax), or None if it can."""
    try:
        re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else str(exc)
        return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    return None


def search(pattern: str, string: str, flags: int = 0) -> Any:
    """``re.search`` on RE2 (``flags`` are not used by jsonschema and not supported)."""
    if flags:
        return re.search(pattern, string, flags)
    return _compile(pattern).search(string)


class _Engine(ModuleType):
    """Stands in for the ``re`` module inside jsonschema: ``search`` runs on RE2, the rest is ``re``."""

    def __init__(self) -> None:
        super().__init__("accord_re2")

    search = staticmethod(search)

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)


ENGINE = _Engine()


def install() -> None:
    """Make jsonschema match ``pattern``/``patternProperties`` with RE2 (idempotent)."""
    from jsonschema import _keywords, _legacy_keywords, _utils

    for module in (_keywords, _legacy_keywords, _utils):
        module.re = ENGINE


install()
