"""Limits hold across replicas (two real coordinator processes on one PostgreSQL database):

- a team's start rate (``accord team limits TEAM --start-rate``) holds in total, with the starts
  spread over both replicas: the runs admitted are counted against what the rate allows in the
  time the starts took (rate x elapsed + the burst), never against a clock's margin;
- a team's ``--max-concurrency`` and a contract's ``max_concurrency`` hold across both: one
  agent polls each replica, and the tasks running at once, counted at the agents, never pass the
  limit (and reach it: the limit is what held them).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

import grpc
import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2_grpc as pb_grpc
from tests.support.agent import Call, TestAgent
from tests.support.postgres import TestDatabase
from tests.support.replicas import Replicas
from tests.support.scenario import contract, start_run, wait_run
from tests.support.wait import wait_until

pytestmark = pytest.mark.postgres

HELD_WORKFLOW = """
workflow: flood/held
input: {type: object}
steps:
  hold:
    wait_for: {approval: {}}
output: {}
"""
WORK_WORKFLOW = """
workflow: {team}/many
input: {{type: object, required: [order_id], properties: {{order_id: {{type: string}}}}}}
steps:
  work:
    contract: {contract}@^1
    input: {{order_id: "${{input.order_id}}"}}
output: {{ref: "${{steps.work.output.ref}}"}}
"""


async def _limits_seen(replicas: Replicas, team: str, expected: dict[str, float]) -> None:
    """Wait until every replica's cache has the team's limits (set through the first one)."""
    for member in replicas:

        async def seen(member=member):
            shown = await member.acli("team", "limits", team, "--json", token=replicas.admin_token)
            return shown.returncode == 0 and json.loads(shown.stdout) == expected

        await wait_until(seen, f"{member.address} to know team {team}'s limits")


async def test_a_start_rate_holds_in_total_across_two_replicas(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    replicas = Replicas.start(tmp_path, pg_database.schema_url(), 2)
    try:
        a = replicas[0]
        flood = await a.create_team("flood")
        await a.register_workflow(flood, HELD_WORKFLOW)
        rate, burst = 2.0, 2.0  # 2/s: a burst of one second's worth
        ok = await a.acli("team", "limits", "flood", "--start-rate", "2/s", token=replicas.admin_token)
        assert ok.returncode == 0, ok
        await _limits_seen(replicas, "flood", {"max_concurrency": 0, "start_rate_per_s": rate})

        channels = [grpc.aio.insecure_channel(m.address) for m in replicas]
        try:
            stubs = [pb_grpc.CoordinatorServiceStub(c) for c in channels]
            admitted = [0, 0]
            refused = [0, 0]

            async def start(n: int) -> None:
                which = n % 2  # spread over both replicas
                request = pb.StartRunRequest(workflow="flood/held", idempotency_key=f"k-{n}")
                try:
                    await stubs[which].StartRun(
                        request, metadata=(("authorization", f"Bearer {flood}"),), timeout=60
                    )
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                    hints = [int(v) for k, v in exc.trailing_metadata() or () if k == "retry-after-ms"]
                    assert hints and 0 < hints[0] <= 1_001, exc.trailing_metadata()
                    refused[which] += 1
                    return
                admitted[which] += 1

            began = time.monotonic()
            for round_ in range(4):  # each round: ten starts at once, five through each replica
                await asyncio.gather(*(start(10 * round_ + n) for n in range(10)))
            elapsed = time.monotonic() - began
        finally:
            for channel in channels:
                await channel.close()

        allowed = math.floor(burst + rate * elapsed + 0.01)
        assert sum(admitted) <= allowed, (
            f"admitted {admitted} (by replica) in {elapsed:.2f}s at {rate}/s with a burst of {burst}: "
            f"at most {allowed} in total; refused {refused}"
        )
        assert sum(admitted) >= burst and sum(refused) > 0, (admitted, refused)
        assert all(admitted[n] + refused[n] == 20 for n in (0, 1)), (admitted, refused)
        async with replicas.client() as admin:
            runs = (await admin.coordinator.ListRuns(pb.ListRunsRequest(workflow="flood/held"))).runs
        assert len(runs) == sum(admitted)  # a refused start started nothing
    finally:
        replicas.kill_all()


async def _flood_within(
    replicas: Replicas, tokens: dict[str, str], team: str, limit: int, held: str, runs: int
) -> None:
    """Start ``runs`` runs of ``team``/many through both replicas, while one agent polls each
    replica; the tasks running at once, counted at both agents together, never pass ``limit``
    and reach it, both agents run some, and some step said ``held``.

    The tasks run in rounds: each waits for its round's gate, which opens once ``limit`` of them
    run (or all that are left). Then they all end at once, and both replicas claim the next ones
    for their agents at the same moment, racing for the same free slots: a claim that counted
    before another committed would show as one task too many at the agents."""
    running, most, finished = [0], [0], [0]
    gates = [asyncio.Event()]
    ran: dict[str, int] = {}

    async def work(call: Call):
        running[0] += 1
        most[0] = max(most[0], running[0])
        try:
            await gates[-1].wait()
        finally:
            running[0] -= 1
        ran[call.agent.agent_id] = ran.get(call.agent.agent_id, 0) + 1
        finished[0] += 1
        return {"ref": call.input["order_id"]}

    handlers = {"shared/work@1": work, "shared/capped@1": work}
    agents = [
        TestAgent(member.address, tokens["shared"], "shared", handlers, concurrency=limit + 2)
        for member in replicas
    ]
    for agent in agents:
        await agent.start()
    try:
        run_ids: list[str] = []
        async with replicas[0].client(tokens[team]) as first, replicas[1].client(tokens[team]) as second:
            for n in range(runs):
                client = (first, second)[n % 2]  # started through both replicas
                run_ids.append(
                    (await start_run(client, f"{team}/many", {"order_id": f"{team}-{n}"})).run.run_id
                )

        async with replicas[1].client(tokens[team]) as client:

            async def held_somewhere():
                for run_id in run_ids:
                    run = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run
                    if run.steps and run.steps[0].waiting_reason.startswith(held):
                        return run_id
                return None

            await wait_until(held_somewhere, f"a step held: {held}")
            while finished[0] < runs:
                target = min(limit, runs - finished[0])
                await wait_until(
                    lambda t=target: running[0] >= t,
                    f"a round of {target} tasks running ({finished[0]} of {runs} done)",
                )
                released, before = running[0], finished[0]
                gates[-1].set()
                gates.append(asyncio.Event())
                await wait_until(
                    lambda r=released, b=before: finished[0] >= b + r, f"the round's {released} tasks to end"
                )
            for run_id in run_ids:
                run = await wait_run(client, run_id)
                assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    finally:
        gates[-1].set()
        for agent in agents:
            await agent.stop()
    assert most[0] == limit, f"{most[0]} tasks ran at once, the limit is {limit}"
    assert len(ran) == 2, f"both replicas' agents should have run tasks: {ran}"


async def test_concurrency_limits_hold_across_two_replicas(pg_database: TestDatabase, tmp_path: Path) -> None:
    replicas = Replicas.start(tmp_path, pg_database.schema_url(), 2)
    try:
        a = replicas[0]
        tokens = {team: await a.create_team(team) for team in ("shared", "flood", "busy")}
        await a.register_contract(tokens["shared"], contract("shared/work"))
        await a.register_contract(tokens["shared"], contract("shared/capped", extra="max_concurrency: 2\n"))
        await a.register_workflow(tokens["flood"], WORK_WORKFLOW.format(team="flood", contract="shared/work"))
        await a.register_workflow(tokens["busy"], WORK_WORKFLOW.format(team="busy", contract="shared/capped"))

        # A team's limit, set by the admin through one replica.
        ok = await a.acli("team", "limits", "flood", "--max-concurrency", "3", token=replicas.admin_token)
        assert ok.returncode == 0, ok
        await _limits_seen(replicas, "flood", {"max_concurrency": 3, "start_rate_per_s": 0})
        await _flood_within(
            replicas, tokens, "flood", 3, "held: team flood may run 3 steps at once, 3 running", runs=24
        )

        # A contract's own max_concurrency, for a caller without a limit of its own.
        await _flood_within(
            replicas, tokens, "busy", 2, "held: shared/capped allows 2 at once, 2 running", runs=24
        )
    finally:
        replicas.kill_all()
