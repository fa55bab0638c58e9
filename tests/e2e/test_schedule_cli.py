"""``accord schedule list|pause|resume|trigger`` against the real coordinator: registering a
workflow with ``schedules:`` makes its schedules (a new version replaces them), and the CLI shows,
pauses, resumes and triggers them; another team is refused."""

from __future__ import annotations

import json

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.scenario import contract, wait_run

WORKFLOW = """
workflow: payments/nightly
input: {{type: object, required: [order_id], properties: {{order_id: {{type: string}}}}}}
steps:
  charge:
    contract: payments/charge@^1
    input: {{order_id: "${{input.order_id}}"}}
output: {{ref: "${{steps.charge.output.ref}}"}}
schedules:
{schedules}
"""
YEARLY = '  - {id: yearly, cron: "0 0 1 1 *", timezone: Europe/Berlin, input: {order_id: y}, overlap: queue}'
MONTHLY = '  - {id: monthly, cron: "0 0 1 * *", input: {order_id: m}}'


async def test_schedule_commands(coordinator, test_agent):
    token = await coordinator.create_team("payments")
    sales = await coordinator.create_team("sales")
    await coordinator.register_contract(token, contract("payments/charge"))
    await coordinator.register_workflow(token, WORKFLOW.format(schedules=YEARLY + "\n" + MONTHLY))

    listed = await coordinator.acli("schedule", "list", "--json", token=token)
    assert listed.returncode == 0, listed
    schedules = {s["id"]: s for s in json.loads(listed.stdout)}
    assert set(schedules) == {"yearly", "monthly"}
    yearly = schedules["yearly"]
    assert (yearly["cron"], yearly["timezone"], yearly["overlap"], yearly["paused"]) == (
        "0 0 1 1 *",
        "Europe/Berlin",
        "queue",
        False,
    )
    assert yearly["next_due_unix_ms"] > 0 and yearly["input"] == {"order_id": "y"}
    assert json.loads((await coordinator.acli("schedule", "list", "--json", token=sales)).stdout) == []

    refused = await coordinator.acli("schedule", "pause", "payments/nightly", "yearly", token=sales)
    assert refused.returncode == 3 and "only that team may pause" in refused.stderr, refused
    missing = await coordinator.acli("schedule", "pause", "payments/nightly", "weekly", token=token)
    assert missing.returncode != 0 and "has no schedule weekly" in missing.stderr, missing

    paused = await coordinator.acli("schedule", "pause", "payments/nightly", "yearly", token=token)
    assert paused.returncode == 0 and "paused" in paused.stdout, paused
    shown = await coordinator.acli("schedule", "list", token=token)
    assert "payments/nightly  yearly  '0 0 1 1 *' Europe/Berlin  paused" in shown.stdout, shown.stdout
    resumed = await coordinator.acli("schedule", "resume", "payments/nightly", "yearly", token=token)
    assert resumed.returncode == 0 and "resumed, next due" in resumed.stdout, resumed

    async def charge(call):
        return {"ref": f"charged-{call.input['order_id']}"}

    await test_agent(token, "payments", {"payments/charge@1": charge})
    triggered = await coordinator.acli("schedule", "trigger", "payments/nightly", "monthly", token=token)
    assert triggered.returncode == 0, triggered
    async with coordinator.client(token) as client:
        run = await wait_run(client, triggered.stdout.strip())
    assert run.status == pb.RUN_STATUS_SUCCEEDED and json.loads(run.output_json) == {"ref": "charged-m"}
    assert run.idempotency_key.startswith("schedule:monthly:trigger:")

    # A new version without the monthly schedule: it goes.
    await coordinator.register_workflow(token, WORKFLOW.format(schedules=YEARLY))
    listed = json.loads((await coordinator.acli("schedule", "list", "--json", token=token)).stdout)
    assert [s["id"] for s in listed] == ["yearly"]


async def test_trigger_of_a_disabled_workflow_says_it_is_disabled(coordinator):
    token = await coordinator.create_team("payments")
    await coordinator.register_contract(token, contract("payments/charge"))
    await coordinator.register_workflow(token, WORKFLOW.format(schedules=MONTHLY))
    disabled = await coordinator.acli("workflow", "disable", "payments/nightly", token=token)
    assert disabled.returncode == 0, disabled

    refused = await coordinator.acli("schedule", "trigger", "payments/nightly", "monthly", token=token)
    assert refused.returncode == 2, refused
    assert "payments/nightly: workflow is disabled" in refused.stderr, refused
    assert "accord workflow enable payments/nightly" in refused.stderr, refused
    async with coordinator.client(token) as client:
        runs = (await client.coordinator.ListRuns(pb.ListRunsRequest(workflow="payments/nightly"))).runs
    assert list(runs) == []

    await coordinator.acli("workflow", "enable", "payments/nightly", token=token)
    triggered = await coordinator.acli("schedule", "trigger", "payments/nightly", "monthly", token=token)
    assert triggered.returncode == 0 and triggered.stdout.strip(), triggered
