"""Semantic versions and version ranges of contracts.

Versions are ``MAJOR.MINOR.PATCH`` (semver 2.0). Ranges use npm syntax with one extension, a comma
as an alternative to a space between comparators:

=================  ======================================
``^1``, ``1``      any ``1.x.x``
``~1.2``, ``1.2``  any ``1.2.x``
``1.2.3``          exactly ``1.2.3``
``>=1.2,<2``       ``1.2.0`` up to (excluding) ``2.0.0``
=================  ======================================

A workflow step's range must stay within one major version (see :func:`single_major`): majors are
incompatible by definition, so a step that could land on either cannot be type-checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import semantic_version

from contracts.errors import VersionError

__all__ = [
    "VersionRange",
    "format_ref",
    "is_name",
    "is_version",
    "majors_of",
    "parse_range",
    "parse_version",
    "resolve",
    "single_major",
    "split_ref",
]

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*/[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")


MAX_VERSION_PART = 2**31 - 1  # what the wire (int32 majors) and every store can hold


def is_name(text: str) -> bool:
    """True for a ``team/name`` of a contract or workflow (lowercase letters, digits and '-')."""
    return bool(_NAME_RE.match(text))


def parse_version(text: str) -> semantic_version.Version:
    """Parse an exact version such as ``1.2.0``; raise VersionError saying what is expected."""
    if not isinstance(text, str):
        raise VersionError(f"version {text!r} must be a string like 1.2.0 (quote it in YAML)")
    try:
        version = semantic_version.Version(text.strip())
    except ValueError:
        raise VersionError(
            f"'{text}' is not a semantic version; expected MAJOR.MINOR.PATCH such as 1.2.0"
        ) from None
    if max(version.major, version.minor, version.patch) > MAX_VERSION_PART:
        raise VersionError(f"'{text[:60]}': each of MAJOR, MINOR and PATCH must be below 2^31")
    return version


def is_version(text: str) -> bool:
    """True if ``text`` is an exact semantic version."""
    try:
        parse_version(text)
    except VersionError:
        return False
    return True


@dataclass(frozen=True)
class VersionRange:
    """A parsed version range; ``text`` is what the user wrote."""

    text: str
    spec: semantic_version.NpmSpec

    def matches(self, version: str | semantic_version.Version) -> bool:
        """True if ``version`` lies in this range."""
        parsed = version if isinstance(version, semantic_version.Version) else parse_version(version)
        return parsed in self.spec

    def __str__(self) -> str:
        return self.text


@lru_cache(maxsize=1024)
def parse_range(text: str) -> VersionRange:
    """Parse a range such as ``^1``, ``~1.2``, ``>=1.2,<2``, ``1``, ``1.2`` or ``1.2.3``."""
    if not isinstance(text, str) or not text.strip():
        raise VersionError(
            f"version range {text!r} is empty; expected e.g. ^1, ~1.2, >=1.2,<2, 1, 1.2 or 1.2.3"
        )
    normalized = re.sub(r"\s*,\s*", " ", text.strip())
    try:
        spec = semantic_version.NpmSpec(normalized)
    except ValueError:
        raise VersionError(
            f"'{text}' is not a version range; expected e.g. ^1, ~1.2, >=1.2,<2, 1, 1.2 or 1.2.3"
        ) from None
    return VersionRange(text=text.strip(), spec=spec)


def resolve(range_text: str | VersionRange, available: Iterable[str]) -> str | None:
    """The newest version in ``available`` that ``range_text`` matches, or None."""
    version_range = range_text if isinstance(range_text, VersionRange) else parse_range(range_text)
    best: semantic_version.Version | None = None
    best_text: str | None = None
    for candidate in available:
        try:
            parsed = parse_version(candidate)
        except VersionError:
            continue
        if parsed in version_range.spec and (best is None or parsed > best):
            best, best_text = parsed, candidate
    return best_text


def _bounds(clause: Any) -> list[tuple[int, int | None]]:
    """Major-version intervals [low, high] (high None = unbounded) a clause can match."""
    kind = type(clause).__name__
    if kind == "AnyOf":
        return [interval for sub in clause.clauses for interval in _bounds(sub)]
    if kind == "AllOf":
        low, high = 0, None
        for sub in clause.clauses:
            for sub_low, sub_high in _bounds(sub):
                low = max(low, sub_low)
                high = sub_high if high is None else (high if sub_high is None else min(high, sub_high))
        return [(low, high)]
    if kind == "Range":
        target: semantic_version.Version = clause.target
        operator: str = clause.operator
        if operator == "==":
            return [(target.major, target.major)]
        if operator in (">=", ">"):
            return [(target.major, None)]
        if operator == "<=":
            return [(0, target.major)]
        if operator == "<":
            at_major_start = target.minor == 0 and target.patch == 0 and not target.prerelease
            return [(0, target.major - 1 if at_major_start else target.major)]
        return [(0, None)]  # "!=" excludes one version only
    if kind == "Always":
        return [(0, None)]
    return []  # "Never"


def majors_of(range_text: str | VersionRange) -> frozenset[int]:
    """The set of major versions a range can match (``^1`` -> {1}, ``>=1,<3`` -> {1, 2}).

    Raises VersionError for a range with no upper bound (``>=1.2``, ``*``): it could match every
    future major.
    """
    version_range = range_text if isinstance(range_text, VersionRange) else parse_range(range_text)
    majors: set[int] = set()
    for low, high in _bounds(version_range.spec.clause):
        if high is None:
            raise VersionError(
                f"range '{version_range.text}' has no upper bound, so it can match every future "
                f"major version; bound it, e.g. ^{low} or >={low}.0.0,<{low + 1}"
            )
        majors.update(range(low, high + 1))
    return frozenset(majors)


def single_major(range_text: str | VersionRange) -> int:
    """The one major version a range stays within; VersionError if it spans several or none."""
    version_range = range_text if isinstance(range_text, VersionRange) else parse_range(range_text)
    majors = majors_of(version_range)
    if len(majors) != 1:
        if not majors:
            raise VersionError(f"range '{version_range.text}' matches no version at all")
        listed = ", ".join(str(m) for m in sorted(majors))
        raise VersionError(
            f"range '{version_range.text}' spans major versions {listed}; a range must stay "
            f"within one major (e.g. ^{min(majors)})"
        )
    return next(iter(majors))


def split_ref(text: str) -> tuple[str, str]:
    """Split ``team/name@RANGE`` into ``("team/name", "RANGE")``, checking both parts."""
    if not isinstance(text, str) or "@" not in text:
        raise VersionError(f"'{text}' must be 'team/name@RANGE', e.g. payments/charge-card@^1")
    name, _, range_text = text.partition("@")
    if not _NAME_RE.match(name):
        raise VersionError(
            f"'{name}' is not a contract name; expected 'team/name' in lowercase letters, "
            "digits and '-' (e.g. payments/charge-card)"
        )
    parse_range(range_text)
    return name, range_text.strip()


def format_ref(name: str, version_or_range: str) -> str:
    """``team/name@VERSION``."""
    return f"{name}@{version_or_range}"
