"""kill -9 of the coordinator during 50 concurrent runs; restart on the same DB: every run
finishes, no completed step runs again, each side effect is applied exactly once."""

from __future__ import annotations

import asyncio
import collections
import json
import random

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.agent import Call
from tests.support.scenario import contract, start_run, wait_run

WORKFLOW = """
workflow: payments/crashy
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  first:
    contract: payments/effect@^1
    input: {order_id: "${input.order_id}"}
  side:
    contract: payments/effect@^1
    input: {order_id: "${input.order_id}"}
  second:
    contract: payments/effect@^1
    input: {order_id: "${steps.first.output.ref}"}
output: {first: "${steps.first.output.ref}", second: "${steps.second.output.ref}", side: "${steps.side.output.ref}"}
"""

RUNS = 50


async def test_kill_9_during_50_runs_then_restart(coordinator, test_agent):
    token = await coordinator.create_team("payments")
    await coordinator.register_contract(
        token,
        contract(
            "payments/effect",
            extra="timeouts: {heartbeat: 1s}\nretry: {max_attempts: 10, initial_backoff: 50ms}\nidempotent: true\n",
        ),
    )
    await coordinator.register_workflow(token, WORKFLOW)

    applied: collections.Counter[str] = collections.Counter()  # side effects by idempotency key
    results: dict[str, dict[str, str]] = {}
    deliveries_after_ack: list[str] = []
    acknowledged: set[str] = set()
    enough_done = asyncio.Event()

    async def effect(call: Call):
        if call.key in acknowledged:
            deliveries_after_ack.append(call.key)
        await asyncio.sleep(random.uniform(0.02, 0.12))
        if call.key not in results:  # the engine-side dedupe an idempotent contract promises
            applied[call.key] += 1
            results[call.key] = {"ref": f"{call.input['order_id']}>{call.task.step_id}"}
            if len(results) >= RUNS:
                enough_done.set()
        return results[call.key]

    agents = [
        await test_agent(token, "payments", {"payments/effect@1": effect}, concurrency=8, heartbeat_s=0.2)
        for _ in range(2)
    ]

    async with coordinator.client(token) as client:
        started = await asyncio.gather(
            *(start_run(client, "payments/crashy", {"order_id": f"o{i}"}, key=f"k{i}") for i in range(RUNS))
        )
    run_ids = [s.run.run_id for s in started]

    # Let some work finish, then crash in the middle of it.
    await asyncio.wait_for(enough_done.wait(), 30)
    for agent in agents:
        acknowledged.update(r.key for r in agent.records if r.accepted)
    await asyncio.to_thread(coordinator.kill9)
    done_at_crash = len(results)
    await asyncio.sleep(0.3)
    await asyncio.to_thread(coordinator.restart)

    async with coordinator.client(token) as client:
        runs = [await wait_run(client, run_id, within=60) for run_id in run_ids]
        # Same idempotency key after the restart: the same run.
        again = await start_run(client, "payments/crashy", {"order_id": "o0"}, key="k0")
    assert again.run.run_id == run_ids[0] and not again.created

    assert done_at_crash < 3 * RUNS, "the crash came too late to test anything"
    assert [r.status for r in runs] == [pb.RUN_STATUS_SUCCEEDED] * RUNS, [
        (r.run_id, r.error.message) for r in runs if r.status != pb.RUN_STATUS_SUCCEEDED
    ]
    for i, run in enumerate(runs):
        assert json.loads(run.output_json) == {
            "first": f"o{i}>first",
            "second": f"o{i}>first>second",
            "side": f"o{i}>side",
        }
    expected = {f"{run_id}:{step}" for run_id in run_ids for step in ("first", "side", "second")}
    assert set(applied) == expected
    assert all(count == 1 for count in applied.values())
    assert deliveries_after_ack == [], "a step whose completion was acknowledged ran again"
