"""Versions and ranges: parsing, resolution, and the one-major rule of workflow steps."""

from __future__ import annotations

import pytest

from contracts.errors import VersionError
from contracts.versions import (
    is_version,
    majors_of,
    parse_range,
    parse_version,
    resolve,
    single_major,
    split_ref,
)

AVAILABLE = ["1.0.0", "1.2.0", "1.2.7", "1.3.0", "2.0.0", "2.1.0", "0.2.1"]


def test_parse_version() -> None:
    assert str(parse_version("1.2.3")) == "1.2.3"
    assert is_version("1.0.0-rc.1")
    assert not is_version("1.2")


@pytest.mark.parametrize("bad", ["1.2", "v1.2.3", "one", ""])
def test_bad_version_says_what_is_expected(bad: str) -> None:
    with pytest.raises(VersionError, match=r"MAJOR\.MINOR\.PATCH"):
        parse_version(bad)


def test_non_string_version_asks_for_quotes() -> None:
    with pytest.raises(VersionError, match="quote it"):
        parse_version(1.2)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("range_text", "expected"),
    [
        ("^1", "1.3.0"),
        ("1", "1.3.0"),
        ("~1.2", "1.2.7"),
        ("1.2", "1.2.7"),
        ("1.2.0", "1.2.0"),
        (">=1.2,<2", "1.3.0"),
        (">=1.2, <1.3", "1.2.7"),
        ("^2", "2.1.0"),
        ("^0.2", "0.2.1"),
        ("^3", None),
        ("1.2.5", None),
    ],
)
def test_resolve_picks_newest_match(range_text: str, expected: str | None) -> None:
    assert resolve(range_text, AVAILABLE) == expected


def test_resolve_ignores_unparseable_candidates() -> None:
    assert resolve("^1", ["garbage", "1.0.0"]) == "1.0.0"


@pytest.mark.parametrize(
    ("range_text", "majors"),
    [
        ("^1", {1}),
        ("~1.2", {1}),
        ("1.2.3", {1}),
        (">=1.2,<2", {1}),
        (">=1,<3", {1, 2}),
        (">=1.0.0,<2.0.1", {1, 2}),
        ("^0.2", {0}),
    ],
)
def test_majors_of(range_text: str, majors: set[int]) -> None:
    assert majors_of(range_text) == majors


def test_unbounded_range_has_no_major_set() -> None:
    with pytest.raises(VersionError, match="no upper bound"):
        majors_of(">=1.2")


def test_single_major() -> None:
    assert single_major("^2") == 2
    with pytest.raises(VersionError, match="spans major versions 1, 2"):
        single_major(">=1,<3")


@pytest.mark.parametrize("bad", ["^x", "", "1.2.3.4", ">>1"])
def test_bad_range(bad: str) -> None:
    with pytest.raises(VersionError, match=r"expected e\.g\. "):
        parse_range(bad)


def test_range_matches() -> None:
    version_range = parse_range(">=1.2,<2")
    assert version_range.matches("1.9.0")
    assert not version_range.matches("2.0.0")
    assert str(version_range) == ">=1.2,<2"


def test_split_ref() -> None:
    assert split_ref("payments/charge-card@^1") == ("payments/charge-card", "^1")
    with pytest.raises(VersionError, match="team/name@RANGE"):
        split_ref("payments/charge-card")
    with pytest.raises(VersionError, match="lowercase"):
        split_ref("Payments/charge@^1")
    with pytest.raises(VersionError, match="not a version range"):
        split_ref("payments/charge@^^1")


@pytest.mark.parametrize("text", ["2147483648.0.0", "1.2147483648.0", "1.0." + "9" * 40])
def test_a_version_part_of_2_to_the_31_or_more_is_refused(text: str) -> None:
    """Issue 15, finding 7: such a major reached SQLite and answered INTERNAL."""
    with pytest.raises(VersionError, match="below 2\\^31"):
        parse_version(text)
    assert parse_version("2147483647.0.0").major == 2**31 - 1
