"""Sensitive values and secrets are scrubbed from span records."""

from __future__ import annotations

from coordinator.redaction import REDACTED
from coordinator.store.records import SpanRecord
from coordinator.telemetry.scrub import Scrubber, sensitive_values, values_at


def test_values_at_walks_objects_and_fans_out_over_lists() -> None:
    doc = {"card": {"number": "4111"}, "items": [{"sku": "a"}, {"sku": "b"}], "tags": ["x", "y"]}
    assert values_at(doc, "card.number") == ["4111"]
    assert values_at(doc, "items.sku") == ["a", "b"]
    assert values_at(doc, "items[1].sku") == ["b"]
    assert values_at(doc, "tags[*]") == ["x", "y"]
    assert values_at(doc, "missing.path") == []


def test_sensitive_values_takes_every_leaf_of_a_sensitive_field() -> None:
    found = sensitive_values(
        ["input.card_token", "output.secret", "input.nested"],
        input={"card_token": "tok_4242424242", "nested": {"a": "deep-value", "b": 12345}, "order": "o-1"},
        output={"secret": "s3cr3t-out", "ok": True},
    )
    assert found == {"tok_4242424242", "deep-value", "12345", "s3cr3t-out"}
    assert sensitive_values(["input.x"], input=None) == set()


def _record(**kw: object) -> SpanRecord:
    defaults: dict[str, object] = {
        "trace_id": "a" * 32,
        "span_id": "b" * 16,
        "parent_span_id": "",
        "name": "engine.http",
        "start_ns": 1,
        "end_ns": 2,
    }
    defaults.update(kw)
    return SpanRecord(**defaults)  # type: ignore[arg-type]


def test_scrubber_redacts_equal_and_containing_values_everywhere() -> None:
    scrubber = Scrubber({"tok_4242424242", "12345", "ab"})
    record = _record(
        name="charge tok_4242424242",
        status_message="card tok_4242424242 declined",
        attributes={
            "http.request.body": '{"card_token": "tok_4242424242"}',
            "amount": 12345,
            "short": "ab",
            "unrelated": "abc",  # a 2-char value is only redacted where it is the whole value
            "list": ["x", "tok_4242424242"],
            "order_id": "o-1",
        },
        events=[{"name": "log", "time_ns": 1, "attributes": {"message": "using tok_4242424242"}}],
    )
    clean = scrubber.record(record)
    assert "tok_4242424242" not in repr(clean)
    assert clean.name == f"charge {REDACTED}"
    assert clean.status_message == f"card {REDACTED} declined"
    assert clean.attributes["http.request.body"] == REDACTED
    assert clean.attributes["amount"] == REDACTED
    assert clean.attributes["short"] == REDACTED
    assert clean.attributes["unrelated"] == "abc"
    assert clean.attributes["list"] == ["x", REDACTED]
    assert clean.attributes["order_id"] == "o-1"
    assert clean.events[0]["attributes"] == {"message": REDACTED}


def test_credential_keys_are_redacted_whatever_their_value() -> None:
    clean = Scrubber().record(
        _record(
            attributes={
                "http.request.header.authorization": "Bearer abc",
                "db.password": "hunter2",
                "api_key": "k",
                "accord.idempotency_key": "run-1/charge",
                "empty_token": "",
            }
        )
    )
    assert clean.attributes == {
        "http.request.header.authorization": REDACTED,
        "db.password": REDACTED,
        "api_key": REDACTED,
        "accord.idempotency_key": "run-1/charge",
        "empty_token": "",
    }


def test_with_no_values_only_credential_keys_cost_a_copy_at_any_depth() -> None:
    plain = _record(attributes={"accord.run_id": "r-1", "nested": {"list": [{"x": 1}]}})
    assert Scrubber().record(plain) is plain  # nothing to do: the span as it is
    nested = _record(
        attributes={"request": {"headers": [{"authorization": "Bearer abc"}]}},
        events=[{"name": "log", "time_ns": 1, "attributes": {"cookie": "c=1"}}],
    )
    clean = Scrubber().record(nested)
    assert clean.attributes == {"request": {"headers": [{"authorization": REDACTED}]}}
    assert clean.events[0]["attributes"] == {"cookie": REDACTED}
