"""contracts.policy: reading policy files, the documents rules see, findings at file, line, field."""

from __future__ import annotations

import pytest

from contracts import policy
from contracts.errors import FileProblemsError
from contracts.loader import parse_contract_text, parse_workflow_text

CONTRACT = """\
contract: payments/charge
version: 1.0.0
input:
  type: object
  properties:
    order_id: {type: string}
    card:
      type: object
      properties:
        number: {type: string}
        holder: {type: string}
output: {type: object, properties: {api_token: {type: string}}}
timeout: 2h
sensitive: [input.card]
"""

RULES = """\
rules:
  - id: sensitive-names
    applies_to: contract
    level: require
    message: secrets are sensitive
    condition:
      properties:
        facts:
          properties:
            fields:
              items:
                if: {properties: {name: {pattern: "(?i)card|token|number"}}}
                then: {properties: {sensitive: {const: true}}}
  - id: max-timeout
    applies_to: contract
    level: advise
    message: at most an hour
    condition: {properties: {facts: {properties: {timeout_s: {maximum: 3600}}}}}
  - id: owner
    applies_to: contract
    level: require
    overridable: true
    message: an owner
    condition: {required: [owner]}
"""


def _findings(text: str, rules: list[policy.Rule]) -> list[policy.PolicyFinding]:
    contract = parse_contract_text(text, "charge.yaml")
    facts, origins = policy.contract_facts(contract)
    findings, _ = policy.check_text(
        rules, "contract", contract.ref, contract.team, text, "charge.yaml", facts, origins
    )
    return findings


def test_facts_of_a_contract_name_every_field_and_whether_it_is_sensitive() -> None:
    facts, origins = policy.contract_facts(parse_contract_text(CONTRACT, "charge.yaml"))
    assert facts["timeout_s"] == 7200
    assert [(f["path"], f["sensitive"]) for f in facts["fields"]] == [
        ("input.order_id", False),
        ("input.card", True),
        ("input.card.number", True),  # under a sensitive field
        ("input.card.holder", True),
        ("output.api_token", False),
    ]
    assert origins["/facts/fields/4"] == "/output/properties/api_token"


def test_findings_name_the_rule_and_the_files_field_and_line() -> None:
    rules = policy.parse_policy_text(RULES, "platform.yaml")
    found = [(f.rule, f.level, f.line, f.field, f.detail) for f in _findings(CONTRACT, rules)]
    assert found == [
        (
            "sensitive-names",
            "require",
            12,
            "output.properties.api_token",
            "output.api_token: True was expected",
        ),
        ("max-timeout", "advise", 13, "timeout", "7200.0 is greater than the maximum of 3600"),
        ("owner", "require", 1, "owner", "is required but missing"),
    ]
    fixed = CONTRACT.replace("timeout: 2h", "timeout: 10m").replace(
        "[input.card]", "[input.card, output.api_token]"
    )
    assert _findings(fixed + "owner: {contact: x}\n", rules) == []


def test_a_teams_rules_cover_only_its_namespace_and_only_advise() -> None:
    rules = policy.parse_policy_text(
        RULES.replace("level: require", "level: advise").replace("    overridable: true\n", ""),
        "crm.yaml",
        "crm",
    )
    assert all(r.scope == "crm" for r in rules)
    assert _findings(CONTRACT, rules) == []  # payments' contract: not crm's to advise on
    with pytest.raises(FileProblemsError) as refused:
        policy.parse_policy_text(RULES, "crm.yaml", "crm")
    assert [(p.line, p.field) for p in refused.value.problems][:1] == [(4, "rules[0].level")]


def test_a_policy_file_is_checked_like_a_contract_file() -> None:
    with pytest.raises(FileProblemsError) as refused:
        policy.parse_policy_text(
            RULES + RULES.split("rules:\n", 1)[1].replace("max-timeout", "other"), "p.yaml"
        )
    messages = [p.message for p in refused.value.problems]
    assert any("duplicate rule id 'sensitive-names'" in m for m in messages)
    with pytest.raises(FileProblemsError) as sunset:
        policy.parse_policy_text(RULES.replace("id: owner", "id: sunset"), "p.yaml")
    assert "lifecycle rule" in sunset.value.problems[0].message
    with pytest.raises(FileProblemsError) as unknown:
        policy.parse_policy_text(RULES.replace("maximum: 3600", "maximun: 3600"), "p.yaml")
    assert "maximun" in unknown.value.problems[0].message


def test_a_workflow_and_an_agent_as_rules_see_them() -> None:
    workflow = parse_workflow_text(
        """\
workflow: shipping/ship
input: {type: object}
steps:
  charge: {contract: payments/charge@^1, input: {}}
  stock: {contract: warehouse/reserve@^2, input: {}}
  own: {contract: shipping/label@^1, input: {}}
""",
        "ship.yaml",
    )
    facts, _ = policy.workflow_facts(workflow)
    assert facts["other_teams"] == ["payments", "warehouse"]
    document = policy.agent_document("p-1", "payments", "host", 4, [("payments/charge", 1, "shell")])
    assert document["implements"] == [{"contract": "payments/charge@1", "engine": "shell"}]
    rule = policy.Rule("conc", "agent", "require", "m", {"properties": {"concurrency": {"maximum": 2}}})
    subject = policy.Subject("agent", "agent p-1", "payments", "agent p-1", document)
    [finding] = policy.evaluate([rule], subject)
    assert (finding.file, finding.field, finding.line) == ("agent p-1", "concurrency", 0)
    assert str(finding) == "agent p-1: concurrency: require conc: m (4 is greater than the maximum of 2)"
