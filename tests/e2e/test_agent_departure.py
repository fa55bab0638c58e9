"""An agent that stops stops counting as serving its contracts at once, not after the 30 s
liveness window: a step's waiting reason says "no agent ... is serving", not that the agent
that just left is busy."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import yaml

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.testing import AgentProcess
from tests.support.coordinator import CoordinatorProcess
from tests.support.scenario import contract, start_run, wait_run

FLOW = """
workflow: crm/flow
input: {type: object}
steps:
  notify:
    contract: crm/notify@^1
    input: {order_id: "o"}
"""


async def _waiting_reason(coordinator: CoordinatorProcess, token: str, run_id: str, wanted: str) -> str:
    deadline = time.monotonic() + 20
    reason = ""
    async with coordinator.client(token) as client:
        while time.monotonic() < deadline:
            run = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run
            reason = run.steps[0].waiting_reason
            if wanted in reason:
                return reason
            await asyncio.sleep(0.2)
    return reason


async def test_a_stopped_agent_no_longer_counts_as_serving(
    tmp_path: Path, coordinator: CoordinatorProcess
) -> None:
    token = await coordinator.create_team("crm")
    await coordinator.register_contract(token, contract("crm/notify"))
    await coordinator.register_workflow(token, FLOW)
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "team": "crm",
                "coordinator": coordinator.address,
                "token": token,
                "implements": {"crm/notify@1": {"engine": "shell", "with": {"command": ["cat"]}}},
            }
        )
    )
    agent = AgentProcess(config, workdir=tmp_path).start()
    try:
        await agent.wait_for_log("registered 1 binding(s)")
        # Its polls are in: it took a run's task (its other workers were polling beside it).
        # (`cat` answers with the input, which the contract's output refuses: the run fails.)
        async with coordinator.client(token) as client:
            served = await wait_run(client, (await start_run(client, "crm/flow", {})).run.run_id)
        assert served.steps[0].attempts, served
        assert agent.stop() == 0, agent.log
    finally:
        agent.kill()
    stopped = time.monotonic()
    async with coordinator.client(token) as client:
        started = await start_run(client, "crm/flow", {})
    reason = await _waiting_reason(coordinator, token, started.run.run_id, "no agent of team crm is serving")
    assert "no agent of team crm is serving crm/notify@1" in reason, reason
    # Well before the 30 s liveness window could have expired it (the grace for a cut-off poll
    # is 2 s), with room for a loaded machine.
    assert time.monotonic() - stopped < 20
