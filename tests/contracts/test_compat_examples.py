"""Issue 17: the lengths a ``pattern`` implies, and refusals that name only values the old schema
accepts (an example validated by the very validator Accord runs), or say safety cannot be proven.
"""

from __future__ import annotations

from typing import Any

import pytest

from contracts._patterns import implied_lengths, samples
from contracts.compat import check_input_compat, check_output_compat
from contracts.validation import compiled_validator


def _string(**keywords: Any) -> dict[str, Any]:
    return {"type": "string", **keywords}


@pytest.mark.parametrize(
    ("pattern", "lengths"),
    [
        ("^[a-z]{3}$", (3, 3)),
        ("^\\d{2,4}-[^a]$", (4, 6)),
        ("^(ab|c)+$", (1, None)),
        ("^[a-z]{3}", (3, None)),  # not anchored at the end: longer strings match too
        ("[a-z]{3}$", (3, None)),
        ("abc", (3, None)),
        ("", (0, None)),
        # Read differently by RE2 and Python's parser, or flags: no claim at all.
        ("^[[:alpha:]]{3}$", None),
        ("^a{,3}$", None),  # a literal "{,3}" for RE2
        ("(?m)^a$", None),
        ("^\\pL{2}$", None),
        ("^(a)\\1$", None),  # RE2 cannot run it
    ],
)
def test_implied_lengths(pattern: str, lengths: tuple[int, int | None] | None) -> None:
    assert implied_lengths(pattern) == lengths


def test_samples_match_their_pattern_on_re2() -> None:
    for pattern in ("^[a-z]{3}$", "^\\w+@\\w+\\.com$", "^[A-Z0-9-]+$", "^(ab|c)+$"):
        found = samples(pattern)
        assert found, pattern
        validator = compiled_validator({"pattern": pattern})
        assert all(validator.is_valid(text) for text in found), (pattern, found)


def test_a_pattern_longer_than_the_new_max_length_is_breaking_with_an_example() -> None:
    findings = check_input_compat(_string(pattern="^[a-z]{3}$"), _string(maxLength=2))
    assert [(f.pointer, f.message) for f in findings] == [
        (
            "/maxLength",
            "input no longer accepts strings longer than 2 characters (e.g. 'abc'): maxLength changed"
            " from none to 2",
        )
    ]
    assert findings[0].example == ("abc",)


@pytest.mark.parametrize(
    "new",
    [
        _string(maxLength=3),
        _string(minLength=3),
        _string(minLength=1, maxLength=10),
        _string(minLength=3, maxLength=3),
    ],
)
def test_lengths_a_pattern_implies_are_within_the_new_limits(new: dict[str, Any]) -> None:
    old = _string(pattern="^[a-z]{3}$")
    assert check_input_compat(old, new) == []
    # The same change seen from the output side: the new pattern keeps the old promise.
    assert check_output_compat(new, old) == []


def test_an_unbounded_pattern_against_a_new_max_length_names_a_long_enough_example() -> None:
    findings = check_input_compat(_string(pattern="^a+$"), _string(maxLength=5))
    assert len(findings) == 1 and findings[0].example == ("aaaaaa",), findings
    findings = check_input_compat(_string(pattern="^ab+$"), _string(minLength=4))
    assert len(findings) == 1 and findings[0].example == ("ab",), findings


def test_a_pattern_the_checker_cannot_read_is_not_called_safe() -> None:
    # POSIX classes: RE2 reads one character each; no lengths are claimed from it.
    old = _string(pattern="^[[:alpha:]]{3}$")
    assert check_input_compat(old, _string(maxLength=3))  # refused (not provably safe) ...
    findings = check_input_compat(old, _string(maxLength=2))
    assert len(findings) == 1 and findings[0].example == ("abc",)  # ... and a true break is shown


def test_without_a_value_the_old_schema_accepts_the_refusal_names_no_example() -> None:
    # No string is both three digits and an email address: the old schema accepts none, so no
    # value can be named; the change is still refused, as not provably safe.
    old = _string(pattern="^\\d{3}$", format="email")
    findings = check_input_compat(old, _string(maxLength=2, format="email"))
    assert [f.message for f in findings] == [
        "cannot prove input stays compatible: maxLength changed from none to 2 (no value the previous"
        " version accepted was found that this one refuses)"
    ]
    assert findings[0].example is None


def test_a_bound_refusal_never_names_a_value_the_old_schema_refused() -> None:
    # Old: multiples of 10 from 1 up, so 10, 20, ...: none below 5, though the bound moved.
    old = {"type": "integer", "minimum": 1, "multipleOf": 10}
    findings = check_input_compat(old, {"type": "integer", "minimum": 5})
    assert len(findings) == 1 and findings[0].message.startswith("cannot prove input stays compatible")
    assert "no value the previous version accepted" in findings[0].message
    # With multiples of 2, 2 is accepted before and refused now: named.
    findings = check_input_compat({**old, "multipleOf": 2}, {"type": "integer", "minimum": 5})
    assert len(findings) == 1 and findings[0].example == (2,), findings


@pytest.mark.parametrize(
    "old",
    [
        {"type": "boolean", "not": {"const": True}},
        {"oneOf": [{"type": "boolean"}, {"const": True}]},  # true matches both: refused
    ],
)
def test_values_outside_a_new_enum_are_named_only_if_the_old_schema_accepted_them(
    old: dict[str, Any],
) -> None:
    findings = check_input_compat(old, {"const": None})
    assert [f.message for f in findings] == ["input no longer accepts false: only null is accepted now"]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"type": "number"}, {"type": "string"}),
        ({"type": "integer", "maximum": 10}, {"type": "integer", "maximum": 3}),
        ({"type": "number", "multipleOf": 0.5}, {"type": "number", "multipleOf": 1}),
        ({"type": "array", "items": {"type": "integer"}}, {"type": "array", "maxItems": 1}),
        ({"type": "array"}, {"type": "array", "minItems": 2}),
        ({"type": "array", "items": {"type": "integer"}}, {"type": "array", "uniqueItems": True}),
        ({"type": "object"}, {"type": "object", "maxProperties": 1}),
        ({"type": "object"}, {"type": "object", "minProperties": 1}),
        ({"type": "string", "format": "date"}, {"type": "string", "maxLength": 5}),
        ({"type": ["string", "null"]}, {"type": "string"}),
    ],
)
def test_every_named_example_is_accepted_by_the_old_schema_and_refused_by_the_new(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    findings = check_input_compat(old, new)
    assert findings and all(f.example is not None for f in findings), findings
    for finding in findings:
        assert finding.example is not None
        (value,) = finding.example
        assert compiled_validator(old).is_valid(value) and not compiled_validator(new).is_valid(value)
        assert "(e.g. " in finding.message, finding


def test_an_example_is_refused_by_the_whole_old_schema_not_one_alternative() -> None:
    # Found by the hunt: the new output may be any number; the old one promised integers OR
    # numbers from -1. -2 breaks the second alternative but the first accepts it: not an example.
    old = {
        "anyOf": [
            {"anyOf": [{"type": "boolean"}, {"type": "integer"}]},
            {"allOf": [{"type": "number", "minimum": -1}, {"type": "number"}]},
        ]
    }
    findings = check_output_compat(old, {"type": "number"})
    assert findings
    for finding in findings:
        if finding.example is not None:
            (value,) = finding.example
            assert compiled_validator({"type": "number"}).is_valid(value)
            assert not compiled_validator(old).is_valid(value), finding
