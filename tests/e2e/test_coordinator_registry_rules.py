"""Registry rules against the real coordinator: back-filled versions, findings reported once,
deprecation arguments."""

from __future__ import annotations

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import FailedPreconditionError, InvalidArgumentError
from tests.support.coordinator import CoordinatorProcess
from tests.support.scenario import contract


def _amount(version: str, minimum: int) -> str:
    return contract(
        "payments/charge",
        version,
        input_props=f"{{order_id: {{type: string}}, amount: {{type: integer, minimum: {minimum}}}}}",
    )


# ---------- back-fill: a version older than the newest of its major ----------


async def test_a_backfilled_version_between_two_compatible_ones_registers(
    coordinator: CoordinatorProcess,
) -> None:
    payments = await coordinator.create_team("payments")
    await coordinator.register_contract(payments, _amount("1.0.0", 10))
    await coordinator.register_contract(payments, _amount("1.2.0", 0))
    # 1.1.0 accepts more than 1.0.0 and less than 1.2.0: a safe successor of 1.0.0 and a safe
    # predecessor of 1.2.0, which is all a back-fill must be.
    response = await coordinator.register_contract(payments, _amount("1.1.0", 5))
    assert response.registered, list(response.findings)
    assert not [f for f in response.findings if f.breaking]
    assert any("older than the registered payments/charge@1.2.0" in w for w in response.warnings)


@pytest.mark.parametrize(
    ("minimum", "against"),
    [(20, "payments/charge@1.0.0"), (-5, "payments/charge@1.2.0")],
    ids=["narrower-than-the-older", "wider-than-the-newer"],
)
async def test_a_backfill_that_breaks_either_neighbour_is_refused(
    coordinator: CoordinatorProcess, minimum: int, against: str
) -> None:
    payments = await coordinator.create_team("payments")
    await coordinator.register_contract(payments, _amount("1.0.0", 10))
    await coordinator.register_contract(payments, _amount("1.2.0", 0))
    with pytest.raises(FailedPreconditionError) as refused:
        await coordinator.register_contract(payments, _amount("1.1.0", minimum))
    assert f"against {against}" in str(refused.value)


# ---------- each finding once ----------

PRIVATE = contract("payments/private", extra="visibility: team\n")
OLD = contract("payments/old")
USES_PRIVATE = """
workflow: shipping/uses-private
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  work:
    contract: payments/private@^1
    input: {order_id: "${input.order_id}"}
output: {ref: "${steps.work.output.ref}"}
"""
USES_OLD = USES_PRIVATE.replace("uses-private", "uses-old").replace("payments/private", "payments/old")


async def test_a_team_visibility_finding_is_reported_once(coordinator: CoordinatorProcess) -> None:
    payments = await coordinator.create_team("payments")
    shipping = await coordinator.create_team("shipping")
    await coordinator.register_contract(payments, PRIVATE)
    response = await coordinator.register_workflow(shipping, USES_PRIVATE, dry_run=True)
    about = [f for f in response.findings if "visibility" in f.message]
    assert len(about) == 1 and about[0].breaking, list(response.findings)
    with pytest.raises(InvalidArgumentError) as refused:
        await coordinator.register_workflow(shipping, USES_PRIVATE)
    assert str(refused.value).count("visibility 'team'") == 1, str(refused.value)


async def test_a_deprecation_is_reported_once(coordinator: CoordinatorProcess) -> None:
    payments = await coordinator.create_team("payments")
    shipping = await coordinator.create_team("shipping")
    await coordinator.register_contract(payments, OLD)
    async with coordinator.client(payments) as client:
        await client.coordinator.DeprecateContract(
            pb.DeprecateContractRequest(ref="payments/old@1", sunset="2030-06-01")
        )
    response = await coordinator.register_workflow(shipping, USES_OLD)
    mentions = [w for w in response.warnings if "deprecated" in w] + [
        f.message for f in response.findings if "deprecated" in f.message
    ]
    assert len(mentions) == 1 and "2030-06-01" in mentions[0], mentions


# ---------- deprecate: arguments are checked; an earlier replacement is kept ----------


@pytest.mark.parametrize(
    ("sunset", "replacement", "says"),
    [
        ("soon", "", "sunset 'soon' is not an ISO date"),
        ("2030-02-30", "", "sunset '2030-02-30' is not a valid date"),
        ("2030-06-01", "the new one", "replacement"),
        ("2030-06-01", "payments/old", "replacement"),
        ("2020-01-01", "", "sunset 2020-01-01 is in the past"),
        ("2030-06-01", "payments/old@2", "replacement payments/old@2 does not exist"),
        ("2030-06-01", "payments/nothing@1", "replacement payments/nothing@1 does not exist"),
    ],
)
async def test_deprecate_checks_the_sunset_and_the_replacement(
    coordinator: CoordinatorProcess, sunset: str, replacement: str, says: str
) -> None:
    payments = await coordinator.create_team("payments")
    await coordinator.register_contract(payments, OLD)
    async with coordinator.client(payments) as client:
        with pytest.raises(InvalidArgumentError) as refused:
            await client.coordinator.DeprecateContract(
                pb.DeprecateContractRequest(ref="payments/old@1", sunset=sunset, replacement=replacement)
            )
        assert says in str(refused.value)
        got = await client.coordinator.GetContract(pb.GetContractRequest(ref="payments/old"))
        assert not got.contract.HasField("deprecated")
    cli = await coordinator.acli(
        "contract", "deprecate", "payments/old@1", "--sunset", sunset, "--replacement", replacement,
        token=payments,
    )  # fmt: skip
    assert cli.returncode == 2, cli.stdout + cli.stderr


async def test_deprecating_again_keeps_the_earlier_replacement(coordinator: CoordinatorProcess) -> None:
    payments = await coordinator.create_team("payments")
    await coordinator.register_contract(payments, OLD)
    # A replacement must exist.
    await coordinator.register_contract(payments, contract("payments/old", "2.0.0"))
    await coordinator.register_contract(payments, contract("payments/new"))
    async with coordinator.client(payments) as client:
        await client.coordinator.DeprecateContract(
            pb.DeprecateContractRequest(
                ref="payments/old@1", sunset="2030-06-01", replacement="payments/old@2"
            )
        )
        again = await client.coordinator.DeprecateContract(
            pb.DeprecateContractRequest(ref="payments/old@1", sunset="2031-01-01")
        )
        assert [(c.deprecated.sunset, c.deprecated.replacement) for c in again.contracts] == [
            ("2031-01-01", "payments/old@2")
        ]
        got = (await client.coordinator.GetContract(pb.GetContractRequest(ref="payments/old@1"))).contract
        assert (got.deprecated.sunset, got.deprecated.replacement) == ("2031-01-01", "payments/old@2")
        changed = await client.coordinator.DeprecateContract(
            pb.DeprecateContractRequest(
                ref="payments/old@1", sunset="2031-01-01", replacement="payments/new@1"
            )
        )
        assert changed.contracts[0].deprecated.replacement == "payments/new@1"
