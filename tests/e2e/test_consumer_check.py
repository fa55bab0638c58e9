"""The consumer check beside the compatibility checker, on the real coordinator.

Can a change the compatibility checker accepts still break a registered consumer? Within a major
the output may only narrow and the input only widen, so whatever a workflow read and mapped
before still fits: by construction the consumer check cannot catch more than the compatibility
checker (probed: dropping a field's declaration while ``additionalProperties`` still admits it,
moving the object under ``allOf``, declaring it by ``patternProperties``: both checks agree,
nothing breaks). So these tests pin down what the consumer check adds: for a breaking change
BOTH reports come back (the compatibility findings AND each consumer, team, step and field), and
the consumers are computed from what each workflow reads: a workflow that does not read the
changed field is not named. A change both checks accept registers although consumers read it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import FailedPreconditionError
from tests.support.scenario import contract

CHARGE_1_0 = """\
contract: payments/charge
version: 1.0.0
description: Charge an order.
input:
  type: object
  required: [order_id]
  properties: {order_id: {type: string}}
output:
  type: object
  required: [payment_ref]
  properties:
    payment_ref: {type: string}
    receipt: {type: string}
  additionalProperties: {type: string}
"""
# Compatible: the same values accepted and produced; ``receipt`` is no longer declared by name.
CHARGE_1_1_UNDECLARED = CHARGE_1_0.replace("version: 1.0.0", "version: 1.1.0").replace(
    "    receipt: {type: string}\n", ""
)
# Breaking (the output widens): payment_ref is no longer promised.
CHARGE_1_1_NO_PAYMENT_REF = CHARGE_1_0.replace("version: 1.0.0", "version: 1.1.0").replace(
    "required: [payment_ref]", "required: []"
)
# Breaking: receipt becomes an integer.
CHARGE_1_1_INT_RECEIPT = CHARGE_1_0.replace("version: 1.0.0", "version: 1.1.0").replace(
    "    receipt: {type: string}\n", "    receipt: {type: integer}\n"
)

FILE_RECEIPT = contract(
    "shipping/file-receipt",
    input_props="{order_id: {type: string}, receipt: {type: string}}",
    input_required="[order_id]",
)
NOTIFY = contract(
    "crm/notify",
    input_props="{order_id: {type: string}, payment_ref: {type: string}}",
    input_required="[order_id, payment_ref]",
)
# Reads the optional receipt.
READS_RECEIPT = """
workflow: shipping/keep-receipts
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}"}
  file:
    contract: shipping/file-receipt@^1
    input: {order_id: "${input.order_id}", receipt: "${steps.charge.output.receipt}"}
"""
# Reads only payment_ref.
READS_PAYMENT_REF = """
workflow: crm/tell-customer
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}"}
  notify:
    contract: crm/notify@^1
    input: {order_id: "${input.order_id}", payment_ref: "${steps.charge.output.payment_ref}"}
"""


async def _world(coordinator) -> dict[str, str]:
    tokens = {team: await coordinator.create_team(team) for team in ("payments", "shipping", "crm")}
    assert (await coordinator.register_contract(tokens["payments"], CHARGE_1_0)).registered
    assert (await coordinator.register_contract(tokens["shipping"], FILE_RECEIPT)).registered
    assert (await coordinator.register_contract(tokens["crm"], NOTIFY)).registered
    assert (await coordinator.register_workflow(tokens["shipping"], READS_RECEIPT)).registered
    assert (await coordinator.register_workflow(tokens["crm"], READS_PAYMENT_REF)).registered
    return tokens


def _impacts(response) -> list[tuple[str, str, str, str]]:
    return sorted((i.workflow, i.team, i.step, i.field) for i in response.broken_consumers)


async def _versions(coordinator, token: str) -> list[str]:
    async with coordinator.client(token) as client:
        got = await client.coordinator.GetContract(pb.GetContractRequest(ref="payments/charge"))
    return list(got.versions)


async def _diff(coordinator, tmp_path: Path, new: str):
    (tmp_path / "old.yaml").write_text(CHARGE_1_0)
    (tmp_path / "new.yaml").write_text(new)
    return await coordinator.acli("contract", "diff", str(tmp_path / "old.yaml"), str(tmp_path / "new.yaml"))


@pytest.mark.parametrize(
    ("new", "field", "named", "not_named"),
    [
        (
            CHARGE_1_1_NO_PAYMENT_REF,
            "payment_ref",
            ("crm/tell-customer", "crm", "notify"),
            "shipping/keep-receipts",
        ),
        (
            CHARGE_1_1_INT_RECEIPT,
            "receipt",
            ("shipping/keep-receipts", "shipping", "file"),
            "crm/tell-customer",
        ),
    ],
    ids=["payment_ref-no-longer-promised", "receipt-becomes-integer"],
)
async def test_a_breaking_change_reports_both_checks_and_only_the_consumer_reading_the_field(
    coordinator, tmp_path: Path, new: str, field: str, named: tuple[str, str, str], not_named: str
):
    diff = await _diff(coordinator, tmp_path, new)
    assert diff.returncode == 1, diff.stdout + diff.stderr
    assert field in diff.stdout

    tokens = await _world(coordinator)
    dry = await coordinator.register_contract(tokens["payments"], new, dry_run=True)
    assert not dry.registered
    # The compatibility checker's findings...
    breaking = [f for f in dry.findings if f.breaking]
    assert breaking and any(field in f.pointer + f.message for f in breaking), dry.findings
    # ...and the consumer check's, from the reads: only the workflow reading the field.
    assert _impacts(dry) == [(*named, f"steps.charge.output.{field}")]
    assert dry.broken_consumers[0].message  # why, in a sentence

    with pytest.raises(FailedPreconditionError) as refused:
        await coordinator.register_contract(tokens["payments"], new)
    text = str(refused.value)
    workflow, team, step = named
    assert "is not compatible with major 1" in text and field in text
    assert (
        f"breaks workflow {workflow} (v1, team {team}), step {step} reads steps.charge.output.{field}" in text
    ), text
    assert not_named not in text
    assert await _versions(coordinator, tokens["payments"]) == ["1.0.0"]


async def test_a_change_both_checks_accept_registers_although_consumers_read_the_field(
    coordinator, tmp_path: Path
):
    diff = await _diff(coordinator, tmp_path, CHARGE_1_1_UNDECLARED)
    assert diff.returncode == 0 and "compatible" in diff.stdout, diff.stdout + diff.stderr
    tokens = await _world(coordinator)
    dry = await coordinator.register_contract(tokens["payments"], CHARGE_1_1_UNDECLARED, dry_run=True)
    assert [f for f in dry.findings if f.breaking] == [] and _impacts(dry) == []
    assert (await coordinator.register_contract(tokens["payments"], CHARGE_1_1_UNDECLARED)).registered
    assert await _versions(coordinator, tokens["payments"]) == ["1.0.0", "1.1.0"]
