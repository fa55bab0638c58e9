"""WatchRun through the real coordinator: every stream ends with the run terminal, never before.

Many watchers over runs whose steps end at scattered moments (some after idle gaps longer than a
second). The updates are large and the watchers read them slowly, so sending one waits on HTTP/2
flow control, and runs often finish while the coordinator is still sending a watcher its
previous update: the interleaving in which the stream used to end on a "running" update.
``make test`` watches 40 runs, ``make soak`` 300.
"""

from __future__ import annotations

import asyncio
import json
import random

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from coordinator.client import AsyncClient
from tests.support.agent import Call
from tests.support.scenario import TERMINAL, contract, start_run
from tests.support.soak import sized

WORKFLOW = """
workflow: payments/two-steps
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  first:
    contract: payments/echo@^1
    input: {order_id: "${input.order_id}"}
  second:
    contract: payments/echo@^1
    input: {order_id: "${steps.first.output.ref}"}
output: {ref: "${steps.second.output.ref}"}
"""


@sized("watchers", short=40, soak=300)
async def test_many_concurrent_watch_streams_each_end_with_the_terminal_run(
    coordinator, test_agent, watchers: int
):
    token = await coordinator.create_team("payments")
    await coordinator.register_contract(token, contract("payments/echo"))
    await coordinator.register_workflow(token, WORKFLOW)
    rng = random.Random(7)

    async def echo(call: Call):
        # Mostly quick, sometimes an idle gap: runs end at all sorts of moments.
        await asyncio.sleep(rng.choice([0, 0, 0.001, 0.005, 0.02, 1.2]))
        return {"ref": call.input["order_id"]}

    await test_agent(token, "payments", {"payments/echo@1": echo}, concurrency=16)

    # A small, fixed receive window: a large update waits until the slow watcher reads it.
    window = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 65_535)]
    async with AsyncClient(coordinator.address, token, options=window) as client:
        order_ids = [f"o-{i}-" + "x" * 200_000 for i in range(watchers)]
        runs = [
            (await start_run(client, "payments/two-steps", {"order_id": order_id})).run.run_id
            for order_id in order_ids
        ]

        async def follow(run_id: str) -> list[pb.Run]:
            updates = []
            async for update in client.coordinator.stream("WatchRun", pb.WatchRunRequest(run_id=run_id)):
                updates.append(update.run)
                await asyncio.sleep(rng.uniform(0, 0.05))  # a slow reader
            return updates

        streams = await asyncio.wait_for(asyncio.gather(*(follow(r) for r in runs)), 3 * watchers)

    for run_id, updates in zip(runs, streams, strict=True):
        assert updates, f"the watch of {run_id} sent nothing"
        last = updates[-1]
        assert last.status in TERMINAL, (
            f"the watch of {run_id} ended while the run was {pb.RunStatus.Name(last.status)}"
        )
        assert last.status == pb.RUN_STATUS_SUCCEEDED
        assert json.loads(last.output_json) == {"ref": order_ids[runs.index(run_id)]}
        assert all(u.status not in TERMINAL for u in updates[:-1])
