"""The checker always finishes on its own, whatever the schemas (issue 17).

A schema can make an unbounded search: a ``$ref`` that leads back to itself without descending
into the value, alternatives nested inside alternatives, nested repetitions in a ``pattern``.
Each is refused as a change the checker cannot prove safe, quickly and with the reason, never
called compatible. The loader refuses a schema whose ``$ref`` loops in place (the validator
cannot evaluate it), naming the path.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from contracts import _patterns
from contracts._schemas import unguarded_ref_cycle
from contracts.compat import check_input_compat, check_subschema, is_breaking
from contracts.errors import FileProblemsError
from contracts.loader import parse_contract_text, parse_workflow_text

LOOPING = {"anyOf": [{"$ref": "#"}, {"type": "string"}]}


@pytest.mark.parametrize("sub", [{"type": "integer"}, {"dependentRequired": {"a": ["a"]}}, {}])
def test_a_ref_looping_in_place_is_refused_as_unprovable(sub: Any) -> None:
    # Before: > 600 s (coinduction on copies of the sub schema that never matched, and it would
    # have called the pair compatible had it finished: the validator cannot evaluate it at all).
    findings = check_subschema(sub, LOOPING)
    assert len(findings) == 1 and is_breaking(findings)
    message = findings[0].message
    assert message.startswith("cannot prove value stays compatible: the $ref at '/anyOf/0'"), message
    assert "without first going into a field or an item" in message
    assert findings[0].pointer == "/anyOf/0"
    # Also when the loop is on the old side, and through $defs.
    old = {"$defs": {"d": {"allOf": [{"$ref": "#/$defs/d"}]}}, "$ref": "#/$defs/d"}
    (finding,) = check_input_compat(old, {"type": "string"})
    assert "the $ref at '/$defs/d/allOf/0' in the old input schema" in finding.message


def test_recursion_through_a_field_is_still_reasoned_about() -> None:
    tree = {"type": "object", "properties": {"child": {"$ref": "#"}, "n": {"type": "integer"}}}
    wider = {
        "anyOf": [
            {"type": "object", "properties": {"child": {"$ref": "#"}, "n": {"type": "number"}}},
            {"type": "string"},
        ]
    }
    assert unguarded_ref_cycle(tree) is None and unguarded_ref_cycle(wider) is None
    assert check_input_compat(tree, wider) == []
    assert is_breaking(check_input_compat(wider, tree))


def test_a_search_too_large_is_refused_with_its_reason() -> None:
    # 2**24 ways through nested alternatives, from a schema of a few hundred bytes.
    defs: dict[str, Any] = {"d0": {"type": "integer", "minimum": 5}}
    for k in range(1, 25):
        ref = {"$ref": f"#/$defs/d{k - 1}"}
        defs[f"d{k}"] = {"anyOf": [ref, {"allOf": [ref]}]}
    new = {"$defs": defs, "$ref": "#/$defs/d24"}
    findings = check_input_compat({"type": "integer"}, new)
    assert len(findings) == 1, findings
    assert findings[0].message.startswith(
        "cannot prove input stays compatible: the check took its whole work budget"
    ), findings[0].message


@pytest.mark.parametrize("depth", [3, 4, 6])
def test_nested_repetitions_in_a_pattern_stay_cheap(depth: int) -> None:
    pattern = "^" + "(" * depth + "a*" + ")*" * depth + "$"
    _patterns.samples.cache_clear()
    found = _patterns.samples(pattern)
    # Before: ^(((a*)*)*)*$ built a 40**4 character sample; now samples past the work budget are
    # skipped (the short ones are still found).
    assert found and "" in found and max(len(s) for s in found) <= 4096
    (finding,) = check_input_compat(
        {"type": "string", "pattern": pattern}, {"type": "string", "maxLength": 1}
    )
    assert finding.message.startswith("input no longer accepts strings longer than 1 characters (e.g. 'aa")


def test_the_loader_refuses_a_ref_looping_in_place() -> None:
    text = textwrap.dedent(
        """\
        contract: acme/rec
        version: 1.0.0
        input:
          type: object
          properties: {next: {$ref: '#'}}
          anyOf: [{required: [a]}, {$ref: '#/$defs/x'}]
          $defs:
            x: {allOf: [{$ref: '#/$defs/x'}]}
        output: {anyOf: [{$ref: '#'}, {type: string}]}
        """
    )
    with pytest.raises(FileProblemsError) as caught:
        parse_contract_text(text, "rec.yaml")
    assert caught.value.exit_code == 2
    fields = {p.field: (p.line, p.message) for p in caught.value.problems}
    assert set(fields) == {"input.$defs.x.allOf[0].$ref", "output.anyOf[0].$ref"}, fields
    assert fields["output.anyOf[0].$ref"][0] == 9
    assert "validating a value against it would never end" in fields["output.anyOf[0].$ref"][1]
    # A registered version is read again as it was accepted then.
    parse_contract_text(text, "rec.yaml", registered=True)
    workflow = "workflow: acme/w\ninput: {not: {$ref: '#'}}\nsteps:\n  s: {contract: acme/u@^1, input: {}}\n"
    with pytest.raises(FileProblemsError, match=r"input.not.\$ref: in the workflow input schema: this \$ref"):
        parse_workflow_text(workflow, "w.yaml")
