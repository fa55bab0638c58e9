"""A ``visibility: team`` contract is the owner's alone: another team can neither list it nor read
it through GetContract, DiffContracts or ListContractConsumers (PERMISSION_DENIED naming the
owner, as for every other team's object); the owner and the admin still can."""

from __future__ import annotations

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import PermissionDeniedError
from tests.support.coordinator import CoordinatorProcess
from tests.support.scenario import contract

PRIVATE_1 = contract("payments/private", extra="visibility: team\n")
PRIVATE_1_1 = contract(
    "payments/private",
    "1.1.0",
    output_props="{ref: {type: string}, secret_mode: {type: string}}",
    extra="visibility: team\n",
)
PRIVATE_WORKFLOW = """
workflow: payments/uses-private
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  work:
    contract: payments/private@^1
    input: {order_id: "${input.order_id}"}
output: {ref: "${steps.work.output.ref}"}
"""


def _reads() -> dict[str, tuple[str, object]]:
    return {
        "get": ("GetContract", pb.GetContractRequest(ref="payments/private")),
        "get-version": ("GetContract", pb.GetContractRequest(ref="payments/private@1.0.0")),
        "diff": (
            "DiffContracts",
            pb.DiffContractsRequest(old_ref="payments/private@1.0.0", new_ref="payments/private@1.1.0"),
        ),
        "consumers": ("ListContractConsumers", pb.ListContractConsumersRequest(ref="payments/private")),
    }


async def _world(coordinator: CoordinatorProcess) -> tuple[str, str]:
    owner = await coordinator.create_team("payments")
    other = await coordinator.create_team("warehouse")
    await coordinator.register_contract(owner, PRIVATE_1)
    await coordinator.register_contract(owner, PRIVATE_1_1)
    await coordinator.register_workflow(owner, PRIVATE_WORKFLOW)
    return owner, other


async def test_another_team_cannot_read_a_team_visibility_contract(coordinator: CoordinatorProcess) -> None:
    _, other = await _world(coordinator)
    async with coordinator.client(other) as client:
        listed = await client.coordinator.ListContracts(pb.ListContractsRequest(all_versions=True))
        assert "payments/private" not in {c.name for c in listed.contracts}
        for what, (method, request) in _reads().items():
            with pytest.raises(PermissionDeniedError) as refused:
                await getattr(client.coordinator, method)(request)
            message = str(refused.value)
            assert "team payments" in message and "visibility 'team'" in message, (what, message)
            assert "secret_mode" not in message


async def test_the_owner_and_the_admin_still_read_it(coordinator: CoordinatorProcess) -> None:
    owner, _ = await _world(coordinator)
    for token in (owner, None):
        async with coordinator.client(token) as client:
            got = await client.coordinator.GetContract(pb.GetContractRequest(ref="payments/private"))
            assert got.contract.version == "1.1.0" and list(got.versions) == ["1.0.0", "1.1.0"]
            diff = await client.coordinator.DiffContracts(_reads()["diff"][1])
            assert not diff.breaking and diff.same_major
            consumers = await client.coordinator.ListContractConsumers(_reads()["consumers"][1])
            assert [c.workflow for c in consumers.consumers] == ["payments/uses-private"]
