"""Migration adapters end to end (docs/contracts.md, "Migration adapters"): payments' charge@2
declares ``migrates_from: payments/charge@1``; shipping's workflow keeps calling ``charge@^1``.
While 1.x is in service the v1 agent serves it; once payments retires major 1 (allowed: the
adapter covers shipping) and stops its v1 agent, the v2 agent serves shipping's calls with the
mapped input, and shipping's run gets the v1-shaped output. A mapping that does not type-check
is refused at registration with the file, line and field.
"""

from __future__ import annotations

import json

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import InvalidArgumentError
from tests.support.agent import Call
from tests.support.scenario import wait_run
from tests.support.wait import wait_until

CHARGE_1 = """\
contract: payments/charge
version: 1.0.0
input:
  type: object
  required: [order_id, amount_cents]
  properties: {order_id: {type: string}, amount_cents: {type: integer}}
output:
  type: object
  required: [payment_ref]
  properties: {payment_ref: {type: string}}
"""
CHARGE_2 = """\
contract: payments/charge
version: 2.0.0
input:
  type: object
  required: [order_id, amount]
  properties:
    order_id: {type: string}
    amount:
      type: object
      required: [cents]
      properties: {cents: {type: integer}, currency: {type: string}}
output:
  type: object
  required: [ref]
  properties: {ref: {type: string}, fee_cents: {type: integer}}
migrates_from:
  contract: payments/charge@1
  input: {order_id: "${input.order_id}", amount: {cents: "${input.amount_cents}"}}
  output: {payment_ref: "${output.ref}"}
"""
# Line 18 maps a string into an integer; line 19 reads an output field v2 does not have.
CHARGE_2_BAD = CHARGE_2.replace("${input.amount_cents}", "${input.order_id}").replace(
    "${output.ref}", "${output.reference}"
)
CHECKOUT = """\
workflow: shipping/checkout
input:
  type: object
  required: [order_id, amount_cents]
  properties: {order_id: {type: string}, amount_cents: {type: integer}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}", amount_cents: "${input.amount_cents}"}
output: {payment_ref: "${steps.charge.output.payment_ref}"}
"""


async def test_a_v1_caller_is_served_by_the_v2_agent_through_the_adapter_once_v1_is_retired(
    coordinator, test_agent
):
    tokens = {team: await coordinator.create_team(team) for team in ("payments", "shipping")}
    assert (await coordinator.register_contract(tokens["payments"], CHARGE_1)).registered

    # A mapping that does not type-check: refused, naming the file's lines and fields; nothing stored.
    with pytest.raises(InvalidArgumentError) as refused:
        await coordinator.register_contract(tokens["payments"], CHARGE_2_BAD)
    problems = "\n".join(refused.value.details)
    assert ":18: migrates_from.input.amount.cents (line 18): reads ${input.order_id}" in problems, problems
    assert "type is string here but integer" in problems
    assert ":19: migrates_from.output.payment_ref (line 19): reads ${output.reference}" in problems, problems
    assert (
        "payments/charge@2.0.0's output does not declare 'reference' in output (output has: ref, fee_cents)"
        in problems
    )
    path = coordinator.home / "charge-2.yaml"
    path.write_text(CHARGE_2_BAD)
    cli = await coordinator.acli("contract", "register", str(path), token=tokens["payments"])
    assert cli.returncode == 2 and "migrates_from.output.payment_ref" in cli.stderr, cli.stderr
    async with coordinator.client() as admin:
        versions = (
            await admin.coordinator.GetContract(pb.GetContractRequest(ref="payments/charge"))
        ).versions
    assert list(versions) == ["1.0.0"]

    assert (await coordinator.register_contract(tokens["payments"], CHARGE_2)).registered
    shown = json.loads((await coordinator.acli("contract", "show", "payments/charge@2", "--json")).stdout)
    assert shown["migrates_from"] == {
        "contract": "payments/charge@1",
        "input": {"order_id": "${input.order_id}", "amount": {"cents": "${input.amount_cents}"}},
        "output": {"payment_ref": "${output.ref}"},
    }
    assert (await coordinator.register_workflow(tokens["shipping"], CHECKOUT)).registered
    v2_inputs: list[dict] = []

    async def charge_1(call: Call) -> dict:
        return {"payment_ref": f"v1-{call.input['order_id']}"}

    async def charge_2(call: Call) -> dict:
        v2_inputs.append(call.input)
        return {"ref": f"v2-{call.input['order_id']}-{call.input['amount']['cents']}", "fee_cents": 3}

    v1_agent = await test_agent(tokens["payments"], "payments", {"payments/charge@1": charge_1})
    await test_agent(tokens["payments"], "payments", {"payments/charge@2": charge_2})

    # While 1.x is in service, its own agent serves it.
    before = await coordinator.acli(
        "run", "shipping/checkout", "--input", '{"order_id": "o-1", "amount_cents": 500}', "--wait",
        token=tokens["shipping"],
    )  # fmt: skip
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout) == {"payment_ref": "v1-o-1"}

    # Retiring major 1 is allowed although shipping calls it: the adapter covers its calls.
    retired = await coordinator.acli("contract", "retire", "payments/charge@1", token=tokens["payments"])
    assert retired.returncode == 0, retired.stderr
    # An agent that serves only the retired major is told so (the team agent logs it as one line).
    answer = await v1_agent.register()
    assert list(answer.warnings) == [
        "this agent serves only retired versions of payments/charge@1 (its callers are served by "
        "payments/charge@2.0.0 through its migration adapter): they get no new tasks; stop serving "
        "them once their runs have finished"
    ]
    await v1_agent.stop()  # payments no longer runs v1 code

    after = await coordinator.acli(
        "run", "shipping/checkout", "--input", '{"order_id": "o-2", "amount_cents": 700}', "--wait", "--json",
        token=tokens["shipping"],
    )  # fmt: skip
    assert after.returncode == 0, after.stderr
    run = json.loads(after.stdout)
    assert run["output"] == {"payment_ref": "v2-o-2-700"}  # the v1-shaped output, from the v2 agent
    assert v2_inputs == [{"order_id": "o-2", "amount": {"cents": 700}}]  # the mapped input
    assert run["pinned_versions"] == {"payments/charge": "1 via 2.0.0"}
    assert run["warnings"] == [
        "payments/charge@1 is retired; this run calls it via payments/charge@2.0.0 through its migration adapter"
    ]
    [charge] = run["steps"]
    assert charge["output"] == {"payment_ref": "v2-o-2-700"}
    assert charge["input"] == {"order_id": "o-2", "amount": {"cents": 700}}

    # The trace shows the adaptation on the step's span.
    async def adapted_span() -> str:
        async with coordinator.client(tokens["shipping"]) as client:
            trace = await client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=run["run_id"]))
        for span in trace.spans:
            attributes = json.loads(span.attributes_json or "{}")
            if "accord.adapted" in attributes:
                return str(attributes["accord.adapted"])
        return ""

    assert await wait_until(adapted_span, what="the step span with accord.adapted") == (
        "payments/charge@1 via 2.0.0"
    )
    # shipping is told, and what to move to.
    notices = json.loads((await coordinator.acli("notices", "--json", token=tokens["shipping"])).stdout)
    assert [(n["kind"], n["contract"]) for n in notices] == [("retired", "payments/charge@1.0.0")]
    assert "served by payments/charge@2.0.0 through its migration adapter" in notices[0]["message"]
    async with coordinator.client(tokens["shipping"]) as client:
        got = await client.coordinator.GetRun(pb.GetRunRequest(run_id=run["run_id"]))
        assert (await wait_run(client, got.run.run_id)).status == pb.RUN_STATUS_SUCCEEDED


async def test_an_adapter_needs_the_old_major_registered_and_the_same_contract(coordinator):
    payments = await coordinator.create_team("payments")
    with pytest.raises(InvalidArgumentError) as refused:
        await coordinator.register_contract(payments, CHARGE_2)
    assert "no version of payments/charge@1 is registered" in str(refused.value)
    other = CHARGE_2.replace("contract: payments/charge@1", "contract: payments/refund@1")
    with pytest.raises(InvalidArgumentError) as refused:
        await coordinator.register_contract(payments, other)
    assert "an adapter serves an older major of this same contract" in "\n".join(refused.value.details)
    newer = CHARGE_2.replace("contract: payments/charge@1", "contract: payments/charge@3")
    with pytest.raises(InvalidArgumentError) as refused:
        await coordinator.register_contract(payments, newer)
    assert "must name an older major" in "\n".join(refused.value.details)
