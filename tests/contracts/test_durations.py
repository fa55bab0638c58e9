"""Durations: one grammar for contract files, agent configs, engine options and the CLI."""

from __future__ import annotations

import pytest

from contracts.durations import parse_duration
from contracts.errors import AccordError, DurationError


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        # the contract files' form, units chained
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("1d", 86400.0),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
        # weeks and any case (the span retention's form)
        ("2w", 1209600.0),
        ("7D", 604800.0),
        ("1H30M", 5400.0),
        # white space around the parts (the engines' and the retention's forms)
        (" 2s ", 2.0),
        ("2 s", 2.0),
        ("1h 30m", 5400.0),
        # a bare number is seconds (the agent's, the engines' and the retention's forms)
        ("30", 30.0),
        ("2.5", 2.5),
        (".5", 0.5),
        ("0", 0.0),
        (30, 30.0),
        (1.5, 1.5),
        (0, 0.0),
    ],
)
def test_valid_durations(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    ["soon", "m", "d7", "1x", "1h-2m", "7 days", "2 minutes", "1 sec", "-1s", "1e3", "1m s", "30s,", "inf"],
)
def test_invalid_durations_say_what_is_expected(value: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(value)
    assert str(caught.value) == (
        f"{value!r} is not a duration; expected e.g. 30s, 2m, 1h, 500ms or 1m30s "
        "(units ms, s, m, h, d, w; a bare number is seconds)"
    )


def test_the_error_names_what_held_the_value() -> None:
    with pytest.raises(
        DurationError, match=r"^--span-retention: '7days' is not a duration; expected e\.g\. 30s"
    ):
        parse_duration("7days", what="--span-retention")
    with pytest.raises(DurationError, match=r"^--timeout: empty; expected e\.g\. 30s"):
        parse_duration("  ", what="--timeout")


@pytest.mark.parametrize("value", [-1, -0.5, float("nan"), float("inf")])
def test_a_number_of_seconds_is_finite_and_not_negative(value: float) -> None:
    with pytest.raises(DurationError, match="it must be a number >= 0"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, None, [30], {"s": 30}])
def test_other_types_are_not_durations(value: object) -> None:
    with pytest.raises(DurationError, match="is not a duration"):
        parse_duration(value)  # type: ignore[arg-type]


def test_a_duration_error_is_an_accord_error_and_a_value_error() -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration("soon")
    assert isinstance(caught.value, AccordError) and isinstance(caught.value, ValueError)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("value", ["9" * 400, "9" * 400 + "w", "1" * 320 + "s 5m"])
def test_a_duration_too_long_for_a_float_is_refused(value: str) -> None:
    with pytest.raises(DurationError, match="is too long a duration"):
        parse_duration(value)
