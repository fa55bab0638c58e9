"""Unknown keywords inside the schemas of contract, event and workflow files are errors."""

from __future__ import annotations

import textwrap

import pytest

from contracts._keywords import suggest, unknown_keywords
from contracts.errors import FileProblemsError
from contracts.loader import parse_contract_text, parse_workflow_text

TYPOS = textwrap.dedent(
    """\
    contract: payments/charge-card
    version: 1.0.0
    input:
      type: object
      requried: [amount]
      propertes:
        amount: {type: integer}
      properties:
        card: {typ: string}
        x-note: {type: string, x-ui: hidden}
    output:
      type: object
      properties:
        items: {type: array, items: {anyOf: [{type: string, maxLenght: 3}]}}
    """
)


def test_typos_inside_a_contract_schema_are_errors_with_did_you_mean() -> None:
    with pytest.raises(FileProblemsError) as caught:
        parse_contract_text(TYPOS, "charge.yaml")
    problems = {(p.line, p.field): p.message for p in caught.value.problems}
    assert "did you mean 'required'?" in problems[(5, "input.requried")]
    assert "did you mean 'properties'?" in problems[(6, "input.propertes")]
    assert "did you mean 'type'?" in problems[(9, "input.properties.card.typ")]
    deep = [m for (line, field), m in problems.items() if line == 14 and field.endswith("maxLenght")]
    assert deep and "did you mean 'maxLength'?" in deep[0]
    # A property named like an extension and an x- keyword are fine; nothing else is reported.
    assert len(problems) == 4, problems
    assert str(caught.value).startswith("charge.yaml:5: input.requried: ")


def test_registered_versions_with_unknown_keywords_still_parse() -> None:
    contract = parse_contract_text(TYPOS, "charge.yaml", strict=False)
    assert contract.input_schema["requried"] == ["amount"]


def test_event_payload_and_workflow_input_are_checked_too() -> None:
    event = (
        "contract: shop/order-placed\nversion: 1.0.0\nkind: event\npayload: {type: object, requird: [id]}\n"
    )
    with pytest.raises(FileProblemsError, match=r"payload.requird: .*did you mean 'required'\?"):
        parse_contract_text(event, "event.yaml")
    workflow = textwrap.dedent(
        """\
        workflow: shop/checkout
        input: {type: object, properties: {id: {type: string, formt: uuid}}}
        steps:
          charge: {contract: payments/charge-card@^1, input: {}}
        """
    )
    with pytest.raises(FileProblemsError, match=r"input.properties.id.formt: .*did you mean 'format'\?"):
        parse_workflow_text(workflow, "checkout.yaml")


def test_keywords_of_earlier_drafts_name_their_replacement() -> None:
    assert suggest("additionalItems") == "items (with prefixItems)"
    assert suggest("dependencies") == "dependentRequired or dependentSchemas"
    found = list(unknown_keywords({"properties": {"a": {"enum": [{"typ": 1}]}}, "x-any": {"typ": 1}}))
    assert found == []  # enum values and extension keywords are not schemas
    [only] = list(unknown_keywords({"items": {"zzzz": 1}}))
    assert only.pointer == "/items/zzzz" and "'x-' prefix" in only.message
