"""The validator cache: found by the schema object, never stale when a schema changes in place."""

from __future__ import annotations

from contracts.validation import compiled_validator, validate_payload


def test_a_schema_changed_in_place_is_validated_as_it_is_now() -> None:
    schema = {"type": "object", "properties": {"id": {"type": "string", "maxLength": 8}}}
    assert validate_payload(schema, {"id": "o-1"}) == []
    first = compiled_validator(schema)
    assert compiled_validator(schema) is first
    schema["properties"]["id"]["maxLength"] = 2
    assert [v.path for v in validate_payload(schema, {"id": "o-1"})] == ["$.id"]
    assert compiled_validator(schema) is not first
    # An equal schema in another object shares the validator of its text.
    assert compiled_validator(
        {"type": "object", "properties": {"id": {"type": "string", "maxLength": 2}}}
    ) is (compiled_validator(schema))
