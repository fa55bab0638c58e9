"""StartRun's rules against the real coordinator: re-runs from the stored input, an idempotency
key reused with another input, the shape of a workflow name, and the CLI's exit codes for them."""

from __future__ import annotations

import json

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from tests.support.coordinator import CoordinatorProcess
from tests.support.scenario import contract

CHARGE = contract(
    "payments/charge",
    input_props="{order_id: {type: string}, card_token: {type: string}}",
    extra="sensitive: [input.card_token]\n",
)
WORKFLOW = """
workflow: payments/pay
input:
  type: object
  required: [order_id]
  properties: {order_id: {type: string}, card_token: {type: string}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}", card_token: "${input.card_token}"}
output: {ref: "${steps.charge.output.ref}"}
"""
RAW = {"order_id": "o-1", "card_token": "tok_visa_4242"}


async def _world(coordinator: CoordinatorProcess) -> tuple[str, str, str]:
    payments = await coordinator.create_team("payments")
    warehouse = await coordinator.create_team("warehouse")
    await coordinator.register_contract(payments, CHARGE)
    await coordinator.register_workflow(payments, WORKFLOW)
    async with coordinator.client(payments) as client:
        started = await client.coordinator.StartRun(
            pb.StartRunRequest(workflow="payments/pay", input_json=json.dumps(RAW), idempotency_key="k1")
        )
    return payments, warehouse, started.run.run_id


async def test_exit_codes_of_an_existing_team_and_a_workflow_that_does_not_type_check(
    coordinator: CoordinatorProcess, tmp_path: object
) -> None:
    await coordinator.create_team("payments")
    with pytest.raises(AlreadyExistsError, match="team payments already exists"):
        await coordinator.create_team("payments")
    again = await coordinator.acli("team", "create", "payments")
    assert again.returncode == 2 and "already exists" in again.stderr, again.stdout + again.stderr
    shipping = await coordinator.create_team("shipping")
    bad = coordinator.home / "bad.yaml"
    bad.write_text(
        WORKFLOW.replace("payments/pay", "shipping/pay").replace("payments/charge@^1", "payments/none@^1")
    )
    for extra in (["--dry-run"], []):
        result = await coordinator.acli("workflow", "register", str(bad), *extra, token=shipping)
        assert result.returncode == 2, (extra, result.stdout, result.stderr)


@pytest.mark.parametrize("name", ["nope", "Payments/pay", "payments/pay/x", ""])
async def test_a_malformed_workflow_name_is_invalid_argument(
    coordinator: CoordinatorProcess, name: str
) -> None:
    payments = await coordinator.create_team("payments")
    async with coordinator.client(payments) as client:
        with pytest.raises(InvalidArgumentError) as refused:
            await client.coordinator.StartRun(pb.StartRunRequest(workflow=name, input_json="{}"))
    assert str(refused.value) == f"workflow name '{name}' must be team/name, e.g. shipping/order-to-cash"
    if name:
        cli = await coordinator.acli("run", name, token=payments)
        assert cli.returncode == 2 and f"workflow name '{name}' must be team/name" in cli.stderr, cli.stderr


async def test_a_well_formed_unknown_workflow_is_still_not_registered(
    coordinator: CoordinatorProcess,
) -> None:
    payments = await coordinator.create_team("payments")
    async with coordinator.client(payments) as client:
        with pytest.raises(NotFoundError, match="workflow payments/nope is not registered"):
            await client.coordinator.StartRun(pb.StartRunRequest(workflow="payments/nope", input_json="{}"))


async def test_an_idempotency_key_reused_with_another_input_is_refused(
    coordinator: CoordinatorProcess,
) -> None:
    payments, _, run_id = await _world(coordinator)
    async with coordinator.client(payments) as client:
        # The same input (keys in another order) finds the same run, as before.
        same = await client.coordinator.StartRun(
            pb.StartRunRequest(
                workflow="payments/pay",
                input_json=json.dumps(dict(reversed(list(RAW.items())))),
                idempotency_key="k1",
            )
        )
        assert not same.created and same.run.run_id == run_id
        with pytest.raises(InvalidArgumentError) as refused:
            await client.coordinator.StartRun(
                pb.StartRunRequest(
                    workflow="payments/pay", input_json='{"order_id": "o-2"}', idempotency_key="k1"
                )
            )
        assert (
            str(refused.value)
            == f"idempotency key k1 was already used for run {run_id} with a different input"
        )
    cli = await coordinator.acli(
        "run", "payments/pay", "--input", '{"order_id": "o-3"}', "--idempotency-key", "k1", token=payments
    )
    assert cli.returncode == 2 and "already used for run" in cli.stderr, cli.stdout + cli.stderr


async def test_a_retried_start_finds_its_run_even_where_a_new_one_would_be_refused(
    coordinator: CoordinatorProcess,
) -> None:
    """A start whose key is taken is answered with the run that took it, whatever would refuse
    the start as a new run now: here a newer version of the workflow whose input the first
    start's no longer satisfies. Without a key, the same start is refused."""
    payments, _, run_id = await _world(coordinator)
    await coordinator.register_workflow(
        payments, WORKFLOW.replace("required: [order_id]", "required: [order_id, currency]")
    )
    async with coordinator.client(payments) as client:
        again = await client.coordinator.StartRun(
            pb.StartRunRequest(workflow="payments/pay", input_json=json.dumps(RAW), idempotency_key="k1")
        )
        assert not again.created and again.run.run_id == run_id
        with pytest.raises(InvalidArgumentError, match="currency"):
            await client.coordinator.StartRun(
                pb.StartRunRequest(workflow="payments/pay", input_json=json.dumps(RAW))
            )


async def test_rerun_of_copies_the_stored_input(coordinator: CoordinatorProcess) -> None:
    payments, _, run_id = await _world(coordinator)
    async with coordinator.client(payments) as client:
        again = await client.coordinator.StartRun(pb.StartRunRequest(rerun_of=run_id))
        assert again.created and again.run.run_id != run_id and again.run.workflow == "payments/pay"
        named = await client.coordinator.StartRun(
            pb.StartRunRequest(workflow="payments/pay", rerun_of=run_id)
        )
        assert named.created
    async with coordinator.client() as admin:
        for new_id in (again.run.run_id, named.run.run_id):
            stored = (await admin.coordinator.GetRun(pb.GetRunRequest(run_id=new_id))).run
            assert json.loads(stored.input_json) == RAW


async def test_rerun_of_is_refused_when_it_should_be(coordinator: CoordinatorProcess) -> None:
    payments, warehouse, run_id = await _world(coordinator)
    async with coordinator.client(payments) as client:
        with pytest.raises(InvalidArgumentError, match="input_json must be empty"):
            await client.coordinator.StartRun(
                pb.StartRunRequest(rerun_of=run_id, input_json='{"order_id": "x"}')
            )
        with pytest.raises(InvalidArgumentError, match="is a run of payments/pay"):
            await client.coordinator.StartRun(pb.StartRunRequest(workflow="payments/other", rerun_of=run_id))
        with pytest.raises(NotFoundError, match="run run-nope does not exist"):
            await client.coordinator.StartRun(pb.StartRunRequest(rerun_of="run-nope"))
    async with coordinator.client(warehouse) as client:
        with pytest.raises(PermissionDeniedError, match="team payments") as refused:
            await client.coordinator.StartRun(pb.StartRunRequest(rerun_of=run_id))
        assert "tok_visa_4242" not in str(refused.value)


async def test_the_same_request_id_sent_again_finds_the_run_it_started(
    coordinator: CoordinatorProcess,
) -> None:
    """A client that lost the answer (perhaps of a coordinator that died) sends the same request,
    with the request id it made once, again (perhaps to another coordinator): one run."""
    payments, _, _ = await _world(coordinator)
    request = pb.StartRunRequest(workflow="payments/pay", input_json=json.dumps(RAW), request_id="req-1")
    async with coordinator.client(payments) as client:
        first = await client.coordinator.StartRun(request)
        again = await client.coordinator.StartRun(request)
        other = await client.coordinator.StartRun(
            pb.StartRunRequest(workflow="payments/pay", input_json=json.dumps(RAW), request_id="req-2")
        )
    assert first.created and not again.created
    assert again.run.run_id == first.run.run_id
    assert other.created and other.run.run_id != first.run.run_id
