"""A team's concurrency limit (``accord team limits TEAM --max-concurrency N``) against the real
coordinator: one team floods a contract another team's chain also calls; held to its limit, the
flood never has more than N steps running, its waiting steps say they are held, and the other
team's chain finishes within 1.5 times the latency it had before the flood (medians of several
chains, both measured in this test, as the issue asks)."""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.agent import Call
from tests.support.scenario import TERMINAL, contract, start_run, step, wait_run
from tests.support.soak import LATENCY_RATIOS, sized
from tests.support.wait import wait_until

FLOOD_WORKFLOW = """
workflow: flood/many
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  work:
    contract: shared/work@^1
    input: {order_id: "${input.order_id}"}
output: {ref: "${steps.work.output.ref}"}
"""
CHAIN_WORKFLOW = """
workflow: quiet/chain
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  one:
    contract: shared/work@^1
    input: {order_id: "${input.order_id}"}
  two:
    contract: shared/work@^1
    input: {order_id: "${steps.one.output.ref}"}
  three:
    contract: shared/work@^1
    input: {order_id: "${steps.two.output.ref}"}
output: {ref: "${steps.three.output.ref}"}
"""
LIMIT = 2
WORK_S = 0.05


async def _chain_latency(client, n: int) -> float:
    started = time.monotonic()
    run_id = (await start_run(client, "quiet/chain", {"order_id": f"q{n}"})).run.run_id
    while True:  # a tight look (10 ms) against a chain of three 50 ms steps
        run = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run
        if run.status in TERMINAL:
            assert run.status == pb.RUN_STATUS_SUCCEEDED, run
            return time.monotonic() - started
        assert time.monotonic() - started < 60, f"chain {run_id} did not finish: {run}"
        await asyncio.sleep(0.01)


@pytest.mark.xdist_group(LATENCY_RATIOS)
@sized("flood,chains", short=(400, 7), soak=(2000, 25))
async def test_a_limited_teams_flood_does_not_delay_another_teams_chain(
    coordinator, test_agent, flood, chains
):
    tokens = {team: await coordinator.create_team(team) for team in ("shared", "flood", "quiet")}
    await coordinator.register_contract(tokens["shared"], contract("shared/work"))
    await coordinator.register_workflow(tokens["flood"], FLOOD_WORKFLOW)
    await coordinator.register_workflow(tokens["quiet"], CHAIN_WORKFLOW)
    limited = await coordinator.acli("team", "limits", "flood", "--max-concurrency", str(LIMIT))
    assert limited.returncode == 0 and "max concurrency 2" in limited.stdout, limited

    running = {"flood": 0}
    most = {"flood": 0}

    async def work(call: Call):
        flooding = call.input["order_id"].startswith("f")
        if flooding:
            running["flood"] += 1
            most["flood"] = max(most["flood"], running["flood"])
        try:
            await asyncio.sleep(WORK_S)
        finally:
            if flooding:
                running["flood"] -= 1
        return {"ref": call.input["order_id"]}

    await test_agent(tokens["shared"], "shared", {"shared/work@1": work}, concurrency=2 * LIMIT + 2)

    async with coordinator.client(tokens["quiet"]) as quiet, coordinator.client(tokens["flood"]) as flooder:
        await _chain_latency(quiet, -1)  # warm up
        before = [await _chain_latency(quiet, n) for n in range(chains)]
        flood_ids = [
            r.run.run_id
            for r in await asyncio.gather(
                *(start_run(flooder, "flood/many", {"order_id": f"f{n}"}) for n in range(flood))
            )
        ]
        # The flood's runs wait behind each other, held by the limit, and say so. (Which run is
        # held is not their order in flood_ids: the starts were sent all at once, and one of the
        # last may be the one being handed to the agent right now.)
        held = f"held: team flood may run {LIMIT} steps at once, {LIMIT} running"
        said = []  # what `runs show` said of a run GetRun had just shown held
        for _ in range(5):  # the flood goes on meanwhile: a held run may be handed on by the time
            waiting = None  # the CLI (a process of its own, slow on a loaded machine) asks
            for run_id in reversed(flood_ids[-20:]):
                got = (await flooder.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run
                if got.steps and got.steps[0].waiting_reason == held:
                    waiting = run_id
                    break
            assert waiting is not None, "none of the flood's last 20 runs says it is held by the limit"
            shown = await coordinator.acli("runs", "show", waiting, "--json", token=tokens["flood"])
            said.append(json.loads(shown.stdout)["steps"][0]["waiting_reason"])
            if said[-1] == held:
                break
        assert said[-1] == held, said
        during = [await _chain_latency(quiet, 100 + n) for n in range(chains)]

        # The flood was still going the whole time the chains were measured.
        last = (await flooder.coordinator.GetRun(pb.GetRunRequest(run_id=flood_ids[-1]))).run
        assert last.status not in TERMINAL, "the flood ended before the chains were measured"

    assert most["flood"] <= LIMIT, most
    baseline, flooded = statistics.median(before), statistics.median(during)
    assert flooded <= 1.5 * baseline, (
        f"the chain took {flooded * 1000:.0f} ms (median) during the flood, "
        f"{baseline * 1000:.0f} ms before it; before: {before}, during: {during}"
    )


async def test_a_contracts_max_concurrency_holds_every_callers_steps(coordinator, test_agent):
    tokens = {team: await coordinator.create_team(team) for team in ("shared", "flood")}
    await coordinator.register_contract(
        tokens["shared"], contract("shared/work", extra="max_concurrency: 2\n")
    )
    await coordinator.register_workflow(tokens["flood"], FLOOD_WORKFLOW)
    running, most = [0], [0]
    release = asyncio.Event()

    async def work(call: Call):
        running[0] += 1
        most[0] = max(most[0], running[0])
        try:
            await release.wait()
        finally:
            running[0] -= 1
        return {"ref": call.input["order_id"]}

    await test_agent(tokens["shared"], "shared", {"shared/work@1": work}, concurrency=6)
    async with coordinator.client(tokens["flood"]) as client:
        run_ids = [
            (await start_run(client, "flood/many", {"order_id": f"f{n}"})).run.run_id for n in range(6)
        ]

        async def held():
            runs = [(await client.coordinator.GetRun(pb.GetRunRequest(run_id=r))).run for r in run_ids]
            reasons = [r.steps[0].waiting_reason for r in runs]
            return (
                reasons
                if sum(r.startswith("held: shared/work allows 2 at once, 2 running") for r in reasons) == 4
                else None
            )

        await wait_until(held, "four steps held by shared/work's max_concurrency")
        assert running[0] == 2
        release.set()
        for run_id in run_ids:
            run = await wait_run(client, run_id)
            assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert most[0] == 2


GATED_WORKFLOW = """
workflow: flood/gated
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  gate:
    wait_for: {approval: {}}
  work:
    contract: shared/work@^1
    when: "${steps.gate.output.approved}"
    input: {order_id: "${input.order_id}"}
output: {ref: "${steps.work.output.ref}"}
"""


async def test_a_cap_added_in_a_newer_version_holds_runs_pinned_to_an_older_one(coordinator, test_agent):
    """A run pins the contract version it started with; the owner's ``max_concurrency`` is the
    newest version of the major's, for every run: a run pinned to 1.0.0 (no cap) is held by the
    cap 1.1.0 adds, on the eager hand-off to an agent already waiting as on a poll."""
    tokens = {team: await coordinator.create_team(team) for team in ("shared", "flood")}
    await coordinator.register_contract(tokens["shared"], contract("shared/work"))
    await coordinator.register_workflow(tokens["flood"], GATED_WORKFLOW)
    async with coordinator.client(tokens["flood"]) as client:
        run_ids = [
            (await start_run(client, "flood/gated", {"order_id": f"g{n}"})).run.run_id for n in range(3)
        ]
        pinned = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=run_ids[0]))).run.pinned_versions
        assert dict(pinned) == {"shared/work": "1.0.0"}
        await coordinator.register_contract(
            tokens["shared"], contract("shared/work", "1.1.0", extra="max_concurrency: 1\n")
        )
        running, most = [0], [0]
        release = asyncio.Event()

        async def work(call: Call):
            running[0] += 1
            most[0] = max(most[0], running[0])
            try:
                await release.wait()
            finally:
                running[0] -= 1
            return {"ref": call.input["order_id"]}

        # Three polls wait for shared/work: each approval offers a task they could take at once.
        agent = await test_agent(tokens["shared"], "shared", {"shared/work@1": work}, concurrency=3)
        for run_id in run_ids:
            answered = await coordinator.acli("runs", "approve", run_id, "gate", token=tokens["flood"])
            assert answered.returncode == 0, answered

        async def settled():
            """Every work step runs at the agent or is held by the cap (whichever came first)."""
            runs = [(await client.coordinator.GetRun(pb.GetRunRequest(run_id=r))).run for r in run_ids]
            reasons = [step(r, "work").waiting_reason for r in runs]
            held = sum(r.startswith("held: shared/work allows 1 at once, 1 running") for r in reasons)
            return (running[0], held) if running[0] + held == 3 else None

        got = await wait_until(settled, "each work step running or held")
        assert got == (1, 2) and most[0] == 1, (got, most, [r.outcome for r in agent.records])
        release.set()
        for run_id in run_ids:
            run = await wait_run(client, run_id)
            assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert most[0] == 1
