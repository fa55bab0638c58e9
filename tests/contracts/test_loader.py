"""Loading contract and workflow files: the model they produce, and a precise message (file, line,
field, what is expected) for every problem, all problems at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from contracts.errors import FileProblemsError, Problem
from contracts.loader import (
    load_contract,
    load_contract_dir,
    load_workflow,
    parse_contract_text,
    parse_workflow_text,
)
from contracts.model import Deprecation, RetryPolicy, Timeouts

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

GOOD_CONTRACT = """\
contract: payments/charge-card
version: 1.2.0
description: Charge the customer's card for an order.
input:
  type: object
  required: [order_id, amount_cents]
  properties:
    order_id: {type: string}
    amount_cents: {type: integer, minimum: 1}
    card_token: {type: string}
output:
  type: object
  required: [payment_ref]
  properties:
    payment_ref: {type: string}
timeout: 2m
retry: {max_attempts: 3, initial_backoff: 1s, backoff_coefficient: 2.0, non_retryable: [CardDeclined]}
idempotent: true
visibility: public
sensitive: [input.card_token]
deprecated: {sunset: 2027-03-01, replacement: payments/charge-card@2}
"""


def problems_of(text: str, name: str = "c.yaml", *, workflow: bool = False) -> list[Problem]:
    parse = parse_workflow_text if workflow else parse_contract_text
    with pytest.raises(FileProblemsError) as caught:
        parse(textwrap.dedent(text), name)
    return caught.value.problems


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


# -- contracts ------------------------------------------------------------------------------


def test_good_contract_maps_every_field() -> None:
    contract = parse_contract_text(GOOD_CONTRACT, "charge.yaml")
    assert contract.ref == "payments/charge-card@1.2.0"
    assert contract.kind == "task"
    assert contract.input_schema["required"] == ["order_id", "amount_cents"]
    assert contract.output_schema["properties"] == {"payment_ref": {"type": "string"}}
    assert contract.timeouts == Timeouts(start_to_close=120.0)
    assert contract.retry == RetryPolicy(
        max_attempts=3, initial_backoff=1.0, backoff_coefficient=2.0, non_retryable=("CardDeclined",)
    )
    assert contract.idempotent is True
    assert contract.visibility == "public"
    assert contract.sensitive == ("input.card_token",)
    assert contract.deprecated == Deprecation(sunset="2027-03-01", replacement="payments/charge-card@2")
    assert contract.source_name == "charge.yaml"
    assert contract.source_text == GOOD_CONTRACT


def test_defaults_and_timeouts_block() -> None:
    contract = parse_contract_text(
        """\
contract: a/b
version: 0.1.0
input: {}
output: true
timeouts: {schedule_to_start: 500ms, start_to_close: 1m30s, heartbeat: 1h}
""",
        "b.yaml",
    )
    assert contract.timeouts == Timeouts(schedule_to_start=0.5, start_to_close=90.0, heartbeat=3600.0)
    assert contract.output_schema == {}
    assert (contract.idempotent, contract.visibility, contract.sensitive, contract.deprecated) == (
        False,
        "public",
        (),
        None,
    )


def test_event_contract_payload_becomes_input_schema() -> None:
    contract = load_contract(EXAMPLES / "contracts" / "order-paid.yaml")
    assert contract.kind == "event"
    assert contract.input_schema["required"] == ["order_id", "amount_cents"]
    assert contract.output_schema == {}


def test_json_contract(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"contract": "a/b", "version": "1.0.0", "input": {}, "output": {}}')
    assert load_contract(path).ref == "a/b@1.0.0"
    assert load_contract(str(path)).ref == "a/b@1.0.0"


def test_every_example_contract_loads() -> None:
    refs = sorted(c.ref for c in load_contract_dir(EXAMPLES / "contracts"))
    assert refs == [
        "crm/notify-customer@1.0.0",
        "payments/charge-card@1.2.0",
        "payments/charge-card@1.3.0",
        "payments/order-paid@1.0.0",
        "shipping/create-shipment@1.0.0",
        "warehouse/reserve-stock@2.0.0",
    ]


def test_durations_in_a_contract_file() -> None:
    contract = parse_contract_text(
        GOOD_CONTRACT.replace("timeout: 2m", "timeout: 1m30s").replace(
            "initial_backoff: 1s", "initial_backoff: 500ms"
        ),
        "c.yaml",
    )
    assert contract.timeouts.start_to_close == 90.0
    assert contract.retry.initial_backoff == 0.5


def test_malformed_yaml_gives_line_and_column() -> None:
    problem = only(problems_of("contract: a/b\nversion: 1.0.0\ninput: {type: object\noutput: {}\n"))
    assert problem.file == "c.yaml"
    assert problem.line == 4
    assert problem.message.startswith("malformed YAML: ")
    assert "(line 4, column 7)" in problem.message


def test_tab_indentation_is_malformed_yaml() -> None:
    problem = only(problems_of("contract: a/b\ninput:\n\ttype: object\n"))
    assert problem.line == 3
    assert "'\\t'" in problem.message


def test_malformed_json_gives_line_and_column() -> None:
    problem = only(problems_of('{\n  "contract": "a/b",\n}\n', "c.json"))
    assert (problem.file, problem.line) == ("c.json", 3)
    assert "malformed JSON" in problem.message and "column 1" in problem.message


def test_empty_file() -> None:
    problem = only(problems_of(""))
    assert "must be a mapping" in problem.message


def test_unknown_keys_suggest_the_closest_known_key() -> None:
    problems = problems_of(
        GOOD_CONTRACT.replace("idempotent:", "idempotnet:").replace("initial_backoff", "inital_backoff")
    )
    assert [str(p) for p in problems] == [
        "c.yaml:17: retry.inital_backoff: unknown key 'inital_backoff' in retry; did you mean 'initial_backoff'?",
        "c.yaml:18: idempotnet: unknown key 'idempotnet' at the top level; did you mean 'idempotent'?",
    ]


def test_unknown_key_without_a_close_match_lists_the_known_ones() -> None:
    problem = only(problems_of(GOOD_CONTRACT + "zzz: 1\n"))
    assert problem.line == 22
    assert "unknown key 'zzz' at the top level; expected one of: contract, version, kind" in problem.message


def test_wrong_types_name_field_line_and_expectation() -> None:
    problems = problems_of(
        GOOD_CONTRACT.replace("version: 1.2.0", "version: 1.2")
        .replace("idempotent: true", "idempotent: yes")
        .replace("max_attempts: 3", "max_attempts: three")
    )
    assert [str(p) for p in problems] == [
        "c.yaml:2: version: expected a semantic version MAJOR.MINOR.PATCH such as 1.2.0, got number 1.2",
        "c.yaml:17: retry.max_attempts: expected an integer, got string 'three'",
        "c.yaml:18: idempotent: expected true or false, got string 'yes'",
    ]


def test_version_number_that_would_be_fine_as_a_string_asks_for_quotes() -> None:
    problem = only(problems_of("contract: a/b\nversion: 1\ninput: {}\noutput: {}\n"))
    assert problem.field == "version"
    assert "got number 1" in problem.message


def test_bad_version_and_name() -> None:
    problems = problems_of("contract: Payments/Charge_Card\nversion: v1.0.0\ninput: {}\noutput: {}\n")
    assert [(p.line, p.field) for p in problems] == [(1, "contract"), (2, "version")]
    assert "expected a name 'team/name' in lowercase" in problems[0].message
    assert "'v1.0.0' is not valid: expected a semantic version" in problems[1].message


def test_bad_durations() -> None:
    problems = problems_of(
        GOOD_CONTRACT.replace("timeout: 2m", "timeout: 30").replace(
            "initial_backoff: 1s", "initial_backoff: 1 sec"
        )
    )
    assert [str(p) for p in problems] == [
        "c.yaml:16: timeout: expected a duration such as 30s, 2m, 1h, 500ms or 1m30s, got number 30 (add a unit, e.g. 30s)",
        "c.yaml:17: retry.initial_backoff: '1 sec' is not valid: expected a duration such as 30s, 2m, 1h, 500ms or 1m30s",
    ]


def test_timeout_and_start_to_close_conflict() -> None:
    problem = only(problems_of(GOOD_CONTRACT + "timeouts: {start_to_close: 1m}\n"))
    assert problem.field == "timeouts.start_to_close"
    assert "keep one" in problem.message


def test_missing_required_keys() -> None:
    problems = problems_of("contract: a/b\ninput: {}\n")
    assert [str(p) for p in problems] == [
        "c.yaml:1: output: missing required key 'output' at the top level",
        "c.yaml:1: version: missing required key 'version' at the top level (a semantic version MAJOR.MINOR.PATCH such as 1.2.0)",
    ]


def test_visibility_and_retry_values() -> None:
    problems = problems_of(
        GOOD_CONTRACT.replace("visibility: public", "visibility: private").replace(
            "max_attempts: 3", "max_attempts: 0"
        )
    )
    assert [str(p) for p in problems] == [
        "c.yaml:17: retry.max_attempts: 0 is too small: expected at least 1",
        "c.yaml:19: visibility: 'private' is not allowed: expected one of public, team",
    ]


def test_sensitive_paths_must_exist_and_start_with_input_or_output() -> None:
    problems = problems_of(
        GOOD_CONTRACT.replace("[input.card_token]", "[input.card, output.payment_ref.x, card_token]")
    )
    assert [str(p) for p in problems] == [
        "c.yaml:20: sensitive[0]: sensitive path 'input.card' does not exist in the input schema; "
        "input has: order_id, amount_cents, card_token",
        "c.yaml:20: sensitive[1]: sensitive path 'output.payment_ref.x' does not exist in the output schema; "
        "output.payment_ref declares no fields",
        "c.yaml:20: sensitive[2]: 'card_token' is not valid: expected a field path starting with input. or output., "
        "such as input.card_token",
    ]


def test_embedded_schemas_must_be_valid_json_schema() -> None:
    problems = problems_of(
        GOOD_CONTRACT.replace(
            "amount_cents: {type: integer, minimum: 1}", "amount_cents: {type: int, minimum: one}"
        )
    )
    assert [(p.line, p.field) for p in problems] == [
        (9, "input.properties.amount_cents.minimum"),
        (9, "input.properties.amount_cents.type"),
    ]
    assert "'int' is not a JSON Schema type" in problems[1].message


def test_dangling_local_ref() -> None:
    problem = only(
        problems_of(
            GOOD_CONTRACT.replace("payment_ref: {type: string}", 'payment_ref: {$ref: "#/$defs/ref"}')
        )
    )
    assert (problem.line, problem.field) == (15, "output.properties.payment_ref.$ref")
    assert "points to nothing" in problem.message


def test_remote_ref_is_refused() -> None:
    problem = only(
        problems_of(
            GOOD_CONTRACT.replace("payment_ref: {type: string}", "payment_ref: {$ref: 'https://x/y'}")
        )
    )
    assert "not a local reference" in problem.message


def test_deprecation_checks() -> None:
    problems = problems_of(
        GOOD_CONTRACT.replace("sunset: 2027-03-01", "sunset: 2027-02-30").replace("@2}", "}")
    )
    assert [p.field for p in problems] == ["deprecated.replacement", "deprecated.sunset"]
    assert "expected an ISO date such as 2027-03-01" in problems[1].message


def test_event_contract_shape() -> None:
    problems = problems_of("contract: a/e\nversion: 1.0.0\nkind: event\ninput: {}\n")
    assert [str(p) for p in problems] == [
        "c.yaml:1: payload: missing required key 'payload' at the top level",
        "c.yaml:4: input: an event contract has a 'payload' schema, not 'input'",
    ]
    problem = only(problems_of("contract: a/t\nversion: 1.0.0\ninput: {}\noutput: {}\npayload: {}\n"))
    assert "'payload' is only for 'kind: event'" in problem.message


def test_duplicate_keys_are_reported() -> None:
    problem = only(problems_of(GOOD_CONTRACT + "timeout: 3m\n"))
    assert str(problem) == "c.yaml:22: timeout: duplicate key 'timeout' (first at line 16)"


def test_all_problems_are_reported_together_in_line_order() -> None:
    text = (
        GOOD_CONTRACT.replace("version: 1.2.0", "version: one")
        .replace("timeout: 2m", "timeout: soon")
        .replace("visibility: public", "visibilty: public")
    )
    problems = problems_of(text)
    assert [p.line for p in problems] == [2, 16, 19]
    assert str(FileProblemsError(problems)).count("c.yaml:") == 3


def test_missing_file() -> None:
    with pytest.raises(FileProblemsError) as caught:
        load_contract(Path("/nonexistent/charge.yaml"))
    assert str(caught.value) == "/nonexistent/charge.yaml: cannot read the file: No such file or directory"


def test_duplicate_versions_in_a_directory(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text("contract: a/b\nversion: 1.0.0\ninput: {}\noutput: {}\n")
    (tmp_path / "bad.yaml").write_text("contract: a/c\n")
    with pytest.raises(FileProblemsError) as caught:
        load_contract_dir(tmp_path)
    messages = [str(p) for p in caught.value.problems]
    assert any(
        m.startswith(f"{tmp_path / 'b.yaml'}:1: version: a/b@1.0.0 is also defined in") for m in messages
    )
    assert any(m.startswith(f"{tmp_path / 'bad.yaml'}:1: version: missing required key") for m in messages)


# -- workflows ------------------------------------------------------------------------------


def test_order_to_cash_example() -> None:
    workflow = load_workflow(EXAMPLES / "workflows" / "order-to-cash.yaml")
    assert workflow.name == "shipping/order-to-cash"
    assert workflow.team == "shipping"
    assert list(workflow.steps) == ["charge", "reserve", "ship", "notify"]
    ship, notify = workflow.steps["ship"], workflow.steps["notify"]
    assert (ship.contract, ship.version_range, ship.line) == ("shipping/create-shipment", "^1", 14)
    assert ship.retry.max_attempts == 5
    assert ship.timeouts.start_to_close == 600.0
    assert ship.input["payment_ref"] == "${steps.charge.output.payment_ref}"
    assert notify.when == "${steps.ship.output.express}"
    assert notify.for_each == "${steps.reserve.output.items}"
    assert notify.concurrency == 10  # the default fan-out limit
    assert workflow.steps["charge"].concurrency is None
    assert workflow.output == {"shipment_id": "${steps.ship.output.shipment_id}"}
    (trigger,) = workflow.triggers  # "on:" stays a string key, not YAML 1.1's True
    assert (trigger.on, trigger.version_range, trigger.line) == ("payments/order-paid", "^1", 30)
    assert workflow.lines["/steps/ship/input/payment_ref"] == 18


def test_fan_out_example_concurrency() -> None:
    workflow = load_workflow(EXAMPLES / "workflows" / "restock-fan-out.yaml")
    assert workflow.steps["notify"].concurrency == 5
    assert workflow.steps["notify"].retry == RetryPolicy(max_attempts=2, initial_backoff=0.5)


WORKFLOW = """\
workflow: shipping/w
input: {type: object, properties: {id: {type: string}}}
steps:
  charge:
    contract: payments/charge-card@^1
    input: {order_id: "${input.id}"}
  ship:
    contract: shipping/create-shipment@^1
    input: {payment_ref: "${steps.charge.output.payment_ref}"}
    retry: {max_attempts: 2}
"""


def test_unknown_key_in_a_step() -> None:
    problem = only(problems_of(WORKFLOW.replace("retry:", "retires:"), "w.yaml", workflow=True))
    assert (
        str(problem)
        == "w.yaml:10: steps.ship.retires: unknown key 'retires' in steps.ship; did you mean 'retry'?"
    )


def test_range_spanning_majors_is_refused() -> None:
    problem = only(
        problems_of(WORKFLOW.replace("charge-card@^1", "charge-card@>=1,<3"), "w.yaml", workflow=True)
    )
    assert (problem.line, problem.field) == (5, "steps.charge.contract")
    assert "spans major versions 1, 2; a range must stay within one major" in problem.message


def test_unbounded_and_malformed_ranges() -> None:
    problems = problems_of(
        WORKFLOW.replace("charge-card@^1", "charge-card@>=1").replace("shipment@^1", "shipment@^^1"),
        "w.yaml",
        workflow=True,
    )
    assert [(p.line, p.field) for p in problems] == [(5, "steps.charge.contract"), (8, "steps.ship.contract")]
    assert "no upper bound" in problems[0].message
    assert "not a version range" in problems[1].message


def test_bad_step_ids_and_contract_refs() -> None:
    problems = problems_of(
        WORKFLOW.replace("  charge:", "  Charge:").replace(
            "shipping/create-shipment@^1", "shipping/create-shipment"
        ),
        "w.yaml",
        workflow=True,
    )
    assert [(p.line, p.field) for p in problems] == [(4, "steps.Charge"), (8, "steps.ship.contract")]
    assert "'Charge' is not valid: expected a step id in lowercase" in problems[0].message
    assert "expected a contract reference 'team/name@RANGE'" in problems[1].message


def test_malformed_references() -> None:
    problems = problems_of(
        WORKFLOW.replace('"${input.id}"', '"${inputs.id}"').replace(
            '"${steps.charge.output.payment_ref}"', '"${steps.charge.output.payment_ref"'
        ),
        "w.yaml",
        workflow=True,
    )
    assert [(p.line, p.field) for p in problems] == [
        (6, "steps.charge.input.order_id"),
        (9, "steps.ship.input.payment_ref"),
    ]
    assert (
        "starts with 'inputs'; a reference starts with one of input, steps, item, event"
        in problems[0].message
    )
    assert "unterminated reference" in problems[1].message


def test_for_each_must_be_one_reference_and_concurrency_needs_it() -> None:
    text = (
        WORKFLOW + '    for_each: "items: ${input.id}"\n  other:\n    contract: a/b@1\n    concurrency: 3\n'
    )
    problems = problems_of(text, "w.yaml", workflow=True)
    assert [str(p) for p in problems] == [
        "w.yaml:11: steps.ship.for_each: for_each must be exactly one reference to an array, "
        "e.g. ${steps.reserve.output.items}",
        "w.yaml:14: steps.other.concurrency: concurrency limits a for_each fan-out; this step has no for_each",
    ]


def test_workflow_needs_steps_and_a_name() -> None:
    problems = problems_of("description: x\nsteps: {}\n", "w.yaml", workflow=True)
    assert [str(p) for p in problems] == [
        "w.yaml:1: workflow: missing required key 'workflow' at the top level "
        "(a name 'team/name' in lowercase letters, digits and '-', such as shipping/order-to-cash)",
        "w.yaml:2: steps: steps must not be empty",
    ]


def test_bad_trigger() -> None:
    problems = problems_of(
        WORKFLOW + "triggers:\n  - on: payments/order-paid\n    input: {id: 1}\n    of: x\n",
        "w.yaml",
        workflow=True,
    )
    assert [str(p) for p in problems] == [
        "w.yaml:12: triggers[0].on: 'payments/order-paid' is not valid: expected a contract reference "
        "'team/name@RANGE', such as payments/charge-card@^1",
        "w.yaml:14: triggers[0].of: unknown key 'of' in triggers[0]; expected one of: on, input",
    ]
