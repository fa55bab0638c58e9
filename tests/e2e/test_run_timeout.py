"""A workflow's ``timeout:``: past it the run fails with RunTimeout, its in-flight tasks are
cancelled (the agents learn it through their heartbeats) and its steps that had not started are
cancelled too; a run that finishes in time is not touched by it."""

from __future__ import annotations

import asyncio
import json

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.agent import Call
from tests.support.scenario import contract, start_run, step, wait_run
from tests.support.wait import wait_until

WORKFLOW = """
workflow: payments/slow-order
timeout: {timeout}
input: {{type: object, required: [order_id], properties: {{order_id: {{type: string}}}}}}
steps:
  first:
    contract: payments/work@^1
    input: {{order_id: "${{input.order_id}}"}}
  second:
    contract: payments/work@^1
    input: {{order_id: "${{steps.first.output.ref}}"}}
output: {{ref: "${{steps.second.output.ref}}"}}
"""


async def test_run_timeout_fails_the_run_and_cancels_its_in_flight_tasks(coordinator, test_agent):
    token = await coordinator.create_team("payments")
    await coordinator.register_contract(token, contract("payments/work", extra="timeout: 10m\n"))
    await coordinator.register_workflow(token, WORKFLOW.format(timeout="1500ms"))
    started = asyncio.Event()

    async def work(call: Call):
        if call.input["order_id"] == "slow":
            started.set()
            await asyncio.sleep(3600)  # heartbeats keep flowing: only the run timeout ends it
        return {"ref": f"done-{call.input['order_id']}"}

    agent = await test_agent(token, "payments", {"payments/work@1": work}, heartbeat_s=0.1)
    async with coordinator.client(token) as client:
        quick = (await start_run(client, "payments/slow-order", {"order_id": "quick"})).run
        assert quick.deadline_unix_ms == quick.created_unix_ms + 1500
        slow = (await start_run(client, "payments/slow-order", {"order_id": "slow"})).run
        await asyncio.wait_for(started.wait(), 30)

        run = await wait_run(client, slow.run_id)
        assert run.status == pb.RUN_STATUS_FAILED, run
        assert run.error.type == "RunTimeout"
        assert "did not finish within its timeout of 1s500ms" in run.error.message
        first = step(run, "first")
        assert first.status == pb.STEP_STATUS_CANCELLED
        assert [a.status for a in first.attempts] == [pb.ATTEMPT_STATUS_CANCELLED]
        assert step(run, "second").status == pb.STEP_STATUS_CANCELLED
        attempt_id = first.attempts[0].attempt_id
        await wait_until(lambda: attempt_id in agent.cancelled, "the agent told to cancel the attempt")

        done = await wait_run(client, quick.run_id)
        assert done.status == pb.RUN_STATUS_SUCCEEDED and json.loads(done.output_json) == {
            "ref": "done-done-quick"
        }

    shown = await coordinator.acli("runs", "show", slow.run_id, token=token)
    assert "RunTimeout" in shown.stdout and "timeout   at" in shown.stdout, shown


async def test_a_bad_run_timeout_is_refused_naming_the_line(coordinator):
    token = await coordinator.create_team("payments")
    await coordinator.register_contract(token, contract("payments/work"))
    path = coordinator.home / "slow.yaml"
    path.write_text(WORKFLOW.format(timeout="soon"))
    result = await coordinator.acli("workflow", "register", str(path), token=token)
    assert result.returncode == 2, result
    assert "slow.yaml:3" in result.stderr and "timeout" in result.stderr, result.stderr
