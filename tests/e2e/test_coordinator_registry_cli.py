"""Registry rules and the CLI's exit codes and messages, against the real coordinator."""

from __future__ import annotations

import asyncio
import json

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import FailedPreconditionError, InvalidArgumentError
from tests.support.agent import Call, TaskFailed
from tests.support.scenario import contract

CONSUMER = """
workflow: shipping/uses-charge
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}"}
  ship:
    contract: shipping/ship@^1
    input: {order_id: "${input.order_id}", payment_ref: "${steps.charge.output.payment_ref}"}
output: {shipment: "${steps.ship.output.ref}"}
"""

CHARGE_V1 = contract(
    "payments/charge",
    output_props="{payment_ref: {type: string}, note: {type: string}}",
    output_required="[]",
)
# 1.1.0 drops payment_ref from the output: compatible for the schema rules (output may narrow)
# but it breaks the consumer that reads it.
CHARGE_V1_1 = contract(
    "payments/charge", "1.1.0", output_props="{note: {type: string}}", output_required="[]"
)
SHIP = contract(
    "shipping/ship",
    input_props="{order_id: {type: string}, payment_ref: {type: string}}",
)


async def _consumer_world(coordinator):
    payments = await coordinator.create_team("payments")
    shipping = await coordinator.create_team("shipping")
    await coordinator.register_contract(payments, CHARGE_V1)
    await coordinator.register_contract(shipping, SHIP)
    await coordinator.register_workflow(shipping, CONSUMER)
    return payments, shipping


async def test_breaking_change_refused_naming_the_consumer(coordinator):
    payments, _ = await _consumer_world(coordinator)
    dry = await coordinator.register_contract(payments, CHARGE_V1_1, dry_run=True)
    assert not dry.registered
    [impact] = dry.broken_consumers
    assert (impact.workflow, impact.team, impact.step) == ("shipping/uses-charge", "shipping", "ship")
    assert "payment_ref" in impact.field

    with pytest.raises(FailedPreconditionError) as refused:
        await coordinator.register_contract(payments, CHARGE_V1_1)
    text = str(refused.value)
    assert "shipping/uses-charge" in text and "team shipping" in text and "step ship" in text
    assert "payment_ref" in text
    # Nothing was registered.
    async with coordinator.client(payments) as client:
        got = await client.coordinator.GetContract(pb.GetContractRequest(ref="payments/charge"))
    assert list(got.versions) == ["1.0.0"]


async def test_incompatible_schema_change_in_the_same_major_refused_new_major_accepted(coordinator):
    payments, _ = await _consumer_world(coordinator)
    narrower_input = contract(
        "payments/charge",
        "1.2.0",
        input_props="{order_id: {type: string}, card: {type: string}}",
        input_required="[order_id, card]",
        output_props="{payment_ref: {type: string}, note: {type: string}}",
        output_required="[]",
    )
    with pytest.raises(FailedPreconditionError) as refused:
        await coordinator.register_contract(payments, narrower_input)
    assert "card" in str(refused.value) and "new major" in str(refused.value)
    accepted = await coordinator.register_contract(payments, narrower_input.replace("1.2.0", "2.0.0"))
    assert accepted.registered


async def test_versions_are_immutable_and_identical_reregistration_is_a_no_op(coordinator):
    payments, _ = await _consumer_world(coordinator)
    again = await coordinator.register_contract(payments, CHARGE_V1)
    assert not again.registered
    with pytest.raises(FailedPreconditionError, match="different content"):
        await coordinator.register_contract(payments, CHARGE_V1.replace("test contract", "changed text"))


async def test_workflow_that_does_not_type_check_is_refused_with_findings(coordinator):
    _, shipping = await _consumer_world(coordinator)
    bad = CONSUMER.replace("output.payment_ref", "output.no_such_field")
    with pytest.raises(InvalidArgumentError) as refused:
        await coordinator.register_workflow(shipping, bad)
    assert "no_such_field" in str(refused.value)


async def test_misspelled_contract_name_in_a_workflow_gets_did_you_mean(coordinator):
    _, shipping = await _consumer_world(coordinator)
    bad = CONSUMER.replace("payments/charge@^1", "payments/chrage@^1")
    with pytest.raises(InvalidArgumentError) as refused:
        await coordinator.register_workflow(shipping, bad)
    assert "did you mean 'payments/charge'?" in str(refused.value)


async def test_typos_inside_a_contract_schema_are_refused(coordinator):
    payments = await coordinator.create_team("payments")
    typo = CHARGE_V1.replace("output:", "output:\n  requried: [payment_ref]", 1)
    assert typo != CHARGE_V1
    with pytest.raises(InvalidArgumentError) as refused:
        await coordinator.register_contract(payments, typo)
    assert "did you mean 'required'?" in str(refused.value)


async def test_deprecated_contract_use_warns_with_the_sunset_date(coordinator):
    payments, shipping = await _consumer_world(coordinator)
    result = coordinator.cli(
        "contract", "deprecate", "payments/charge@1", "--sunset", "2030-06-01", token=payments
    )
    assert result.returncode == 0, result.stderr
    # A file identical to the current version registers nothing; this one differs in a comment.
    registered = await coordinator.register_workflow(shipping, CONSUMER + "# calls the deprecated major\n")
    assert registered.registered and registered.workflow.version == 2
    assert any("2030-06-01" in w and "payments/charge@1.0.0" in w for w in registered.warnings)


CLI_WORKFLOW = """
workflow: payments/echo
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  work:
    contract: payments/work@^1
    input: {order_id: "${input.order_id}"}
output: {ref: "${steps.work.output.ref}"}
"""


async def test_cli_exit_codes_and_messages(coordinator, test_agent, tmp_path):
    # team create prints only the token
    created = coordinator.cli("team", "create", "payments")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert len(created.stdout.strip().splitlines()) == 1 and len(token) > 20

    contract_file = tmp_path / "work.yaml"
    contract_file.write_text(contract("payments/work", extra="retry: {max_attempts: 1}\n"))
    workflow_file = tmp_path / "echo.yaml"
    workflow_file.write_text(CLI_WORKFLOW)
    assert coordinator.cli("contract", "register", str(contract_file), token=token).returncode == 0
    assert coordinator.cli("workflow", "register", str(workflow_file), token=token).returncode == 0

    async def handler(call: Call):
        if call.input["order_id"] == "boom":
            raise TaskFailed("EngineError", "the engine exploded")
        return {"ref": "echo-" + call.input["order_id"]}

    await test_agent(token, "payments", {"payments/work@1": handler})

    # 0: --wait prints only the output JSON
    ok = await coordinator.acli("run", "payments/echo", "--input", '{"order_id": "a"}', "--wait", token=token)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"ref": "echo-a"}

    # 1: the run failed; the error goes to stderr
    failed = await coordinator.acli(
        "run", "payments/echo", "--input", '{"order_id": "boom"}', "--wait", token=token
    )
    assert failed.returncode == 1
    assert failed.stdout == "" and "the engine exploded" in failed.stderr

    # 2: bad input (not JSON; not matching the schema; missing file; unknown workflow)
    not_json = coordinator.cli("run", "payments/echo", "--input", "{oops", token=token)
    assert not_json.returncode == 2 and "not valid JSON" in not_json.stderr
    wrong = coordinator.cli("run", "payments/echo", "--input", '{"order_id": 5}', token=token)
    assert wrong.returncode == 2 and "order_id" in wrong.stderr
    missing = coordinator.cli("run", "payments/echo", "--input", "@/no/such/file.json", token=token)
    assert missing.returncode == 2 and "/no/such/file.json" in missing.stderr
    unknown = coordinator.cli("runs", "show", "run-nope", token=token)
    assert unknown.returncode == 2 and "run-nope" in unknown.stderr
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("contract: payments/work\nversion: nope\n")
    bad = coordinator.cli("contract", "register", str(bad_file), token=token)
    assert bad.returncode == 2 and "bad.yaml" in bad.stderr

    # 3: refused (wrong token, another team's object) or unreachable
    denied = coordinator.cli("runs", "list", token="wrong-token")
    assert denied.returncode == 3 and "token" in denied.stderr
    other = coordinator.cli("team", "create", "warehouse").stdout.strip()
    not_theirs = coordinator.cli("run", "payments/echo", "--input", '{"order_id": "a"}', token=other)
    assert not_theirs.returncode == 3 and "payments" in not_theirs.stderr
    env_down = coordinator.env(token)
    env_down["ACCORD_COORDINATOR"] = "127.0.0.1:1"
    import subprocess

    from tests.support.coordinator import ACCORD

    down = await asyncio.to_thread(
        subprocess.run, [ACCORD, "runs", "list"], env=env_down, capture_output=True, text=True, timeout=30
    )
    assert down.returncode == 3 and "cannot reach the coordinator at 127.0.0.1:1" in down.stderr

    # runs list / show with --json
    listed = coordinator.cli("runs", "list", "--json", token=token)
    assert listed.returncode == 0
    runs = json.loads(listed.stdout)
    assert {r["status"] for r in runs} == {"succeeded", "failed"}
    shown = coordinator.cli("runs", "show", runs[0]["run_id"], token=token)
    assert shown.returncode == 0 and "work" in shown.stdout
