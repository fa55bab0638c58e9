"""What a schema ``pattern`` implies about the strings it admits, for the compatibility checker.

Two things, both conservative:

- :func:`implied_lengths`: the lengths (in characters, as ``minLength``/``maxLength`` count them)
  of every string the pattern matches: at least the shortest match; at most the longest match
  when the pattern is anchored at both ends (``^...$``), since on RE2 (the engine contracts use,
  ``contracts/regex.py``) ``$`` matches only at the end of the text. None when the pattern uses
  syntax whose reading could differ between RE2 and the parser used here (Python's), or flags.
- :func:`samples`: a few strings built from the pattern (every repetition at its minimum, then
  growing), each checked with RE2: candidates for an example value, which the checker still
  validates against the whole schema before naming it.
"""

from __future__ import annotations

import importlib
import re
from functools import lru_cache
from typing import Any

from contracts import regex

# Python's own regex parser (``sre_parse`` before 3.11): private, but it is the only parser of
# this syntax at hand; anything unexpected from it makes this module answer "cannot tell".
_p: Any = importlib.import_module("re._parser")

__all__ = ["implied_lengths", "samples"]

# Syntax read differently by RE2 and Python's parser, or not at all by one of them: POSIX classes
# ("[[:alpha:]]" is one character in RE2, several in Python), Unicode classes, \Q...\E, \C, \z,
# "{,n}" (a literal in RE2), and every inline flag group but "(?:" and "(?P<" (multi-line mode
# makes ^ and $ match at line ends).
_UNSAFE = re.compile(r"\[:|\\[pPQECzZ]|\{,|\(\?(?!:|P<)")
_UNBOUNDED = 1 << 31
_BEGIN = {"AT_BEGINNING", "AT_BEGINNING_STRING"}
_END = {"AT_END", "AT_END_STRING"}


def _parse(pattern: str) -> Any | None:
    if not isinstance(pattern, str) or _UNSAFE.search(pattern):
        return None
    if regex.unsupported(pattern) is not None:
        return None  # not run on RE2: no reasoning about it
    try:
        return _p.parse(pattern)
    except Exception:  # re.error, RecursionError, OverflowError: no reasoning about it
        return None


@lru_cache(maxsize=1024)
def implied_lengths(pattern: str) -> tuple[int, int | None] | None:
    """``(shortest, longest)`` length of the strings ``pattern`` admits (``longest`` None:
    unbounded), or None when this module cannot tell."""
    tree = _parse(pattern)
    if tree is None:
        return None
    try:
        low, high = tree.getwidth()
    except Exception:
        return None
    items = list(tree)
    anchored = len(items) >= 2 and _at(items[0]) in _BEGIN and _at(items[-1]) in _END
    return int(low), (int(high) if anchored and high < _UNBOUNDED else None)


def _at(item: tuple[Any, Any]) -> str:
    op, arg = item
    return str(arg) if str(op) == "AT" else ""


@lru_cache(maxsize=1024)
def samples(pattern: str) -> tuple[str, ...]:
    """Strings ``pattern`` matches on RE2, shortest first (possibly none)."""
    tree = _parse(pattern)
    if tree is None:
        return ()
    found: list[str] = []
    for extra in (0, 1, 2, 3, 5, 8, 13, 40):
        try:
            text = "".join(_build(list(tree), extra, 0, [_MAX_SAMPLE_WORK]))
        except _CannotBuildError:
            continue
        if text not in found and regex.search(pattern, text):
            found.append(text)
    return tuple(found)


class _CannotBuildError(Exception):
    pass


# The work one sample may take (characters produced plus repetitions expanded): nested
# repetitions multiply (``^(((a*)*)*)*$`` grown by 40 is 40**4 characters), so a sample that
# would need more is skipped rather than built.
_MAX_SAMPLE_WORK = 4096


_CATEGORY_CHARS = {
    "CATEGORY_DIGIT": "0",
    "CATEGORY_NOT_DIGIT": "a",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_SPACE": "a",
    "CATEGORY_WORD": "a",
    "CATEGORY_NOT_WORD": "-",
}


def _build(items: list[tuple[Any, Any]], extra: int, depth: int, budget: list[int]) -> list[str]:
    """One string for a parsed sequence: every repetition ``extra`` times over its minimum.
    ``budget`` holds the work left (see _MAX_SAMPLE_WORK); spending it all abandons the sample."""
    if depth > 50:
        raise _CannotBuildError
    out: list[str] = []
    for op, arg in items:
        budget[0] -= 1
        if budget[0] < 0:
            raise _CannotBuildError
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "NOT_LITERAL":
            out.append("a" if arg != ord("a") else "b")
        elif name == "ANY":
            out.append("a")
        elif name == "AT":
            continue
        elif name == "IN":
            out.append(_member(arg))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, inner = arg
            count = low + extra if high >= _UNBOUNDED else min(low + extra, high)
            count = min(count, 1000)
            if count:
                # Built once: the same text every time, repeated within the budget.
                piece = _build(list(inner), extra, depth + 1, budget)
                budget[0] -= len(piece) * count
                if budget[0] < 0:
                    raise _CannotBuildError
                out.extend(piece * count)
        elif name == "SUBPATTERN":
            out.extend(_build(list(arg[-1]), extra, depth + 1, budget))
        elif name == "ATOMIC_GROUP":
            out.extend(_build(list(arg), extra, depth + 1, budget))
        elif name == "BRANCH":
            branches = arg[1]
            # The first branch for the shortest strings, the last one while growing.
            out.extend(_build(list(branches[0 if extra == 0 else -1]), extra, depth + 1, budget))
        else:  # GROUPREF, ASSERT, ... (RE2 refuses them anyway)
            raise _CannotBuildError
    return out


def _member(items: list[tuple[Any, Any]]) -> str:
    """A character of a character class."""
    if items and str(items[0][0]) == "NEGATE":
        rest = items[1:]
        for candidate in "a0-_ xZ":
            if not any(_in(candidate, op, arg) for op, arg in rest):
                return candidate
        raise _CannotBuildError
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            return chr(arg)
        if name == "RANGE":
            return chr(arg[0])
        if name == "CATEGORY" and str(arg) in _CATEGORY_CHARS:
            return _CATEGORY_CHARS[str(arg)]
    raise _CannotBuildError


def _in(char: str, op: Any, arg: Any) -> bool:
    name = str(op)
    if name == "LITERAL":
        return bool(ord(char) == arg)
    if name == "RANGE":
        return bool(arg[0] <= ord(char) <= arg[1])
    if name == "CATEGORY":
        return True  # unsure: treat the character as a member, so it is not picked
    return True
