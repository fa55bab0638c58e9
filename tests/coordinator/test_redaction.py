"""Masking sensitive payload fields: the one implementation the API and the UI share."""

from __future__ import annotations

from coordinator.redaction import REDACTED, redact_paths, scrub_values

SENSITIVE = ("input.card_token", "input.card.number", "output.secret", "input.missing.field")


def test_sensitive_paths_on_one_side_are_masked_in_a_copy() -> None:
    payload = {"order_id": "o-1", "card_token": "tok-1", "card": {"number": 4242, "cvc": "1"}}
    found: set[str] = set()
    masked = redact_paths(payload, "input", SENSITIVE, found)
    assert masked == {"order_id": "o-1", "card_token": REDACTED, "card": {"number": REDACTED, "cvc": "1"}}
    assert payload["card_token"] == "tok-1" and payload["card"] == {"number": 4242, "cvc": "1"}
    assert found == {"tok-1", "4242"}
    assert redact_paths({"secret": "s"}, "input", SENSITIVE) == {"secret": "s"}  # an output path
    assert redact_paths({"secret": "s"}, "output", SENSITIVE) == {"secret": REDACTED}


def test_what_is_not_a_mapping_or_already_masked_is_left_alone() -> None:
    assert redact_paths(["tok"], "input", SENSITIVE) == ["tok"]
    assert redact_paths(None, "input", SENSITIVE) is None
    found: set[str] = set()
    assert redact_paths({"card_token": REDACTED}, "input", SENSITIVE, found) == {"card_token": REDACTED}
    assert found == set()


def test_masked_values_are_masked_where_they_reappear() -> None:
    run_output = {"receipt": {"token": "tok-1", "items": ["a", "tok-1", True]}, "count": 4242}
    assert scrub_values(run_output, {"tok-1", "4242"}) == {
        "receipt": {"token": REDACTED, "items": ["a", REDACTED, True]},
        "count": REDACTED,
    }
    assert scrub_values(run_output, set()) is run_output
